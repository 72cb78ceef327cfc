"""struct stat as x86-64 Linux lays it out (144 bytes)."""

from __future__ import annotations

import struct

_STAT = struct.Struct("<QQQIII4xQqqq6q24x")
STAT_SIZE = _STAT.size


def _ts(t: float) -> tuple[int, int]:
    """Seconds since the epoch as (tv_sec, tv_nsec)."""
    ns = int(t * 1e9)
    return ns // 10**9, ns % 10**9


def pack_stat(dev: int, ino: int, mode: int, nlink: int, uid: int, gid: int, rdev: int,
              size: int, blksize: int, blocks: int, atime: float, mtime: float,
              ctime: float) -> bytes:
    """Encode struct stat (x86-64, 144 bytes); times in seconds since the epoch."""
    return _STAT.pack(dev, ino, nlink, mode, uid, gid, rdev, size, blksize, blocks,
                      *_ts(atime), *_ts(mtime), *_ts(ctime))
