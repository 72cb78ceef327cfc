"""ckpt-signals: the freeze protocol with SIGCKPT/SIGTHAW handlers (guest ckpt_signals).

SIGCKPT runs once before the freeze, SIGTHAW once after the thaw; without SIGTHAW the thaw
finishes exactly as the frozen run continued.
"""

from __future__ import annotations

from pathlib import Path

from vkckpt.ckpt.freeze import freeze
from vkckpt.kernel import VKernel
from vkckpt.regress.bisect import Runner
from vkckpt.regress.trial import CaseFailed, Trial
from vkckpt.testing.oracle import run_noting
from vkckpt.testing.outcome import Outcome, status_text

COUNTS = b"ckpt handler ran %d times\nthaw handler ran %d times\n"


def _work(stdout: bytes) -> list[bytes]:
    """The work's output lines (the handlers' counts left out)."""
    return [ln for ln in stdout.splitlines() if not ln.endswith(b" times")]


def run(t: Trial) -> None:
    """Freeze (with the protocol) in the first 90 % of the run: the handlers print their
    counts at the end."""
    gold = t.golden()
    if not gold.stdout.endswith(COUNTS % (0, 0)):
        raise CaseFailed(f"the golden run does not end with zero counts: {gold.stdout!r}")
    for at in t.freeze_points(t.case.points, below=0.9):
        _one_point(t, gold, at)
        t.points += 1


def _one_point(t: Trial, gold: Outcome, at: int) -> None:
    """Freeze at `at`; compare both thaws with the frozen run continued."""
    scratch = t.dir / "reference-scratch.img"
    live = t.boot(at)
    image = t.dir / f"at-{at}.img"
    freeze(live.k, str(image))
    tick = live.k.sched.ticks
    before = live.printed()
    t.root.save("frozen")
    live.status, rpoints = run_noting(live.k)
    ref = live.outcome()
    live.k.shutdown()
    label = f"freeze at {at} (after SIGCKPT: tick {tick})"
    if not ref.stdout.endswith(COUNTS % (1, 0)):
        t.fail(f"{label}: the frozen run continued does not count one SIGCKPT: "
               f"{ref.stdout[-60:]!r}")
    if _work(ref.stdout) != _work(gold.stdout):
        t.fail(f"{label}: the SIGCKPT handler changed the work's output")

    def reference_at(q: int) -> tuple[VKernel, int | None]:
        r = t.boot(at)
        freeze(r.k, str(scratch))
        return r.k, r.k.run(until_ticks=q)

    bad = _later_digest(t, image, label, tick, rpoints, ref.ticks, reference_at)
    t.root.restore("frozen")
    quiet = t.child(image)
    diffs = Outcome(before[0] + quiet.stdout, before[1] + quiet.stderr, quiet.status,
                    quiet.ticks, quiet.statuses).diffs(ref)
    for d in diffs:
        t.fail(f"{label}: thaw without SIGTHAW vs the frozen run continued: {d}")
    _with_sigthaw(t, gold, image, label, before[0])
    if diffs or bad is not None:
        t.bisect(f"{label} diverges from the frozen run continued",
                 t.probe(image, "frozen", tick, bad, reference_at, rpoints))


def _later_digest(t: Trial, image: Path, label: str, tick: int, rpoints: list[int], end: int,
                  reference_at: Runner) -> int | None:
    """Compare the thaw with the frozen run continued at a later point; the tick if bad."""
    later = t.later_point(tick, rpoints, end)
    if later is None:
        return None
    k, st = reference_at(later)
    want = t.digest(k) if st is None else None
    k.shutdown()
    got = t.thaw(image, "frozen", later)
    bad = None
    if want is not None and (got.status is not None or t.digest(got.k) != want):
        t.fail(f"{label}: state digest at tick {later} differs from the frozen run continued")
        bad = later
    got.k.shutdown()
    return bad


def _with_sigthaw(t: Trial, gold: Outcome, image: Path, label: str, before: bytes) -> None:
    """A fresh-process thaw that delivers SIGTHAW counts one of each signal."""
    t.root.restore("frozen")
    loud = t.child(image, sigthaw=True)
    out = before + loud.stdout
    if not out.endswith(COUNTS % (1, 1)):
        t.fail(f"{label}: thaw with SIGTHAW does not count one SIGCKPT and one "
               f"SIGTHAW: {out[-60:]!r}")
    if _work(out) != _work(gold.stdout):
        t.fail(f"{label}: thaw with SIGTHAW changed the work's output")
    if loud.status != gold.status:
        t.fail(f"{label}: thaw with SIGTHAW exit status {status_text(loud.status)}, "
               f"golden {status_text(gold.status)}")
