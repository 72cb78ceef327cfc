"""A deterministic content digest of a host directory tree (the overlay's lower layer).

The digest covers every entry's relative path, type, permission bits and size, a regular
file's bytes and a symlink's target, in name order.  The walk goes through directory fds and
never follows a symlink (each name is opened ``O_NOFOLLOW`` beneath its directory's fd), and
it is bounded: more than MAX_TREE_FILES entries or MAX_TREE_BYTES of file bytes is refused
with a ConfigError that says so.  The vkernel's own temporary names (hostfs.TEMP_PREFIX) are
left out, as guests never see them.
"""

from __future__ import annotations

import os
import stat
import struct

from vkckpt.errors import ConfigError
from vkckpt.host import fs as hostfs

MAX_TREE_FILES = 200_000
MAX_TREE_BYTES = 8 << 30
_HEAD = struct.Struct("<IIQ")  # path length, st_mode, size
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _Count:
    __slots__ = ("files", "bytes")

    def __init__(self) -> None:
        self.files = 0
        self.bytes = 0


def tree_digest(root: str) -> str:
    """"sha256:<hex>" of the tree at host directory root (trusted as named: its own
    symlinks are followed once, nothing below it is); ConfigError past the bounds."""
    import hashlib  # only an overlay run needs it

    h = hashlib.sha256(b"vkckpt-tree-1\0")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _walk(fd, b"", h, _Count(), root)
    finally:
        os.close(fd)
    return "sha256:" + h.hexdigest()


def _walk(fd: int, prefix: bytes, h: object, n: _Count, root: str) -> None:
    with os.scandir(fd) as it:
        names = sorted(os.fsencode(e.name) for e in it if not hostfs.is_reserved(e.name))
    for name in names:
        n.files += 1
        if n.files > MAX_TREE_FILES:
            raise ConfigError(f"guest root {root}: more than {MAX_TREE_FILES} files, the most "
                              "an overlay's lower layer may hold; use a smaller root")
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        path = prefix + name
        size = st.st_size if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode) else 0
        h.update(_HEAD.pack(len(path), st.st_mode, size) + path)
        if stat.S_ISDIR(st.st_mode):
            sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
            try:
                _walk(sub, path + b"/", h, n, root)
            finally:
                os.close(sub)
        elif stat.S_ISLNK(st.st_mode):
            h.update(os.fsencode(os.readlink(name, dir_fd=fd)))
        elif stat.S_ISREG(st.st_mode):
            n.bytes += size
            if n.bytes > MAX_TREE_BYTES:
                raise ConfigError(f"guest root {root}: files hold more than {MAX_TREE_BYTES} "
                                  "bytes, the most an overlay's lower layer may hold")
            _hash_file(fd, name, size, h)


def _hash_file(dir_fd: int, name: bytes, size: int, h: object) -> None:
    """Hash exactly size bytes of the file (a file that changes meanwhile hashes what the
    walk saw of it, and its size stays the one recorded)."""
    f = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        off = 0
        while off < size:
            chunk = os.pread(f, min(1 << 20, size - off), off)
            if not chunk:
                break
            h.update(chunk)
            off += len(chunk)
    finally:
        os.close(f)
