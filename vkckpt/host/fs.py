"""Host-side opens near a guest root: beneath a directory fd, never through a symlink.

Every file the vkernel itself creates or opens where a guest (or any host process) can change
the names -- guest files, checkpoint images, `--stats` files, their temporary files -- is
opened relative to a directory fd taken when the name was trusted, with the rule of
openat2(2) ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS``: no absolute
path, no ``..``, no symlink anywhere (ELOOP), so renaming a directory away and planting a
symlink in its place redirects nothing.  Where openat2 is missing (ENOSYS, or EPERM from a
seccomp filter) an equivalent walk opens one component at a time with ``O_NOFOLLOW``.

New files are written by :class:`AtomicFile`: unnamed (``O_TMPFILE``) until complete, then
linked under a hidden temporary name and renamed onto the final name inside the same
directory fd (a symlink planted at the final name is replaced, never followed).  Temporary
names start with :data:`TEMP_PREFIX`, which the guest sandbox hides and refuses, and carry the
owner's host pid and start time so that :func:`reclaim_temps` can remove those of dead runs.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import stat
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:  # the thaw path never imports typing (tests/test_startup.py)
    from collections.abc import Callable
    from typing import TypeVar

    T = TypeVar("T")

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
_RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
_SYS_OPENAT2 = 437  # x86-64
_OPEN_HOW = struct.Struct("QQQ")  # struct open_how: flags, mode, resolve
_O_TMPFILE = getattr(os, "O_TMPFILE", 0)  # includes O_DIRECTORY: test all its bits
_DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC

#: Names the vkernel reserves for its temporary files; hidden from and refused to guests.
TEMP_PREFIX = ".vkckpt-tmp."
_TEMP_RE = re.compile(r"\.vkckpt-tmp\.([1-9][0-9]{0,9})\.([0-9]{1,20})\.[0-9a-f]{16}\Z")

_openat2_works: bool | None = None  # None: not probed yet
_libc = None


def is_reserved(name: str) -> bool:
    """Whether a directory entry name is one of the vkernel's temporary names."""
    return name.startswith(TEMP_PREFIX)


def _names(path: str) -> list[str]:
    """The components of a relative path; EXDEV for an absolute path or any ``..``."""
    if path.startswith("/"):
        raise OSError(errno.EXDEV, "absolute path where a path beneath a directory is needed",
                      path)
    names = [n for n in path.split("/") if n and n != "."]
    if ".." in names:
        raise OSError(errno.EXDEV, "'..' in a path that must stay beneath its directory", path)
    return names


def _openat2(dir_fd: int, path: str, flags: int, mode: int) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    how = ctypes.create_string_buffer(_OPEN_HOW.pack(flags, mode, _RESOLVE), _OPEN_HOW.size)
    fd = _libc.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dir_fd),
                       ctypes.c_char_p(os.fsencode(path)), how, ctypes.c_size_t(_OPEN_HOW.size))
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)
    return fd


def _is_link_at(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _open_walk(dir_fd: int, path: str, flags: int, mode: int) -> int:
    """openat2's rule by hand: each directory opened O_PATH|O_NOFOLLOW from the previous."""
    names = _names(path) or ["."]
    cur = dir_fd
    try:
        for i, name in enumerate(names):
            last = i == len(names) - 1
            fl = (flags if last else _DIR_PATH) | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fd = os.open(name, fl, mode if last else 0, dir_fd=cur)
            except OSError as e:
                if e.errno == errno.ENOTDIR and _is_link_at(cur, name):
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path) from None
                raise
            if fl & os.O_PATH and stat.S_ISLNK(os.fstat(fd).st_mode):  # O_PATH opens links
                os.close(fd)
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            if cur != dir_fd:
                os.close(cur)
            cur = fd
        return cur
    except BaseException:
        if cur != dir_fd:
            os.close(cur)
        raise


def open_beneath(dir_fd: int, path: str, flags: int, mode: int = 0) -> int:
    """Open relative ``path`` beneath ``dir_fd`` without following any symlink; return the fd.

    Always close-on-exec.  Raises OSError: ELOOP for a symlink anywhere on the way (the
    final name included), EXDEV for an absolute path or ``..``, else what open(2) gives.
    """
    _names(path)
    creates = flags & os.O_CREAT or (_O_TMPFILE and flags & _O_TMPFILE == _O_TMPFILE)
    mode = mode if creates else 0  # openat2 refuses a mode it would not use
    flags |= os.O_CLOEXEC
    if openat2_available():
        return _openat2(dir_fd, path or ".", flags, mode)
    return _open_walk(dir_fd, path, flags, mode)


def openat2_available() -> bool:
    """Whether this host has openat2(2) with RESOLVE_BENEATH (probed on the root)."""
    global _openat2_works
    if _openat2_works is None:
        fd = os.open("/", _DIR_PATH)
        try:
            os.close(_openat2(fd, ".", _DIR_PATH, 0))
            _openat2_works = True
        except OSError as e:
            _openat2_works = e.errno not in (errno.ENOSYS, errno.EPERM)
        finally:
            os.close(fd)
    return _openat2_works


def open_dir(path: str | os.PathLike[str]) -> int:
    """An O_PATH fd of a directory the caller trusts as it is now (symlinks followed)."""
    return os.open(path, _DIR_PATH)


def split_output(path: str | os.PathLike[str]) -> tuple[str, str]:
    """(directory, final name) of a file path the vkernel will create; OSError if the final
    name cannot be one (empty, ``.``, ``..``, a trailing ``/`` or a reserved name)."""
    p = os.fsdecode(path)
    head, name = os.path.split(p)
    if not name or name in (".", "..") or is_reserved(name):
        raise OSError(errno.EINVAL, "not a name for a new file", p)
    return head or os.curdir, name


#: Directories pinned by live OutputPaths, by absolute path as named when they were pinned.
_pinned: dict[str, int] = {}


def pinned_dir(head: str) -> int | None:
    """The fd of directory ``head`` if an OutputPath pinned it (a later request naming the
    same directory, e.g. the control socket's default image, gets the start-up one)."""
    return _pinned.get(os.path.abspath(head))


class OutputPath:
    """A file the vkernel creates later, pinned now: its directory fd and final name.

    ``path`` is trusted as it is when this is made (its directory's symlinks are followed
    once, here); every later file is created beneath that fd, so renaming the directory
    away and planting a symlink redirects nothing.  Dead runs' temporary files in the
    directory are reclaimed now.  Raises OSError.
    """

    __slots__ = ("path", "head", "name", "dir_fd", "_key")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fsdecode(path)
        self.head, self.name = split_output(self.path)
        self.dir_fd = open_dir(self.head)
        self._key = os.path.abspath(self.head)
        _pinned.setdefault(self._key, self.dir_fd)
        reclaim_once(self.dir_fd)

    def sibling(self, name: str) -> str:
        """The display path of another file in the same directory."""
        return os.path.join(os.path.dirname(self.path), name)

    def close(self) -> None:
        fd, self.dir_fd = self.dir_fd, -1
        if fd >= 0:
            if _pinned.get(self._key) == fd:
                del _pinned[self._key]
            os.close(fd)


# -- temporary files --------------------------------------------------------------------


def _start_time(pid: int) -> int | None:
    """The start time of host process pid (clock ticks since boot), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        return int(data[data.rindex(b")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


_me: tuple[int, int] | None = None


def _owner() -> tuple[int, int]:
    global _me
    pid = os.getpid()
    if _me is None or _me[0] != pid:  # re-read after fork
        _me = (pid, _start_time(pid) or 0)
    return _me


def temp_name() -> str:
    """A fresh temporary name: the prefix, our pid and start time, 64 random bits."""
    pid, start = _owner()
    return f"{TEMP_PREFIX}{pid}.{start}.{os.urandom(8).hex()}"


def pid_alive(pid: int) -> bool:
    """Whether host process pid may exist: False only when kill(pid, 0) says ESRCH (EPERM:
    it exists; any other answer, or a pid too large for the host: leave its files alone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True
    return True


def _owner_dead(pid: int, start: int) -> bool:
    if pid == os.getpid():
        return False
    now = _start_time(pid)
    if now is None:
        return not pid_alive(pid)
    return start != 0 and now != start  # the pid was reused by another process


def reclaim_temps(dir_fd: int) -> list[str]:
    """Remove the temporary files that dead vkckpt runs left in a directory; their names.

    Only names of exactly our scheme, regular files owned by our uid, whose owner pid is
    gone (or now belongs to a process started later) are removed; anything else stays.
    """
    try:
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return []
    removed = []
    try:
        with os.scandir(fd) as it:
            names = [e.name for e in it if _TEMP_RE.match(e.name)]
        for name in names:
            m = _TEMP_RE.match(name)
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue
            if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid()
                    or not _owner_dead(int(m.group(1)), int(m.group(2)))):
                continue
            try:
                os.unlink(name, dir_fd=fd)
            except FileNotFoundError:
                continue
            removed.append(name)
    finally:
        os.close(fd)
    return removed


_reclaimed: set[tuple[int, int]] = set()


def reclaim_once(dir_fd: int) -> None:
    """reclaim_temps the first time this process uses a directory (by device and inode)."""
    try:
        st = os.fstat(dir_fd)
    except OSError:
        return
    key = (st.st_dev, st.st_ino)
    if key not in _reclaimed:
        _reclaimed.add(key)
        reclaim_temps(dir_fd)


def _use_tmpfile() -> bool:
    return (hasattr(os, "O_TMPFILE") and os.environ.get("VKCKPT_TMPFILE", "1") != "0"
            and os.path.isdir("/proc/self/fd"))


def _under_fresh_name(make: Callable[[str], T]) -> tuple[str, T]:
    """Call make(name) with fresh temporary names until one does not exist yet; (that name,
    what make returned)."""
    while True:
        name = temp_name()
        try:
            return name, make(name)
        except FileExistsError:
            continue


class AtomicFile:
    """A new file in a directory fd that appears at its final name complete or not at all.

    The data goes to an unnamed ``O_TMPFILE`` inode (nothing to clean up if the process is
    killed) or, where the file system has none, to a fresh hidden temporary name opened
    ``O_CREAT|O_EXCL|O_NOFOLLOW``.  :meth:`publish` renames it onto ``name`` within the
    directory.  The caller keeps ``dir_fd`` open until publish or discard.
    """

    __slots__ = ("dir_fd", "name", "fd", "temp")

    def __init__(self, dir_fd: int, name: str, mode: int = 0o666) -> None:
        self.dir_fd = dir_fd
        self.name = name
        self.temp: str | None = None  # the temporary name, once the file has one
        reclaim_once(dir_fd)
        if _use_tmpfile():
            try:
                self.fd = os.open(".", os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, mode,
                                  dir_fd=dir_fd)
                return
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                    raise
        self.fd = self._create_named(mode)

    def _create_named(self, mode: int) -> int:
        flags = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_RDWR | os.O_CLOEXEC
        self.temp, fd = _under_fresh_name(lambda n: os.open(n, flags, mode, dir_fd=self.dir_fd))
        return fd

    def publish(self) -> None:
        """Give the (complete, synced) file its final name, replacing whatever is there."""
        if self.temp is None:
            self.temp, _ = _under_fresh_name(lambda n: os.link(
                f"/proc/self/fd/{self.fd}", n, dst_dir_fd=self.dir_fd, follow_symlinks=True))
        os.rename(self.temp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        self.temp = None

    def close(self) -> None:
        """Close the file (after publish: done; before: the unnamed data is freed)."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def discard(self) -> None:
        """Close and remove the temporary file; the final name is untouched.  Idempotent."""
        try:
            self.close()
        finally:
            if self.temp is not None:
                name, self.temp = self.temp, None
                try:
                    os.unlink(name, dir_fd=self.dir_fd)
                except FileNotFoundError:
                    pass


def write_atomic(dir_fd: int, name: str, data: bytes, mode: int = 0o666) -> None:
    """Write a small file atomically under ``name`` in ``dir_fd`` (fsynced before rename)."""
    f = AtomicFile(dir_fd, name, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(f.fd, view):]
        os.fsync(f.fd)
        f.publish()
    except BaseException:
        f.discard()
        raise
    f.close()


def unnamed_file(dir_fd: int, mode: int = 0o600) -> int:
    """A new read-write file in dir_fd that has no name: ``O_TMPFILE``, or where the file
    system has none a fresh hidden temporary name unlinked at once (a thawed ghost file)."""
    if _use_tmpfile():
        try:
            return os.open(".", os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, mode, dir_fd=dir_fd)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
    flags = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_RDWR | os.O_CLOEXEC
    name, fd = _under_fresh_name(lambda n: os.open(n, flags, mode, dir_fd=dir_fd))
    os.unlink(name, dir_fd=dir_fd)
    return fd
