"""A thread group's resource limits (Linux's signal_struct->rlim), for getrlimit(2),
setrlimit(2) and prlimit64(2).

Every limit starts at the vkernel's fixed default; a process keeps its limits across
execve and a child starts with a copy of its parent's.  Only RLIMIT_NOFILE is enforced
(by the descriptor table the process uses, fs/fdtable.py); the others are kept and
reported.
"""

from __future__ import annotations

from vkckpt.abi import errno as E
from vkckpt.abi.limits import NR_OPEN, RLIM_INFINITY, RLIMIT_NLIMITS, RLIMIT_NOFILE, RLIMITS
from vkckpt.errors import GuestError


def default(res: int) -> tuple[int, int]:
    """The (soft, hard) limit of resource res before anyone changes it."""
    return RLIMITS.get(res, (RLIM_INFINITY, RLIM_INFINITY))


def check(res: int, soft: int, hard: int) -> None:
    """Raise GuestError as setrlimit(2) does for a new limit (the guest is root, so raising
    a hard limit is allowed up to fs.nr_open for RLIMIT_NOFILE)."""
    if not 0 <= res < RLIMIT_NLIMITS or soft > hard:
        raise GuestError(E.EINVAL)
    if res == RLIMIT_NOFILE and hard > NR_OPEN:
        raise GuestError(E.EPERM)


class RLimits:
    """Resource -> (soft, hard); only limits that differ from their default are held."""

    __slots__ = ("changed",)

    def __init__(self, changed: dict[int, tuple[int, int]] | None = None) -> None:
        self.changed = {} if changed is None else changed

    def get(self, res: int) -> tuple[int, int]:
        """The (soft, hard) limit of res; EINVAL for an unknown resource."""
        if not 0 <= res < RLIMIT_NLIMITS:
            raise GuestError(E.EINVAL)
        return self.changed.get(res, default(res))

    def set(self, res: int, soft: int, hard: int) -> None:
        """Implement setrlimit(2)'s change, checked as `check` does."""
        check(res, soft, hard)
        if (soft, hard) == default(res):
            self.changed.pop(res, None)
        else:
            self.changed[res] = (soft, hard)

    @property
    def nofile(self) -> int:
        """The soft RLIMIT_NOFILE: descriptors are 0 .. nofile-1."""
        return self.get(RLIMIT_NOFILE)[0]

    def copy(self) -> RLimits:
        """fork: the child starts with the parent's limits."""
        return RLimits(dict(self.changed))
