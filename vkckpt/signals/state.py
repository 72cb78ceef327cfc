"""Save and load signal dispositions, pending signals, interval and POSIX timers."""

from __future__ import annotations

from vkckpt.abi import signals as S
from vkckpt.errors import ImageError
from vkckpt.signals.actions import SigAction, SignalActions
from vkckpt.signals.itimers import ITIMER_PROF, ITIMER_REAL, ITIMER_VIRTUAL, ITimers
from vkckpt.signals.pending import PendingSignals, SigInfo
from vkckpt.signals.posix_timers import MAX_TIMERS, PosixTimer, PosixTimers

_INFO_FIELDS = ("signo", "code", "errno", "pid", "uid", "status", "addr", "value")

#: Schema pieces (ckpt/schema.py) of the lists the process and thread records hold.
SIGINFO_SCHEMA = {"signo": "sig", "code": "i32", "errno": "i32", "pid": "i32", "uid": "u32",
                  "status": "i32", "addr": "u64", "value": "u64"}
PENDING_SCHEMA = [SIGINFO_SCHEMA]
ACTIONS_SCHEMA = [("sig", "u64", "u64", "u64", "u64")]


def save_pending(p: PendingSignals) -> list[dict]:
    """Pending signals in arrival order."""
    return [{f: getattr(i, f) for f in _INFO_FIELDS} for i in p.queue]


def load_pending(items: list[dict]) -> PendingSignals:
    p = PendingSignals()
    for d in items:
        info = SigInfo(**{f: d[f] for f in _INFO_FIELDS})
        p.queue.append(info)
        p.mask |= S.sigbit(info.signo)
    return p


def save_actions(a: SignalActions) -> list[list[int]]:
    """Non-default dispositions as [sig, handler, flags, restorer, mask]."""
    return [[sig, x.handler, x.flags, x.restorer, x.mask] for sig, x in enumerate(a.table)
            if sig and x != SigAction()]


def load_actions(rows: list[list[int]]) -> SignalActions:
    a = SignalActions()
    for sig, handler, flags, restorer, mask in rows:
        a.set(sig, SigAction(handler, flags, restorer, mask))
    return a


#: A process record's interval timers: [which, ns (ITIMER_REAL: the armed deadline), period,
#: kernel timer seq (ITIMER_REAL while armed, else 0)], written only when one is set.
ITIMERS_SCHEMA = [("u32", "u64", "u64", "u64")]


def save_itimers(it: ITimers) -> list[list[int]]:
    """The timers that are set (an empty list for none: the field is then left out)."""
    rows = []
    if it.real.armed or it.real_interval:
        rows.append([ITIMER_REAL, it.real.deadline if it.real.armed else 0, it.real_interval,
                     it.real.seq])
    for which in (ITIMER_VIRTUAL, ITIMER_PROF):
        left, period = it.cpu[which]
        if left or period:
            rows.append([which, left, period, 0])
    return rows


def load_itimers(rows: list[list[int]], it: ITimers) -> None:
    """Set it from its rows; ITIMER_REAL is armed again (through it.arm, the kernel's: so
    the process is registered first) with its saved sequence."""
    seen = set()
    for which, ns, period, seq in rows:
        if which in seen or which not in (ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF) or \
                (which != ITIMER_REAL and (seq or not ns and period)):
            raise ImageError(f"interval timer {which!r} is not one setitimer could set")
        seen.add(which)
        if which == ITIMER_REAL:
            it.real_interval = period
            if seq:
                it.arm(it.real, ns, seq)
        else:
            it.cpu[which] = [ns, period]


#: A process record's POSIX timers: the next id and one row per timer, [id, clock, notify,
#: signo, value, target tid, armed deadline, period, kernel timer seq (0: disarmed),
#: overrun]; written once the process has created one.
PTIMERS_SCHEMA = {"next_id": "u32", "timers": [("u32", "u32", "u32", "sig", "u64", "u32",
                                                "u64", "u64", "u64", "u32")]}


def save_ptimers(pt: PosixTimers) -> dict | None:
    """None while the process never created a timer (the field is then left out)."""
    if not pt.next_id and not pt.timers:
        return None
    return {"next_id": pt.next_id, "timers": [
        [tm.tid, tm.clockid, tm.notify, tm.signo, tm.value, tm.target,
         tm.timer.deadline if tm.timer.armed else 0, tm.interval, tm.timer.seq, tm.overrun]
        for _, tm in sorted(pt.timers.items())]}


def load_ptimers(d: dict, pt: PosixTimers) -> None:
    """Set pt from its saved form; armed timers are armed again (through pt.arm, the
    kernel's: so the process is registered first) with their sequences."""
    rows = d["timers"]
    if len(rows) > MAX_TIMERS or len({r[0] for r in rows}) != len(rows) or \
            not 0 <= d["next_id"] < 1 << 31:
        raise ImageError("POSIX timers: too many, or one id twice")
    pt.next_id = d["next_id"]
    for tid, clock, notify, signo, value, target, at, interval, seq, overrun in rows:
        if clock not in (0, 1, 7) or notify not in (S.SIGEV_SIGNAL, S.SIGEV_NONE,
                                                    S.SIGEV_THREAD, S.SIGEV_SIGNAL |
                                                    S.SIGEV_THREAD_ID) or tid >= 1 << 31:
            raise ImageError(f"POSIX timer {tid!r} is not one timer_create could make")
        tm = PosixTimer(tid, clock, notify, signo, value, target, pt)
        tm.interval, tm.overrun = interval, overrun
        pt.timers[tid] = tm
        if seq:
            pt.arm(tm.timer, at, seq)
