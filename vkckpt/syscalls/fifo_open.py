"""open(2) of a named FIFO (fs/fifo.py): Linux's fifo_open for the syscall handlers.

An opener completes the opens of the partners asleep on the FIFO's open queues (each gets
its descriptor as its open's result), then gets its own end, or sleeps for a partner.
"""

from __future__ import annotations

import os

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.abi.syscalls import NUMBERS
from vkckpt.errors import GuestError
from vkckpt.fs.fifo import Fifo, FifoEnd, fifo_of
from vkckpt.fs.pipe import PIPE_COST, Pipe

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.sandbox import Resolved
    from vkckpt.kernel import VKernel
    from vkckpt.threads.thread import Thread

#: Status flags a FIFO end keeps (O_CREAT, O_TRUNC and the like act on the placeholder).
END_FLAGS = F.O_ACCMODE | F.O_NONBLOCK | F.O_APPEND
_CREAT_FLAGS = F.O_CREAT | F.O_WRONLY | F.O_TRUNC


def _sleeper_flags(t: Thread) -> int:
    """The open flags of a thread asleep in open(2), openat(2) or creat(2)."""
    s = t.sleep
    if s.nr == NUMBERS["openat"]:
        return s.args[2]
    return _CREAT_FLAGS if s.nr == NUMBERS["creat"] else s.args[1]


def _new_end(k: VKernel, fifo: Fifo, r: Resolved, flags: int) -> FifoEnd:
    """An end of fifo for flags, holding its placeholder open (ENFILE past the budgets)."""
    if fifo.pipe is None and not k.mem.fits(PIPE_COST):
        raise GuestError(E.ENFILE, "vkernel memory limit: no room for a pipe buffer")
    k.host_fds.take()
    try:
        fd = k.root.host_open(r, os.O_RDONLY | os.O_NONBLOCK)
    except BaseException:
        k.host_fds.give()
        raise
    return fifo.end(flags & END_FLAGS, fd, r.guest, k.inodes, k.host_fds,
                    lambda: Pipe(k.ids.pipe(), k.mem, k.poll_q))


def _complete(k: VKernel, w: Thread, fifo: Fifo, r: Resolved) -> None:
    """End partner w's open with a descriptor of its own (or the errno that stops it)."""
    flags = _sleeper_flags(w)
    try:
        end = _new_end(k, fifo, r, flags)
    except GuestError as exc:
        w.wake(-exc.errno)
        return
    try:
        w.wake(w.process.fds.install(end, bool(flags & F.O_CLOEXEC)))
    except GuestError as exc:
        end.release()
        w.wake(-exc.errno)


def open_fifo(k: VKernel, t: Thread, r: Resolved, vino: int, flags: int) -> int:
    """Implement open(2) of the named FIFO at r (inode vino): ENXIO for a write-only
    non-blocking open without a reader; a blocking reader without writer (or writer
    without reader) sleeps until its partner's open completes it."""
    fifo = fifo_of(k.inodes, vino)
    fifo.check_open(flags)
    for w in fifo.partners(flags):
        _complete(k, w, fifo, r)
    end = _new_end(k, fifo, r, flags)
    wait = fifo.must_wait(end)
    if wait is not None:
        end.release()
        raise wait
    try:
        return t.process.fds.install(end, bool(flags & F.O_CLOEXEC))
    except GuestError:
        end.release()
        raise
