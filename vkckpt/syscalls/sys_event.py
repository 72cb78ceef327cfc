"""Event files: epoll, eventfd (timerfd and signalfd live beside them in fs/)."""

from __future__ import annotations

from vkckpt.abi import epoll as EP
from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.errors import GuestError
from vkckpt.fs.epoll import Epoll, check_target
from vkckpt.fs.eventfd import EventFd
from vkckpt.syscalls.args import s32, timespec_arg, u32, under_temporary_mask, wait_deadline
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
