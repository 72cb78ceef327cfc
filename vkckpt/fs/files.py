"""Open file descriptions: host files and directories in the guest root, the console, devices."""

from __future__ import annotations

import fcntl
import os
import struct

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.abi.stat import pack_stat
from vkckpt.errors import GuestError
from vkckpt.fs.ops import FileServices, OpenFile
from vkckpt.host import fs as hostfs

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.inodes import InodeTable
    from vkckpt.host.fds import HostFds

__all__ = ["DEVICES", "Console", "DevNull", "DevRandom", "DevZero", "DirFile", "FileServices",
           "HostFile", "OpenFile", "char_stat", "host_call", "pack_dirents"]


def char_stat(rdev: int) -> bytes:
    """struct stat of a character device the vkernel itself provides."""
    return pack_stat(5, rdev, F.S_IFCHR | 0o666, 1, 0, 0, rdev, 0, 4096, 0, 0, 0, 0)


def host_call(fn, *args):  # noqa: ANN001, ANN202 - thin wrapper
    """Call a host os function, turning OSError into the same Linux errno for the guest."""
    try:
        return fn(*args)
    except OSError as exc:
        raise GuestError(exc.errno or E.EIO, str(exc)) from None


class HostFile(OpenFile):
    """A regular file inside the guest root, backed by a host descriptor."""

    kind = "host"
    seekable = True

    def __init__(self, fd: int, flags: int, guest_path: str, inodes: InodeTable,
                 host_fds: HostFds) -> None:
        super().__init__(flags)
        self.fd = fd
        self.guest_path = guest_path
        self.inodes = inodes
        self.host_fds = host_fds  # fd is one of the descriptors this account counts

    def read(self, n: int) -> bytes:
        return host_call(os.read, self.fd, n)

    def write(self, data: bytes) -> int:
        n = host_call(os.write, self.fd, data)
        self.touched()
        return n

    def fsync(self) -> None:
        """Regular files and directories sync (durability is the host's business: no-op)."""

    def pread(self, n: int, off: int) -> bytes:
        return host_call(os.pread, self.fd, n, off)

    def pwrite(self, data: bytes, off: int) -> int:
        n = host_call(os.pwrite, self.fd, data, off)
        self.touched()
        return n

    def read_fit(self, room: int, want: int, off: int | None) -> int:
        """A regular file at its end has nothing to copy: 0, not EFAULT."""
        if room:
            return room
        pos = self.seek(0, F.SEEK_CUR) if off is None else off
        if not self.pread(1, pos):
            return 0
        raise GuestError(E.EFAULT)

    def truncate(self, length: int) -> None:
        host_call(os.ftruncate, self.fd, length)
        self.touched()

    def map_source(self) -> HostFile:
        return self

    def allocate(self, mode: int, off: int, length: int) -> None:
        """Mode 0 extends the file to off + length; KEEP_SIZE alone changes nothing a guest
        sees (sizes and block counts follow the size); PUNCH_HOLE zeroes the range."""
        size = host_call(os.fstat, self.fd).st_size
        if mode & F.FALLOC_FL_PUNCH_HOLE:
            end = min(off + length, size)
            while off < end:
                n = min(end - off, 1 << 20)
                host_call(os.pwrite, self.fd, bytes(n), off)
                off += n
            self.touched()
        elif not mode & F.FALLOC_FL_KEEP_SIZE and off + length > size:
            host_call(os.ftruncate, self.fd, off + length)
            self.touched()
    def proc_link(self) -> str:
        return self.guest_path

    def touched(self) -> None:
        """The guest modified the file: its virtual mtime is now."""
        self.inodes.touch(host_call(os.fstat, self.fd), self.guest_path)

    def seek(self, off: int, whence: int) -> int:
        if whence not in (F.SEEK_SET, F.SEEK_CUR, F.SEEK_END):
            raise GuestError(E.EINVAL)
        return host_call(os.lseek, self.fd, off, whence)

    def stat(self) -> bytes:
        return self.inodes.stat_bytes(host_call(os.fstat, self.fd), self.guest_path)

    def set_status_flags(self, flags: int) -> None:
        super().set_status_flags(flags)
        host = fcntl.fcntl(self.fd, fcntl.F_GETFL) & ~os.O_APPEND
        fcntl.fcntl(self.fd, fcntl.F_SETFL, host | (os.O_APPEND if flags & F.O_APPEND else 0))

    def release(self) -> None:
        os.close(self.fd)
        self.host_fds.give()


class DirFile(HostFile):
    """A directory opened for getdents64; entries are sorted so listings are deterministic."""

    kind = "dir"

    def __init__(self, fd: int, flags: int, guest_path: str, host_path: str,
                 inodes: InodeTable, host_fds: HostFds) -> None:
        super().__init__(fd, flags, guest_path, inodes, host_fds)
        self.host_path = host_path
        self.pos = 0

    def read(self, n: int) -> bytes:
        raise GuestError(E.EISDIR)

    def write(self, data: bytes) -> int:
        raise GuestError(E.EISDIR)

    def read_fit(self, room: int, want: int, off: int | None) -> int:
        return want  # read(2) fails with EISDIR before any copy

    def truncate(self, length: int) -> None:
        raise GuestError(E.EINVAL)

    def allocate(self, mode: int, off: int, length: int) -> None:
        raise GuestError(E.EISDIR)

    def dir_path(self) -> str:
        return self.guest_path

    def seek(self, off: int, whence: int) -> int:
        if whence != F.SEEK_SET or off < 0:
            raise GuestError(E.EINVAL)
        self.pos = off
        return off

    def _entries(self) -> list[tuple[bytes, int, int]]:
        """The listing as it is now.  Host processes may add or remove entries meanwhile
        (an image being committed, say): one that vanishes before its stat is left out.
        The vkernel's temporary files (hostfs.TEMP_PREFIX) are never listed."""
        st = host_call(os.fstat, self.fd)
        me = self.inodes.vino(st, self.guest_path)
        ents = [(b".", me, F.DT_DIR), (b"..", me, F.DT_DIR)]
        base = self.guest_path.rstrip("/")
        try:
            with os.scandir(self.fd) as it:
                found = sorted((e for e in it if not hostfs.is_reserved(e.name)),
                               key=lambda e: e.name)
        except OSError as exc:
            raise GuestError(exc.errno or E.EIO, str(exc)) from None
        for e in found:
            try:
                st_e = e.stat(follow_symlinks=False)
            except OSError:  # gone (or unreadable) since the directory was read
                continue
            ino = self.inodes.vino(st_e, f"{base}/{e.name}")
            ents.append((os.fsencode(e.name), ino, _dtype(self.inodes.mode(st_e))))
        return ents

    def getdents(self, n: int, room: int) -> bytes:
        data, self.pos = pack_dirents(self._entries(), self.pos, n, room)
        return data


def pack_dirents(ents: list[tuple[bytes, int, int]], pos: int, n: int, room: int
                 ) -> tuple[bytes, int]:
    """getdents64(2) over a listing of (name, inode, d_type) from index pos: linux_dirent64
    records filling at most n bytes (EINVAL if none fits), cut to the `room` writable bytes
    (EFAULT if none is); returns them and the new position."""
    out = bytearray()
    while pos < len(ents):
        name, ino, dtype = ents[pos]
        reclen = (19 + len(name) + 1 + 7) & ~7
        if len(out) + reclen > n:
            if not out:
                raise GuestError(E.EINVAL)
            break
        if len(out) + reclen > room:
            if not out:
                raise GuestError(E.EFAULT)
            break
        rec = struct.pack("<QqHB", ino, pos + 1, reclen, dtype) + name + b"\0"
        out += rec.ljust(reclen, b"\0")
        pos += 1
    return bytes(out), pos


def _dtype(mode: int) -> int:
    fmt = mode & F.S_IFMT
    return {F.S_IFDIR: F.DT_DIR, F.S_IFREG: F.DT_REG, F.S_IFLNK: F.DT_LNK,
            F.S_IFIFO: F.DT_FIFO, F.S_IFCHR: F.DT_CHR,
            F.S_IFSOCK: F.DT_SOCK}.get(fmt, F.DT_UNKNOWN)


#: Inode numbers of the console's streams: beside the pipes' (which count from 1).
CONSOLE_INO = 1 << 32


class Console(OpenFile):
    """The vkernel's console: guest stdin/stdout/stderr bound to the host's streams."""

    kind = "console"
    pollable = True

    def __init__(self, flags: int, stream: int, svc: FileServices) -> None:
        super().__init__(flags)
        self.stream = stream  # 0, 1 or 2: which host stream
        self.svc = svc

    def read(self, n: int) -> bytes:
        return self.svc.console_read(n)

    def write(self, data: bytes) -> int:
        self.svc.console_write(self.stream, data)
        return len(data)

    def proc_link(self) -> str:
        return f"pipe:[{CONSOLE_INO + self.stream}]"  # as stat describes it

    def stat(self) -> bytes:
        # A pipe, whatever the host stream is: it agrees with ioctl's ENOTTY, so C libraries
        # buffer it fully as they do a redirected stream (a character device with a pty's
        # major made glibc line-buffer), and no host fact reaches the guest.
        return pack_stat(9, CONSOLE_INO + self.stream, F.S_IFIFO | 0o600, 1, 0, 0, 0, 0,
                         4096, 0, 0, 0, 0)

    def ioctl(self, req: int) -> int:
        raise GuestError(E.ENOTTY)  # not a terminal: keeps stdio buffering like a pipe's


class DevNull(OpenFile):
    """/dev/null."""

    kind = "null"
    discards = True
    path = "/dev/null"

    def __init__(self, flags: int, svc: FileServices) -> None:
        super().__init__(flags)
        self.svc = svc

    def read(self, n: int) -> bytes:
        return b""

    def write(self, data: bytes) -> int:
        return len(data)

    def read_fit(self, room: int, want: int, off: int | None) -> int:
        return want  # end of file at once: the buffer is never written

    def seek(self, off: int, whence: int) -> int:
        return 0

    def stat(self) -> bytes:
        return char_stat(0x103)

    def proc_link(self) -> str:
        return self.path


class DevZero(DevNull):
    """/dev/zero."""

    kind = "zero"
    path = "/dev/zero"
    discards = False  # unlike /dev/null, a write reads the buffer (EFAULT if it cannot)

    def read(self, n: int) -> bytes:
        return bytes(n)

    read_fit = OpenFile.read_fit  # the bytes are copied out: a bad buffer faults

    def stat(self) -> bytes:
        return char_stat(0x105)


class DevRandom(DevZero):
    """/dev/urandom and /dev/random: the vkernel's deterministic random stream."""

    kind = "random"
    path = "/dev/urandom"
    pollable = True

    def read(self, n: int) -> bytes:
        return self.svc.random_bytes(n)

    def stat(self) -> bytes:
        return char_stat(0x109)


DEVICES = {"/dev/null": DevNull, "/dev/zero": DevZero, "/dev/urandom": DevRandom,
           "/dev/random": DevRandom}
