"""chain: a full image, then incremental ones, the last written by a thawed kernel."""

from __future__ import annotations

from pathlib import Path

from vkckpt.ckpt.chain import ImageChain
from vkckpt.ckpt.snapshot import write_image
from vkckpt.regress.kinds.check import check_image
from vkckpt.regress.trial import CaseFailed, Trial
from vkckpt.testing.outcome import Outcome


def run(t: Trial) -> None:
    """case.chain images: the first n-1 written by the run every `step` ticks (a full base
    image, then incremental ones), the last by a kernel thawed from the n-1st."""
    gold = t.golden()
    n = t.case.chain - 1
    step = max(1, gold.ticks // (n + 1))
    live = t.boot()
    images: list[Path] = []
    chain = ImageChain()
    while len(images) < n:
        target = (len(images) + 1) * step
        if live.k.sched.ticks >= target:
            target = live.k.sched.ticks + 1
        live.status = live.k.run(until_ticks=target)
        if live.status is not None:
            break
        images.append(t.dir / f"chain.{len(images) + 1:04d}.img")
        write_image(live.k, str(images[-1]), chain=chain, incremental=len(images) > 1)
    if not images:
        raise CaseFailed("the run ended before the first image of the chain")
    if len(images) < n:
        t.fail(f"only {len(images)} of {n} chain images before the run ended")
    tick = live.k.sched.ticks
    t.log(f"{t.case.name}: chain of {len(images)}, last at tick {tick}")
    before = live.printed()
    check_image(t, images[-1], live, f"chain of {len(images)} (every {step} ticks)")
    t.points = len(images)
    if not t.problems:
        _extend(t, images, tick, before)


def _extend(t: Trial, images: list[Path], tick: int, before: tuple[bytes, bytes]) -> None:
    """A kernel thawed from the chain's last image freezes incrementally on top of it
    (its pages compared with what the thaw laid down); that image thaws to the end."""
    gold = t.golden()
    later = t.later_point(tick, gold.points, gold.ticks)
    if later is None:
        return
    chain = ImageChain()
    live = t.thaw(images[-1], "frozen", later, chain)
    if live.status is not None:
        raise CaseFailed(f"the thawed chain ended before tick {later}")
    image = t.dir / f"chain.{len(images) + 1:04d}.img"
    write_image(live.k, str(image), chain=chain, incremental=True)
    got = t.digest(live.k)
    out, err = before[0] + b"".join(live.out), before[1] + b"".join(live.err)
    live.k.shutdown()
    t.root.save("extended")
    ref = t.boot(later)
    want = t.digest(ref.k)
    ref.k.shutdown()
    label = f"incremental image {image.name} of a thawed kernel (tick {later})"
    if got != want:
        t.fail(f"{label}: its state differs from the golden run's")
    t.root.restore("extended")
    end = t.child(image)
    diffs = Outcome(out + end.stdout, err + end.stderr, end.status, end.ticks,
                    end.statuses).diffs(gold)
    for d in diffs:
        t.fail(f"{label}: fresh-process thaw: {d}")
    if diffs:
        t.bisect(f"{label} diverges", t.probe(image, "extended", later, None))
    t.points += 1
