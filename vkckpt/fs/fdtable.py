"""Per-process descriptor tables (shared between threads created with CLONE_FILES)."""

from __future__ import annotations

from vkckpt.abi import errno as E
from vkckpt.abi.limits import NOFILE
from vkckpt.errors import GuestError
from vkckpt.fs.ops import OpenFile

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["NOFILE", "FdTable"]


class FdTable:
    """Descriptor number -> (open file description, close-on-exec flag).

    `on_close(f, last)` hears of every close before f is released (`last`: its last
    descriptor): the owner's locks go (fs/locks.py).  The kernel installs it for each
    process it registers; it is not saved.

    `limit` is the soft RLIMIT_NOFILE of the process using the table (at most NOFILE): new
    descriptors are below it.  setrlimit, fork and thaw set it from the process's limits.
    """

    def __init__(self, limit: int = NOFILE) -> None:
        self.fds: dict[int, tuple[OpenFile, bool]] = {}
        self.on_close: Callable[[OpenFile, bool], None] | None = None
        self.limit = limit

    def get(self, fd: int) -> OpenFile:
        """The description behind fd (EBADF when closed)."""
        ent = self.fds.get(fd)
        if ent is None:
            raise GuestError(E.EBADF)
        return ent[0]

    def cloexec(self, fd: int) -> bool:
        self.get(fd)
        return self.fds[fd][1]

    def set_cloexec(self, fd: int, on: bool) -> None:
        self.fds[fd] = (self.get(fd), on)

    def install(self, f: OpenFile, cloexec: bool = False, lowest: int = 0,
                fd: int | None = None) -> int:
        """Put f at fd (closing what was there) or at the lowest free number >= lowest."""
        if fd is None:
            fd = lowest
            while fd in self.fds:
                fd += 1
            if fd >= self.limit:
                raise GuestError(E.EMFILE)
        elif fd in self.fds:
            self.close(fd)
        f.refs += 1
        self.fds[fd] = (f, cloexec)
        return fd

    def close(self, fd: int) -> None:
        """Close fd; the description is released with its last reference."""
        f = self.get(fd)
        del self.fds[fd]
        f.refs -= 1
        if self.on_close is not None:
            self.on_close(f, f.refs == 0)
        if f.refs == 0:
            f.release()

    def close_all(self) -> None:
        for fd in sorted(self.fds):
            self.close(fd)

    def close_on_exec(self) -> None:
        for fd in sorted(self.fds):
            if self.fds[fd][1]:
                self.close(fd)

    def copy(self) -> FdTable:
        """fork without CLONE_FILES: same descriptions, new table."""
        new = FdTable(self.limit)
        for fd, (f, ce) in self.fds.items():
            f.refs += 1
            new.fds[fd] = (f, ce)
        return new
