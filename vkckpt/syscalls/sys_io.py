"""Descriptor I/O: read/write and friends, seeking, dup, fcntl, ioctl, pipes (poll: sys_poll.py)."""

from __future__ import annotations

import struct

from vkckpt import task_signals
from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.abi import signals as S
from vkckpt.abi.limits import MAX_RW_COUNT, UIO_MAXIOV
from vkckpt.abi.mman import PROT_READ, PROT_WRITE
from vkckpt.errors import GuestError
from vkckpt.fs.pipe import PIPE_COST, Pipe, PipeEnd
from vkckpt.sigsend import kernel_info
from vkckpt.syscalls import progress, sys_lock
from vkckpt.syscalls.args import (
    MAX_IO,
    s32,
    s64,
    u32,
)
from vkckpt.syscalls.sys_mm import files_resized

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.ops import OpenFile
    from vkckpt.kernel import VKernel
    from vkckpt.threads.thread import Thread


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
        t.process.vm.access_ok(base, n)
        n = min(n, MAX_RW_COUNT - total)
        total += n
        out.append((base, n))
    return out


def _span(t: Thread, segs: list[tuple[int, int]], prot: int) -> int:
    """Bytes of the segments, in order, that can be copied before the first fault."""
    got = 0
    vm = t.process.vm
    for base, n in segs:
        ok = vm.user_span(base, n, prot)
        got += ok
        if ok < n:
            break
    return got


def _read_into(t: Thread, f: OpenFile, segs: list[tuple[int, int]],
               off: int | None = None) -> int:
    """read/readv/pread: copy into the guest up to the first unwritable byte (the file
    decides how much to take then: OpenFile.read_fit)."""
    want = min(sum(n for _, n in segs), MAX_IO)
    n = want
    room = _span(t, segs, PROT_WRITE)
    if room < want:
        n = f.read_fit(room, want, off)
    data = f.read(n) if off is None else f.pread(n, off)
    vm, at = t.process.vm, 0
    for base, size in segs:
        if at >= len(data):
            break
        vm.write(base, data[at: at + size])
        at += size
    return len(data)


def _write_from(k: VKernel, t: Thread, f: OpenFile, segs: list[tuple[int, int]],
                off: int | None = None) -> int:
    """write/writev/pwrite: take guest bytes up to the first unreadable one (a short write,
    as the file allows: OpenFile.write_fit); EPIPE also sends the caller SIGPIPE."""
    want = min(sum(n for _, n in segs), MAX_IO)
    if f.discards and off is None:
        return want  # /dev/null never looks at the buffer
    if t.progress:  # the re-run of a write that slept after writing some
        segs, want = progress.skip(segs, t.progress), want - t.progress
    n = min(_span(t, segs, PROT_READ), want)
    if n < want:
        n = f.write_fit(n, want)
    vm, chunks, left = t.process.vm, [], n
    for base, size in segs:
        if left <= 0:
            break
        chunks.append(vm.read(base, min(size, left)))
        left -= size
    data = b"".join(chunks)
    try:
        if off is None and f.waits_for_all:
            return progress.write_all(t, lambda chunk, _: f.write(chunk), data)
        return f.write(data) if off is None else f.pwrite(data, off)
    except GuestError as exc:
        if exc.errno == E.EPIPE and f.sigpipe:
            task_signals.send_to_thread(k, t, kernel_info(S.SIGPIPE))
        raise


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
    t.process.vm.access_ok(buf, count)
    return _read_into(t, f, [(buf, count)])


def sys_write(k: VKernel, t: Thread, fd: int, buf: int, count: int) -> int:
    f = _writable(t, fd)
    t.process.vm.access_ok(buf, count)
    return _write_from(k, t, f, [(buf, count)])


def sys_readv(k: VKernel, t: Thread, fd: int, iov: int, cnt: int) -> int:
    f = _readable(t, fd)
    return _read_into(t, f, _iovecs(t, iov, cnt))


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
    t.process.vm.access_ok(buf, count)
    return _read_into(t, f, [(buf, count)], s64(off))


def sys_pwrite64(k: VKernel, t: Thread, fd: int, buf: int, count: int, off: int) -> int:
    if s64(off) < 0:
        raise GuestError(E.EINVAL)
    f = _writable(t, fd)
    if not f.seekable:
        raise GuestError(E.ESPIPE)
    t.process.vm.access_ok(buf, count)
    return _write_from(k, t, f, [(buf, count)], s64(off))


def sys_lseek(k: VKernel, t: Thread, fd: int, off: int, whence: int) -> int:
    return t.process.fds.get(s32(fd)).seek(s64(off), s32(whence))


def sys_close(k: VKernel, t: Thread, fd: int) -> int:
    t.process.fds.close(s32(fd))
    return 0


CLOSE_RANGE_UNSHARE, CLOSE_RANGE_CLOEXEC = 2, 4


def sys_close_range(k: VKernel, t: Thread, first: int, last: int, flags: int) -> int:
    """Close (or mark close-on-exec) every open descriptor in [first, last]."""
    first, last, flags = first & 0xFFFF_FFFF, last & 0xFFFF_FFFF, flags & 0xFFFF_FFFF
    if first > last or flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC):
        raise GuestError(E.EINVAL)
    fds = t.process.fds
    for fd in sorted(n for n in fds.fds if first <= n <= last):
        if flags & CLOSE_RANGE_CLOEXEC:
            fds.set_cloexec(fd, True)
        else:
            fds.close(fd)
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
    if not 0 <= new < t.process.fds.limit:
        raise GuestError(E.EBADF)
    return t.process.fds.install(f, cloexec, fd=new)


def sys_fcntl(k: VKernel, t: Thread, fd: int, cmd: int, arg: int) -> int:
    """Implement fcntl(2): dup, descriptor and status flags, record locks (sys_lock.py)."""
    fds = t.process.fds
    fd, cmd = s32(fd), s32(cmd)
    f = fds.get(fd)
    if cmd in (F.F_DUPFD, F.F_DUPFD_CLOEXEC):
        if not 0 <= s32(arg) < fds.limit:
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
    if cmd in sys_lock.LOCK_CMDS:
        return sys_lock.fcntl_lock(k, t, f, cmd, arg)
    raise GuestError(E.EINVAL)


def sys_ioctl(k: VKernel, t: Thread, fd: int, req: int, arg: int) -> int:
    f = t.process.fds.get(s32(fd))
    if req & 0xFFFFFFFF == F.FIONREAD:
        n = f.fionread()
        t.process.vm.write(arg, struct.pack("<i", n))
        return 0
    if req & 0xFFFFFFFF == F.FIONBIO:
        f.set_nonblocking(bool(struct.unpack("<i", t.process.vm.read(arg, 4))[0]))
        return 0
    return f.ioctl(req & 0xFFFFFFFF)


def sys_pipe2(k: VKernel, t: Thread, fds_addr: int, flags: int) -> int:
    """Implement pipe2(2)."""
    if flags & ~(F.O_CLOEXEC | F.O_NONBLOCK | F.O_DIRECT_PIPE):
        raise GuestError(E.EINVAL)
    if t.process.vm.user_span(fds_addr, 8, PROT_WRITE) < 8:
        raise GuestError(E.EFAULT)  # Linux undoes the pipe: no descriptor is left behind
    if not k.mem.fits(PIPE_COST):
        raise GuestError(E.ENFILE, "vkernel memory limit: no room for a pipe buffer")
    p = Pipe(k.ids.pipe(), k.mem, k.poll_q)
    nb = flags & F.O_NONBLOCK
    fds = t.process.fds
    ce = bool(flags & F.O_CLOEXEC)
    r = fds.install(PipeEnd(p, F.O_RDONLY | nb), ce)
    try:
        w = fds.install(PipeEnd(p, F.O_WRONLY | nb), ce)
    except GuestError:
        p.writers -= 1  # never installed: only the read end is closed
        fds.close(r)
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
    vm = t.process.vm
    vm.access_ok(buf, count)
    data = f.getdents(count, vm.user_span(buf, count, PROT_WRITE))
    vm.write(buf, data)
    return len(data)


def sys_ftruncate(k: VKernel, t: Thread, fd: int, length: int) -> int:
    f = _writable(t, fd)
    if s64(length) < 0:
        raise GuestError(E.EINVAL)
    f.truncate(s64(length))
    files_resized(k)
    return 0


def sys_fsync(k: VKernel, t: Thread, fd: int) -> int:
    """Implement fsync(2) and fdatasync(2)."""
    t.process.fds.get(s32(fd)).fsync()
    return 0
