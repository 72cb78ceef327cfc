"""The scheduler's saved form: its fields of the kernel record (kernel_state.py holds the
rest), with their schema piece.  The run queue and timers are saved as thread ids."""

from __future__ import annotations

from vkckpt.errors import ImageError
from vkckpt.threads.thread import ThreadState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vkckpt.sched import Scheduler
    from vkckpt.threads.thread import Thread

#: Scheduler fields not saved under their own name (`_timer_seq` is saved as timer_seq).
TRANSIENT: dict[str, str] = {"_queued": "the run queue's members, rebuilt from runq",
                              "events": "kernel timers: their owners' records hold each "
                              "armed one's deadline and seq (threads/ktimer.py)"}
#: The scheduler's part of the kernel record's type/range table (ckpt/schema.py).
SCHEMA = {"ticks": "u64", "idle_ns": "u64", "timer_seq": "u64", "runq": ["u32"],
          "timers": [("u64", "u64", "u32")], "quantum": "u64"}


def save(s: Scheduler, saved: list[int] | None, woken: list[int]) -> dict:
    """The scheduler's fields; only threads of processes in `saved` (None: all) are named,
    and `woken` threads join the run queue's tail (as the live run does)."""
    def keep(t: Thread) -> bool:
        return saved is None or t.process.pid in saved
    return {
        "ticks": s.ticks, "idle_ns": s.idle_ns, "timer_seq": s._timer_seq,
        "runq": [t.tid for t in s.runq if keep(t)] + woken,
        "timers": [[d, q, t.tid] for d, q, t in sorted(s.timers, key=lambda x: x[:2])
                   if t.sleep is not None and t.sleep.timer == q and keep(t)],
        "quantum": s.quantum,
    }


def load_clock(s: Scheduler, kr: dict) -> None:
    """Give s the kernel record's clock (first: loading files may read the time)."""
    if not isinstance(kr["ticks"], int) or kr["ticks"] < 0:
        raise ImageError("kernel ticks must be a non-negative integer")
    s.load_clock(kr["ticks"], kr["idle_ns"], kr["timer_seq"])


def load_queues(s: Scheduler, kr: dict, threads: dict[int, Thread]) -> None:
    """Give s the kernel record's run queue and timers, checked against the threads."""
    runq = []
    for tid in kr["runq"]:
        t = threads.get(tid)
        if t is None or t.state is not ThreadState.RUNNABLE:
            raise ImageError(f"run queue names thread {tid!r}, which is not runnable")
        runq.append(t)
    timers = []
    for deadline, seq, tid in kr["timers"]:
        t = threads.get(tid)
        if t is None or t.sleep is None or t.sleep.timer != seq or t.sleep.deadline != deadline:
            raise ImageError(f"timer for thread {tid!r} does not match its sleep")
        timers.append((deadline, seq, t))
    s.load_queues(runq, timers)


def check_events(s: Scheduler) -> None:
    """Refuse kernel timers a thaw armed (timerfds, interval timers) with a sequence the
    saved scheduler never handed out, or two with one sequence."""
    seqs = [seq for _, seq, _ in s.events]
    if any(seq > s._timer_seq for seq in seqs) or len(set(seqs)) != len(seqs):
        raise ImageError("a kernel timer's sequence is not one the scheduler handed out")
