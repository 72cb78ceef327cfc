"""Changing a file's attributes: its mode, its modification time and its size."""

from __future__ import annotations

import os
import struct

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.errors import GuestError
from vkckpt.fs.files import DEVICES, HostFile, host_call
from vkckpt.syscalls.args import path_arg, s32, s64
from vkckpt.syscalls.sys_fs import HOST_MODE_MASK, resolve_at
from vkckpt.syscalls.sys_mm import files_resized

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel
    from vkckpt.threads.thread import Thread


def sys_fchmodat(k: VKernel, t: Thread, dirfd: int, path: int, mode: int) -> int:
    r = resolve_at(k, t, dirfd, path_arg(t, path))
    r.writable()
    host_call(os.chmod, r.host, mode & HOST_MODE_MASK)
    return 0


def sys_fchmod(k: VKernel, t: Thread, fd: int, mode: int) -> int:
    """chmod through a descriptor: a file of the guest root changes on the host; the
    vkernel's own files (pipes, the console, devices) have no mode to keep."""
    f = t.process.fds.get(s32(fd))
    host_fd = getattr(f, "fd", None)
    if isinstance(host_fd, int) and f.kind in ("host", "dir", "fifo"):
        upper = k.root.writable_path(f.dir_path() if f.kind == "dir" else f.guest_path)
        if upper is not None:  # an overlay: the upper copy, never a lower file
            host_call(os.chmod, upper, mode & HOST_MODE_MASK)
        else:
            host_call(os.fchmod, host_fd, mode & HOST_MODE_MASK)
    return 0


UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
_TIMESPECS = struct.Struct("<qqqq")  # atime, mtime: (tv_sec, tv_nsec) each


def sys_utimensat(k: VKernel, t: Thread, dirfd: int, path: int, times: int, flags: int) -> int:
    """Set a file's modification time, as guests see it: on the virtual clock, kept by the
    inode table (host files keep their host times).  Access times are not kept."""
    flags = s32(flags)
    if flags & ~(F.AT_SYMLINK_NOFOLLOW | F.AT_EMPTY_PATH):
        raise GuestError(E.EINVAL)
    mtime: int | None = None  # now
    if times:
        _, a_ns, m_sec, m_ns = _TIMESPECS.unpack(t.process.vm.read(times, _TIMESPECS.size))
        for ns in (a_ns, m_ns):
            if not 0 <= ns < 10**9 and ns not in (UTIME_NOW, UTIME_OMIT):
                raise GuestError(E.EINVAL)
        if m_ns == UTIME_OMIT:
            return 0
        if m_ns != UTIME_NOW:
            mtime = m_sec * 10**9 + m_ns
    p = path_arg(t, path) if path else b""
    if path and not p and not flags & F.AT_EMPTY_PATH:
        raise GuestError(E.ENOENT)
    if not p:  # futimens(fd): the file behind dirfd
        f = t.process.fds.get(s32(dirfd))
        if isinstance(f, HostFile):
            k.root.writable_path(f.guest_path)
            k.inodes.set_mtime(host_call(os.fstat, f.fd), f.guest_path, mtime)
        return 0
    if os.fsdecode(p) in DEVICES:
        return 0
    r = resolve_at(k, t, dirfd, p, follow=not flags & F.AT_SYMLINK_NOFOLLOW)
    r.writable()
    k.inodes.set_mtime(host_call(os.lstat, r.host), r.guest, mtime)
    return 0


def sys_chmod(k: VKernel, t: Thread, path: int, mode: int) -> int:
    return sys_fchmodat(k, t, F.AT_FDCWD, path, mode)


def sys_truncate(k: VKernel, t: Thread, path: int, length: int) -> int:
    r = resolve_at(k, t, F.AT_FDCWD, path_arg(t, path))
    r.writable()
    if s64(length) < 0:
        raise GuestError(E.EINVAL)
    if k.inodes.kind(host_call(os.lstat, r.host)):
        raise GuestError(E.EINVAL)  # a FIFO or socket: not a regular file to guests
    host_call(os.truncate, r.host, s64(length))
    k.inodes.touch(host_call(os.lstat, r.host), r.guest)
    files_resized(k)
    return 0
