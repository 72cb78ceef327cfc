"""What guests see of host files' identity and times: virtual, deterministic, checkpointed.

Passing the host's st_dev, st_ino and nanosecond timestamps to guests would make two runs of
the same program differ in guest memory, and a file's identity change across a thaw. Guests
instead see one device, inode numbers handed out in the order they first see files, and
modification times on the virtual clock (the vkernel epoch until a guest modifies the file).
"""

from __future__ import annotations

import os
import stat as st_mod
from collections.abc import Callable

from vkckpt.abi.stat import pack_stat
from vkckpt.vclock import EPOCH_NS

VIRTUAL_DEV = 0x801  # what st_dev says for every file in the guest root


class InodeTable:
    """Host (st_dev, st_ino) -> virtual inode number and virtual modification time."""

    def __init__(self, clock: Callable[[], int]) -> None:
        self.clock = clock            # virtual monotonic ns (the kernel's now_ns)
        self.next_ino = 2             # 1 is never used, like most file systems
        self.entries: dict[tuple[int, int], list] = {}  # key -> [vino, mtime_ns|None, path]
        self.sockets: set[tuple[int, int]] = set()  # AF_UNIX placeholders (unix_ns.py)

    def _entry(self, st: os.stat_result, guest_path: str) -> list:
        key = (st.st_dev, st.st_ino)
        ent = self.entries.get(key)
        if ent is None:
            ent = self.entries[key] = [self.next_ino, None, guest_path]
            self.next_ino += 1
        return ent

    def vino(self, st: os.stat_result, guest_path: str) -> int:
        return self._entry(st, guest_path)[0]

    def touch(self, st: os.stat_result, guest_path: str) -> None:
        """A guest modified the file now."""
        self._entry(st, guest_path)[1] = EPOCH_NS + self.clock()

    def set_mtime(self, st: os.stat_result, guest_path: str, ns: int | None) -> None:
        """A guest set the file's time (utimensat): ns since the epoch, or None for now."""
        self._entry(st, guest_path)[1] = EPOCH_NS + self.clock() if ns is None else ns

    def mark_socket(self, st: os.stat_result, guest_path: str) -> None:
        """The host file st, just created at guest_path, is an AF_UNIX socket inode's
        placeholder: it stats as S_IFSOCK.  An entry the host's reused inode number left
        (a file since deleted) is replaced: this is a new file."""
        key = (st.st_dev, st.st_ino)
        ent = self.entries.get(key)
        if ent is None or ent[2] != guest_path:
            self.entries[key] = [self.next_ino, None, guest_path]
            self.next_ino += 1
        self.sockets.add((st.st_dev, st.st_ino))

    def unlinked(self, st: os.stat_result) -> None:
        """The host file st (lstat before the unlink) lost a name: its last one gone, it is
        no socket inode any more (the host may reuse its inode number)."""
        if st.st_nlink <= 1:
            self.sockets.discard((st.st_dev, st.st_ino))

    def stat_bytes(self, st: os.stat_result, guest_path: str) -> bytes:
        """struct stat as the guest sees it (size, mode, link count are the host's)."""
        vino, mtime, _ = self._entry(st, guest_path)
        t = (mtime if mtime is not None else EPOCH_NS) / 1e9
        # from the size, never the host's allocation: a directory has one 4 KiB block, a
        # symlink (short, kept in the inode as on ext4 and tmpfs), a device or a FIFO none
        if st_mod.S_ISREG(st.st_mode):
            blocks = (st.st_size + 4095) // 4096 * 8
        else:
            blocks = 8 if st_mod.S_ISDIR(st.st_mode) else 0
        mode = st.st_mode
        if (st.st_dev, st.st_ino) in self.sockets:
            mode, blocks = st_mod.S_IFSOCK | st_mod.S_IMODE(mode), 0
        return pack_stat(VIRTUAL_DEV, vino, mode, st.st_nlink, 0, 0, 0, st.st_size,
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
