"""Extended attributes: get/set/list/remove on paths (following or not) and descriptors.

Attributes live in the inode table (fs/inode_meta.py), never on the host; the vkernel's own
files (pipes, the console, devices) have none and take none.
"""

from __future__ import annotations

import os

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.errors import GuestError
from vkckpt.fs.files import DEVICES, HostFile, host_call
from vkckpt.fs.inode_meta import InodeMeta, check_name
from vkckpt.syscalls.args import path_arg, s32
from vkckpt.syscalls.sys_fs import resolve_at

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel
    from vkckpt.threads.thread import Thread


def _name(t: Thread, addr: int) -> bytes:
    """The attribute name argument (ERANGE past XATTR_NAME_MAX, as Linux)."""
    try:
        return t.process.vm.read_cstr(addr, F.XATTR_NAME_MAX + 1)
    except GuestError as exc:
        if exc.errno == E.ENAMETOOLONG:
            raise GuestError(E.ERANGE) from None
        raise


def inode_of(k: VKernel, t: Thread, path: int, follow: bool, fd: int | None = None,
             write: bool = False) -> tuple[InodeMeta | None, int]:
    """(metadata, st_mode) of the file named by path (or open as fd); metadata None for
    the vkernel's own files.  write: the call changes the file (EROFS on a read-only bind)."""
    if fd is not None:
        f = t.process.fds.get(s32(fd))
        if not isinstance(f, HostFile):
            return None, F.S_IFIFO
        if write:
            k.root.writable_path(f.guest_path)
        st = host_call(os.fstat, f.fd)
        return k.inodes.meta_of(st, f.guest_path), k.inodes.mode(st)
    p = path_arg(t, path)
    if os.fsdecode(p) in DEVICES:
        return None, F.S_IFCHR
    r = resolve_at(k, t, F.AT_FDCWD, p, follow=follow)
    if write:
        r.writable()
    st = host_call(os.lstat, r.host)
    return k.inodes.meta_of(st, r.guest), k.inodes.mode(st)


def _out(t: Thread, buf: int, size: int, data: bytes) -> int:
    """The value-or-list result convention: size 0 asks the length; too small is ERANGE."""
    if size == 0:
        return len(data)
    if len(data) > size:
        raise GuestError(E.ERANGE)
    t.process.vm.write(buf, data)
    return len(data)


def _get(k: VKernel, t: Thread, path: int, name: int, value: int, size: int, follow: bool,
         fd: int | None = None) -> int:
    """Implement getxattr(2), lgetxattr(2) and fgetxattr(2)."""
    meta, mode = inode_of(k, t, path, follow, fd)
    n = _name(t, name)
    if meta is None:
        check_name(n, mode, write=False)
        raise GuestError(E.ENODATA)
    return _out(t, value, min(size, F.XATTR_SIZE_MAX), meta.getxattr(n, mode))


def _set(k: VKernel, t: Thread, path: int, name: int, value: int, size: int, flags: int,
         follow: bool, fd: int | None = None) -> int:
    """Implement setxattr(2), lsetxattr(2) and fsetxattr(2)."""
    if size > F.XATTR_SIZE_MAX:
        raise GuestError(E.E2BIG)
    meta, mode = inode_of(k, t, path, follow, fd, write=True)
    n = _name(t, name)
    data = t.process.vm.read(value, size) if size else b""
    if meta is None:
        check_name(n, mode, write=True)
        raise GuestError(E.EPERM)
    meta.setxattr(n, data, s32(flags), mode)
    return 0


def _list(k: VKernel, t: Thread, path: int, buf: int, size: int, follow: bool,
          fd: int | None = None) -> int:
    """Implement listxattr(2), llistxattr(2) and flistxattr(2)."""
    meta, mode = inode_of(k, t, path, follow, fd)
    return _out(t, buf, min(size, F.XATTR_LIST_MAX), meta.listxattr(mode) if meta else b"")


def _remove(k: VKernel, t: Thread, path: int, name: int, follow: bool,
            fd: int | None = None) -> int:
    """Implement removexattr(2), lremovexattr(2) and fremovexattr(2)."""
    meta, mode = inode_of(k, t, path, follow, fd, write=True)
    n = _name(t, name)
    if meta is None:
        check_name(n, mode, write=True)
        raise GuestError(E.ENODATA)
    meta.removexattr(n, mode)
    return 0


def sys_getxattr(k: VKernel, t: Thread, path: int, name: int, value: int, size: int) -> int:
    return _get(k, t, path, name, value, size, True)


def sys_lgetxattr(k: VKernel, t: Thread, path: int, name: int, value: int, size: int) -> int:
    return _get(k, t, path, name, value, size, False)


def sys_fgetxattr(k: VKernel, t: Thread, fd: int, name: int, value: int, size: int) -> int:
    return _get(k, t, 0, name, value, size, True, fd)


def sys_setxattr(k: VKernel, t: Thread, path: int, name: int, value: int, size: int,
                 flags: int) -> int:
    return _set(k, t, path, name, value, size, flags, True)


def sys_lsetxattr(k: VKernel, t: Thread, path: int, name: int, value: int, size: int,
                  flags: int) -> int:
    return _set(k, t, path, name, value, size, flags, False)


def sys_fsetxattr(k: VKernel, t: Thread, fd: int, name: int, value: int, size: int,
                  flags: int) -> int:
    return _set(k, t, 0, name, value, size, flags, True, fd)


def sys_listxattr(k: VKernel, t: Thread, path: int, buf: int, size: int) -> int:
    return _list(k, t, path, buf, size, True)


def sys_llistxattr(k: VKernel, t: Thread, path: int, buf: int, size: int) -> int:
    return _list(k, t, path, buf, size, False)


def sys_flistxattr(k: VKernel, t: Thread, fd: int, buf: int, size: int) -> int:
    return _list(k, t, 0, buf, size, True, fd)


def sys_removexattr(k: VKernel, t: Thread, path: int, name: int) -> int:
    return _remove(k, t, path, name, True)


def sys_lremovexattr(k: VKernel, t: Thread, path: int, name: int) -> int:
    return _remove(k, t, path, name, False)


def sys_fremovexattr(k: VKernel, t: Thread, fd: int, name: int) -> int:
    return _remove(k, t, 0, name, True, fd)
