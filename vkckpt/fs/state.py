"""Save and load open file descriptions, pipes and descriptor tables.

Files in the guest root are reopened by guest path at their offset; a fingerprint (size,
mtime, and a SHA-256 of files up to 1 MiB) taken at freeze lets thaw notice host changes.
"""

from __future__ import annotations

import hashlib
import os
import stat

from vkckpt.abi import fcntl as F
from vkckpt.errors import ImageError
from vkckpt.fs.fdtable import FdTable
from vkckpt.fs.files import (
    Console,
    DevNull,
    DevRandom,
    DevZero,
    DirFile,
    HostFile,
    OpenFile,
)
from vkckpt.fs.pipe import Pipe, PipeEnd

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.inodes import InodeTable
    from vkckpt.fs.sandbox import GuestRoot

HASH_LIMIT = 1 << 20
_DEVICE_KINDS = {"null": DevNull, "zero": DevZero, "random": DevRandom}
_REOPEN_MASK = F.O_ACCMODE | F.O_APPEND | F.O_NONBLOCK | F.O_DSYNC


def fingerprint(host_fd: int) -> dict:
    """What thaw compares to detect a changed file: size, mtime and (small files) content."""
    st = os.fstat(host_fd)
    fp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": None}
    if st.st_size <= HASH_LIMIT and stat.S_ISREG(st.st_mode):
        rd = os.open(f"/proc/self/fd/{host_fd}", os.O_RDONLY)  # the descriptor may be O_WRONLY
        try:
            h = hashlib.sha256()
            off = 0
            while chunk := os.pread(rd, 1 << 16, off):
                h.update(chunk)
                off += len(chunk)
        finally:
            os.close(rd)
        fp["sha256"] = h.digest()
    return fp


def save_file(f: OpenFile, fid: int) -> dict:
    """One open file description."""
    d = {"id": fid, "kind": f.kind, "flags": f.flags}
    if isinstance(f, HostFile):
        d["path"] = f.guest_path
        d["offset"] = os.lseek(f.fd, 0, os.SEEK_CUR)
        d["fingerprint"] = fingerprint(f.fd)
        if isinstance(f, DirFile):
            d["offset"] = f.pos
    elif isinstance(f, Console):
        d["stream"] = f.stream
    elif isinstance(f, PipeEnd):
        d["pipe"] = f.pipe.id
    return d


def save_pipe(p: Pipe) -> dict:
    return {"id": p.id, "data": bytes(p.data)}


def save_fdtable(fds: FdTable, ids: dict[int, int]) -> list[list[int]]:
    """[fd, file id, cloexec] rows; ids maps id(description) -> saved file id."""
    return [[fd, ids[id(f)], int(ce)] for fd, (f, ce) in sorted(fds.fds.items())]


class FileChanged(ImageError):
    """A host file a guest had open differs from the one frozen."""


def load_file(d: dict, root: GuestRoot, pipes: dict[int, Pipe], allow_changed: bool,
              inodes: InodeTable) -> OpenFile:
    """Recreate an open file description (reopening guest-root files by path)."""
    kind = d["kind"]
    flags = d["flags"]
    if kind == "console":
        return Console(flags, d["stream"])
    if kind in _DEVICE_KINDS:
        return _DEVICE_KINDS[kind](flags)
    if kind == "pipe":
        pipe = pipes.get(d["pipe"])
        if pipe is None:
            raise ImageError(f"file {d['id']} refers to unknown pipe {d['pipe']}")
        return PipeEnd(pipe, flags)
    if kind in ("host", "dir"):
        return _reopen(d, root, allow_changed, inodes)
    raise ImageError(f"unknown open file kind {kind!r}")


def _reopen(d: dict, root: GuestRoot, allow_changed: bool, inodes: InodeTable) -> OpenFile:
    from vkckpt.errors import GuestError
    path = d["path"]
    try:
        r = root.resolve(path, "/")
        if d["kind"] == "dir":
            fd = root.host_open(r, os.O_RDONLY | os.O_DIRECTORY)
        else:
            fd = root.host_open(r, d["flags"] & _REOPEN_MASK)
    except GuestError as exc:
        raise FileChanged(f"{path}: cannot reopen inside the guest root "
                          f"({os.strerror(exc.errno)})") from None
    fp = fingerprint(fd)
    want = d["fingerprint"]
    if not allow_changed and (fp["size"] != want["size"] or fp["sha256"] != want["sha256"] or
                              (want["sha256"] is None and fp["mtime_ns"] != want["mtime_ns"])):
        os.close(fd)
        raise FileChanged(f"{path}: changed since the freeze (size {want['size']} -> "
                          f"{fp['size']}); pass --allow-changed-files to thaw anyway")
    if d["kind"] == "dir":
        f: HostFile = DirFile(fd, d["flags"], path, r.host, inodes)
        f.pos = d["offset"]
    else:
        f = HostFile(fd, d["flags"], path, inodes)
        os.lseek(fd, d["offset"], os.SEEK_SET)
    return f


