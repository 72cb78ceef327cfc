"""Futex wait queues keyed by (address space, address) or, for shared memory, by backing page."""

from __future__ import annotations

from vkckpt.threads.wait import WaitQueue

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.process import Process

FUTEX_WAIT, FUTEX_WAKE, FUTEX_REQUEUE, FUTEX_CMP_REQUEUE = 0, 1, 3, 4
FUTEX_WAKE_OP, FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 5, 9, 10
FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME = 128, 256
FUTEX_BITSET_MATCH_ANY = 0xFFFFFFFF


def futex_key(p: Process, addr: int) -> tuple:
    """Private memory is keyed by process (one vmspace each); MAP_SHARED by backing page."""
    v = p.vm.vmas.find(addr)
    if v is not None and v.shared:
        return ("shared", v.buf.bid, v.off + addr - v.start)
    return ("private", p.pid, addr)


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

    def wake(self, key: tuple, n: int, bitset: int = FUTEX_BITSET_MATCH_ANY) -> int:
        """Wake up to n waiters of key whose bitset intersects bitset (their futex call
        returns 0); returns how many."""
        q = self.queues.get(key)
        woken = 0
        if q is not None:
            for w in list(q.waiters):
                if woken >= n:
                    break
                if w.futex_bitset & bitset:
                    w.futex_bitset = FUTEX_BITSET_MATCH_ANY
                    w.wake(0)
                    woken += 1
            self.prune(key)
        return woken
