"""What guests see of host files' identity and times: virtual, deterministic, checkpointed.

Passing the host's st_dev, st_ino and nanosecond timestamps to guests would make two runs of
the same program differ in guest memory, and a file's identity change across a thaw. Guests
instead see one device, inode numbers handed out in the order they first see files, and
modification times on the virtual clock (the vkernel epoch until a guest modifies the file).
Owners, the virtual file type of FIFO and socket placeholders and extended attributes are kept
per inode too (inode_meta.py).
"""

from __future__ import annotations

import os
import stat as st_mod
from collections.abc import Callable

from vkckpt.abi import fcntl as F
from vkckpt.abi.stat import pack_stat
from vkckpt.errors import ImageError
from vkckpt.fs.inode_meta import InodeMeta
from vkckpt.vclock import EPOCH_NS

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.fifo import Fifo

VIRTUAL_DEV = 0x801  # what st_dev says for every file in the guest root


class InodeTable:
    """Host (st_dev, st_ino) -> virtual inode number and virtual modification time."""

    def __init__(self, clock: Callable[[], int]) -> None:
        self.clock = clock            # virtual monotonic ns (the kernel's now_ns)
        self.next_ino = 2             # 1 is never used, like most file systems
        self.entries: dict[tuple[int, int], list] = {}  # key -> [vino, mtime_ns|None, path]
        self.meta: dict[int, InodeMeta] = {}  # vino -> what is kept beyond the host's
        self.fifos: dict[int, Fifo] = {}  # vino -> its fifo.Fifo while in use (transient)
        self.dir_size: int | None = None  # every directory's st_size, if not the host's
        self.on_touch: Callable[[os.stat_result], None] | None = None  # told of each change

    def _entry(self, st: os.stat_result, guest_path: str) -> list:
        key = (st.st_dev, st.st_ino)
        ent = self.entries.get(key)
        if ent is None:
            ent = self.entries[key] = [self.next_ino, None, guest_path]
            self.next_ino += 1
        return ent

    def vino(self, st: os.stat_result, guest_path: str) -> int:
        return self._entry(st, guest_path)[0]

    def known(self, guest_path: str) -> int:
        """The inode number a file first seen at guest_path was given (0 if none was),
        without handing out a new one."""
        return next((e[0] for e in self.entries.values() if e[2] == guest_path), 0)

    def touch(self, st: os.stat_result, guest_path: str) -> None:
        """A guest modified the file now (every write, truncate and allocation through a
        descriptor comes here: an overlay counts the file as changed)."""
        self._entry(st, guest_path)[1] = EPOCH_NS + self.clock()
        if self.on_touch is not None:
            self.on_touch(st)

    def set_mtime(self, st: os.stat_result, guest_path: str, ns: int | None) -> None:
        """A guest set the file's time (utimensat): ns since the epoch, or None for now."""
        self._entry(st, guest_path)[1] = EPOCH_NS + self.clock() if ns is None else ns

    def meta_of(self, st: os.stat_result, guest_path: str) -> InodeMeta:
        """The file's virtual metadata, made (default: root's, no attributes) on first use."""
        vino = self._entry(st, guest_path)[0]
        m = self.meta.get(vino)
        if m is None:
            m = self.meta[vino] = InodeMeta()
        return m

    def kind(self, st: os.stat_result) -> int:
        """The virtual file type of host file st: S_IFIFO for a named FIFO's placeholder,
        S_IFSOCK for a bound AF_UNIX socket's, 0 for any other file (its host type)."""
        ent = self.entries.get((st.st_dev, st.st_ino))
        m = self.meta.get(ent[0]) if ent else None
        return m.kind if m is not None else 0

    def is_fifo(self, st: os.stat_result) -> int | None:
        """The inode number of a named FIFO's placeholder, None for any other file."""
        ent = self.entries.get((st.st_dev, st.st_ino))
        return ent[0] if ent is not None and self.kind(st) == F.S_IFIFO else None

    def is_socket(self, st: os.stat_result) -> bool:
        """The host file st is a bound AF_UNIX socket's placeholder (unix_ns.py)."""
        return self.kind(st) == F.S_IFSOCK

    def mode(self, st: os.stat_result) -> int:
        """st_mode as guests see it (stat, getdents): a placeholder has its virtual type."""
        kind = self.kind(st)
        return kind | st.st_mode & 0o7777 if kind else st.st_mode

    def mark(self, st: os.stat_result, guest_path: str, kind: int) -> None:
        """The host file st, just made at guest_path (mknod, bind), has virtual type kind
        (one of inode_meta.KINDS)."""
        self.meta_of(st, guest_path).kind = kind

    def forget_meta(self, st: os.stat_result) -> None:
        """The file's last name is gone: its owner, marker and attributes go with it (the
        host may reuse the inode for a new file; a file still open keeps none of them either,
        except an open FIFO)."""
        ent = self.entries.get((st.st_dev, st.st_ino))
        fifo = self.fifos.get(ent[0]) if ent is not None else None
        if ent is not None and (fifo is None or fifo.pipe is None):  # an open FIFO's ends
            self.meta.pop(ent[0], None)  # hold its placeholder: the inode stays its own

    def moved(self, st: os.stat_result, guest_path: str) -> None:
        """A guest renamed a file: it is found at its new path from now on (images too)."""
        ent = self.entries.get((st.st_dev, st.st_ino))
        if ent is not None:
            ent[2] = guest_path

    def mark_socket(self, st: os.stat_result, guest_path: str) -> None:
        """The host file st, just created at guest_path, is an AF_UNIX socket inode's
        placeholder: it stats as S_IFSOCK.  An entry the host's reused inode number left
        (a file since deleted) is replaced: this is a new file."""
        key = (st.st_dev, st.st_ino)
        ent = self.entries.get(key)
        if ent is None or ent[2] != guest_path:
            self.entries[key] = [self.next_ino, None, guest_path]
            self.next_ino += 1
        self.mark(st, guest_path, F.S_IFSOCK)

    def stat_bytes(self, st: os.stat_result, guest_path: str) -> bytes:
        """struct stat as the guest sees it (size, mode, link count are the host's; owner
        and file type of a placeholder the inode's virtual metadata)."""
        vino, mtime, _ = self._entry(st, guest_path)
        t = (mtime if mtime is not None else EPOCH_NS) / 1e9
        m = self.meta.get(vino)
        uid, gid = (m.uid, m.gid) if m is not None else (0, 0)
        mode, size = self.mode(st), st.st_size
        # from the size, never the host's allocation: a directory has one 4 KiB block, a
        # symlink (short, kept in the inode as on ext4 and tmpfs), a device or a FIFO none
        if st_mod.S_ISREG(mode):
            blocks = (size + 4095) // 4096 * 8
        else:
            blocks = 8 if st_mod.S_ISDIR(mode) else 0
            size = 0 if st_mod.S_ISFIFO(mode) or st_mod.S_ISSOCK(mode) else size
            if self.dir_size is not None and st_mod.S_ISDIR(mode):
                size = self.dir_size
        return pack_stat(VIRTUAL_DEV, vino, mode, st.st_nlink, uid, gid, 0, size,
                         4096, blocks, t, t, t)

    def save(self, resolve: Callable[[str], str | None]) -> list[list]:
        """[guest path, inode, mtime ns or None] in allocation order, for the files still
        found at the path they were first seen by (exactly what load() can rebuild)."""
        rows = []
        for key, (vino, mtime, path) in sorted(self.entries.items(), key=lambda kv: kv[1][0]):
            host = resolve(path)
            try:
                st = os.lstat(host) if host else None
            except OSError:
                st = None
            if st is not None and (st.st_dev, st.st_ino) == key:
                rows.append([path, vino, mtime])
        return rows

    def save_meta(self, rows: list[list]) -> list[list]:
        """[inode, uid, gid, kind, [[name, value]...]] of the saved rows' inodes that have
        more than the defaults, by inode."""
        kept = {r[1] for r in rows}
        return [m.save(v) for v, m in sorted(self.meta.items())
                if v in kept and not m.is_default()]

    def load_meta(self, rows: list, resolve: Callable[[str], str | None]) -> None:
        """Rebuild the metadata saved by save_meta (after load()); a FIFO or socket inode
        must be a regular file on the host (its placeholder)."""
        known = {e[0]: e[2] for e in self.entries.values()}
        seen: set[int] = set()
        for row in rows:
            vino, m = InodeMeta.load(row)
            if vino in seen:
                raise ImageError(f"inode {vino}: metadata given twice")
            seen.add(vino)
            if vino not in known:  # a file gone since the freeze is forgotten, as by load()
                continue
            if m.kind and not _is_regular(resolve(known[vino])):
                raise ImageError(f"inode {vino}: a FIFO or socket whose placeholder "
                                 f"{known[vino]} is no regular file")
            self.meta[vino] = m

    def load(self, rows: list, next_ino: int, resolve: Callable[[str], str | None]) -> None:
        """Rebuild from saved rows; files that no longer exist are forgotten."""
        self.next_ino = next_ino
        for path, vino, mtime in rows:
            host = resolve(path)
            if host is None:
                continue
            try:
                st = os.lstat(host)
            except OSError:
                continue
            self.entries[(st.st_dev, st.st_ino)] = [vino, mtime, path]


def _is_regular(host: str | None) -> bool:
    try:
        return host is not None and st_mod.S_ISREG(os.lstat(host).st_mode)
    except OSError:
        return False
