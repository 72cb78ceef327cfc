"""Advisory locks: fcntl(2)'s record-lock commands (POSIX and OFD) and flock(2).

The locks themselves are fs/locks.py's, vkernel-wide; these handlers decode struct flock
and the flock operation as Linux's fcntl_getlk/fcntl_setlk and sys_flock do, errors in
Linux's order.
"""

from __future__ import annotations

import struct

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.errors import GuestError
from vkckpt.fs.locks import FileLock, inode_of
from vkckpt.syscalls.args import s32, u32

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.ops import OpenFile
    from vkckpt.kernel import VKernel
    from vkckpt.threads.thread import Thread

LOCK_CMDS = (F.F_GETLK, F.F_SETLK, F.F_SETLKW, F.F_OFD_GETLK, F.F_OFD_SETLK, F.F_OFD_SETLKW)
_OFD = (F.F_OFD_GETLK, F.F_OFD_SETLK, F.F_OFD_SETLKW)
_FLOCK_TYPES = {F.LOCK_SH: F.F_RDLCK, F.LOCK_EX: F.F_WRLCK, F.LOCK_UN: F.F_UNLCK}


def _range(f: OpenFile, size: int, whence: int, start: int, length: int) -> tuple[int, int]:
    """The inclusive byte range a struct flock names (Linux's flock_to_posix_lock)."""
    if whence == F.SEEK_SET:
        base = 0
    elif whence == F.SEEK_CUR:
        try:
            base = f.seek(0, F.SEEK_CUR) if f.seekable else 0
        except GuestError:
            base = 0
    elif whence == F.SEEK_END:
        base = size
    else:
        raise GuestError(E.EINVAL)
    if start > F.OFFSET_MAX - base:
        raise GuestError(E.EOVERFLOW)
    start += base
    if start < 0:
        raise GuestError(E.EINVAL)
    if length > 0:
        if length - 1 > F.OFFSET_MAX - start:
            raise GuestError(E.EOVERFLOW)
        return start, start + length - 1
    if length < 0:
        if start + length < 0:
            raise GuestError(E.EINVAL)
        return start + length, start - 1
    return start, F.OFFSET_MAX


def fcntl_lock(k: VKernel, t: Thread, f: OpenFile, cmd: int, arg: int) -> int:
    """Implement fcntl(2)'s F_GETLK/F_SETLK/F_SETLKW and their F_OFD_ forms."""
    vm = t.process.vm
    raw = vm.read(arg, F.FLOCK_SIZE)
    typ, whence, start, length, pid = struct.unpack(F.FLOCK_FORMAT, raw)
    getlk = cmd in (F.F_GETLK, F.F_OFD_GETLK)
    if getlk and typ not in (F.F_RDLCK, F.F_WRLCK):
        raise GuestError(E.EINVAL)
    key, size = inode_of(f)
    start, end = _range(f, size, whence, start, length)
    if typ not in (F.F_RDLCK, F.F_WRLCK, F.F_UNLCK):
        raise GuestError(E.EINVAL)
    if not getlk and (typ == F.F_RDLCK and not f.readable() or
                      typ == F.F_WRLCK and not f.writable()):
        raise GuestError(E.EBADF)
    ofd = cmd in _OFD
    if ofd and pid != 0:
        raise GuestError(E.EINVAL)
    req = FileLock(f if ofd else t.process.pid, -1 if ofd else t.process.pid, typ, start, end)
    if not getlk:
        waiter = t if cmd in (F.F_SETLKW, F.F_OFD_SETLKW) else None
        k.locks.set_posix(key, req, waiter)
        return 0
    out = bytearray(raw)
    c = k.locks.test(key, req)
    if c is None:
        struct.pack_into("<h", out, 0, F.F_UNLCK)
    else:
        struct.pack_into("<hh", out, 0, c.type, F.SEEK_SET)
        n = 0 if c.end == F.OFFSET_MAX else c.end - c.start + 1
        struct.pack_into("<qqi", out, 8, c.start, n, c.pid)
    vm.write(arg, bytes(out))
    return 0


def sys_flock(k: VKernel, t: Thread, fd: int, cmd: int) -> int:
    """Implement flock(2): LOCK_SH/LOCK_EX/LOCK_UN, LOCK_NB (EWOULDBLOCK on a conflict);
    LOCK_MAND is ignored as Linux >= 5.15 does, before the descriptor is looked at."""
    if u32(cmd) & F.LOCK_MAND:
        return 0
    typ = _FLOCK_TYPES.get(u32(cmd) & ~F.LOCK_NB)
    if typ is None:
        raise GuestError(E.EINVAL)
    f = t.process.fds.get(s32(fd))
    k.locks.flock(inode_of(f)[0], f, typ, bool(u32(cmd) & F.LOCK_NB))
    return 0
