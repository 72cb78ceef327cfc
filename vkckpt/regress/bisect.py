"""Find where a thawed run leaves the golden run, and say which state differs there.

`bisect` binary-searches the golden run's scheduling points after the freeze point, rebuilding
both runs in this process for every probe and comparing state digests.  At the first point
that differs it writes an image of each run and `diff_states` (imagediff.py) compares them
record by record; `instruction_at` (imagestate.py) disassembles the instruction at the
diverging thread's rip from the image's own page data.

The search assumes that once the runs differ they stay different (state carries forward: the
tick count alone makes that true for any divergence in control flow).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vkckpt.ckpt.snapshot import write_image
from vkckpt.regress.imagediff import MAX_FINDINGS, Finding, diff_states
from vkckpt.regress.imagestate import diverging_thread, instructions, load_state
from vkckpt.testing.digest import state_digest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vkckpt.kernel import VKernel


Runner = Callable[[int], "tuple[VKernel, int | None]"]


@dataclass
class Probe:
    """How to rebuild both runs at any scheduling point (fresh kernels every call)."""

    golden_at: Runner      # run the golden run to the first scheduling point >= tick
    thawed_at: Runner      # thaw the image and run it to the first scheduling point >= tick
    points: list[int]      # the golden run's scheduling points from the freeze point on
    workdir: Path
    memory: bool = True    # False: page data is host-dependent for this workload
    known_bad: int | None = None  # a tick already seen to differ (None: only the end did)
    log: Callable[[str], None] = lambda s: None


@dataclass
class BisectResult:
    first: int | None            # first diverging scheduling point (None: only the end)
    last_same: int | None        # the point before it where the runs were identical
    probes: int
    findings: list[Finding] = field(default_factory=list)
    instructions: list[str] = field(default_factory=list)
    images: tuple[str, str] | None = None
    note: str = ""

    def text(self) -> str:
        """The report, as printed under a failed case."""
        lines = []
        if self.first is None:
            lines.append(f"bisect: {self.probes} probes; the state is identical at every "
                         f"scheduling point up to tick {self.last_same}: the runs differ only "
                         "after the last scheduling point")
        else:
            at = ("the freeze point itself: the state differs right after the thaw"
                  if self.last_same is None else
                  f"last identical scheduling point: tick {self.last_same}")
            lines.append(f"bisect: {self.probes} probes; first diverging scheduling point: "
                         f"tick {self.first} ({at})")
        if self.note:
            lines.append(self.note)
        if self.findings:
            cats = sorted({f.category for f in self.findings})
            lines.append(f"state that differs at tick {self.first} (golden vs thawed; "
                         f"{', '.join(cats)}):")
            shown = self.findings[:MAX_FINDINGS]
            lines += [f"  {f.category}: {f.text}" for f in shown]
            if len(self.findings) > len(shown):
                lines.append(f"  ... and {len(self.findings) - len(shown)} more")
        lines += [f"  instruction: {s}" for s in self.instructions]
        if self.images:
            lines.append(f"  images: golden {self.images[0]}  thawed {self.images[1]}")
        return "\n".join(lines)


def _state(run: Runner, q: int, tmp: Path, memory: bool) -> tuple:
    """What a run looks like at q: ended (status) or running (digest), and its tick."""
    k, status = run(q)
    try:
        if status is not None:
            return ("ended", status, k.sched.ticks)
        return ("running", state_digest(k, tmp, memory=memory), k.sched.ticks)
    finally:
        k.shutdown()


def bisect(p: Probe) -> BisectResult:
    """Narrow a divergence to the first scheduling point where the states differ."""
    pts = p.points
    tmp = p.workdir
    tmp.mkdir(parents=True, exist_ok=True)
    probes = 0

    def same(i: int) -> bool:
        nonlocal probes
        probes += 1
        q = pts[i]
        g = _state(p.golden_at, q, tmp, p.memory)
        t = _state(p.thawed_at, q, tmp, p.memory)
        p.log(f"probe tick {q}: {'same' if g == t else 'differs'}")
        return g == t

    if not pts or not same(0):
        first: int | None = 0 if pts else None
        last = None
    else:
        lo, hi = 0, len(pts)
        if p.known_bad is not None and p.known_bad in pts[1:]:
            i = pts.index(p.known_bad)
            if not same(i):
                hi = i
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if same(mid):
                lo = mid
            else:
                hi = mid
        first, last = (hi if hi < len(pts) else None), pts[lo]
    if first is None:
        return BisectResult(None, last, probes)
    q = pts[first]
    res = BisectResult(q, last, probes)
    gk, gst = p.golden_at(q)
    gi = tmp / f"golden-{q}.img"
    write_image(gk, str(gi))
    gk.shutdown()
    tk, tst = p.thawed_at(q)
    ti = tmp / f"thawed-{q}.img"
    if tst is not None:
        res.note = (f"the thawed run ended at tick {tk.sched.ticks} with wait status {tst:#x} "
                    f"(golden: {'ended ' + hex(gst) if gst is not None else 'still running'})")
    try:
        write_image(tk, str(ti))
    except Exception as exc:  # an ended kernel may not be writable
        res.note += f"; no image of the thawed run ({exc})"
        tk.shutdown()
        return res
    tk.shutdown()
    g, t = load_state(gi), load_state(ti)
    res.findings = diff_states(g, t, memory=p.memory)
    if not p.memory:
        res.note += ("" if not res.note else "; ") + ("memory is not compared for this "
                                                        "workload (it holds host file metadata)")
    tid = diverging_thread(g, t)
    if tid is not None:
        res.instructions = instructions(g, t, tid)
    res.images = (str(gi), str(ti))
    return res
