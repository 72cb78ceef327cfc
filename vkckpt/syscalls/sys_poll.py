"""Readiness over many descriptors: poll, ppoll, select, pselect6.

Each file reports its own revents (OpenFile.poll).  With none ready, the caller sleeps on the
kernel's readiness queue (`k.poll_q`), which every file notifies when its readiness changes,
and re-checks all its descriptors when woken: a spurious wake-up costs a re-check, never a lost
event.  At its timeout the call runs once more (Block's timeout_result None) and writes what it
found, as Linux's do_poll/do_select make a last pass.
"""

from __future__ import annotations

import struct

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.abi import signals as S
from vkckpt.abi.epoll import POLLEX_SET, POLLIN_SET, POLLOUT_SET
from vkckpt.abi.limits import NOFILE, POLL_MAX_FDS
from vkckpt.errors import GuestError
from vkckpt.syscalls.args import (
    put_timespec,
    s32,
    sigset_arg,
    timespec_arg,
    under_temporary_mask,
    wait_deadline,
)
from vkckpt.threads.wait import Block

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel
    from vkckpt.threads.thread import Sleep, Thread


def _sleep_or_time_out(k: VKernel, deadline: int | None, waits: bool) -> Block:
    """The Block of a poller with nothing ready: on the readiness queue when a file can
    change (`waits`), never restarted after a handler (ERESTARTNOHAND: EINTR, as on Linux)."""
    return Block(k.poll_q if waits else None, deadline, None, restartable=False)


def _timed_out(k: VKernel, deadline: int | None) -> bool:
    return deadline is not None and deadline <= k.now_ns()


def temporary_mask(t: Thread, sigmask: int, sigsetsize: int) -> None:
    """Install ppoll/pselect6's mask for the wait, kept in saved_sigmask as rt_sigsuspend's
    is (not again on a re-run after a wake-up)."""
    if sigmask and t.saved_sigmask is None:
        mask = sigset_arg(t, sigmask, sigsetsize)
        t.saved_sigmask, t.sigmask = t.sigmask, mask & ~S.UNBLOCKABLE


# -- poll ---------------------------------------------------------------------------------------
def sys_poll(k: VKernel, t: Thread, fds_addr: int, nfds: int, timeout_ms: int) -> int:
    """Implement poll(2)."""
    ms = s32(timeout_ms)
    deadline = wait_deadline(k, t, ms * 1_000_000 if ms >= 0 else None)
    return _poll(k, t, fds_addr, nfds, deadline)


def sys_ppoll(k: VKernel, t: Thread, fds_addr: int, nfds: int, tmo: int, sigmask: int,
              sigsetsize: int) -> int:
    """Implement ppoll(2): poll with a timespec timeout and, while it waits, a temporary
    signal mask: a handler's frame restores the caller's mask, and a call that ends
    otherwise restores it on return."""
    deadline = wait_deadline(k, t, timespec_arg(t, tmo) if tmo else None)
    temporary_mask(t, sigmask, sigsetsize)
    return under_temporary_mask(t, lambda: _poll(k, t, fds_addr, nfds, deadline))


def _poll(k: VKernel, t: Thread, fds_addr: int, nfds: int, deadline: int | None) -> int:
    """poll over any files: revents of each pollfd; with none ready and time left, sleep."""
    nfds &= 0xFFFFFFFF
    if nfds > POLL_MAX_FDS:
        raise GuestError(E.EINVAL)
    raw = bytearray(t.process.vm.read(fds_addr, 8 * nfds))
    ready = 0
    waits = False
    for i in range(nfds):
        fd, events, _ = struct.unpack_from("<ihH", raw, 8 * i)
        rev = 0
        if fd >= 0:
            try:
                f = t.process.fds.get(fd)
            except GuestError:
                rev = F.POLLNVAL
            else:
                rev = f.poll(events & 0xFFFF | F.POLLHUP | F.POLLERR) & \
                    (events & 0xFFFF | F.POLLHUP | F.POLLERR)
                waits = waits or f.poll_queue() is not None
        struct.pack_into("<H", raw, 8 * i + 6, rev)
        ready += bool(rev)
    if ready or _timed_out(k, deadline):
        t.process.vm.write(fds_addr, bytes(raw))
        return ready
    raise _sleep_or_time_out(k, deadline, waits)


# -- select -------------------------------------------------------------------------------------
def sys_select(k: VKernel, t: Thread, nfds: int, inp: int, outp: int, exp: int,
               tvp: int) -> int:
    """Implement select(2): a struct timeval timeout (microseconds past a second carry
    into seconds, as Linux's), updated with the time left on return."""
    timeout = None
    if tvp:
        sec, usec = struct.unpack("<qq", t.process.vm.read(tvp, 16))
        carry = abs(usec) // 1_000_000 * (1 if usec >= 0 else -1)  # C's truncating division
        sec, usec = sec + carry, usec - carry * 1_000_000
        if sec < 0 or usec < 0:
            raise GuestError(E.EINVAL)
        timeout = sec * 1_000_000_000 + usec * 1000
    deadline = wait_deadline(k, t, timeout)
    return _select(k, t, nfds, (inp, outp, exp), deadline, tvp, timeval=True)


def sys_pselect6(k: VKernel, t: Thread, nfds: int, inp: int, outp: int, exp: int,
                 tsp: int, sig: int) -> int:
    """Implement pselect6(2): a timespec timeout (updated on return) and a temporary signal
    mask given as {const sigset_t *ss; size_t ss_len}."""
    deadline = wait_deadline(k, t, timespec_arg(t, tsp) if tsp else None)
    if sig:
        ss, ss_len = struct.unpack("<QQ", t.process.vm.read(sig, 16))
        temporary_mask(t, ss, ss_len)
    return under_temporary_mask(t, lambda: _select(k, t, nfds, (inp, outp, exp), deadline,
                                                   tsp, timeval=False))


def select_interrupted(k: VKernel, t: Thread, s: Sleep) -> int:
    """select ended by a handler: -EINTR, the time left written to its timeval."""
    _put_left(k, t, s.args[4], s.deadline, timeval=True)
    return -E.EINTR


def pselect6_interrupted(k: VKernel, t: Thread, s: Sleep) -> int:
    """pselect6 ended by a handler: -EINTR, the time left written to its timespec."""
    _put_left(k, t, s.args[4], s.deadline, timeval=False)
    return -E.EINTR


def _put_left(k: VKernel, t: Thread, addr: int, deadline: int | None, timeval: bool) -> None:
    """Write the time left before deadline, as poll_select_finish (a zero or absent timeout
    is left alone; a fault is ignored)."""
    if not addr or deadline is None:
        return
    sec, nsec = struct.unpack("<qq", t.process.vm.read(addr, 16))
    if sec == 0 and nsec == 0:
        return
    left = max(0, deadline - k.now_ns())
    try:
        if timeval:
            t.process.vm.write(addr, struct.pack("<qq", left // 10**9, left % 10**9 // 1000))
        else:
            put_timespec(t, addr, left)
    except GuestError:
        pass


def _select(k: VKernel, t: Thread, nfds: int, sets: tuple[int, int, int],
            deadline: int | None, tmo: int = 0, timeval: bool = True) -> int:
    """select over fd_set bitmaps (Linux's do_select): EBADF for any closed descriptor
    named; each ready condition counts once; with none and time left, sleep."""
    n = s32(nfds)
    if n < 0:
        raise GuestError(E.EINVAL)
    n = min(n, NOFILE)
    size = (n + 63) // 64 * 8
    vm = t.process.vm
    bits = [int.from_bytes(vm.read(a, size), "little") if a else 0 for a in sets]
    res = [0, 0, 0]
    waits = False
    want = bits[0] | bits[1] | bits[2]
    for fd in range(n):
        if not want >> fd & 1:
            continue
        f = t.process.fds.get(fd)
        mask = f.poll(POLLIN_SET | POLLOUT_SET | POLLEX_SET)
        waits = waits or f.poll_queue() is not None
        for i, cond in enumerate((POLLIN_SET, POLLOUT_SET, POLLEX_SET)):
            if bits[i] >> fd & 1 and mask & cond:
                res[i] |= 1 << fd
    ready = sum(bin(r).count("1") for r in res)
    if not ready and not _timed_out(k, deadline):
        raise _sleep_or_time_out(k, deadline, waits)
    for a, r in zip(sets, res, strict=True):
        if a:
            vm.write(a, r.to_bytes(size, "little"))
    if tmo:
        _put_left(k, t, tmo, deadline, timeval)
    return ready
