"""A process's interval timers: setitimer(2)'s ITIMER_REAL, ITIMER_VIRTUAL and ITIMER_PROF.

ITIMER_REAL is a kernel timer event on the virtual clock (threads/ktimer.py) sending SIGALRM
and, with a period, re-armed on the period grid past the time it fired (hrtimer_forward: a
period missed while the vkernel was busy is lost, as a pending SIGALRM coalesces).  The CPU
timers count the process's blocks: ITIMER_VIRTUAL (user time) and ITIMER_PROF (user and
system time) both count every block its threads run, charged when a slice or a round's
share ends -- an approximation at scheduling points: a timer fires at the end of the slice
that used its time up, never inside one, and system calls take no time.  Per process: a
fork's child starts with none, execve keeps them (Linux's signal_struct).
"""

from __future__ import annotations

from vkckpt.abi import signals as S
from vkckpt.threads.ktimer import KTimer
from vkckpt.vclock import KTIME_MAX

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable

ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF = 0, 1, 2
CPU_SIGNALS = {ITIMER_VIRTUAL: S.SIGVTALRM, ITIMER_PROF: S.SIGPROF}


def _noop(_: object = None, __: object = None) -> None:
    """What an unbound timer does (a process not yet registered with a kernel)."""


class ITimers:
    """The three timers.  `real` is armed at its expiry; `cpu[which]` is [ns of CPU time
    left (0: disarmed), period].  `send`, `arm` and `now` are the kernel's, installed when
    the process is registered (VKernel.add_process)."""

    __slots__ = ("real", "real_interval", "cpu", "send", "arm", "now")

    def __init__(self) -> None:
        self.real = KTimer(self._real_expired)
        self.real_interval = 0
        self.cpu: dict[int, list[int]] = {ITIMER_VIRTUAL: [0, 0], ITIMER_PROF: [0, 0]}
        self.send: Callable[[int], None] = _noop            # sig -> queued to the process
        self.arm: Callable[..., None] = _noop  # the scheduler's `arm`
        self.now: Callable[[], int] = lambda: 0              # virtual monotonic ns

    def bind(self, send: Callable[[int], None], arm: Callable[..., None],
             now: Callable[[], int]) -> None:
        self.send, self.arm, self.now = send, arm, now

    def get(self, which: int) -> tuple[int, int]:
        """(ns left, period) of a timer, as itimer_get_remtime: an ITIMER_REAL expiry that
        has passed but not fired yet reads as 1 us."""
        if which == ITIMER_REAL:
            if not self.real.armed:
                return 0, self.real_interval
            return max(1000, self.real.deadline - self.now()), self.real_interval
        left, period = self.cpu[which]
        return left, period

    def set(self, which: int, value: int, interval: int) -> tuple[int, int]:
        """setitimer: (value, period) in ns (value 0: disarm); returns the old pair."""
        old = self.get(which)
        value, interval = min(value, KTIME_MAX), min(interval, KTIME_MAX)  # ktime saturates
        if which == ITIMER_REAL:
            self.real.disarm()
            self.real_interval = interval
            if value:
                self.arm(self.real, min(self.now() + value, KTIME_MAX))
        else:
            self.cpu[which] = [value, interval if value else 0]
        return old

    def _real_expired(self) -> None:
        self.send(S.SIGALRM)
        if self.real_interval:
            now, at = self.now(), self.real.deadline
            at += ((now - at) // self.real_interval + 1) * self.real_interval
            self.arm(self.real, min(at, KTIME_MAX))

    @property
    def cpu_armed(self) -> bool:
        return bool(self.cpu[ITIMER_VIRTUAL][0] or self.cpu[ITIMER_PROF][0])

    def charge(self, ns: int) -> None:
        """The process ran ns of CPU time: count it down on the CPU timers; each that ran
        out sends its signal once and starts its next period where the last one ended."""
        for which, sig in CPU_SIGNALS.items():
            t = self.cpu[which]
            if not t[0]:
                continue
            t[0] -= ns
            if t[0] > 0:
                continue
            t[0] = t[1] - (-t[0]) % t[1] if t[1] else 0
            self.send(sig)

    def stop(self) -> None:
        """The process exited: nothing fires again."""
        self.real.disarm()
        self.cpu = {ITIMER_VIRTUAL: [0, 0], ITIMER_PROF: [0, 0]}
