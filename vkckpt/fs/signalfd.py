"""signalfd: pending signals read as records (Linux's fs/signalfd.c).

A read dequeues signals of the mask pending for the reading thread, its own queue before its
process's (dequeue_signal), as 128-byte struct signalfd_siginfo records; readiness is that
of the polling thread.  The program normally blocks the signals, or they are delivered
before anyone reads them.  Every signal queued while a signalfd exists notifies the hub's
queue (epoll items of signalfds watch it) and the readiness queue, so readers and pollers
re-check (signalfd_notify wakes the sighand's signalfd_wqh).
"""

from __future__ import annotations

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.abi import signals as S
from vkckpt.abi.epoll import SIGNALFD_SIGINFO, SIGNALFD_SIGINFO_SIZE
from vkckpt.errors import GuestError
from vkckpt.fs.eventfd import anon_stat
from vkckpt.fs.ops import OpenFile
from vkckpt.threads.wait import Block, WaitQueue

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.ops import FileServices
    from vkckpt.signals.pending import SigInfo
    from vkckpt.threads.thread import Thread


class SignalFdHub:
    """The vkernel's live signalfds (a count) and the queue their epoll items watch."""

    def __init__(self) -> None:
        self.count = 0
        self.event_q = WaitQueue(("signalfd-event",))

    def signalled(self, poll_q: WaitQueue) -> None:
        """A signal was queued somewhere: with any signalfd open, wake who may read it."""
        if self.count:
            self.event_q.notify(F.POLLIN)
            poll_q.notify()


def pack_ssi(info: SigInfo) -> bytes:
    """signalfd_copyinfo: the siginfo fields its kind of signal carries."""
    pid = uid = status = value = addr = timer = overrun = 0
    if info.code == S.SI_TIMER:  # SigInfo keeps si_timerid and si_overrun as pid and uid
        timer, overrun, value = info.pid, info.uid, info.value
    elif info.signo in (S.SIGSEGV, S.SIGBUS, S.SIGILL, S.SIGFPE, S.SIGTRAP) and info.code > 0:
        addr = info.addr
    elif info.signo == S.SIGCHLD:
        pid, uid, status = info.pid, info.uid, info.status
    else:
        pid, uid, value = info.pid, info.uid, info.value
    raw = SIGNALFD_SIGINFO.pack(info.signo, info.errno, info.code, pid, uid, 0, timer, 0,
                                overrun, 0,
                                status, value & 0xFFFFFFFF, value, 0, 0, addr, 0)
    return raw.ljust(SIGNALFD_SIGINFO_SIZE, b"\0")


class SignalFd(OpenFile):
    """A signal mask (never SIGKILL or SIGSTOP) read through the hub's services."""

    kind = "signalfd"
    pollable = True

    def __init__(self, flags: int, mask: int, svc: FileServices) -> None:
        super().__init__(flags)
        self.mask = mask & ~S.UNBLOCKABLE
        self.svc = svc
        svc.sigfds.count += 1

    def set_mask(self, mask: int) -> None:
        """signalfd4 on an existing signalfd: a new mask; pollers re-check."""
        self.mask = mask & ~S.UNBLOCKABLE
        self.svc.sigfds.signalled(self.svc.poll_q)

    def _take(self, t: Thread) -> SigInfo | None:
        return t.pending.take(self.mask) or t.process.pending.take(self.mask)

    def read(self, n: int) -> bytes:
        """Implement signalfd_read: as many records as fit (EINVAL below one); waits for
        the first only."""
        if n < SIGNALFD_SIGINFO_SIZE:
            raise GuestError(E.EINVAL)
        t = self.svc.current()
        out = []
        while len(out) < n // SIGNALFD_SIGINFO_SIZE:
            info = self._take(t)
            if info is None:
                break
            out.append(pack_ssi(info))
        if out:
            return b"".join(out)
        if self.flags & F.O_NONBLOCK:
            raise GuestError(E.EAGAIN)
        raise Block(self.svc.poll_q)

    def read_fit(self, room: int, want: int, off: int | None) -> int:
        """Whole records only; the first is copied after it is dequeued (EFAULT then)."""
        if room < SIGNALFD_SIGINFO_SIZE:
            return want if want < SIGNALFD_SIGINFO_SIZE else SIGNALFD_SIGINFO_SIZE
        return room - room % SIGNALFD_SIGINFO_SIZE

    def poll(self, events: int) -> int:
        """As signalfd_poll: readable when the polling thread has a signal of the mask."""
        t = self.svc.current()
        if t is None or not (t.pending.mask | t.process.pending.mask) & self.mask:
            return 0
        return F.POLLIN & events

    def poll_queue(self) -> WaitQueue:
        return self.svc.sigfds.event_q

    def stat(self) -> bytes:
        return anon_stat()

    def release(self) -> None:
        self.svc.sigfds.count -= 1
