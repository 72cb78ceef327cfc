"""Save and load signal dispositions, pending signals and interval timers."""

from __future__ import annotations

from vkckpt.abi import signals as S
from vkckpt.errors import ImageError
from vkckpt.signals.actions import SigAction, SignalActions
from vkckpt.signals.itimers import ITIMER_PROF, ITIMER_REAL, ITIMER_VIRTUAL, ITimers
from vkckpt.signals.pending import PendingSignals, SigInfo

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
