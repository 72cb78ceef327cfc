"""A process's POSIX timers: timer_create(2) and friends (Linux's kernel/time/posix-timers.c).

Each timer is a kernel timer event on the virtual clock (threads/ktimer.py).  At expiry it
queues its signal (SI_TIMER, the timer id, sigev_value) to the process or, for
SIGEV_THREAD_ID, to one of its threads -- at most one at a time, as Linux's preallocated
sigqueue: an expiry while that signal is still pending, or periods missed between two
scheduling points, add to its si_overrun instead.  A periodic timer re-arms on its period
grid.  Ids are handed out from 0 per process.  Not inherited by fork; execve and exit
delete them (exit_itimers).  Only the wall clocks are supported (not the CPU-time ones).
"""

from __future__ import annotations

from vkckpt.abi import signals as S
from vkckpt.threads.ktimer import KTimer
from vkckpt.vclock import KTIME_MAX

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable

MAX_TIMERS = 1 << 12  # more than an image may ask a thaw to rebuild
DELAYTIMER_MAX = (1 << 31) - 1  # si_overrun saturates here


class PosixTimer:
    """One timer: its clock, how it notifies (SIGEV_*, the signal, sigev_value, the target
    tid for SIGEV_THREAD_ID), its period, the kernel timer and the overrun of the signal
    last queued (timer_getoverrun)."""

    __slots__ = ("tid", "clockid", "notify", "signo", "value", "target", "interval",
                 "timer", "overrun", "owner")

    def __init__(self, tid: int, clockid: int, notify: int, signo: int, value: int,
                 target: int, owner: PosixTimers) -> None:
        self.tid = tid  # the timer id (timer_t)
        self.clockid, self.notify, self.signo, self.value = clockid, notify, signo, value
        self.target = target
        self.interval = 0
        self.timer = KTimer(self._expired)
        self.overrun = 0
        self.owner = owner

    def _expired(self) -> None:
        """Queue the signal (or count an overrun) and re-arm a periodic timer."""
        missed = 0
        if self.interval:
            now, at = self.owner.now(), self.timer.deadline
            n = (now - at) // self.interval + 1
            missed = n - 1
            self.owner.arm(self.timer, min(at + n * self.interval, KTIME_MAX))
        if self.notify != S.SIGEV_NONE:
            self.overrun = self.owner.signal(self, missed)


class PosixTimers:
    """The timers of a thread group, by id.  `signal`, `arm` and `now` are the kernel's,
    installed when the process is registered (VKernel.add_process): signal(timer, missed)
    queues the timer's signal or adds to the pending one's overrun, returning its overrun."""

    __slots__ = ("timers", "next_id", "signal", "arm", "now")

    def __init__(self) -> None:
        self.timers: dict[int, PosixTimer] = {}
        self.next_id = 0
        self.signal: Callable[[PosixTimer, int], int] = lambda tm, missed: 0
        self.arm: Callable[..., None] = lambda kt, deadline, seq=0: None
        self.now: Callable[[], int] = lambda: 0

    def bind(self, signal: Callable[[PosixTimer, int], int], arm: Callable[..., None],
             now: Callable[[], int]) -> None:
        self.signal, self.arm, self.now = signal, arm, now

    def create(self, clockid: int, notify: int, signo: int, value: int | None,
               target: int) -> PosixTimer:
        """A new disarmed timer with the next free id (sigev_value None: the id itself)."""
        while self.next_id in self.timers:
            self.next_id = (self.next_id + 1) & 0x7FFFFFFF
        tid = self.next_id
        self.next_id = (tid + 1) & 0x7FFFFFFF
        tm = PosixTimer(tid, clockid, notify, signo, tid if value is None else value,
                        target, self)
        self.timers[tid] = tm
        return tm

    def settime(self, tm: PosixTimer, deadline: int | None, interval: int) -> None:
        """Arm tm at a monotonic deadline (None: disarm) with a period."""
        tm.timer.disarm()
        tm.interval = min(interval, KTIME_MAX) if deadline is not None else 0
        if deadline is not None:
            self.arm(tm.timer, min(max(deadline, 0), KTIME_MAX))

    def gettime(self, tm: PosixTimer) -> tuple[int, int]:
        """(ns to the next expiry, 0 when disarmed; the period)."""
        if not tm.timer.armed:
            return 0, tm.interval
        return max(0, tm.timer.deadline - self.now()), tm.interval

    def delete(self, tid: int) -> None:
        self.timers.pop(tid).timer.disarm()

    def clear(self) -> None:
        """execve or exit: every timer is deleted (the next id is kept, as the
        signal_struct that holds it survives execve)."""
        for tm in self.timers.values():
            tm.timer.disarm()
        self.timers = {}
