"""Save and load ghost files: regular files guests hold open after their last name is gone.

A ghost cannot be reopened by path at thaw, so its contents travel in the image (as CRIU's
ghost files do): one ``ghost`` record (its virtual inode, mtime, mode and size) and its bytes
in ``ghost_data`` chunks of at most CHUNK bytes, zlib-compressed with a CRC-32 of the plain
bytes.  Every open description of the file names the ghost by id, so descriptions that
shared the file share the one recreated unnamed host file at thaw, each with its own
offset and flags.  Incremental images save each ghost in full.
"""

from __future__ import annotations

import os
import stat
import zlib

from vkckpt.errors import ImageError
from vkckpt.fieldtypes import Maybe
from vkckpt.fs.files import HostFile
from vkckpt.host import fs as hostfs
from vkckpt.image.limits import MAX_GHOST_BYTES

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable

    from vkckpt.fs.inodes import InodeTable
    from vkckpt.fs.ops import OpenFile

GHOST_VERSION = 1
CHUNK = 1 << 20  # plain bytes of one ghost_data record
MAX_GHOSTS = 4096
GHOST_SCHEMA = {"id": "u64", "vino": "u64", "mtime": Maybe("i64"), "mode": "u32",
                "size": "u64", "path": "str"}
DATA_SCHEMA = {"ghost": "u64", "off": "u64", "crc": "u32", "data": "bytes"}
RECORDS = {"ghost": (GHOST_VERSION, GHOST_SCHEMA), "ghost_data": (GHOST_VERSION, DATA_SCHEMA)}


def _names(host: str | None, st: os.stat_result) -> bool:
    try:
        now = os.lstat(host) if host is not None else None
    except OSError:
        return False
    return now is not None and (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def reopen_path(f: HostFile, inodes: InodeTable, resolve: Callable[[str], str | None]
                ) -> str | None:
    """The guest path a thaw can reopen f's file by: the one it was opened by, else the
    one a guest renamed it to (the inode table follows renames), else None."""
    st = os.fstat(f.fd)
    if st.st_nlink == 0:
        return None
    if _names(resolve(f.guest_path), st):
        return f.guest_path
    ent = inodes.entries.get((st.st_dev, st.st_ino))
    return ent[2] if ent is not None and _names(resolve(ent[2]), st) else None


def is_ghost(f: OpenFile, resolve: Callable[[str], str | None] | None = None) -> bool:
    """Whether f is a regular guest-root file whose last name is gone, or (with resolve,
    guest path -> host path) no path of the root names it now: no reopen by path could
    find it.  (A file with a name elsewhere, out of the root's paths, is carried as a
    copy.)"""
    if type(f) is not HostFile:
        return False
    if resolve is None:
        return os.fstat(f.fd).st_nlink == 0
    return reopen_path(f, f.inodes, resolve) is None


def find_ghosts(files: list[OpenFile], resolve: Callable[[str], str | None] | None = None
                ) -> dict[int, tuple[int, HostFile]]:
    """id(description) -> (ghost id, the first description of its file) for every ghost
    among files; descriptions of one host inode get one ghost id."""
    by_inode: dict[tuple[int, int], tuple[int, HostFile]] = {}
    out = {}
    for f in files:
        if isinstance(f, HostFile) and is_ghost(f, resolve):
            st = os.fstat(f.fd)
            key = (st.st_dev, st.st_ino)
            if key not in by_inode:
                by_inode[key] = (len(by_inode) + 1, f)
            out[id(f)] = by_inode[key]
    return out


def save_ghosts(ghosts: dict[int, tuple[int, HostFile]], inodes: InodeTable
                ) -> list[tuple[str, dict]]:
    """The (type, fields) records of every ghost, each followed by its data chunks."""
    recs: list[tuple[str, dict]] = []
    total = 0
    for gid, f in sorted(set(ghosts.values()), key=lambda g: g[0]):
        st = os.fstat(f.fd)
        total += st.st_size
        if total > MAX_GHOST_BYTES:
            raise ImageError(f"{f.guest_path}: open unlinked files hold more than "
                             f"{MAX_GHOST_BYTES} bytes, the most an image may carry")
        vino, mtime, _ = inodes.entries.get((st.st_dev, st.st_ino)) or (
            inodes.vino(st, f.guest_path), None, None)
        recs.append(("ghost", {"id": gid, "vino": vino, "mtime": mtime,
                               "mode": stat.S_IMODE(st.st_mode), "size": st.st_size,
                               "path": f.guest_path}))
        rd = _reader(f.fd, st.st_mode)  # the guest's may be O_WRONLY
        try:
            for off in range(0, st.st_size, CHUNK):
                plain = os.pread(rd, min(CHUNK, st.st_size - off), off)
                if not plain.strip(b"\0"):
                    continue  # holes and zeros: the recreated file reads zeros there
                recs.append(("ghost_data", {"ghost": gid, "off": off, "crc": zlib.crc32(plain),
                                            "data": zlib.compress(plain, 1)}))
        finally:
            os.close(rd)
    return recs


def _reader(fd: int, mode: int) -> int:
    """A new read-only open of the file at fd, even when its mode forbids reading."""
    try:
        return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    except PermissionError:
        os.fchmod(fd, stat.S_IMODE(mode) | 0o400)
        try:
            return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            os.fchmod(fd, stat.S_IMODE(mode))


def set_modes(fds: dict[int, int], rows: list[dict]) -> None:
    """Give each recreated ghost its saved mode, once its descriptions are open (made 0600,
    so opening them is never refused by a mode the owner set)."""
    for d in rows:
        if d["id"] in fds:
            os.fchmod(fds[d["id"]], d["mode"] & 0o7777)


def load_ghosts(rows: list[dict], chunks: list[dict], dir_fd: int,
                inodes: InodeTable) -> dict[int, int]:
    """Recreate every ghost as an unnamed host file beneath dir_fd holding its saved bytes
    and give it its virtual inode; ghost id -> host fd (the caller sets their modes with
    set_modes and closes them)."""
    if len(rows) > MAX_GHOSTS:
        raise ImageError(f"image holds {len(rows)} ghost files, more than {MAX_GHOSTS}")
    fds: dict[int, int] = {}
    try:
        _load(rows, chunks, dir_fd, inodes, fds)
    except OSError as exc:
        for fd in fds.values():
            os.close(fd)
        raise ImageError(f"cannot recreate an open unlinked file: {exc.strerror}") from None
    except BaseException:
        for fd in fds.values():
            os.close(fd)
        raise
    return fds


def _load(rows: list[dict], chunks: list[dict], dir_fd: int, inodes: InodeTable,
          fds: dict[int, int]) -> None:
    used = {e[0] for e in inodes.entries.values()}
    sizes, total = {}, 0
    for d in rows:
        gid, vino, size = d["id"], d["vino"], d["size"]
        if gid in fds:
            raise ImageError(f"ghost {gid} is given twice")
        if not 2 <= vino < inodes.next_ino or vino in used:
            raise ImageError(f"ghost {gid}: inode {vino} is unknown or already in use")
        total += size
        if total > MAX_GHOST_BYTES:
            raise ImageError(f"ghost files hold more than {MAX_GHOST_BYTES} bytes")
        used.add(vino)
        fd = fds[gid] = hostfs.unnamed_file(dir_fd, 0o600)
        os.ftruncate(fd, size)
        st = os.fstat(fd)
        inodes.entries[(st.st_dev, st.st_ino)] = [vino, d["mtime"], d["path"]]
        sizes[gid] = size
    ends: dict[int, int] = {}
    for c in chunks:
        gid, off = c["ghost"], c["off"]
        if gid not in fds or off % CHUNK or off < ends.get(gid, 0) or off >= sizes[gid]:
            raise ImageError(f"ghost data at {off} of ghost {gid}: unknown ghost or offset")
        want = min(CHUNK, sizes[gid] - off)
        try:
            plain = zlib.decompressobj().decompress(c["data"], want + 1)
        except zlib.error:
            plain = None
        if plain is None or len(plain) != want or zlib.crc32(plain) != c["crc"]:
            raise ImageError(f"ghost {gid}: data at {off} is corrupted (size or checksum)")
        os.pwrite(fds[gid], plain, off)
        ends[gid] = off + want
