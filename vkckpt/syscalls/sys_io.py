"""Descriptor I/O: read/write and friends, seeking, dup, fcntl, ioctl, pipes, poll."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.errors import GuestError
from vkckpt.fs.pipe import Pipe, PipeEnd
from vkckpt.syscalls.args import MAX_IO, iovec_arg, s32, s64, timespec_arg
from vkckpt.threads.wait import Block

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel
    from vkckpt.threads.thread import Thread


def _readable(t: Thread, fd: int):  # noqa: ANN202
    f = t.process.fds.get(s32(fd))
    if not f.readable():
        raise GuestError(E.EBADF)
    return f


def _writable(t: Thread, fd: int):  # noqa: ANN202
    f = t.process.fds.get(s32(fd))
    if not f.writable():
        raise GuestError(E.EBADF)
    return f


def sys_read(k: VKernel, t: Thread, fd: int, buf: int, count: int) -> int:
    f = _readable(t, fd)
    t.process.vm.read(buf, min(count, 1))  # EFAULT before consuming anything
    data = f.read(k, min(count, MAX_IO))
    t.process.vm.write(buf, data)
    return len(data)


def sys_write(k: VKernel, t: Thread, fd: int, buf: int, count: int) -> int:
    f = _writable(t, fd)
    return f.write(k, t.process.vm.read(buf, min(count, MAX_IO)))


def sys_readv(k: VKernel, t: Thread, fd: int, iov: int, cnt: int) -> int:
    f = _readable(t, fd)
    vecs = iovec_arg(t, iov, s32(cnt))
    data = f.read(k, min(sum(n for _, n in vecs), MAX_IO))
    at = 0
    for base, n in vecs:
        t.process.vm.write(base, data[at: at + n])
        at += n
        if at >= len(data):
            break
    return len(data)


def sys_writev(k: VKernel, t: Thread, fd: int, iov: int, cnt: int) -> int:
    f = _writable(t, fd)
    data = b"".join(t.process.vm.read(b, n) for b, n in iovec_arg(t, iov, s32(cnt)))
    return f.write(k, data) if data else 0


def sys_pread64(k: VKernel, t: Thread, fd: int, buf: int, count: int, off: int) -> int:
    if s64(off) < 0:
        raise GuestError(E.EINVAL)
    data = _readable(t, fd).pread(min(count, MAX_IO), s64(off))
    t.process.vm.write(buf, data)
    return len(data)


def sys_pwrite64(k: VKernel, t: Thread, fd: int, buf: int, count: int, off: int) -> int:
    if s64(off) < 0:
        raise GuestError(E.EINVAL)
    return _writable(t, fd).pwrite(t.process.vm.read(buf, min(count, MAX_IO)), s64(off))


def sys_lseek(k: VKernel, t: Thread, fd: int, off: int, whence: int) -> int:
    return t.process.fds.get(s32(fd)).seek(s64(off), s32(whence))


def sys_close(k: VKernel, t: Thread, fd: int) -> int:
    t.process.fds.close(s32(fd), k)
    return 0


def sys_dup(k: VKernel, t: Thread, fd: int) -> int:
    fds = t.process.fds
    return fds.install(fds.get(s32(fd)))


def sys_dup2(k: VKernel, t: Thread, old: int, new: int) -> int:
    fds = t.process.fds
    f = fds.get(s32(old))
    if s32(old) == s32(new):
        return s32(new)
    return _dup_to(k, t, f, s32(new), False)


def sys_dup3(k: VKernel, t: Thread, old: int, new: int, flags: int) -> int:
    if s32(old) == s32(new) or flags & ~F.O_CLOEXEC:
        raise GuestError(E.EINVAL)
    return _dup_to(k, t, t.process.fds.get(s32(old)), s32(new), bool(flags & F.O_CLOEXEC))


def _dup_to(k: VKernel, t: Thread, f, new: int, cloexec: bool) -> int:  # noqa: ANN001
    if not 0 <= new < 1024:
        raise GuestError(E.EBADF)
    return t.process.fds.install(f, cloexec, fd=new, k=k)


def sys_fcntl(k: VKernel, t: Thread, fd: int, cmd: int, arg: int) -> int:
    """Implement fcntl(2): dup, descriptor and status flags; record locks always succeed."""
    fds = t.process.fds
    fd, cmd = s32(fd), s32(cmd)
    f = fds.get(fd)
    if cmd in (F.F_DUPFD, F.F_DUPFD_CLOEXEC):
        if not 0 <= s32(arg) < 1024:
            raise GuestError(E.EINVAL)
        return fds.install(f, cmd == F.F_DUPFD_CLOEXEC, lowest=s32(arg))
    if cmd == F.F_GETFD:
        return F.FD_CLOEXEC if fds.cloexec(fd) else 0
    if cmd == F.F_SETFD:
        fds.set_cloexec(fd, bool(arg & F.FD_CLOEXEC))
        return 0
    if cmd == F.F_GETFL:
        return f.flags & ~F.O_CLOEXEC
    if cmd == F.F_SETFL:
        f.set_status_flags(arg)
        return 0
    if cmd in (F.F_GETLK, F.F_SETLK, F.F_SETLKW):
        return 0  # one vkernel, no competing lockers outside it
    raise GuestError(E.EINVAL)


def sys_ioctl(k: VKernel, t: Thread, fd: int, req: int, arg: int) -> int:
    f = t.process.fds.get(s32(fd))
    if req & 0xFFFFFFFF == F.FIONBIO:
        on = struct.unpack("<i", t.process.vm.read(arg, 4))[0]
        f.flags = f.flags | F.O_NONBLOCK if on else f.flags & ~F.O_NONBLOCK
        return 0
    return f.ioctl(req & 0xFFFFFFFF)


def sys_pipe2(k: VKernel, t: Thread, fds_addr: int, flags: int) -> int:
    """Implement pipe2(2)."""
    if flags & ~(F.O_CLOEXEC | F.O_NONBLOCK | F.O_DIRECT_PIPE):
        raise GuestError(E.EINVAL)
    t.process.vm.read(fds_addr, 8)
    p = Pipe(k.next_pipe)
    k.next_pipe += 1
    nb = flags & F.O_NONBLOCK
    fds = t.process.fds
    ce = bool(flags & F.O_CLOEXEC)
    r = fds.install(PipeEnd(p, F.O_RDONLY | nb), ce)
    w = fds.install(PipeEnd(p, F.O_WRONLY | nb), ce)
    t.process.vm.write(fds_addr, struct.pack("<ii", r, w))
    return 0


def sys_pipe(k: VKernel, t: Thread, fds_addr: int) -> int:
    return sys_pipe2(k, t, fds_addr, 0)


def sys_fstat(k: VKernel, t: Thread, fd: int, buf: int) -> int:
    t.process.vm.write(buf, t.process.fds.get(s32(fd)).stat())
    return 0


def sys_getdents64(k: VKernel, t: Thread, fd: int, buf: int, count: int) -> int:
    data = t.process.fds.get(s32(fd)).getdents(min(count, MAX_IO))
    t.process.vm.write(buf, data)
    return len(data)


def sys_ftruncate(k: VKernel, t: Thread, fd: int, length: int) -> int:
    import os

    from vkckpt.fs.files import HostFile, host_call
    f = _writable(t, fd)
    if not isinstance(f, HostFile) or s64(length) < 0:
        raise GuestError(E.EINVAL)
    host_call(os.ftruncate, f.fd, s64(length))
    return 0


def sys_fsync(k: VKernel, t: Thread, fd: int) -> int:
    t.process.fds.get(s32(fd))
    return 0


POLLIN, POLLOUT, POLLERR, POLLHUP, POLLNVAL = 1, 4, 8, 16, 32


def sys_ppoll(k: VKernel, t: Thread, fds_addr: int, nfds: int, tmo: int, sigmask: int) -> int:
    deadline = k.now_ns() + timespec_arg(t, tmo) if tmo else None
    return _poll(k, t, fds_addr, nfds, deadline)


def sys_poll(k: VKernel, t: Thread, fds_addr: int, nfds: int, timeout_ms: int) -> int:
    ms = s32(timeout_ms)
    deadline = k.now_ns() + ms * 1_000_000 if ms >= 0 else None
    return _poll(k, t, fds_addr, nfds, deadline)


def _poll(k: VKernel, t: Thread, fds_addr: int, nfds: int, deadline: int | None) -> int:
    """poll over pipes and files; sleeps on the pipes' queues until something is ready."""
    if nfds > 1024:
        raise GuestError(E.EINVAL)
    raw = bytearray(t.process.vm.read(fds_addr, 8 * nfds))
    ready = 0
    queues = []
    for i in range(nfds):
        fd, events, _ = struct.unpack_from("<ihh", raw, 8 * i)
        rev = 0
        if fd >= 0:
            try:
                f = t.process.fds.get(fd)
            except GuestError:
                rev = POLLNVAL
            else:
                r, w = f.readiness()
                rev = (POLLIN if r and events & POLLIN else 0) | \
                      (POLLOUT if w and events & POLLOUT else 0)
                if isinstance(f, PipeEnd):
                    queues.append(f.pipe.read_q if f.readable() else f.pipe.write_q)
        struct.pack_into("<h", raw, 8 * i + 6, rev)
        ready += bool(rev)
    if ready or deadline is not None and deadline <= k.now_ns():
        t.process.vm.write(fds_addr, bytes(raw))
        return ready
    q = queues[0] if len(queues) == 1 else None  # partial: several pipes poll by timeout
    raise Block(q, deadline if q or deadline else None, 0)
