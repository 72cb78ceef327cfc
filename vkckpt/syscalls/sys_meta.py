"""File metadata calls: owners, statx, mknod, fallocate, chroot, I/O priorities."""

from __future__ import annotations

import os

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.abi import stat as ST
from vkckpt.errors import GuestError
from vkckpt.fs.files import DEVICES, HostFile, host_call
from vkckpt.syscalls.args import path_arg, s32, s64, u32
from vkckpt.syscalls.sys_fs import HOST_MODE_MASK, resolve_at, stat_path

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel
    from vkckpt.threads.thread import Thread


# -- owners ------------------------------------------------------------------------------------
def sys_fchownat(k: VKernel, t: Thread, dirfd: int, path: int, uid: int, gid: int,
                 flags: int) -> int:
    """Implement fchownat(2): the owner is the inode table's (the host never chowns); the
    guest is root, so any owner may be given; -1 keeps a field."""
    flags = s32(flags)
    if flags & ~(F.AT_SYMLINK_NOFOLLOW | F.AT_EMPTY_PATH):
        raise GuestError(E.EINVAL)
    p = path_arg(t, path)
    if not p and flags & F.AT_EMPTY_PATH:
        return sys_fchown(k, t, dirfd, uid, gid)
    if os.fsdecode(p) in DEVICES:
        return 0
    r = resolve_at(k, t, dirfd, p, follow=not flags & F.AT_SYMLINK_NOFOLLOW)
    r.writable()
    k.inodes.meta_of(host_call(os.lstat, r.host), r.guest).chown(u32(uid), u32(gid))
    return 0


def sys_fchown(k: VKernel, t: Thread, fd: int, uid: int, gid: int) -> int:
    """chown through a descriptor; the vkernel's own files keep no owner (a no-op)."""
    f = t.process.fds.get(s32(fd))
    if isinstance(f, HostFile) or f.kind == "fifo":
        k.root.writable_path(f.guest_path)
        k.inodes.meta_of(host_call(os.fstat, f.fd), f.guest_path).chown(u32(uid), u32(gid))
    return 0


def sys_chown(k: VKernel, t: Thread, path: int, uid: int, gid: int) -> int:
    return sys_fchownat(k, t, F.AT_FDCWD, path, uid, gid, 0)


def sys_lchown(k: VKernel, t: Thread, path: int, uid: int, gid: int) -> int:
    return sys_fchownat(k, t, F.AT_FDCWD, path, uid, gid, F.AT_SYMLINK_NOFOLLOW)


# -- statx -------------------------------------------------------------------------------------
_STATX_FLAGS = F.AT_SYMLINK_NOFOLLOW | F.AT_EMPTY_PATH | ST.AT_NO_AUTOMOUNT | \
    ST.AT_STATX_SYNC_TYPE


def sys_statx(k: VKernel, t: Thread, dirfd: int, path: int, flags: int, mask: int,
              buf: int) -> int:
    """Implement statx(2) from what stat reports: the basic stats, no birth time."""
    flags = s32(flags)
    if flags & ~_STATX_FLAGS or flags & ST.AT_STATX_SYNC_TYPE == ST.AT_STATX_SYNC_TYPE:
        raise GuestError(E.EINVAL)
    if u32(mask) & ST.STATX__RESERVED:
        raise GuestError(E.EINVAL)
    p = b"" if path == 0 and flags & F.AT_EMPTY_PATH else path_arg(t, path)
    data = ST.statx_from_stat(stat_path(k, t, dirfd, p, flags))
    t.process.vm.write(buf, data)
    return 0


# -- mknod -------------------------------------------------------------------------------------
def sys_mknodat(k: VKernel, t: Thread, dirfd: int, path: int, mode: int, dev: int) -> int:
    """Implement mknodat(2) for regular files and named FIFOs (an empty placeholder file on
    the host, its file type kept in the inode table: fs/fifo.py); device and socket nodes
    are EPERM."""
    kind = u32(mode) & F.S_IFMT
    if kind not in (0, F.S_IFREG, F.S_IFIFO, F.S_IFCHR, F.S_IFBLK, ST.S_IFSOCK):
        raise GuestError(E.EPERM if kind == F.S_IFDIR else E.EINVAL)
    r = resolve_at(k, t, dirfd, path_arg(t, path), follow=False, must_exist=False)
    r.writable()
    if os.path.lexists(r.host):
        raise GuestError(E.EEXIST)
    if kind in (F.S_IFCHR, F.S_IFBLK, ST.S_IFSOCK):
        raise GuestError(E.EPERM, "the vkernel makes no device or socket nodes")
    k.host_fds.take()
    try:
        fd = k.root.host_open(r, os.O_CREAT | os.O_EXCL | os.O_WRONLY,
                              mode & ~t.process.umask & HOST_MODE_MASK)
    finally:
        k.host_fds.give()
    try:
        st = host_call(os.fstat, fd)
    finally:
        os.close(fd)
    k.inodes.touch(st, r.guest)
    k.inodes.mark(st, r.guest, F.S_IFIFO if kind == F.S_IFIFO else 0)
    return 0


def sys_mknod(k: VKernel, t: Thread, path: int, mode: int, dev: int) -> int:
    return sys_mknodat(k, t, F.AT_FDCWD, path, mode, dev)


# -- fallocate ---------------------------------------------------------------------------------
_FALLOC_MODES = (0, F.FALLOC_FL_KEEP_SIZE, F.FALLOC_FL_KEEP_SIZE | F.FALLOC_FL_PUNCH_HOLE)
MAX_FILE = (1 << 63) - 1


def sys_fallocate(k: VKernel, t: Thread, fd: int, mode: int, off: int, length: int) -> int:
    """Implement fallocate(2): modes 0, KEEP_SIZE and PUNCH_HOLE|KEEP_SIZE (EOPNOTSUPP for
    the others), in Linux's order of checks."""
    mode, off, length = s32(mode), s64(off), s64(length)
    if off < 0 or length <= 0:
        raise GuestError(E.EINVAL)
    if mode not in _FALLOC_MODES:
        raise GuestError(E.EOPNOTSUPP)
    f = t.process.fds.get(s32(fd))
    if not f.writable():
        raise GuestError(E.EBADF)
    if off + length > MAX_FILE:
        raise GuestError(E.EFBIG)
    f.allocate(mode, off, length)
    return 0


# -- chroot ------------------------------------------------------------------------------------
def sys_chroot(k: VKernel, t: Thread, path: int) -> int:
    """Implement chroot(2): the process's root becomes a directory inside the guest root
    (inherited by fork, kept by exec); its cwd stays where it is, as on Linux."""
    r = resolve_at(k, t, F.AT_FDCWD, path_arg(t, path))
    if not os.path.isdir(r.host):
        raise GuestError(E.ENOTDIR)
    t.process.root = r.guest
    return 0


# -- I/O priorities ----------------------------------------------------------------------------
IOPRIO_WHO_PROCESS, IOPRIO_WHO_PGRP, IOPRIO_WHO_USER = 1, 2, 3
IOPRIO_CLASS_NONE, IOPRIO_CLASS_IDLE, IOPRIO_CLASS_SHIFT = 0, 3, 13
#: What Linux reports for a process that set none, when asked for a group (best effort, nice 0).
IOPRIO_NICE0 = (2 << IOPRIO_CLASS_SHIFT) | 4


def _ioprio_procs(k: VKernel, t: Thread, which: int, who: int) -> list:
    """The vkernel processes an ioprio call names (ESRCH when none, EINVAL for which)."""
    who = s32(who)
    if which == IOPRIO_WHO_PROCESS:
        procs = [t.process] if who == 0 else [p for p in (k.procs.get(who),) if p]
    elif which == IOPRIO_WHO_PGRP:
        pgid = who or t.process.pgid
        procs = [p for p in k.procs.values() if p.pgid == pgid]
    elif which == IOPRIO_WHO_USER:
        procs = list(k.procs.values()) if who == 0 else []  # every guest runs as root
    else:
        raise GuestError(E.EINVAL)
    procs = [p for p in procs if not p.zombie]
    if not procs:
        raise GuestError(E.ESRCH)
    return procs


def sys_ioprio_get(k: VKernel, t: Thread, which: int, who: int) -> int:
    """Implement ioprio_get(2): a process's value as set (0 if none); for a group, the
    highest priority in it (a process without one counting as best effort at level 4)."""
    procs = _ioprio_procs(k, t, s32(which), who)
    if s32(which) == IOPRIO_WHO_PROCESS:
        return procs[0].ioprio
    return min((p.ioprio or IOPRIO_NICE0) for p in procs)


def sys_ioprio_set(k: VKernel, t: Thread, which: int, who: int, ioprio: int) -> int:
    """Implement ioprio_set(2) (virtual: nothing is scheduled by it)."""
    ioprio = u32(ioprio)
    cls, level = ioprio >> IOPRIO_CLASS_SHIFT, ioprio & 7
    if ioprio > 0xFFFF or cls > IOPRIO_CLASS_IDLE or cls == IOPRIO_CLASS_NONE and level:
        raise GuestError(E.EINVAL)
    for p in _ioprio_procs(k, t, s32(which), who):
        p.ioprio = ioprio
    return 0
