"""Futex wait queues keyed by (address space, address) or, for shared memory, by backing page."""

from __future__ import annotations

from vkckpt.threads.wait import WaitQueue

FUTEX_WAIT, FUTEX_WAKE, FUTEX_REQUEUE, FUTEX_CMP_REQUEUE = 0, 1, 3, 4
FUTEX_WAKE_OP, FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 5, 9, 10
FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME = 128, 256
FUTEX_BITSET_MATCH_ANY = 0xFFFFFFFF


class FutexTable:
    """All futex queues of a vkernel; empty queues are dropped."""

    def __init__(self) -> None:
        self.queues: dict[tuple, WaitQueue] = {}

    def queue(self, key: tuple) -> WaitQueue:
        """The queue for key, created on first use."""
        q = self.queues.get(key)
        if q is None:
            q = self.queues[key] = WaitQueue(("futex", *key))
        return q

    def peek(self, key: tuple) -> WaitQueue | None:
        return self.queues.get(key)

    def prune(self, key: tuple) -> None:
        """Forget key's queue once nobody waits on it."""
        q = self.queues.get(key)
        if q is not None and not q.waiters:
            del self.queues[key]
