"""Save and load signal dispositions and pending signals."""

from __future__ import annotations

from vkckpt.abi import signals as S
from vkckpt.signals.actions import SigAction, SignalActions
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
