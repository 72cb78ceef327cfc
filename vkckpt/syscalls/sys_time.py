"""Time on the virtual clock, sleeping, the deterministic random stream, and the virtual
machine's other facts a guest can ask for (getcpu, sysinfo): none of them is the host's."""

from __future__ import annotations

import struct

from vkckpt.abi import errno as E
from vkckpt.abi.mman import PROT_WRITE
from vkckpt.engine.cpumodel import TSC_AUX
from vkckpt.errors import GuestError
from vkckpt.signals.itimers import ITIMER_PROF, ITIMER_REAL, ITIMER_VIRTUAL
from vkckpt.syscalls.args import deadline_at, put_timespec, s32, timespec_arg, u32
from vkckpt.threads.wait import Block
from vkckpt.vclock import EPOCH_NS, NS_PER_TICK

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel
    from vkckpt.threads.thread import Sleep, Thread

CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID = 0, 1, 2, 3
CLOCK_MONOTONIC_RAW, CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE, CLOCK_BOOTTIME = 4, 5, 6, 7
TIMER_ABSTIME = 1


def clock_ns(k: VKernel, t: Thread, clock: int) -> int:
    """The value of a clock in virtual nanoseconds."""
    now = k.now_ns()
    if clock in (CLOCK_REALTIME, CLOCK_REALTIME_COARSE):
        return EPOCH_NS + now
    if clock in (CLOCK_MONOTONIC, CLOCK_MONOTONIC_RAW, CLOCK_MONOTONIC_COARSE, CLOCK_BOOTTIME):
        return now
    if clock == CLOCK_PROCESS_CPUTIME_ID:
        return t.process.ticks * NS_PER_TICK
    if clock == CLOCK_THREAD_CPUTIME_ID:
        return t.ticks * NS_PER_TICK
    raise GuestError(E.EINVAL)


def sys_clock_gettime(k: VKernel, t: Thread, clock: int, tp: int) -> int:
    put_timespec(t, tp, clock_ns(k, t, s32(clock)))
    return 0


def sys_clock_getres(k: VKernel, t: Thread, clock: int, tp: int) -> int:
    clock_ns(k, t, s32(clock))
    if tp:
        put_timespec(t, tp, NS_PER_TICK)
    return 0


def sys_gettimeofday(k: VKernel, t: Thread, tv: int, tz: int) -> int:
    ns = EPOCH_NS + k.now_ns()
    if tv:
        t.process.vm.write(tv, struct.pack("<qq", ns // 10**9, ns % 10**9 // 1000))
    if tz:
        t.process.vm.write(tz, bytes(8))
    return 0


def sys_time(k: VKernel, t: Thread, tloc: int) -> int:
    sec = (EPOCH_NS + k.now_ns()) // 10**9
    if tloc:
        t.process.vm.write(tloc, struct.pack("<q", sec))
    return sec


def sys_nanosleep(k: VKernel, t: Thread, req: int, rem: int) -> int:
    return _sleep_until(k, k.now_ns() + timespec_arg(t, req))


def sys_clock_nanosleep(k: VKernel, t: Thread, clock: int, flags: int, req: int,
                        rem: int) -> int:
    ns = timespec_arg(t, req)
    clock = s32(clock)
    if clock not in (CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME):
        raise GuestError(E.EINVAL)
    if flags & TIMER_ABSTIME:
        deadline = ns - (EPOCH_NS if clock == CLOCK_REALTIME else 0)
    else:
        deadline = k.now_ns() + ns
    return _sleep_until(k, deadline)


def nanosleep_interrupted(k: VKernel, t: Thread, s: Sleep) -> int:
    """nanosleep ended by a handler: -EINTR, the time left written to rem (EFAULT if not)."""
    return _report_remaining(k, t, s, s.args[1])


def clock_nanosleep_interrupted(k: VKernel, t: Thread, s: Sleep) -> int:
    """As nanosleep_interrupted; an absolute sleep (TIMER_ABSTIME) reports nothing."""
    return -E.EINTR if s.args[1] & TIMER_ABSTIME else _report_remaining(k, t, s, s.args[3])


def _report_remaining(k: VKernel, t: Thread, s: Sleep, rem: int) -> int:
    if rem and s.deadline is not None:
        try:
            put_timespec(t, rem, max(0, s.deadline - k.now_ns()))
        except GuestError:
            return -E.EFAULT
    return -E.EINTR


def _sleep_until(k: VKernel, deadline: int) -> int:
    if deadline <= k.now_ns():
        return 0
    raise Block(None, deadline_at(deadline), 0, restartable=False)


GRND_NONBLOCK, GRND_RANDOM, GRND_INSECURE = 1, 2, 4


def sys_getrandom(k: VKernel, t: Thread, buf: int, size: int, flags: int) -> int:
    """getrandom(2) from the deterministic stream; a buffer running into unwritable memory
    gets a short count, as on Linux (EFAULT only when nothing could be copied)."""
    if flags & ~(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE) or \
            flags & (GRND_RANDOM | GRND_INSECURE) == GRND_RANDOM | GRND_INSECURE:
        raise GuestError(E.EINVAL)
    want = min(size, 1 << 25)
    t.process.vm.access_ok(buf, want)
    n = t.process.vm.user_span(buf, want, PROT_WRITE)
    if want and not n:
        raise GuestError(E.EFAULT)
    t.process.vm.write(buf, k.random_bytes(n))
    return n


def sys_times(k: VKernel, t: Thread, buf: int) -> int:
    ticks = t.process.ticks * NS_PER_TICK // 10_000_000
    if buf:
        t.process.vm.write(buf, struct.pack("<qqqq", ticks, 0, 0, 0))
    return k.now_ns() // 10_000_000


def sys_getcpu(k: VKernel, t: Thread, cpu: int, node: int, _cache: int) -> int:
    """getcpu(2): CPU 0 of node 0, the one virtual CPU (rdtscp's TSC_AUX agrees)."""
    for addr, value in ((cpu, TSC_AUX), (node, 0)):
        if addr:
            t.process.vm.write(addr, struct.pack("<I", value))
    return 0


_SYSINFO = struct.Struct("<q3Q6QHxx4x2QI4x")  # struct sysinfo on x86-64 (112 bytes)


def sys_sysinfo(k: VKernel, t: Thread, info: int) -> int:
    """sysinfo(2) of the vkernel: virtual uptime, the memory limit as RAM and what the
    vkernel's memory account has not charged (every process, pipe, console buffer) as free,
    no swap, no load; procs counts threads, as Linux's."""
    ns = k.now_ns()
    total = k.config.memory_limit
    free = max(0, min(total, k.mem.room()))
    procs = min(0xFFFF, sum(1 for th in k.threads.values() if th.alive))
    uptime = -(-ns // 10**9)  # rounded up, as Linux does
    t.process.vm.write(info, _SYSINFO.pack(uptime, 0, 0, 0, total, free, 0, 0, 0, 0, procs,
                                           0, 0, 1))
    return 0


# -- interval timers --------------------------------------------------------------------------
_ITIMERVAL = struct.Struct("<qqqq")  # struct itimerval: it_interval then it_value (timevals)


def _which(which: int) -> int:
    which = s32(which)
    if which not in (ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF):
        raise GuestError(E.EINVAL)
    return which


def _put_itimerval(t: Thread, addr: int, value: int, interval: int) -> None:
    """Write (value, interval) ns as a struct itimerval (microseconds truncated)."""
    t.process.vm.write(addr, _ITIMERVAL.pack(interval // 10**9, interval % 10**9 // 1000,
                                             value // 10**9, value % 10**9 // 1000))


def sys_getitimer(k: VKernel, t: Thread, which: int, value: int) -> int:
    """Implement getitimer(2)."""
    left, interval = t.process.itimers.get(_which(which))
    _put_itimerval(t, value, left, interval)
    return 0


def sys_setitimer(k: VKernel, t: Thread, which: int, new: int, old: int) -> int:
    """Implement setitimer(2): a NULL new value disarms, as Linux allows."""
    which = _which(which)
    value = interval = 0
    if new:
        isec, iusec, vsec, vusec = _ITIMERVAL.unpack(t.process.vm.read(new, _ITIMERVAL.size))
        for sec, usec in ((isec, iusec), (vsec, vusec)):
            if sec < 0 or not 0 <= usec < 1_000_000:
                raise GuestError(E.EINVAL)
        value, interval = vsec * 10**9 + vusec * 1000, isec * 10**9 + iusec * 1000
    if old:
        t.process.vm.access_ok(old, _ITIMERVAL.size)
    oleft, ointerval = t.process.itimers.set(which, value, interval)
    if old:
        _put_itimerval(t, old, oleft, ointerval)
    return 0


def sys_alarm(k: VKernel, t: Thread, seconds: int) -> int:
    """Implement alarm(2): ITIMER_REAL in whole seconds without a period; returns the
    seconds left of the old one, rounded as alarm_setitimer (to nearest, at least 1)."""
    left, _ = t.process.itimers.set(ITIMER_REAL, u32(seconds) * 10**9, 0)
    sec, usec = left // 10**9, left % 10**9 // 1000
    return sec + 1 if (not sec and usec) or usec >= 500_000 else sec
