"""Pipes: a bounded byte buffer with reader and writer ends and wait queues."""

from __future__ import annotations

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.abi import signals as S
from vkckpt.abi.limits import PIPE_BUF
from vkckpt.abi.stat import pack_stat
from vkckpt.errors import GuestError
from vkckpt.fs.files import OpenFile
from vkckpt.threads.wait import Block, WaitQueue
from vkckpt.vmspace.account import MemAccount

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel

CAPACITY = 65536
#: What one pipe costs the vkernel's memory account: its whole buffer (charged when the
#: pipe is made, so a write never fails for memory) and its bookkeeping.
PIPE_COST = CAPACITY + 1024


def _wake(k: VKernel, q: WaitQueue) -> None:
    """A pipe changed: wake the threads sleeping on q, and every poll, which re-checks."""
    k.wake_all(q)
    k.wake_all(k.poll_q)


class Pipe:
    """The shared buffer; counts of open ends decide EOF and EPIPE.

    A pipe holds PIPE_COST of `mem` from its creation until its last end is closed;
    pipe(2) checks that the account has room first (ENFILE otherwise)."""

    def __init__(self, pipe_id: int, mem: MemAccount | None = None) -> None:
        self.mem = mem
        if mem is not None:
            mem.force(PIPE_COST)
        self.id = pipe_id
        self.data = bytearray()
        self.readers = 0
        self.writers = 0
        self.read_q = WaitQueue(("pipe-read", pipe_id))
        self.write_q = WaitQueue(("pipe-write", pipe_id))


class PipeEnd(OpenFile):
    """One end of a pipe."""

    kind = "pipe"

    def __init__(self, pipe: Pipe, flags: int) -> None:
        super().__init__(flags)
        self.pipe = pipe
        if self.readable():
            pipe.readers += 1
        else:
            pipe.writers += 1

    def read(self, k: VKernel, n: int) -> bytes:
        p = self.pipe
        if not p.data:
            if p.writers == 0 or n == 0:
                return b""
            if self.flags & F.O_NONBLOCK:
                raise GuestError(E.EAGAIN)
            raise Block(p.read_q)
        out = bytes(p.data[:n])
        del p.data[:n]
        _wake(k, p.write_q)
        return out

    def write(self, k: VKernel, data: bytes) -> int:
        p = self.pipe
        if p.readers == 0:
            k.send_signal_thread(k.current, S.SIGPIPE)
            raise GuestError(E.EPIPE)
        room = CAPACITY - len(p.data)
        if room < len(data) and (room == 0 or len(data) <= PIPE_BUF):
            if self.flags & F.O_NONBLOCK:
                raise GuestError(E.EAGAIN)
            raise Block(p.write_q)
        n = min(room, len(data))
        p.data += data[:n]
        _wake(k, p.read_q)
        return n

    def stat(self) -> bytes:
        return pack_stat(9, self.pipe.id, F.S_IFIFO | 0o600, 1, 0, 0, 0, 0, 4096, 0, 0, 0, 0)

    def ioctl(self, req: int) -> int:
        raise GuestError(E.ENOTTY)

    def readiness(self) -> tuple[bool, bool]:
        p = self.pipe
        return bool(p.data) or p.writers == 0, len(p.data) < CAPACITY or p.readers == 0

    def poll_mask(self) -> int:
        """poll(2) events, as Linux's pipe_poll computes them: POLLIN when data waits and
        POLLHUP when no writer is left (read end); POLLOUT when there is room and POLLERR
        when no reader is left (write end)."""
        p = self.pipe
        if self.readable():
            return (F.POLLIN if p.data else 0) | (F.POLLHUP if p.writers == 0 else 0)
        return (F.POLLOUT if len(p.data) < CAPACITY else 0) | (F.POLLERR if p.readers == 0 else 0)

    def release(self, k: VKernel) -> None:
        p = self.pipe
        if self.readable():
            p.readers -= 1
            _wake(k, p.write_q)
        else:
            p.writers -= 1
            _wake(k, p.read_q)
        if p.readers == 0 and p.writers == 0 and p.mem is not None:
            p.mem.uncharge(PIPE_COST)
            p.mem = None
