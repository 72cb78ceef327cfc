"""iterated: freeze, thaw in a fresh process and freeze again later, N times; then run on."""

from __future__ import annotations

from pathlib import Path

from vkckpt.ckpt.snapshot import write_image
from vkckpt.regress.trial import CaseFailed, Trial
from vkckpt.testing.digest import image_digest
from vkckpt.testing.outcome import Outcome, status_text


def _golden_digests(t: Trial, pts: list[int]) -> dict[int, str]:
    """The golden state's digest at every freeze point."""
    live = t.boot()
    want = {}
    for p in pts:
        if live.k.run(until_ticks=p) is not None:
            raise CaseFailed(f"the golden run ended before tick {p}")
        want[p] = t.digest(live.k)
    live.k.shutdown()
    return want


def run(t: Trial) -> None:
    """Every image must equal the golden state at its tick; the last thaw's end the golden
    end."""
    gold = t.golden()
    pts = t.freeze_points(t.case.iters)
    if not pts:
        raise CaseFailed("no scheduling point inside the run")
    want = _golden_digests(t, pts)
    live = t.boot(pts[0])
    images = [t.dir / f"iter-1-at-{pts[0]}.img"]
    write_image(live.k, str(images[0]))
    out, err = live.printed()
    live.k.shutdown()
    t.root.save("iter-1")
    for i, p in enumerate(pts[1:], start=2):
        images.append(t.dir / f"iter-{i}-at-{p}.img")
        part = t.child(images[-2], "--freeze-at", str(p), "-o", str(images[-1]))
        out, err = out + part.stdout, err + part.stderr
        t.root.save(f"iter-{i}")
        t.points += 1
        if not _link_ok(t, images, pts, i, part, want[p]):
            return
    t.root.restore(f"iter-{len(pts)}")
    end = t.child(images[-1])
    t.points += 1
    whole = Outcome(out + end.stdout, err + end.stderr, end.status, end.ticks, end.statuses)
    diffs = whole.diffs(gold)
    for d in diffs:
        t.fail(f"after {len(pts)} freeze/thaw iterations: {d}")
    if diffs:
        t.bisect(f"the last thaw (tick {pts[-1]}) diverges",
                 t.probe(images[-1], f"iter-{len(pts)}", pts[-1], None))


def _link_ok(t: Trial, images: list[Path], pts: list[int], i: int, part: Outcome,
             want: str) -> bool:
    """Check image i (frozen at pts[i-1] by the thaw of image i-1); False ends the case."""
    p, prev = pts[i - 1], pts[i - 2]
    if part.status is not None or part.ticks != p or not images[-1].exists():
        t.fail(f"thaw {i - 1} did not stop at the freeze at tick {p} (status "
               f"{status_text(part.status)}, tick {part.ticks})")
        t.bisect(f"the thaw of image {i - 1} (tick {prev}) goes astray",
                 t.probe(images[-2], f"iter-{i - 1}", prev, p))
        return False
    if image_digest(images[-1], memory=t.memory) != want:
        t.fail(f"image {i} (frozen at tick {p} by a kernel thawed from image {i - 1})"
               f" differs from the golden state at tick {p}")
        t.bisect(f"iteration {i - 1} (thawed at tick {prev}, frozen again at {p}) diverges",
                 t.probe(images[-2], f"iter-{i - 1}", prev, p))
    return True
