"""The host descriptors guests may hold, so the vkernel always keeps some for itself.

Every guest file or directory open holds one host descriptor.  Guests share a budget fixed
when the vkernel starts: RLIMIT_NOFILE's soft limit, minus the descriptors already open,
minus RESERVE left for the vkernel's own work (images, their temporary files and directory
descriptors, the control socket and its connections, --stats, execve reading a program).
Opens beyond the budget fail with ENFILE, the error of Linux's system-wide file table.
"""

from __future__ import annotations

import os
import resource

from vkckpt.abi import errno as E
from vkckpt.errors import GuestError

#: Host descriptors never given to guests.
RESERVE = 64


def _open_now() -> int:
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # the listing's own descriptor
    except OSError:
        return 16


class HostFds:
    """Counts host descriptors held by guest open files against the budget.

    Invariant: 0 <= held <= budget (held counts files opened and not yet released)."""

    __slots__ = ("budget", "held")

    def __init__(self, budget: int | None = None) -> None:
        if budget is None:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            if soft == resource.RLIM_INFINITY:
                soft = 1 << 20
            budget = soft - _open_now() - RESERVE
        self.budget = max(budget, 0)
        self.held = 0

    def take(self) -> None:
        """One more descriptor for a guest file (ENFILE when the budget is spent)."""
        if self.held >= self.budget:
            raise GuestError(E.ENFILE, "host descriptor budget spent")
        self.held += 1

    def give(self) -> None:
        """A guest file's descriptor was closed."""
        self.held -= 1

    def adopt(self, n: int) -> None:
        """Count n descriptors opened outside take() (files restored from an image)."""
        self.held += n
