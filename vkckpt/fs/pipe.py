"""Pipes: a bounded byte buffer with reader and writer ends and wait queues."""

from __future__ import annotations

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.abi.epoll import POLLRDNORM, POLLWRNORM
from vkckpt.abi.limits import PIPE_BUF
from vkckpt.abi.stat import pack_stat
from vkckpt.errors import GuestError
from vkckpt.fs.ops import OpenFile
from vkckpt.threads.wait import Block, WaitQueue
from vkckpt.vmspace.account import MemAccount

CAPACITY = 65536
#: What one pipe costs the vkernel's memory account: its whole buffer (charged when the
#: pipe is made, so a write never fails for memory) and its bookkeeping.
PIPE_COST = CAPACITY + 1024


class Pipe:
    """The shared buffer; counts of open ends decide EOF and EPIPE.

    A pipe holds PIPE_COST of `mem` from its creation until its last end is closed;
    pipe(2) checks that the account has room first (ENFILE otherwise).  Every change is
    notified to the waiting side's queue, then to `poll_q`, the readiness queue pollers
    sleep on (FileServices.poll_q)."""

    def __init__(self, pipe_id: int, mem: MemAccount | None, poll_q: WaitQueue) -> None:
        self.mem = mem
        if mem is not None:
            mem.force(PIPE_COST)
        self.poll_q = poll_q
        self.id = pipe_id
        self.data = bytearray()
        self.readers = 0
        self.writers = 0
        self.read_q = WaitQueue(("pipe-read", pipe_id))
        self.write_q = WaitQueue(("pipe-write", pipe_id))
        self.event_q = WaitQueue(("pipe-event", pipe_id))  # watchers only (epoll items)

    def changed(self, q: WaitQueue) -> None:
        """Wake the threads sleeping on q, tell the watchers what changed (as Linux's wake-up
        keys: data or no writer for readers, room or no reader for writers), then wake
        every poller, which re-checks."""
        q.notify()
        self.event_q.notify(F.POLLIN | POLLRDNORM | F.POLLHUP if q is self.read_q
                            else F.POLLOUT | POLLWRNORM | F.POLLERR)
        self.poll_q.notify()


class PipeEnd(OpenFile):
    """One end of a pipe."""

    kind = "pipe"
    waits_for_all = True
    pollable = True

    def __init__(self, pipe: Pipe, flags: int) -> None:
        super().__init__(flags)
        self.pipe = pipe
        if self.readable():
            pipe.readers += 1
        else:
            pipe.writers += 1

    def read(self, n: int) -> bytes:
        p = self.pipe
        if not p.data:
            if p.writers == 0 or n == 0:
                return b""
            if self.flags & F.O_NONBLOCK:
                raise GuestError(E.EAGAIN)
            raise Block(p.read_q)
        out = bytes(p.data[:n])
        del p.data[:n]
        p.changed(p.write_q)
        return out

    def write(self, data: bytes) -> int:
        """Write data; EPIPE without a reader (the caller sends SIGPIPE, as pipe_write)."""
        p = self.pipe
        if p.readers == 0:
            raise GuestError(E.EPIPE)
        room = CAPACITY - len(p.data)
        if room < len(data) and (room == 0 or len(data) <= PIPE_BUF):
            if self.flags & F.O_NONBLOCK:
                raise GuestError(E.EAGAIN)
            raise Block(p.write_q)
        n = min(room, len(data))
        p.data += data[:n]
        p.changed(p.read_q)
        return n

    def read_fit(self, room: int, want: int, off: int | None) -> int:
        """Linux copies a pipe buffer whole or not at all: EFAULT when it cannot."""
        avail = len(self.pipe.data)
        if not avail:
            return want  # sleeps, EAGAIN or EOF: nothing is consumed either way
        if room < min(want, avail):
            raise GuestError(E.EFAULT)
        return room

    def write_fit(self, avail: int, want: int) -> int:
        """Linux fills whole pipe buffers at a time: any unreadable byte is EFAULT."""
        raise GuestError(E.EFAULT)

    def allocate(self, mode: int, off: int, length: int) -> None:
        raise GuestError(E.ESPIPE)
    def proc_link(self) -> str:
        return f"pipe:[{self.pipe.id}]"

    def stat(self) -> bytes:
        return pack_stat(9, self.pipe.id, F.S_IFIFO | 0o600, 1, 0, 0, 0, 0, 4096, 0, 0, 0, 0)

    def ioctl(self, req: int) -> int:
        raise GuestError(E.ENOTTY)

    def poll(self, events: int) -> int:
        """poll(2) revents as Linux's pipe_poll computes them: POLLIN when data waits and
        POLLHUP when no writer is left (read end); POLLOUT when there is room and POLLERR
        when no reader is left (write end).  POLLHUP and POLLERR are reported unrequested."""
        p = self.pipe
        if self.readable():
            mask = (F.POLLIN | POLLRDNORM if p.data else 0) | (F.POLLHUP if p.writers == 0 else 0)
        else:
            mask = (F.POLLOUT | POLLWRNORM if len(p.data) < CAPACITY else 0) | \
                (F.POLLERR if p.readers == 0 else 0)
        return mask & (events | F.POLLHUP | F.POLLERR)

    def poll_queue(self) -> WaitQueue:
        return self.pipe.event_q

    def release(self) -> None:
        p = self.pipe
        if self.readable():
            p.readers -= 1
            p.changed(p.write_q)
        else:
            p.writers -= 1
            p.changed(p.read_q)
        if p.readers == 0 and p.writers == 0 and p.mem is not None:
            p.mem.uncharge(PIPE_COST)
            p.mem = None
