"""Kernel timer events: a virtual deadline whose expiry runs a callback (Linux's hrtimer).

The scheduler keeps armed timers in a heap beside its sleep timers (`Scheduler.arm`); the run
loop fires every timer whose deadline has passed, in (deadline, arming order), at the first
scheduling point at or after it, and an idle vkernel skips virtual time to the earliest one.
A timer's owner (a timerfd, a process's ITIMER_REAL) saves its deadline and sequence, and a
thaw arms it again with both (`Scheduler.arm` given the saved sequence), so the order of
ties survives.
"""

from __future__ import annotations

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable


class KTimer:
    """One timer: live while `seq` is the sequence of its newest heap entry (0: disarmed)."""

    __slots__ = ("deadline", "seq", "expire")

    def __init__(self, expire: Callable[[], None]) -> None:
        self.deadline = 0   # virtual ns of the armed expiry (meaningful while seq)
        self.seq = 0        # the scheduler's sequence of the live entry; 0: not armed
        self.expire = expire  # run by the scheduler at the first scheduling point past deadline

    @property
    def armed(self) -> bool:
        return self.seq != 0

    def disarm(self) -> None:
        """Forget the armed expiry (its heap entry goes stale)."""
        self.seq = 0

