"""Descriptor I/O: read/write and friends, seeking, dup, fcntl, ioctl, pipes, poll."""

from __future__ import annotations

import struct

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.abi import signals as S
from vkckpt.abi.mman import PROT_READ, PROT_WRITE
from vkckpt.errors import GuestError
from vkckpt.fs.files import DirFile, HostFile
from vkckpt.fs.pipe import PIPE_COST, Pipe, PipeEnd
from vkckpt.syscalls.args import (
    MAX_IO,
    s32,
    s64,
    sigset_arg,
    timespec_arg,
    u32,
    under_temporary_mask,
)
from vkckpt.threads.wait import Block

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel
    from vkckpt.threads.thread import Thread


TASK_SIZE = 0x7FFF_FFFF_F000  # the end of user space: access_ok()'s bound
UIO_MAXIOV = 1024
MAX_RW_COUNT = 0x7FFF_F000


def user_span(t: Thread, addr: int, n: int, prot: int) -> int:
    """How many leading bytes of guest [addr, addr+n) the guest could access with prot.

    Linux copies to and from user memory up to the first byte that faults; the VMAs say where
    that is.  (The engine's own accessors also write read-only pages, so ask the VMAs.)
    """
    vmas = t.process.vm.vmas
    at, end = addr, addr + n
    while at < end:
        v = vmas.find(at)
        if v is None or not v.prot & prot:
            break
        at = v.end
    return min(at, end) - addr


def access_ok(addr: int, n: int) -> None:
    """Linux's access_ok(): a user range must end below the top of user space (else EFAULT)."""
    if addr + n > TASK_SIZE:
        raise GuestError(E.EFAULT)


KTIME_MAX = (1 << 63) - 1  # Linux's timers saturate here: a later deadline never comes


def deadline_at(ns: int) -> int | None:
    """A sleep's virtual deadline, or None (no timeout) at or past KTIME_MAX."""
    return ns if ns < KTIME_MAX else None


def wait_deadline(k: VKernel, t: Thread, timeout_ns: int | None) -> int | None:
    """The deadline of a wait with a relative timeout (None: none). A call re-run after a
    wake-up that did not satisfy it keeps the deadline it first computed, so spurious
    wake-ups (every pipe event wakes every poll) never extend the timeout."""
    if t.retry_deadline is not None:
        return t.retry_deadline
    return None if timeout_ns is None else deadline_at(k.now_ns() + timeout_ns)


def _iovecs(t: Thread, addr: int, count: int) -> list[tuple[int, int]]:
    """An iovec array imported as Linux does (EINVAL for a bad count or a negative length,
    EFAULT for a segment outside user space; the total is capped at MAX_RW_COUNT)."""
    count = s32(count)
    if not 0 <= count <= UIO_MAXIOV:
        raise GuestError(E.EINVAL)
    raw = t.process.vm.read(addr, 16 * count)
    pairs = [struct.unpack_from("<QQ", raw, 16 * i) for i in range(count)]
    if any(n >> 63 for _, n in pairs):
        raise GuestError(E.EINVAL)
    out, total = [], 0
    for base, n in pairs:
        access_ok(base, n)
        n = min(n, MAX_RW_COUNT - total)
        total += n
        out.append((base, n))
    return out


def _span(t: Thread, segs: list[tuple[int, int]], prot: int) -> int:
    """Bytes of the segments, in order, that can be copied before the first fault."""
    got = 0
    for base, n in segs:
        ok = user_span(t, base, n, prot)
        got += ok
        if ok < n:
            break
    return got


def _short_read(f, room: int, want: int, off: int | None) -> int:  # noqa: ANN001
    """How much to read when only room of want bytes of the buffer are writable (EFAULT when
    Linux would copy nothing); uncopied data stays in the file or pipe, as on Linux."""
    if isinstance(f, PipeEnd):
        avail = len(f.pipe.data)
        if not avail:
            return want  # sleeps, EAGAIN or EOF: nothing is consumed either way
        if room < min(want, avail):
            raise GuestError(E.EFAULT)  # Linux copies a pipe buffer whole or not at all
        return room
    if room:
        return room
    if isinstance(f, HostFile):  # a regular file at its end has nothing to copy
        pos = f.seek(0, F.SEEK_CUR) if off is None else off
        if not f.pread(1, pos):
            return 0
    raise GuestError(E.EFAULT)


def _read_into(k: VKernel, t: Thread, f, segs: list[tuple[int, int]],  # noqa: ANN001
               off: int | None = None) -> int:
    """read/readv/pread: copy into the guest up to the first unwritable byte."""
    want = min(sum(n for _, n in segs), MAX_IO)
    n = want
    if f.kind != "null" and not isinstance(f, DirFile):
        room = _span(t, segs, PROT_WRITE)
        if room < want:
            n = _short_read(f, room, want, off)
    data = f.read(k, n) if off is None else f.pread(n, off)
    vm, at = t.process.vm, 0
    for base, size in segs:
        if at >= len(data):
            break
        vm.write(base, data[at: at + size])
        at += size
    return len(data)


def _write_from(k: VKernel, t: Thread, f, segs: list[tuple[int, int]],  # noqa: ANN001
                off: int | None = None) -> int:
    """write/writev/pwrite: take guest bytes up to the first unreadable one (a short write);
    EFAULT when there are none, or for a pipe, which Linux fills whole buffers at a time."""
    want = min(sum(n for _, n in segs), MAX_IO)
    if f.kind == "null" and off is None:
        return want  # /dev/null never looks at the buffer
    n = min(_span(t, segs, PROT_READ), want)
    if n < want and (n == 0 or isinstance(f, PipeEnd)):
        raise GuestError(E.EFAULT)
    vm, chunks, left = t.process.vm, [], n
    for base, size in segs:
        if left <= 0:
            break
        chunks.append(vm.read(base, min(size, left)))
        left -= size
    data = b"".join(chunks)
    return f.write(k, data) if off is None else f.pwrite(data, off)


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
    access_ok(buf, count)
    return _read_into(k, t, f, [(buf, count)])


def sys_write(k: VKernel, t: Thread, fd: int, buf: int, count: int) -> int:
    f = _writable(t, fd)
    access_ok(buf, count)
    return _write_from(k, t, f, [(buf, count)])


def sys_readv(k: VKernel, t: Thread, fd: int, iov: int, cnt: int) -> int:
    f = _readable(t, fd)
    return _read_into(k, t, f, _iovecs(t, iov, cnt))


def sys_writev(k: VKernel, t: Thread, fd: int, iov: int, cnt: int) -> int:
    f = _writable(t, fd)
    segs = _iovecs(t, iov, cnt)
    if not any(n for _, n in segs):
        return 0
    return _write_from(k, t, f, segs)


def sys_pread64(k: VKernel, t: Thread, fd: int, buf: int, count: int, off: int) -> int:
    if s64(off) < 0:
        raise GuestError(E.EINVAL)
    f = _readable(t, fd)
    if not f.seekable:
        raise GuestError(E.ESPIPE)
    access_ok(buf, count)
    return _read_into(k, t, f, [(buf, count)], s64(off))


def sys_pwrite64(k: VKernel, t: Thread, fd: int, buf: int, count: int, off: int) -> int:
    if s64(off) < 0:
        raise GuestError(E.EINVAL)
    f = _writable(t, fd)
    if not f.seekable:
        raise GuestError(E.ESPIPE)
    access_ok(buf, count)
    return _write_from(k, t, f, [(buf, count)], s64(off))


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
    if user_span(t, fds_addr, 8, PROT_WRITE) < 8:
        raise GuestError(E.EFAULT)  # Linux undoes the pipe: no descriptor is left behind
    if not k.mem.fits(PIPE_COST):
        raise GuestError(E.ENFILE, "vkernel memory limit: no room for a pipe buffer")
    p = Pipe(k.ids.pipe(), k.mem)
    nb = flags & F.O_NONBLOCK
    fds = t.process.fds
    ce = bool(flags & F.O_CLOEXEC)
    r = fds.install(PipeEnd(p, F.O_RDONLY | nb), ce)
    try:
        w = fds.install(PipeEnd(p, F.O_WRONLY | nb), ce)
    except GuestError:
        p.writers -= 1  # never installed: only the read end is closed
        fds.close(r, k)
        raise
    t.process.vm.write(fds_addr, struct.pack("<ii", r, w))
    return 0


def sys_pipe(k: VKernel, t: Thread, fds_addr: int) -> int:
    return sys_pipe2(k, t, fds_addr, 0)


def sys_fstat(k: VKernel, t: Thread, fd: int, buf: int) -> int:
    t.process.vm.write(buf, t.process.fds.get(s32(fd)).stat())
    return 0


def sys_getdents64(k: VKernel, t: Thread, fd: int, buf: int, count: int) -> int:
    """Implement getdents64(2); entries that cannot be copied out stay unread (as on Linux)."""
    f = t.process.fds.get(s32(fd))
    count = min(u32(count), MAX_IO)
    access_ok(buf, count)
    room = user_span(t, buf, count, PROT_WRITE)
    pos = getattr(f, "pos", None)
    data = f.getdents(count)
    if len(data) > room and isinstance(pos, int):
        cut = kept = 0
        while cut < len(data):
            reclen = struct.unpack_from("<H", data, cut + 16)[0]
            if cut + reclen > room:
                break
            cut += reclen
            kept += 1
        f.pos = pos + kept
        data = data[:cut]
        if not data:
            raise GuestError(E.EFAULT)
    t.process.vm.write(buf, data)
    return len(data)


def sys_ftruncate(k: VKernel, t: Thread, fd: int, length: int) -> int:
    import os

    from vkckpt.fs.files import host_call
    f = _writable(t, fd)
    if not isinstance(f, HostFile) or s64(length) < 0:
        raise GuestError(E.EINVAL)
    host_call(os.ftruncate, f.fd, s64(length))
    f.touched()
    return 0


def sys_fsync(k: VKernel, t: Thread, fd: int) -> int:
    t.process.fds.get(s32(fd))
    return 0


def sys_ppoll(k: VKernel, t: Thread, fds_addr: int, nfds: int, tmo: int, sigmask: int,
              sigsetsize: int) -> int:
    """Implement ppoll(2): poll with a timespec timeout and, while it waits, a temporary
    signal mask. The mask is kept in saved_sigmask as rt_sigsuspend's is: a handler's frame
    restores the caller's mask, and a call that ends otherwise restores it on return."""
    deadline = wait_deadline(k, t, timespec_arg(t, tmo) if tmo else None)
    if sigmask and t.saved_sigmask is None:  # not on a re-run after a wake-up
        mask = sigset_arg(t, sigmask, sigsetsize)
        t.saved_sigmask, t.sigmask = t.sigmask, mask & ~S.UNBLOCKABLE
    return under_temporary_mask(t, lambda: _poll(k, t, fds_addr, nfds, deadline))


def sys_poll(k: VKernel, t: Thread, fds_addr: int, nfds: int, timeout_ms: int) -> int:
    ms = s32(timeout_ms)
    deadline = wait_deadline(k, t, ms * 1_000_000 if ms >= 0 else None)
    return _poll(k, t, fds_addr, nfds, deadline)


def _poll(k: VKernel, t: Thread, fds_addr: int, nfds: int, deadline: int | None) -> int:
    """poll over pipes and files; sleeps on the kernel's poll queue until a pipe changes.

    Every pipe event wakes every poller, which re-checks all its descriptors (spurious
    wake-ups cost a re-check, never a lost event). Pipe ends report what Linux's pipe_poll
    does (POLLHUP and POLLERR whether asked for or not); other files are always ready.
    """
    if nfds > 1024:
        raise GuestError(E.EINVAL)
    raw = bytearray(t.process.vm.read(fds_addr, 8 * nfds))
    ready = 0
    pipes = False
    for i in range(nfds):
        fd, events, _ = struct.unpack_from("<ihh", raw, 8 * i)
        rev = 0
        if fd >= 0:
            try:
                f = t.process.fds.get(fd)
            except GuestError:
                rev = F.POLLNVAL
            else:
                if isinstance(f, PipeEnd):
                    pipes = True
                    rev = f.poll_mask() & (events | F.POLLHUP | F.POLLERR)
                else:
                    r, w = f.readiness()
                    rev = (F.POLLIN if r and events & F.POLLIN else 0) | \
                          (F.POLLOUT if w and events & F.POLLOUT else 0)
        struct.pack_into("<h", raw, 8 * i + 6, rev)
        ready += bool(rev)
    if ready or deadline is not None and deadline <= k.now_ns():
        t.process.vm.write(fds_addr, bytes(raw))
        return ready
    # never restarted after a handler (ERESTARTNOHAND): poll returns EINTR, as on Linux
    raise Block(k.poll_q if pipes else None, deadline, 0, restartable=False)
