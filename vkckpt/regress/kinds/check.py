"""The check every frozen image of the points and chain kinds gets."""

from __future__ import annotations

from pathlib import Path

from vkckpt.regress.trial import Live, Trial
from vkckpt.testing.outcome import Outcome


def check_image(t: Trial, image: Path, live: Live, label: str) -> None:
    """live: the kernel frozen into image, still at the freeze point.  Compares, against the
    golden run: the state right after an in-process thaw and at a later scheduling point
    (digests), and the end of a thaw in a fresh host process (output, statuses, ticks)."""
    gold = t.golden()
    tick = live.k.sched.ticks
    before_out, before_err = live.printed()
    t.root.save("frozen")
    later = t.later_point(tick, gold.points, gold.ticks)
    want_now = t.digest(live.k)
    want_later = None
    if later is not None:
        if live.k.run(until_ticks=later) is None:
            want_later = t.digest(live.k)
    live.k.shutdown()
    bad_tick = None
    got = t.thaw(image, "frozen")
    if t.digest(got.k) != want_now:
        t.fail(f"{label}: state right after the thaw differs from the frozen state "
               f"(tick {tick})")
        bad_tick = tick
    if later is not None and want_later is not None:
        got.status = got.k.run(until_ticks=later)
        if got.status is not None or t.digest(got.k) != want_later:
            t.fail(f"{label}: state digest at tick {later} differs from the golden run")
            bad_tick = bad_tick or later
    got.k.shutdown()
    t.root.restore("frozen")
    end = t.child(image)
    whole = Outcome(before_out + end.stdout, before_err + end.stderr, end.status, end.ticks,
                    end.statuses)
    diffs = whole.diffs(gold)
    for d in diffs:
        t.fail(f"{label}: fresh-process thaw: {d}")
    if diffs or bad_tick is not None:
        t.bisect(f"{label} (frozen at tick {tick}) diverges",
                 t.probe(image, "frozen", tick, bad_tick))
    t.points += 1
