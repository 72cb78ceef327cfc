"""eventfd: a 64-bit counter as a file (Linux's fs/eventfd.c)."""

from __future__ import annotations

import struct

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.abi.epoll import EVENTFD_MAX
from vkckpt.abi.stat import pack_stat
from vkckpt.errors import GuestError
from vkckpt.fs.ops import OpenFile
from vkckpt.threads.wait import Block, WaitQueue

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.ops import FileServices

#: Inode numbers of anonymous-inode files (eventfd, epoll, timerfd, signalfd): one inode,
#: as Linux's anon_inode_inode, away from pipes' and the console's.
ANON_INO = 2 << 32


def anon_stat() -> bytes:
    """fstat of an anonymous-inode file: mode 0600 with no type bits, as on Linux."""
    return pack_stat(9, ANON_INO, 0o600, 1, 0, 0, 0, 0, 4096, 0, 0, 0, 0)


class EventFd(OpenFile):
    """The counter; reads take it (or one, with EFD_SEMAPHORE), writes add to it.

    Read blocks at 0 and write blocks when the sum would pass EVENTFD_MAX; both sleep on the
    readiness queue every change notifies."""

    kind = "eventfd"
    pollable = True

    def __init__(self, flags: int, count: int, semaphore: bool, svc: FileServices) -> None:
        super().__init__(flags)
        self.count = count
        self.semaphore = semaphore
        self.svc = svc
        self.event_q = WaitQueue(("eventfd-event",))  # watchers only (epoll items)

    def read(self, n: int) -> bytes:
        """Implement eventfd_read: 8 bytes at least (EINVAL), the counter or one."""
        if n < 8:
            raise GuestError(E.EINVAL)
        if self.count == 0:
            if self.flags & F.O_NONBLOCK:
                raise GuestError(E.EAGAIN)
            raise Block(self.svc.poll_q)
        got = 1 if self.semaphore else self.count
        self.count -= got
        self._changed(F.POLLOUT)
        return struct.pack("<Q", got)

    def write(self, data: bytes) -> int:
        """Implement eventfd_write: 8 bytes at least; ULLONG_MAX is EINVAL."""
        if len(data) < 8:
            raise GuestError(E.EINVAL)
        (v,) = struct.unpack_from("<Q", data)
        if v == (1 << 64) - 1:
            raise GuestError(E.EINVAL)
        if self.count + v > EVENTFD_MAX:
            if self.flags & F.O_NONBLOCK:
                raise GuestError(E.EAGAIN)
            raise Block(self.svc.poll_q)
        self.count += v
        self._changed(F.POLLIN)  # even for 0, as eventfd_write wakes
        return 8

    def read_fit(self, room: int, want: int, off: int | None) -> int:
        """The 8 bytes are copied whole after the value is taken, as eventfd_read's
        copy_to_user: a short buffer faults then."""
        return want

    def write_fit(self, avail: int, want: int) -> int:
        """A short count is EINVAL before the buffer is read; otherwise 8 bytes or EFAULT."""
        if want >= 8 and avail < 8:
            raise GuestError(E.EFAULT)
        return avail

    def _changed(self, mask: int) -> None:
        self.event_q.notify(mask)
        self.svc.poll_q.notify()

    def stat(self) -> bytes:
        return anon_stat()

    def poll(self, events: int) -> int:
        """As eventfd_poll: readable above 0, writable below the maximum (POLLERR is for a
        count of ULLONG_MAX, which no write can reach)."""
        mask = (F.POLLIN if self.count > 0 else 0) | \
            (F.POLLOUT if self.count < EVENTFD_MAX else 0)
        return mask & (events | F.POLLERR | F.POLLHUP)

    def poll_queue(self) -> WaitQueue:
        return self.event_q
