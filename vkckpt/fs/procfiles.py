"""Open /proc files and directories: read-only snapshots generated when they are opened.

Linux generates a /proc file at each read; the vkernel generates it once, at open, so a
description holds plain bytes and an offset (what an image saves, fs/proc_state.py), and a
thaw gives the guest exactly what it would have read.  A directory holds its listing, made
at open the same way.  Identity: one device (PROC_DEV), inode numbers derived from the path.
"""

from __future__ import annotations

import zlib

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.abi.stat import pack_stat
from vkckpt.errors import GuestError
from vkckpt.fs.files import pack_dirents
from vkckpt.fs.ops import OpenFile
from vkckpt.vclock import EPOCH_NS

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable

PROC_DEV = 0x16  # st_dev of every /proc entry (0:22, as on many Linux systems)
PROC_ROOT_INO = 1
#: Inodes of /proc entries: the path's CRC above this base, so they never meet the root's.
_INO_BASE = 1 << 40
_BOOT = EPOCH_NS / 1e9  # every /proc entry's times: the vkernel's boot


def proc_ino(path: str) -> int:
    """The inode number of a /proc path (stable across runs and thaws)."""
    return PROC_ROOT_INO if path == "/proc" else _INO_BASE + zlib.crc32(path.encode())


def proc_stat(path: str, mode: int, size: int = 0, nlink: int = 1) -> bytes:
    """struct stat of a /proc entry (st_size 0 for generated files, as Linux's)."""
    return pack_stat(PROC_DEV, proc_ino(path), mode, nlink, 0, 0, 0, size, 1024, 0,
                     _BOOT, _BOOT, _BOOT)


def dtype_of(mode: int) -> int:
    fmt = mode & F.S_IFMT
    return F.DT_DIR if fmt == F.S_IFDIR else F.DT_LNK if fmt == F.S_IFLNK else F.DT_REG


class ProcFile(OpenFile):
    """A generated /proc file: its bytes as they were at open, read at an offset."""

    kind = "proc"
    seekable = True

    def __init__(self, flags: int, path: str, data: bytes, mode: int, pos: int = 0) -> None:
        super().__init__(flags)
        self.path = path  # the guest path it was opened by ("/proc/1/status")
        self.data = data
        self.mode = mode  # S_IFREG | permissions, for fstat
        self.pos = pos

    def read(self, n: int) -> bytes:
        out = self.pread(n, self.pos)
        self.pos += len(out)
        return out

    def pread(self, n: int, off: int) -> bytes:
        if off < 0:
            raise GuestError(E.EINVAL)
        return self.data[off:off + n]

    def write(self, data: bytes) -> int:
        raise GuestError(E.EINVAL)  # no write method: Linux's vfs_write says EINVAL

    def pwrite(self, data: bytes, off: int) -> int:
        raise GuestError(E.EINVAL)

    def read_fit(self, room: int, want: int, off: int | None) -> int:
        if room or (self.pos if off is None else off) >= len(self.data):
            return room
        raise GuestError(E.EFAULT)

    def seek(self, off: int, whence: int) -> int:
        base = {F.SEEK_SET: 0, F.SEEK_CUR: self.pos, F.SEEK_END: len(self.data)}.get(whence)
        if base is None or base + off < 0:
            raise GuestError(E.EINVAL)
        self.pos = base + off
        return self.pos

    def stat(self) -> bytes:
        return proc_stat(self.path, self.mode)

    def proc_link(self) -> str:
        return self.path


class ProcDir(OpenFile):
    """An open /proc directory, read with getdents64: listed afresh whenever a read starts
    from the beginning (so /proc/self/fd shows the directory's own descriptor, and
    rewinddir sees new entries, as on Linux), else as listed then."""

    kind = "procdir"

    def __init__(self, flags: int, path: str, names: list[tuple[str, int]],
                 pos: int = 0, lister: Callable[[], list[tuple[str, int]]] | None = None,
                 ) -> None:
        super().__init__(flags)
        self.path = path
        self.names = names  # (name, st_mode) after "." and ".."
        self.pos = pos
        self.lister = lister  # makes the listing anew (None once thawed: the saved one stays)

    def entries(self) -> list[tuple[bytes, int, int]]:
        up = self.path.rpartition("/")[0] or "/"
        ents = [(b".", proc_ino(self.path), F.DT_DIR), (b"..", proc_ino(up), F.DT_DIR)]
        base = self.path.rstrip("/")
        for name, mode in self.names:
            ents.append((name.encode(), proc_ino(f"{base}/{name}"), dtype_of(mode)))
        return ents

    def getdents(self, n: int, room: int) -> bytes:
        if self.pos == 0 and self.lister is not None:
            self.names = self.lister()
        data, self.pos = pack_dirents(self.entries(), self.pos, n, room)
        return data

    def read(self, n: int) -> bytes:
        raise GuestError(E.EISDIR)

    def read_fit(self, room: int, want: int, off: int | None) -> int:
        return want

    def write(self, data: bytes) -> int:
        raise GuestError(E.EISDIR)

    def seek(self, off: int, whence: int) -> int:
        if whence != F.SEEK_SET or off < 0:
            raise GuestError(E.EINVAL)
        self.pos = off
        return off

    def dir_path(self) -> str:
        return self.path

    def stat(self) -> bytes:
        return proc_stat(self.path, F.S_IFDIR | 0o555, nlink=2)

    def proc_link(self) -> str:
        return self.path
