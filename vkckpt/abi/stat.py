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


# -- statx(2): struct statx (256 bytes) and its mask bits ------------------------------------
STATX_TYPE, STATX_MODE, STATX_NLINK, STATX_UID, STATX_GID = 0x1, 0x2, 0x4, 0x8, 0x10
STATX_ATIME, STATX_MTIME, STATX_CTIME, STATX_INO, STATX_SIZE = 0x20, 0x40, 0x80, 0x100, 0x200
STATX_BLOCKS, STATX_BASIC_STATS, STATX_BTIME = 0x400, 0x7FF, 0x800
STATX__RESERVED = 0x80000000
AT_STATX_SYNC_TYPE, AT_NO_AUTOMOUNT = 0x6000, 0x800
STATX_SIZE_BYTES = 256
_STATX = struct.Struct("<IIQIIIH2xQQQQ" + "qIi" * 4 + "IIII")


def _decode_dev(dev: int) -> tuple[int, int]:
    """(major, minor) of a struct stat st_dev/st_rdev (Linux's new_decode_dev)."""
    return (dev & 0xFFF00) >> 8, (dev & 0xFF) | ((dev >> 12) & 0xFFF00)


def statx_from_stat(st: bytes) -> bytes:
    """struct statx of the file a struct stat describes; the mask says the basic stats are
    filled (no birth time, as on many Linux file systems)."""
    (dev, ino, nlink, mode, uid, gid, rdev, size, blksize, blocks, a_s, a_n, m_s, m_n,
     c_s, c_n) = _STAT.unpack(st)[:16]
    rmaj, rmin = _decode_dev(rdev)
    dmaj, dmin = _decode_dev(dev)
    data = _STATX.pack(STATX_BASIC_STATS, blksize, 0, nlink, uid, gid, mode & 0xFFFF, ino,
                       size, blocks, 0, a_s, a_n, 0, 0, 0, 0, c_s, c_n, 0, m_s, m_n, 0,
                       rmaj, rmin, dmaj, dmin)
    return data.ljust(STATX_SIZE_BYTES, b"\0")
S_IFSOCK = 0o140000
