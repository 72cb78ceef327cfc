"""The file interface every open file description implements (gVisor's FileOperations).

Handlers ask a file what it can do; they never ask which kind it is.  A file whose readiness
changes notifies the wait queue its `poll_queue()` names, with the events that changed
(epoll items watch it), and then the kernel's readiness queue `FileServices.poll_q`, on which
poll, select and every blocking event call sleep.  What a file needs of the vkernel
(console I/O, the random stream, the host-descriptor account, the readiness queue) it is
handed when it is made, as FileServices.
A kind's saved form is fs/state.py's, in per-kind tables keyed by `kind`.
"""

from __future__ import annotations

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.errors import GuestError
from vkckpt.record import Record

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable

    from vkckpt.threads.thread import Thread
    from vkckpt.threads.wait import WaitQueue


class FileServices(Record):
    """The narrow services files may use, instead of the kernel."""

    __slots__ = ("console_read", "console_write", "random_bytes", "host_fds", "poll_q",
                 "now", "arm", "current", "sigfds")

    def __init__(self, console_read: Callable[[int], bytes],
                 console_write: Callable[[int, bytes], None],
                 random_bytes: Callable[[int], bytes], host_fds: object,
                 poll_q: WaitQueue, now: Callable[[], int] | None = None,
                 arm: Callable[..., None] | None = None,
                 current: Callable[[], Thread | None] | None = None,
                 sigfds: object = None) -> None:
        self.console_read = console_read    # n -> bytes from the guest's stdin
        self.console_write = console_write  # (stream, data): to the host's stdout/stderr
        self.random_bytes = random_bytes    # n -> the vkernel's deterministic random stream
        self.host_fds = host_fds            # HostFds: host descriptors guest files hold
        self.poll_q = poll_q                # readiness events: every pipe change wakes it
        self.now = now                      # () -> virtual monotonic ns (timerfd)
        self.arm = arm                      # (timer, deadline[, seq]): arm a kernel timer
        self.current = current              # () -> the thread in a syscall (signalfd)
        self.sigfds = sigfds                # SignalFdHub: live signalfds, their watchers


class OpenFile:
    """An open file description, shared by dup'ed descriptors and across fork.

    `kind` names the saved form; `seekable` whether pread/pwrite apply; `discards` whether
    writes are dropped unread (then write(2) never looks at the guest buffer)."""

    kind = "file"
    seekable = False
    discards = False
    pollable = False  # Linux's file_can_poll: epoll_ctl refuses others with EPERM
    sigpipe = True    # whether a write failing with EPIPE sends the writer SIGPIPE
    # whether a blocking write waits until all is written (pipes, stream sockets), taking
    # the file's short counts as "some room was left" (syscalls/progress.py)
    waits_for_all = False

    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.refs = 0

    # -- access mode and status flags ---------------------------------------------------------
    def readable(self) -> bool:
        return self.flags & F.O_ACCMODE in (F.O_RDONLY, F.O_RDWR)

    def writable(self) -> bool:
        return self.flags & F.O_ACCMODE in (F.O_WRONLY, F.O_RDWR)

    def set_status_flags(self, flags: int) -> None:
        """F_SETFL: change O_APPEND/O_NONBLOCK."""
        self.flags = (self.flags & ~F.SETFL_MASK) | (flags & F.SETFL_MASK)

    def set_nonblocking(self, on: bool) -> None:
        """FIONBIO: set or clear O_NONBLOCK alone."""
        self.flags = self.flags | F.O_NONBLOCK if on else self.flags & ~F.O_NONBLOCK

    # -- data ---------------------------------------------------------------------------------
    def read(self, n: int) -> bytes:
        """read(2) at the file offset; raises Block to wait, GuestError to fail."""
        raise GuestError(E.EINVAL)

    def write(self, data: bytes) -> int:
        """write(2) at the file offset; EPIPE means the caller is sent SIGPIPE."""
        raise GuestError(E.EINVAL)

    def pread(self, n: int, off: int) -> bytes:
        raise GuestError(E.ESPIPE)

    def pwrite(self, data: bytes, off: int) -> int:
        raise GuestError(E.ESPIPE)

    def read_fit(self, room: int, want: int, off: int | None) -> int:
        """How much to read when only `room` of `want` bytes of the guest buffer are
        writable (uncopied data stays in the file, as on Linux); EFAULT when Linux would
        copy nothing."""
        if room:
            return room
        raise GuestError(E.EFAULT)

    def write_fit(self, avail: int, want: int) -> int:
        """How much to write when only `avail` of `want` guest bytes are readable (a short
        write); EFAULT when none are."""
        if avail == 0:
            raise GuestError(E.EFAULT)
        return avail

    def seek(self, off: int, whence: int) -> int:
        raise GuestError(E.ESPIPE)

    def truncate(self, length: int) -> None:
        """ftruncate(2) on a descriptor open for writing."""
        raise GuestError(E.EINVAL)

    def allocate(self, mode: int, off: int, length: int) -> None:
        """fallocate(2) on a descriptor open for writing (mode already checked)."""
        raise GuestError(E.ENODEV)
    def fsync(self) -> None:
        """fsync(2)/fdatasync(2): EINVAL, as Linux answers for a file without storage
        behind it (pipes, the console, devices, anonymous inodes)."""
        raise GuestError(E.EINVAL)

    # -- metadata -----------------------------------------------------------------------------
    def stat(self) -> bytes:
        """struct stat of the file (abi/stat.py)."""
        raise GuestError(E.EBADF)

    def getdents(self, n: int, room: int) -> bytes:
        """getdents64(2): entries filling at most n bytes; those past `room` (the writable
        part of the buffer) stay unread."""
        raise GuestError(E.ENOTDIR)

    def dir_path(self) -> str:
        """The guest path of an open directory (openat's dirfd, fchdir)."""
        raise GuestError(E.ENOTDIR)

    def ioctl(self, req: int) -> int:
        raise GuestError(E.ENOTTY)

    def proc_link(self) -> str:
        """What /proc/PID/fd/N reads as (readlink): a guest path, or Linux's name for a file
        with none ("pipe:[N]", "anon_inode:[eventpoll]")."""
        return f"anon_inode:[{self.kind}]"
    def fionread(self) -> int:
        """ioctl FIONREAD: bytes ready to read (ENOTTY for files that do not say)."""
        raise GuestError(E.ENOTTY)

    def map_source(self) -> OpenFile:
        """The file mmap(2) copies pages from: itself when it can (ENODEV otherwise)."""
        raise GuestError(E.ENODEV)

    # -- readiness ----------------------------------------------------------------------------
    def poll(self, events: int) -> int:
        """poll(2) revents for the requested events; files that never block are ready."""
        return events & (F.POLLIN | F.POLLOUT)

    def poll_queue(self) -> WaitQueue | None:
        """The queue notified, with the events that changed, when this file's readiness
        changes (None: it never does).  Threads never sleep on it: they sleep on poll_q."""
        return None

    # -- lifetime -----------------------------------------------------------------------------
    def release(self) -> None:
        """The last descriptor referring to this description was closed."""
