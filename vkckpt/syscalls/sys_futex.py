"""futex(2): WAIT, WAKE, WAIT_BITSET, WAKE_BITSET, REQUEUE and CMP_REQUEUE."""

from __future__ import annotations

import struct

from vkckpt.abi import errno as E
from vkckpt.errors import GuestError
from vkckpt.syscalls.args import deadline_at, timespec_arg
from vkckpt.threads import futex as FX
from vkckpt.threads.futex import futex_key
from vkckpt.threads.wait import Block
from vkckpt.vclock import EPOCH_NS

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel
    from vkckpt.process import Process
    from vkckpt.threads.thread import Thread


def _load(p: Process, addr: int) -> int:
    if addr % 4:
        raise GuestError(E.EINVAL)
    return struct.unpack("<I", p.vm.read(addr, 4))[0]


def futex_wake(k: VKernel, p: Process, addr: int, n: int,
               bitset: int = FX.FUTEX_BITSET_MATCH_ANY) -> int:
    """Wake up to n waiters on addr whose bitset intersects bitset; returns how many."""
    return k.futexes.wake(futex_key(p, addr), n, bitset)


def _wait(k: VKernel, t: Thread, addr: int, val: int, deadline: int | None,
          bitset: int) -> int:
    if bitset == 0:
        raise GuestError(E.EINVAL)
    if _load(t.process, addr) != val & 0xFFFFFFFF:
        raise GuestError(E.EAGAIN)
    t.futex_bitset = bitset
    raise Block(k.futexes.queue(futex_key(t.process, addr)), deadline, -E.ETIMEDOUT)


def _requeue(k: VKernel, t: Thread, addr: int, n_wake: int, n_move: int, addr2: int,
             cmp: int | None) -> int:
    p = t.process
    if cmp is not None and _load(p, addr) != cmp & 0xFFFFFFFF:
        raise GuestError(E.EAGAIN)
    woken = futex_wake(k, p, addr, n_wake)
    key = futex_key(p, addr)
    q = k.futexes.peek(key)
    moved = 0
    if q is not None:
        dest = k.futexes.queue(futex_key(p, addr2))
        while q.waiters and moved < n_move:
            w = q.waiters.pop(0)
            dest.waiters.append(w)
            w.sleep.queue = dest
            moved += 1
        k.futexes.prune(key)
    return woken + moved


def sys_futex(k: VKernel, t: Thread, addr: int, op: int, val: int, timeout: int, addr2: int,
              val3: int) -> int:
    """Implement futex(2) for the operations musl and pthreads use."""
    cmd = op & ~(FX.FUTEX_PRIVATE_FLAG | FX.FUTEX_CLOCK_REALTIME)
    val &= 0xFFFFFFFF
    if cmd == FX.FUTEX_WAIT:
        deadline = deadline_at(k.now_ns() + timespec_arg(t, timeout)) if timeout else None
        return _wait(k, t, addr, val, deadline, FX.FUTEX_BITSET_MATCH_ANY)
    if cmd == FX.FUTEX_WAIT_BITSET:
        deadline = None
        if timeout:
            deadline = timespec_arg(t, timeout)
            if op & FX.FUTEX_CLOCK_REALTIME:
                deadline -= EPOCH_NS
            deadline = deadline_at(deadline)
        return _wait(k, t, addr, val, deadline, val3 & 0xFFFFFFFF)
    if cmd == FX.FUTEX_WAKE:
        if addr % 4 or not op & FX.FUTEX_PRIVATE_FLAG:  # a shared key needs the page: EFAULT
            _load(t.process, addr)
        return futex_wake(k, t.process, addr, val)
    if cmd == FX.FUTEX_WAKE_BITSET:
        if val3 & 0xFFFFFFFF == 0:
            raise GuestError(E.EINVAL)
        return futex_wake(k, t.process, addr, val, val3 & 0xFFFFFFFF)
    if cmd in (FX.FUTEX_REQUEUE, FX.FUTEX_CMP_REQUEUE):
        n_move = timeout & 0x7FFFFFFF
        cmp = val3 if cmd == FX.FUTEX_CMP_REQUEUE else None
        return _requeue(k, t, addr, val, n_move, addr2, cmp)
    raise GuestError(E.ENOSYS, f"futex op {cmd}")
