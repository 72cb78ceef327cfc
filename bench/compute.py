"""Target 1: compute-bound guests under the deterministic scheduler versus bare Unicorn.

The bare reference is the same vkernel with `KernelConfig(preempt=False)`: no block counter is
installed and every slice is one `emu_start` with no budget, so a guest that makes no system
call while it computes runs as one bare `emu_start` over its code with no hooks.  (The syscall
hook stays: the guests print their results.)  Both sides run in this process, interleaved.
"""

from __future__ import annotations

from bench.common import Guests, Profile, Result, median_pair, timed_run

TARGET = 0.85


def _side_by_side(r: Result, g: Guests, p: Profile, key: str, name: str, args: list[str],
                  blocks_per_iter: float | None = None) -> None:
    outputs: dict[bool, str] = {}
    ticks = 0

    def one(preempt: bool) -> float:
        nonlocal ticks
        secs, text, k = timed_run(g, name, args, preempt=preempt)
        outputs[preempt] = text
        if preempt:
            ticks = k.sched.ticks
        return secs

    bare, sched = median_pair(p.repeat, lambda: one(False), lambda: one(True))
    if outputs[True] != outputs[False]:
        raise RuntimeError(f"{name}: output differs between bare and scheduled runs")
    r.add(f"{key}_bare_s", bare, "s")
    r.add(f"{key}_sched_s", sched, "s")
    r.add(f"{key}_blocks", ticks, "blocks")
    r.add(f"{key}_ratio", bare / sched, "x bare")
    r.target(f"{key}_ratio", ">=", TARGET)


def run(p: Profile, g: Guests) -> Result:
    r = Result("compute", "compute-bound guest: scheduler vs bare emu_start")
    _side_by_side(r, g, p, "single", "compute", [str(p.compute_scale)])
    _side_by_side(r, g, p, "threads4", "compute_mt", ["4", str(p.compute_mt_scale)])
    r.notes.append("ratio = bare seconds / scheduled seconds (quantum 50000 blocks)")
    return r
