"""POSIX timers: timer_create, timer_settime, timer_gettime, timer_getoverrun, timer_delete
(the objects are signals/posix_timers.py's; interval timers are in sys_time.py)."""

from __future__ import annotations

import struct

from vkckpt.abi import errno as E
from vkckpt.abi import signals as S
from vkckpt.abi.epoll import ITIMERSPEC
from vkckpt.errors import GuestError
from vkckpt.signals.posix_timers import MAX_TIMERS, PosixTimer
from vkckpt.syscalls.args import put_i32, s32
from vkckpt.vclock import EPOCH_NS

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel
    from vkckpt.threads.thread import Thread

CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME = 0, 1, 7
TIMER_ABSTIME = 1
_SIGEVENT = struct.Struct("<Qiii")  # sigev_value, sigev_signo, sigev_notify, sigev_tid


def _sigevent(t: Thread, addr: int) -> tuple[int, int, int | None, int]:
    """(notify, signo, value, target tid) of a struct sigevent (NULL: SIGEV_SIGNAL with
    SIGALRM and the timer id as value)."""
    if not addr:
        return S.SIGEV_SIGNAL, S.SIGALRM, None, 0
    value, signo, notify, target = _SIGEVENT.unpack(t.process.vm.read(addr, _SIGEVENT.size))
    return notify, signo, value, target


def _good_sigevent(k: VKernel, t: Thread, notify: int, signo: int, target: int) -> bool:
    """Linux's good_sigevent: a known notify, a signal number, a target thread in the
    caller's group."""
    if notify == S.SIGEV_SIGNAL | S.SIGEV_THREAD_ID:
        th = k.threads.get(target)
        if th is None or not th.alive or th.process is not t.process:
            return False
    elif notify not in (S.SIGEV_SIGNAL, S.SIGEV_THREAD, S.SIGEV_NONE):
        return False
    return notify == S.SIGEV_NONE or 1 <= signo <= S.NSIG


def sys_timer_create(k: VKernel, t: Thread, clockid: int, sevp: int, timerid: int) -> int:
    """Implement timer_create(2) on CLOCK_REALTIME, CLOCK_MONOTONIC or CLOCK_BOOTTIME.  As
    do_timer_create, the id is taken before the sigevent is checked: a refused one uses
    it up."""
    notify, signo, value, target = _sigevent(t, sevp)
    clockid = s32(clockid)
    if clockid not in (CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME):
        raise GuestError(E.EINVAL)
    timers = t.process.ptimers
    if len(timers.timers) >= MAX_TIMERS:
        raise GuestError(E.EAGAIN)
    tm = timers.create(clockid, notify, signo, value, target)
    if not _good_sigevent(k, t, notify, signo, target):
        timers.delete(tm.tid)
        raise GuestError(E.EINVAL)
    try:
        put_i32(t, timerid, tm.tid)
    except GuestError:
        timers.delete(tm.tid)
        raise
    return 0


def _timer(t: Thread, tid: int) -> PosixTimer:
    tm = t.process.ptimers.timers.get(s32(tid))
    if tm is None:
        raise GuestError(E.EINVAL)
    return tm


def _put_its(t: Thread, addr: int, value: int, interval: int) -> None:
    t.process.vm.write(addr, ITIMERSPEC.pack(interval // 10**9, interval % 10**9,
                                             value // 10**9, value % 10**9))


def sys_timer_settime(k: VKernel, t: Thread, tid: int, flags: int, new: int, old: int) -> int:
    """Implement timer_settime(2): relative or TIMER_ABSTIME on the timer's clock."""
    tm = _timer(t, tid)
    isec, insec, vsec, vnsec = ITIMERSPEC.unpack(t.process.vm.read(new, ITIMERSPEC.size))
    if any(sec < 0 or not 0 <= ns < 10**9 for sec, ns in ((isec, insec), (vsec, vnsec))):
        raise GuestError(E.EINVAL)
    value, interval = vsec * 10**9 + vnsec, isec * 10**9 + insec
    if old:
        _put_its(t, old, *t.process.ptimers.gettime(tm))
    deadline = None
    if value:
        offset = EPOCH_NS if tm.clockid == CLOCK_REALTIME else 0
        deadline = value - offset if s32(flags) & TIMER_ABSTIME else k.now_ns() + value
    t.process.ptimers.settime(tm, deadline, interval)
    return 0


def sys_timer_gettime(k: VKernel, t: Thread, tid: int, cur: int) -> int:
    """Implement timer_gettime(2)."""
    _put_its(t, cur, *t.process.ptimers.gettime(_timer(t, tid)))
    return 0


def sys_timer_getoverrun(k: VKernel, t: Thread, tid: int) -> int:
    """Implement timer_getoverrun(2): the overrun of the timer's last queued signal."""
    return _timer(t, tid).overrun


def sys_timer_delete(k: VKernel, t: Thread, tid: int) -> int:
    """Implement timer_delete(2); a signal it queued stays pending."""
    t.process.ptimers.delete(_timer(t, tid).tid)
    return 0
