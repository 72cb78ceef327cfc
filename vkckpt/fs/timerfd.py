"""timerfd: a timer on the virtual clock as a file (Linux's fs/timerfd.c).

Expirations are counted from the clock, never from when the vkernel looked: `_catch_up`
adds every period that has passed since the next expiry (hrtimer_forward), so a read after
missed periods reports them all and the next expiry stays on the period grid.  While no
expiration is waiting to be read, the timer is armed as a kernel timer event at the next
expiry (threads/ktimer.py), whose firing wakes readers, pollers and epoll items; once one
is waiting the file stays readable and nothing needs to wake until it is read.
CLOCK_REALTIME is CLOCK_MONOTONIC plus a constant (the virtual clock is never set), so
deadlines are kept on the monotonic clock.
"""

from __future__ import annotations

import struct

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.errors import GuestError
from vkckpt.fs.eventfd import anon_stat
from vkckpt.fs.ops import OpenFile
from vkckpt.threads.ktimer import KTimer
from vkckpt.threads.wait import Block, WaitQueue
from vkckpt.vclock import EPOCH_NS, KTIME_MAX

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.ops import FileServices

CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME = 0, 1, 7
CLOCKS = (CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME)


def clock_offset(clockid: int) -> int:
    """What the clock reads above the virtual monotonic clock."""
    return EPOCH_NS if clockid == CLOCK_REALTIME else 0


class TimerFd(OpenFile):
    """A timer: the next expiry (monotonic ns, None: disarmed), the period (0: one-shot) and
    the expirations not yet read."""

    kind = "timerfd"
    pollable = True

    def __init__(self, flags: int, clockid: int, svc: FileServices) -> None:
        super().__init__(flags)
        self.clockid = clockid
        self.svc = svc
        self.next: int | None = None
        self.interval = 0
        self.count = 0
        self.timer = KTimer(self._expired)
        self.event_q = WaitQueue(("timerfd-event",))  # watchers only (epoll items)

    # -- the clock ----------------------------------------------------------------------------
    def _catch_up(self, now: int) -> None:
        """Count the expirations up to now and move the next expiry past it."""
        if self.next is None or now < self.next:
            return
        if self.interval:
            n = (now - self.next) // self.interval + 1
            self.count += n
            self.next = min(self.next + n * self.interval, KTIME_MAX)
        else:
            self.count += 1
            self.next = None

    def _rearm(self) -> None:
        """Arm the kernel timer at the next expiry while nothing waits to be read."""
        self.timer.disarm()
        if self.next is not None and self.count == 0:
            self.svc.arm(self.timer, self.next)

    def _expired(self) -> None:
        """The kernel timer fired (at a scheduling point at or after the expiry)."""
        self._catch_up(self.svc.now())
        self._rearm()
        if self.count:
            self.event_q.notify(F.POLLIN)
            self.svc.poll_q.notify()

    def settime(self, value: int, interval: int, absolute: bool) -> tuple[int, int]:
        """timerfd_settime: (value, interval) in ns on this timer's clock (value 0: disarm);
        returns the old (remaining, interval).  Unread expirations are dropped."""
        old = self.gettime()
        now = self.svc.now()
        value, interval = min(value, KTIME_MAX), min(interval, KTIME_MAX)  # ktime saturates
        self.count = 0
        self.interval = interval if value else 0
        if not value:
            self.next = None
        elif absolute:
            self.next = value - clock_offset(self.clockid)  # may precede boot
        else:
            self.next = min(now + value, KTIME_MAX)
        self._catch_up(now)  # an expiry already past counts at once, as hrtimer_start's
        self._rearm()
        if self.count:
            self.event_q.notify(F.POLLIN)
            self.svc.poll_q.notify()
        return old

    def gettime(self) -> tuple[int, int]:
        """timerfd_gettime: (ns to the next expiry, 0 when disarmed; the period)."""
        now = self.svc.now()
        self._catch_up(now)
        left = 0 if self.next is None else max(0, self.next - now)
        return left, self.interval

    # -- the file interface -------------------------------------------------------------------
    def read(self, n: int) -> bytes:
        """Implement timerfd_read: 8 bytes at least (EINVAL), the expirations since the last
        read; at none, EAGAIN or sleep until the next."""
        if n < 8:
            raise GuestError(E.EINVAL)
        self._catch_up(self.svc.now())
        if self.count == 0:
            if self.flags & F.O_NONBLOCK:
                raise GuestError(E.EAGAIN)
            raise Block(self.svc.poll_q)
        got, self.count = self.count, 0
        self._rearm()
        return struct.pack("<Q", got)

    def read_fit(self, room: int, want: int, off: int | None) -> int:
        """The 8 bytes are copied whole after the count is taken (put_user)."""
        return want

    def poll(self, events: int) -> int:
        """As timerfd_poll: readable once an expiration waits."""
        due = self.count or (self.next is not None and self.svc.now() >= self.next)
        return F.POLLIN & events if due else 0

    def poll_queue(self) -> WaitQueue:
        return self.event_q

    def stat(self) -> bytes:
        return anon_stat()

    def release(self) -> None:
        """The last descriptor is closed: the timer stops."""
        self.timer.disarm()
