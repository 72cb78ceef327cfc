"""Named FIFOs: Linux's fifo_open over the pipes of pipe.py, for inodes marked as FIFOs.

The host never holds a FIFO node: mknod(S_IFIFO) leaves an empty regular file as a
placeholder, marked in the inode table (inode_meta.py).  While the FIFO is open, a Pipe
(its buffer) is attached to it; the last end closed drops the pipe and what it held, as
Linux frees a FIFO's pipe_inode_info.  An opener that must wait for its partner (a reader
for a writer, a writer for a reader) sleeps on the FIFO's open queue; the partner's open
completes the sleepers' opens (Linux's wait_for_partner ends when the partner's counter
moves, even if the partner is gone again by the time the sleeper runs).
"""

from __future__ import annotations

import os

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.abi.epoll import POLLRDNORM, POLLWRNORM
from vkckpt.errors import GuestError
from vkckpt.fs.pipe import CAPACITY, Pipe, PipeEnd
from vkckpt.threads.wait import Block, WaitQueue

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable

    from vkckpt.fs.inodes import InodeTable
    from vkckpt.host.fds import HostFds


class Fifo:
    """A named FIFO's state while in use: the attached pipe and the openers waiting."""

    def __init__(self, vino: int) -> None:
        self.vino = vino
        self.pipe: Pipe | None = None
        self.open_r = WaitQueue(("fifo-open-r", vino))  # readers waiting for a writer
        self.open_w = WaitQueue(("fifo-open-w", vino))  # writers waiting for a reader

    def queues(self) -> list[WaitQueue]:
        return [self.open_r, self.open_w]

    def partners(self, flags: int) -> list:
        """The threads asleep in open(2) whose partner an opener with these flags is."""
        acc = flags & F.O_ACCMODE
        out = list(self.open_w.waiters) if acc in (F.O_RDONLY, F.O_RDWR) else []
        return out + (list(self.open_r.waiters) if acc in (F.O_WRONLY, F.O_RDWR) else [])

    def check_open(self, flags: int) -> None:
        """Before an open: O_WRONLY|O_NONBLOCK with no reader (open or waiting) is ENXIO."""
        acc = flags & F.O_ACCMODE
        readers = self.pipe.readers if self.pipe is not None else 0
        if acc == F.O_WRONLY and flags & F.O_NONBLOCK and not readers and \
                not self.open_r.waiters:
            raise GuestError(E.ENXIO)

    def end(self, flags: int, fd: int, guest_path: str, inodes: InodeTable,
            host_fds: HostFds, make_pipe: Callable[[], Pipe]) -> FifoEnd:
        """A new end (its pipe made by make_pipe if none is attached)."""
        if self.pipe is None:
            self.pipe = make_pipe()
        return FifoEnd(self, flags, fd, guest_path, inodes, host_fds)

    def must_wait(self, end: FifoEnd) -> Block | None:
        """Whether the opener of a new (blocking) end sleeps for its partner: a reader with
        no writer, a writer with no reader."""
        p = end.pipe
        acc = end.flags & F.O_ACCMODE
        if end.flags & F.O_NONBLOCK or acc == F.O_RDWR:
            return None
        if acc == F.O_RDONLY and p.writers == 0:
            return Block(self.open_r)
        if acc == F.O_WRONLY and p.readers == 0:
            return Block(self.open_w)
        return None


def fifo_of(inodes: InodeTable, vino: int) -> Fifo:
    """The FIFO state of a marked inode, made on first use."""
    fifo = inodes.fifos.get(vino)
    if fifo is None:
        fifo = inodes.fifos[vino] = Fifo(vino)
    return fifo


def all_queues(inodes: InodeTable) -> list[WaitQueue]:
    """The open queues of every named FIFO (a thawed sleeper names its queue by key)."""
    return [q for vino, m in sorted(inodes.meta.items()) if m.kind == F.S_IFIFO
            for q in fifo_of(inodes, vino).queues()]


class FifoEnd(PipeEnd):
    """An open named FIFO: a pipe end (both ends for O_RDWR) holding its placeholder open
    (fstat, fchmod and images name the inode through it)."""

    kind = "fifo"

    def __init__(self, fifo: Fifo, flags: int, fd: int, guest_path: str, inodes: InodeTable,
                 host_fds: HostFds) -> None:
        super().__init__(fifo.pipe, flags)
        if flags & F.O_ACCMODE == F.O_RDWR:
            self.pipe.writers += 1  # PipeEnd counted the reader
        self.fifo = fifo
        self.fd = fd
        self.guest_path = guest_path
        self.inodes = inodes
        self.host_fds = host_fds

    def write(self, data: bytes) -> int:
        if self.flags & F.O_ACCMODE == F.O_RDONLY:
            raise GuestError(E.EBADF)
        return super().write(data)

    def stat(self) -> bytes:
        return self.inodes.stat_bytes(os.fstat(self.fd), self.guest_path)

    def poll(self, events: int) -> int:
        """Linux's pipe_poll for each direction the end was opened for."""
        p = self.pipe
        acc = self.flags & F.O_ACCMODE
        mask = 0
        if acc in (F.O_RDONLY, F.O_RDWR):
            mask |= (F.POLLIN | POLLRDNORM if p.data else 0) | \
                (F.POLLHUP if p.writers == 0 else 0)
        if acc in (F.O_WRONLY, F.O_RDWR):
            mask |= (F.POLLOUT | POLLWRNORM if len(p.data) < CAPACITY else 0) | \
                (F.POLLERR if p.readers == 0 else 0)
        return mask & (events | F.POLLHUP | F.POLLERR)

    def release(self) -> None:
        p = self.pipe
        if self.flags & F.O_ACCMODE == F.O_RDWR:
            p.writers -= 1
            p.changed(p.read_q)
        super().release()
        gone = os.fstat(self.fd).st_nlink == 0
        os.close(self.fd)
        self.host_fds.give()
        if p.readers == 0 and p.writers == 0 and self.fifo.pipe is p:
            self.fifo.pipe = None  # its buffer goes with it, as on Linux
            if gone:  # unlinked while open: the host may now reuse the inode
                self.inodes.meta.pop(self.fifo.vino, None)
                self.inodes.fifos.pop(self.fifo.vino, None)
