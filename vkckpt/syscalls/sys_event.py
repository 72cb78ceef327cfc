"""Event files: epoll, eventfd, timerfd and signalfd."""

from __future__ import annotations

from vkckpt.abi import epoll as EP
from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.errors import GuestError
from vkckpt.fs.epoll import Epoll, check_target
from vkckpt.fs.eventfd import EventFd
from vkckpt.fs.signalfd import SignalFd
from vkckpt.fs.timerfd import CLOCKS, TimerFd
from vkckpt.syscalls.args import (
    s32,
    sigset_arg,
    timespec_arg,
    u32,
    under_temporary_mask,
    wait_deadline,
)
from vkckpt.syscalls.sys_poll import temporary_mask
from vkckpt.threads.wait import Block

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel
    from vkckpt.threads.thread import Thread


# -- epoll ------------------------------------------------------------------------------------
def sys_epoll_create(k: VKernel, t: Thread, size: int) -> int:
    """Implement epoll_create(2): size is only checked to be positive."""
    if s32(size) <= 0:
        raise GuestError(E.EINVAL)
    return sys_epoll_create1(k, t, 0)


def sys_epoll_create1(k: VKernel, t: Thread, flags: int) -> int:
    """Implement epoll_create1(2)."""
    if flags & ~EP.EPOLL_CLOEXEC:
        raise GuestError(E.EINVAL)
    return t.process.fds.install(Epoll(F.O_RDWR, k.file_services()),
                                 bool(flags & EP.EPOLL_CLOEXEC))


def _epoll(t: Thread, epfd: int) -> Epoll:
    f = t.process.fds.get(s32(epfd))
    if not isinstance(f, Epoll):
        raise GuestError(E.EINVAL)
    return f


def sys_epoll_ctl(k: VKernel, t: Thread, epfd: int, op: int, fd: int, event: int) -> int:
    """Implement epoll_ctl(2), checking in do_epoll_ctl's order."""
    op, fd = s32(op), s32(fd)
    events = data = 0
    if op != EP.EPOLL_CTL_DEL:
        events, data = EP.EPOLL_EVENT.unpack(t.process.vm.read(event, EP.EPOLL_EVENT.size))
    f = t.process.fds.get(s32(epfd))
    target = t.process.fds.get(fd)
    if not target.pollable:
        raise GuestError(E.EPERM)
    if target is f or not isinstance(f, Epoll):
        raise GuestError(E.EINVAL)
    if op != EP.EPOLL_CTL_DEL and events & EP.EPOLLEXCLUSIVE and (
            op == EP.EPOLL_CTL_MOD or isinstance(target, Epoll) or
            events & ~EP.EPOLLEXCLUSIVE_OK_BITS):
        raise GuestError(E.EINVAL)
    if op == EP.EPOLL_CTL_ADD:
        check_target(f, target)
    item = f.find(target, fd)
    events |= EP.EPOLLERR | EP.EPOLLHUP
    if op == EP.EPOLL_CTL_ADD:
        if item is not None:
            raise GuestError(E.EEXIST)
        f.add(target, fd, events, data)
    elif op in (EP.EPOLL_CTL_DEL, EP.EPOLL_CTL_MOD):
        if item is None:
            raise GuestError(E.ENOENT)
        if op == EP.EPOLL_CTL_DEL:
            f.remove(item)
        elif item.events & EP.EPOLLEXCLUSIVE:
            raise GuestError(E.EINVAL)
        else:
            f.modify(item, events, data)
    else:
        raise GuestError(E.EINVAL)
    return 0


def sys_epoll_wait(k: VKernel, t: Thread, epfd: int, events: int, maxevents: int,
                   timeout: int) -> int:
    """Implement epoll_wait(2): a timeout in milliseconds (negative: none)."""
    ms = s32(timeout)
    deadline = wait_deadline(k, t, ms * 1_000_000 if ms >= 0 else None)
    return _wait(k, t, epfd, events, maxevents, deadline)


def sys_epoll_pwait(k: VKernel, t: Thread, epfd: int, events: int, maxevents: int,
                    timeout: int, sigmask: int, sigsetsize: int) -> int:
    """Implement epoll_pwait(2): epoll_wait under a temporary signal mask, as ppoll."""
    ms = s32(timeout)
    deadline = wait_deadline(k, t, ms * 1_000_000 if ms >= 0 else None)
    temporary_mask(t, sigmask, sigsetsize)
    return under_temporary_mask(t, lambda: _wait(k, t, epfd, events, maxevents, deadline))


def sys_epoll_pwait2(k: VKernel, t: Thread, epfd: int, events: int, maxevents: int,
                     tmo: int, sigmask: int, sigsetsize: int) -> int:
    """Implement epoll_pwait2(2): as epoll_pwait with a timespec timeout (NULL: none)."""
    deadline = wait_deadline(k, t, timespec_arg(t, tmo) if tmo else None)
    temporary_mask(t, sigmask, sigsetsize)
    return under_temporary_mask(t, lambda: _wait(k, t, epfd, events, maxevents, deadline))


def _wait(k: VKernel, t: Thread, epfd: int, events: int, maxevents: int,
          deadline: int | None) -> int:
    """ep_poll: report ready items, or sleep until one is (or the deadline: a last look,
    then 0).  A signal ends the wait with EINTR, never restarted."""
    maxevents = s32(maxevents)
    if not 0 < maxevents <= EP.EP_MAX_EVENTS:
        raise GuestError(E.EINVAL)
    t.process.vm.access_ok(events, maxevents * EP.EPOLL_EVENT.size)
    ep = _epoll(t, epfd)
    got = ep.collect(maxevents)
    if got:
        t.process.vm.write(events, b"".join(EP.EPOLL_EVENT.pack(ev, d) for ev, d in got))
        return len(got)
    if deadline is not None and deadline <= k.now_ns():
        return 0
    raise Block(k.poll_q, deadline, None, restartable=False)


# -- eventfd ----------------------------------------------------------------------------------
def sys_eventfd2(k: VKernel, t: Thread, count: int, flags: int) -> int:
    """Implement eventfd2(2)."""
    if flags & ~(EP.EFD_CLOEXEC | EP.EFD_NONBLOCK | EP.EFD_SEMAPHORE):
        raise GuestError(E.EINVAL)
    f = EventFd(F.O_RDWR | flags & F.O_NONBLOCK, u32(count), bool(flags & EP.EFD_SEMAPHORE),
                k.file_services())
    return t.process.fds.install(f, bool(flags & EP.EFD_CLOEXEC))


def sys_eventfd(k: VKernel, t: Thread, count: int) -> int:
    """Implement eventfd(2): eventfd2 without flags."""
    return sys_eventfd2(k, t, count, 0)


# -- timerfd ----------------------------------------------------------------------------------
def sys_timerfd_create(k: VKernel, t: Thread, clockid: int, flags: int) -> int:
    """Implement timerfd_create(2) on CLOCK_MONOTONIC, CLOCK_REALTIME or CLOCK_BOOTTIME."""
    clockid, flags = s32(clockid), s32(flags)
    if flags & ~(EP.TFD_CLOEXEC | EP.TFD_NONBLOCK) or clockid not in CLOCKS:
        raise GuestError(E.EINVAL)
    f = TimerFd(F.O_RDWR | flags & F.O_NONBLOCK, clockid, k.file_services())
    return t.process.fds.install(f, bool(flags & EP.TFD_CLOEXEC))


def _timerfd(t: Thread, fd: int) -> TimerFd:
    f = t.process.fds.get(s32(fd))
    if not isinstance(f, TimerFd):
        raise GuestError(E.EINVAL)
    return f


def _itimerspec(t: Thread, addr: int) -> tuple[int, int]:
    """(it_value, it_interval) of a struct itimerspec in ns (EINVAL when malformed)."""
    isec, insec, vsec, vnsec = EP.ITIMERSPEC.unpack(t.process.vm.read(addr, EP.ITIMERSPEC.size))
    for sec, nsec in ((isec, insec), (vsec, vnsec)):
        if sec < 0 or not 0 <= nsec < 1_000_000_000:
            raise GuestError(E.EINVAL)
    return vsec * 1_000_000_000 + vnsec, isec * 1_000_000_000 + insec


def _put_itimerspec(t: Thread, addr: int, value: int, interval: int) -> None:
    t.process.vm.write(addr, EP.ITIMERSPEC.pack(interval // 10**9, interval % 10**9,
                                                value // 10**9, value % 10**9))


def sys_timerfd_settime(k: VKernel, t: Thread, fd: int, flags: int, new: int,
                        old: int) -> int:
    """Implement timerfd_settime(2): relative or TFD_TIMER_ABSTIME, periodic with an
    interval; the old setting written to `old` (TFD_TIMER_CANCEL_ON_SET is accepted: the
    virtual clock is never set)."""
    flags = s32(flags)
    if flags & ~(EP.TFD_TIMER_ABSTIME | EP.TFD_TIMER_CANCEL_ON_SET):
        raise GuestError(E.EINVAL)
    value, interval = _itimerspec(t, new)
    f = _timerfd(t, fd)
    if old:
        t.process.vm.access_ok(old, EP.ITIMERSPEC.size)
    ovalue, ointerval = f.settime(value, interval, bool(flags & EP.TFD_TIMER_ABSTIME))
    if old:
        _put_itimerspec(t, old, ovalue, ointerval)
    return 0


def sys_timerfd_gettime(k: VKernel, t: Thread, fd: int, cur: int) -> int:
    """Implement timerfd_gettime(2): the time to the next expiry and the interval."""
    value, interval = _timerfd(t, fd).gettime()
    _put_itimerspec(t, cur, value, interval)
    return 0


# -- signalfd ---------------------------------------------------------------------------------
def sys_signalfd4(k: VKernel, t: Thread, fd: int, mask: int, size: int, flags: int) -> int:
    """Implement signalfd4(2): a new signalfd (fd -1) or a new mask for an existing one."""
    flags = s32(flags)
    if flags & ~(EP.SFD_CLOEXEC | EP.SFD_NONBLOCK):
        raise GuestError(E.EINVAL)
    sigs = sigset_arg(t, mask, size)
    fd = s32(fd)
    if fd == -1:
        f = SignalFd(F.O_RDWR | flags & F.O_NONBLOCK, sigs, k.file_services())
        return t.process.fds.install(f, bool(flags & EP.SFD_CLOEXEC))
    f = t.process.fds.get(fd)
    if not isinstance(f, SignalFd):
        raise GuestError(E.EINVAL)
    f.set_mask(sigs)
    return fd


def sys_signalfd(k: VKernel, t: Thread, fd: int, mask: int, size: int) -> int:
    """Implement signalfd(2): signalfd4 without flags."""
    return sys_signalfd4(k, t, fd, mask, size, 0)
