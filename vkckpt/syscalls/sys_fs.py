"""Path operations inside the guest root: open, stat, directories, links, cwd."""

from __future__ import annotations

import functools
import os
import struct

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.errors import GuestError
from vkckpt.fs.fdlinks import fd_link
from vkckpt.fs.files import DEVICES, DirFile, HostFile, host_call
from vkckpt.fs.overlay_dir import dir_file
from vkckpt.fs.procfs import Redirect
from vkckpt.fs.sandbox import Resolved
from vkckpt.syscalls import procpaths
from vkckpt.syscalls.args import path_arg, s32
from vkckpt.syscalls.fifo_open import open_fifo
from vkckpt.syscalls.sys_mm import files_resized

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel
    from vkckpt.threads.thread import Thread

# Modes reach the host without set-user/group-ID bits: a guest (perhaps run by root) must not
# plant set-ID programs of its choosing in a host directory.
HOST_MODE_MASK = 0o1777

_OPEN_PASS = F.O_ACCMODE | F.O_CREAT | F.O_EXCL | F.O_TRUNC | F.O_APPEND | F.O_NONBLOCK | \
    F.O_DIRECTORY | F.O_NOFOLLOW | F.O_DSYNC


def _base(k: VKernel, t: Thread, dirfd: int, path: bytes) -> str:
    """The guest directory a relative path starts from (cwd or an open directory)."""
    if path.startswith(b"/") or dirfd == F.AT_FDCWD:
        return t.process.cwd
    return t.process.fds.get(dirfd).dir_path()


def proc_at(k: VKernel, t: Thread, dirfd: int, path: bytes, follow: bool = True):  # noqa: ANN201
    """The /proc node or Redirect path names (procpaths.find), None outside /proc."""
    if not path:
        return None
    return procpaths.find(k, t, _base(k, t, s32(dirfd), path), path, follow)


def resolve_at(k: VKernel, t: Thread, dirfd: int, path: bytes, follow: bool = True,
               must_exist: bool = True, top: str | None = None) -> Resolved:
    """Resolve path relative to dirfd within the guest root, absolute paths from the
    process's root (chroot(2)) unless top names another."""
    if not path:
        raise GuestError(E.ENOENT)
    return k.root.resolve(os.fsdecode(path), _base(k, t, s32(dirfd), path), follow=follow,
                          must_exist=must_exist, top=t.process.root if top is None else top)


def open_at(k: VKernel, t: Thread, dirfd: int, path: bytes, flags: int, mode: int,
            top: str | None = None) -> int:
    """Implement openat(2) for files, directories and the vkernel's devices."""
    guest = os.fsdecode(path)
    cloexec = bool(flags & F.O_CLOEXEC)
    n = fd_link(guest)
    if n is not None:
        return _open_fd_link(k, t, n, flags, mode)
    if guest in DEVICES:
        dev = DEVICES[guest](flags & F.O_ACCMODE, k.file_services())
        return t.process.fds.install(dev, cloexec)
    proc = proc_at(k, t, dirfd, path, follow=not flags & F.O_NOFOLLOW)
    if isinstance(proc, Redirect):
        return open_at(k, t, F.AT_FDCWD, os.fsencode(proc.path), flags, mode)
    if proc is not None:
        return procpaths.open_proc(t, proc, flags)
    creat = bool(flags & F.O_CREAT)
    r = resolve_at(k, t, dirfd, path, follow=not flags & F.O_NOFOLLOW, must_exist=not creat,
                   top=top)
    if os.path.isdir(r.host) and not os.path.islink(r.host):
        if flags & F.O_ACCMODE != F.O_RDONLY or creat:
            raise GuestError(E.EISDIR)
        fd = _host_open(k, r, os.O_RDONLY | os.O_DIRECTORY)
        return _install(t, dir_file(r, fd, flags & _OPEN_PASS, k.inodes, k.host_fds), cloexec)
    if flags & F.O_DIRECTORY:
        raise GuestError(E.ENOTDIR)
    existed = os.path.lexists(r.host)
    st = os.lstat(r.host) if existed else None
    kind = k.inodes.kind(st) if st is not None else 0
    if kind and creat and flags & F.O_EXCL:
        raise GuestError(E.EEXIST)
    if kind == F.S_IFSOCK:  # a socket inode opens as on Linux: no
        raise GuestError(E.ENXIO)
    if kind == F.S_IFIFO:  # a named FIFO's placeholder
        return open_fifo(k, t, r, k.inodes.vino(st, r.guest), flags)
    fd = _host_open(k, r, flags & _OPEN_PASS & ~F.O_NOFOLLOW,
                    mode & ~t.process.umask & HOST_MODE_MASK)
    f = HostFile(fd, flags & _OPEN_PASS, r.guest, k.inodes, k.host_fds)
    if not existed or flags & F.O_TRUNC:
        f.touched()
        files_resized(k)
    return _install(t, f, cloexec)


def _open_fd_link(k: VKernel, t: Thread, n: int, flags: int, mode: int) -> int:
    """Open /dev/fd/N (fs/fdlinks.py): a guest-root file anew, anything else shared."""
    try:
        f = t.process.fds.get(n)
    except GuestError:
        raise GuestError(E.ENOENT) from None  # no such entry in /proc/self/fd
    if isinstance(f, HostFile):
        return open_at(k, t, F.AT_FDCWD, os.fsencode(f.guest_path), flags & ~F.O_CREAT, mode,
                       top="/")  # a guest-root path, whatever the caller's root
    return t.process.fds.install(f, bool(flags & F.O_CLOEXEC))


def _host_open(k: VKernel, r: Resolved, flags: int, mode: int = 0o666) -> int:
    """GuestRoot.host_open within the guests' host-descriptor budget (ENFILE when spent)."""
    k.host_fds.take()
    try:
        return k.root.host_open(r, flags, mode)
    except BaseException:
        k.host_fds.give()
        raise


def _install(t: Thread, f: HostFile, cloexec: bool) -> int:
    """Give f a descriptor; with none free (EMFILE) its host descriptor is closed again."""
    try:
        return t.process.fds.install(f, cloexec)
    except GuestError:
        f.release()
        raise


def sys_openat(k: VKernel, t: Thread, dirfd: int, path: int, flags: int, mode: int) -> int:
    return open_at(k, t, dirfd, path_arg(t, path), flags, mode)


def sys_open(k: VKernel, t: Thread, path: int, flags: int, mode: int) -> int:
    return open_at(k, t, F.AT_FDCWD, path_arg(t, path), flags, mode)


def sys_creat(k: VKernel, t: Thread, path: int, mode: int) -> int:
    return open_at(k, t, F.AT_FDCWD, path_arg(t, path), F.O_CREAT | F.O_WRONLY | F.O_TRUNC,
                   mode)


def stat_path(k: VKernel, t: Thread, dirfd: int, path: bytes, flags: int) -> bytes:
    if not path and flags & F.AT_EMPTY_PATH:
        return t.process.fds.get(s32(dirfd)).stat()
    guest = os.fsdecode(path)
    n = fd_link(guest)
    if n is not None and not flags & F.AT_SYMLINK_NOFOLLOW:
        try:
            return t.process.fds.get(n).stat()
        except GuestError:
            raise GuestError(E.ENOENT) from None
    if guest in DEVICES:
        return DEVICES[guest](0, k.file_services()).stat()
    follow = not flags & F.AT_SYMLINK_NOFOLLOW
    proc = proc_at(k, t, dirfd, path, follow)
    if isinstance(proc, Redirect):
        return stat_path(k, t, F.AT_FDCWD, os.fsencode(proc.path), flags)
    if proc is not None:
        return procpaths.stat_proc(proc, follow)
    r = resolve_at(k, t, dirfd, path, follow=not flags & F.AT_SYMLINK_NOFOLLOW)
    return k.inodes.stat_bytes(host_call(os.lstat, r.host), r.guest)


def sys_newfstatat(k: VKernel, t: Thread, dirfd: int, path: int, buf: int, flags: int) -> int:
    data = stat_path(k, t, dirfd, t.process.vm.read_cstr(path), flags)
    t.process.vm.write(buf, data)
    return 0


def sys_stat(k: VKernel, t: Thread, path: int, buf: int) -> int:
    return sys_newfstatat(k, t, F.AT_FDCWD, path, buf, 0)


def sys_lstat(k: VKernel, t: Thread, path: int, buf: int) -> int:
    return sys_newfstatat(k, t, F.AT_FDCWD, path, buf, F.AT_SYMLINK_NOFOLLOW)


def sys_faccessat(k: VKernel, t: Thread, dirfd: int, path: int, mode: int) -> int:
    return _access(k, t, dirfd, path_arg(t, path), mode)


def _access(k: VKernel, t: Thread, dirfd: int, p: bytes, mode: int) -> int:
    if os.fsdecode(p) in DEVICES:
        return 0
    proc = proc_at(k, t, dirfd, p)
    if isinstance(proc, Redirect):
        return _access(k, t, F.AT_FDCWD, os.fsencode(proc.path), mode)
    if proc is not None:
        return procpaths.access_proc(proc, mode)
    r = resolve_at(k, t, dirfd, p)
    st = host_call(os.stat, r.host)
    want = mode & 7
    if want & 1 and not st.st_mode & 0o111 and not os.path.isdir(r.host):
        raise GuestError(E.EACCES)
    return 0


def sys_faccessat2(k: VKernel, t: Thread, dirfd: int, path: int, mode: int, flags: int) -> int:
    return sys_faccessat(k, t, dirfd, path, mode)


def sys_access(k: VKernel, t: Thread, path: int, mode: int) -> int:
    return sys_faccessat(k, t, F.AT_FDCWD, path, mode)


def sys_mkdirat(k: VKernel, t: Thread, dirfd: int, path: int, mode: int) -> int:
    r = resolve_at(k, t, dirfd, path_arg(t, path), follow=False, must_exist=False)
    r.writable()
    host_call(os.mkdir, r.host, mode & ~t.process.umask & HOST_MODE_MASK)
    return 0


def sys_mkdir(k: VKernel, t: Thread, path: int, mode: int) -> int:
    return sys_mkdirat(k, t, F.AT_FDCWD, path, mode)


def sys_unlinkat(k: VKernel, t: Thread, dirfd: int, path: int, flags: int) -> int:
    r = resolve_at(k, t, dirfd, path_arg(t, path), follow=False)
    if r.guest == "/":
        raise GuestError(E.EBUSY)
    r.writable(moves=True)
    if flags & F.AT_REMOVEDIR:
        host_call(k.root.rmdir, r)
    else:
        if os.path.isdir(r.host) and not os.path.islink(r.host):
            raise GuestError(E.EISDIR)
        st = host_call(os.lstat, r.host)
        host_call(k.root.unlink, r)
        if st.st_nlink == 1:  # the host may give its inode number to the next new file
            k.inodes.forget_meta(st)  # (a socket's or FIFO's file type goes with it)
    return 0


def sys_unlink(k: VKernel, t: Thread, path: int) -> int:
    return sys_unlinkat(k, t, F.AT_FDCWD, path, 0)


def sys_rmdir(k: VKernel, t: Thread, path: int) -> int:
    return sys_unlinkat(k, t, F.AT_FDCWD, path, F.AT_REMOVEDIR)


def sys_renameat2(k: VKernel, t: Thread, od: int, old: int, nd: int, new: int,
                  flags: int = 0) -> int:
    if flags:
        raise GuestError(E.EINVAL)
    # Linux's order: the old parent, then the new name and parent, then the old entry itself
    a = resolve_at(k, t, od, path_arg(t, old), follow=False, must_exist=False)
    b = resolve_at(k, t, nd, path_arg(t, new), follow=False, must_exist=False)
    if not os.path.lexists(a.host):
        raise GuestError(E.ENOENT)
    if a.guest == "/" or b.guest == "/":
        raise GuestError(E.EBUSY)
    a.writable(b, moves=True)
    gone = os.lstat(b.host) if os.path.lexists(b.host) else None
    host_call(k.root.rename, a, b)
    if gone is not None and gone.st_nlink == 1 and not os.path.samestat(gone, os.lstat(b.host)):
        k.inodes.forget_meta(gone)  # the replaced file's last name
    k.inodes.moved(host_call(os.lstat, b.host), b.guest)
    _follow_rename(k, a.guest, b.guest, a.host, b.host)
    return 0


def _moved(path: str, old: str, new: str) -> str:
    return new + path[len(old):] if path == old or path.startswith(old + "/") else path


def _follow_rename(k: VKernel, old: str, new: str, old_host: str, new_host: str) -> None:
    """Open files, working directories and roots name what they name by its new path after a
    rename, as Linux's dentries do (readlink of /proc/PID/fd/N, getcwd)."""
    for p in k.procs.values():
        p.cwd, p.root = _moved(p.cwd, old, new), _moved(p.root, old, new)
        for f, _ in p.fds.fds.values():
            if isinstance(f, HostFile):
                f.guest_path = _moved(f.guest_path, old, new)
            if isinstance(f, DirFile):
                f.host_path = _moved(f.host_path, old_host, new_host)


def sys_renameat(k: VKernel, t: Thread, od: int, old: int, nd: int, new: int) -> int:
    return sys_renameat2(k, t, od, old, nd, new)


def sys_rename(k: VKernel, t: Thread, old: int, new: int) -> int:
    return sys_renameat2(k, t, F.AT_FDCWD, old, F.AT_FDCWD, new)


def sys_symlinkat(k: VKernel, t: Thread, target: int, dirfd: int, path: int) -> int:
    """Create a symlink; its target is only ever interpreted by our own resolver."""
    tgt = path_arg(t, target)
    r = resolve_at(k, t, dirfd, path_arg(t, path), follow=False, must_exist=False)
    r.writable()
    host_call(os.symlink, tgt, r.host)
    return 0


def sys_symlink(k: VKernel, t: Thread, target: int, path: int) -> int:
    return sys_symlinkat(k, t, target, F.AT_FDCWD, path)


def sys_readlinkat(k: VKernel, t: Thread, dirfd: int, path: int, buf: int, size: int) -> int:
    if s32(size) <= 0:
        raise GuestError(E.EINVAL)
    data = _readlink(k, t, dirfd, path_arg(t, path))[: s32(size)]
    t.process.vm.write(buf, data)
    return len(data)


def _readlink(k: VKernel, t: Thread, dirfd: int, p: bytes) -> bytes:
    proc = proc_at(k, t, dirfd, p, follow=False)
    if isinstance(proc, Redirect):
        return _readlink(k, t, F.AT_FDCWD, os.fsencode(proc.path))
    if proc is not None:
        return procpaths.readlink_proc(proc)
    r = resolve_at(k, t, dirfd, p, follow=False)
    if not os.path.islink(r.host):
        raise GuestError(E.EINVAL)
    return os.fsencode(host_call(os.readlink, r.host))


def sys_readlink(k: VKernel, t: Thread, path: int, buf: int, size: int) -> int:
    return sys_readlinkat(k, t, F.AT_FDCWD, path, buf, size)


def sys_linkat(k: VKernel, t: Thread, od: int, old: int, nd: int, new: int, flags: int) -> int:
    a = resolve_at(k, t, od, path_arg(t, old), follow=False)
    b = resolve_at(k, t, nd, path_arg(t, new), follow=False, must_exist=False)
    b.writable(a)
    if os.path.islink(a.host):
        raise GuestError(E.EPERM, "hard links to symlinks are refused")
    host_call(functools.partial(os.link, follow_symlinks=False), a.host, b.host)
    return 0


def sys_link(k: VKernel, t: Thread, old: int, new: int) -> int:
    return sys_linkat(k, t, F.AT_FDCWD, old, F.AT_FDCWD, new, 0)


def cwd_seen(cwd: str, root: str) -> str:
    """The cwd as getcwd(2) shows it to a process whose root is root: relative to it, or
    prefixed "(unreachable)" when outside it, as Linux."""
    if root == "/":
        return cwd
    if cwd == root or cwd.startswith(root + "/"):
        return cwd[len(root):] or "/"
    return "(unreachable)" + cwd


def sys_getcwd(k: VKernel, t: Thread, buf: int, size: int) -> int:
    cwd = os.fsencode(cwd_seen(t.process.cwd, t.process.root)) + b"\0"
    if len(cwd) > size:
        raise GuestError(E.ERANGE)
    t.process.vm.write(buf, cwd)
    return len(cwd)


def sys_chdir(k: VKernel, t: Thread, path: int) -> int:
    p = path_arg(t, path)
    proc = proc_at(k, t, F.AT_FDCWD, p)
    if proc is not None and not isinstance(proc, Redirect):
        if not proc.is_dir:
            raise GuestError(E.ENOTDIR)
        t.process.cwd = proc.path.rstrip("/")
        return 0
    r = resolve_at(k, t, F.AT_FDCWD, p if proc is None else os.fsencode(proc.path))
    if not os.path.isdir(r.host):
        raise GuestError(E.ENOTDIR)
    t.process.cwd = r.guest
    return 0


def sys_fchdir(k: VKernel, t: Thread, fd: int) -> int:
    t.process.cwd = t.process.fds.get(s32(fd)).dir_path()
    return 0


def sys_statfs(k: VKernel, t: Thread, path: int, buf: int) -> int:
    p = path_arg(t, path)
    proc = proc_at(k, t, F.AT_FDCWD, p)
    if proc is not None and not isinstance(proc, Redirect):
        fs = struct.pack("<qqQQQQQ", procpaths.PROC_SUPER_MAGIC, 4096, 0, 0, 0, 0, 0)
    else:
        resolve_at(k, t, F.AT_FDCWD, p if proc is None else os.fsencode(proc.path))
        fs = struct.pack("<qqQQQQQ", 0xEF53, 4096, 1 << 20, 1 << 19, 1 << 19, 1 << 16, 1 << 15)
    t.process.vm.write(buf, fs.ljust(120, b"\0"))
    return 0
