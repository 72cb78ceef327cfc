"""Host page-table queries and userfaultfd plumbing (Linux): which pages are present, swapped,
the shared zero page, or written since they were last write-protected.

* the PAGEMAP_SCAN ioctl on /proc/self/pagemap (Linux 6.7) reports, for a range of pages,
  which are present, swapped (or hold a protection marker), the shared zero page, or written
  since they were last protected -- and re-protects them in the same page-table walk.
* /proc/self/pagemap entries (any Linux) tell present and swapped pages; MADV_POPULATE_WRITE
  (Linux 5.14) faults a range in with one call.
* a userfaultfd in write-protect *async* mode (UFFD_FEATURE_WP_ASYNC, Linux 6.7) resolves a
  protected page's first write inside the host kernel and only clears its protection mark.

These are the host's mechanisms only; what is tracked and when (ckpt/wp.py) is not here.
`present_pages()` answers None when it cannot tell, and `uffd_open()` None when the host has
no userfaultfd of that kind.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
from collections.abc import Iterator

from vkckpt.abi.mman import PAGE

TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any

    import numpy as np

PAGE_IS_WRITTEN = 1 << 1
PAGE_IS_PRESENT = 1 << 3
PAGE_IS_SWAPPED = 1 << 4
PAGE_IS_PFNZERO = 1 << 5

_PM_SCAN_WP_MATCHING = 1 << 0
_PM_SCAN_CHECK_WPASYNC = 1 << 1
_NR_USERFAULTFD = 323  # x86-64
_UFFD_USER_MODE_ONLY = 1
_UFFD_API = 0xAA
_UFFD_FEATURE_WP_UNPOPULATED = 1 << 13
_UFFD_FEATURE_WP_ASYNC = 1 << 15
_UFFDIO_REGISTER_MODE_MISSING = 1 << 0
_UFFDIO_REGISTER_MODE_WP = 1 << 1
_MADV_DONTNEED = 4
_MADV_POPULATE_WRITE = 23


def _iowr(kind: int, nr: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (kind << 8) | nr


class _ScanArg(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in (
        "size", "flags", "start", "end", "walk_end", "vec", "vec_len", "max_pages",
        "category_inverted", "category_mask", "category_anyof_mask", "return_mask")]


class _Region(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("end", ctypes.c_uint64),
                ("categories", ctypes.c_uint64)]


class _UffdApi(ctypes.Structure):
    _fields_ = [("api", ctypes.c_uint64), ("features", ctypes.c_uint64),
                ("ioctls", ctypes.c_uint64)]


class _UffdRegister(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("len", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("ioctls", ctypes.c_uint64)]


_PAGEMAP_SCAN = _iowr(ord("f"), 16, ctypes.sizeof(_ScanArg))
_UFFDIO_API = _iowr(0xAA, 0x3F, ctypes.sizeof(_UffdApi))
_UFFDIO_REGISTER = _iowr(0xAA, 0x00, ctypes.sizeof(_UffdRegister))
_UFFDIO_UNREGISTER = (2 << 30) | (16 << 16) | (0xAA << 8) | 0x01  # _IOR(0xAA, 1, uffdio_range)

_libc = ctypes.CDLL(None, use_errno=True)
_ioctl = _libc.ioctl
_ioctl.restype = ctypes.c_int
_ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_madvise = _libc.madvise
_madvise.restype = ctypes.c_int
_madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]

_VEC = 4096  # regions per PAGEMAP_SCAN call
_pagemap_fd: int | None = None
_scan_ok: bool | None = None


def _err(what: str) -> OSError:
    e = ctypes.get_errno()
    return OSError(e, f"{what}: {os.strerror(e)}")


def _pagemap() -> int:
    global _pagemap_fd
    if _pagemap_fd is None:
        _pagemap_fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    return _pagemap_fd


#: Pages that may hold data: present, or swapped (or holding a protection marker).
POPULATED = PAGE_IS_PRESENT | PAGE_IS_SWAPPED


def regions(addr: int, npages: int, protect: bool = False,
            want: int = PAGE_IS_WRITTEN | PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_PFNZERO
            ) -> list[tuple[int, int, int]]:
    """PAGEMAP_SCAN of [addr, addr + npages pages): (first page, end page, categories) runs,
    pages numbered from addr; pages the walk does not report are left out.

    protect=True write-protects, in the same walk, every populated page (the range must be
    registered with a write-protecting userfaultfd); only populated pages are then
    reported."""
    out: list[tuple[int, int, int]] = []
    for vec, n in _walk(addr, npages, protect, want):
        for i in range(n):
            r = vec[i]
            out.append(((r.start - addr) // PAGE, (r.end - addr) // PAGE, r.categories))
    return out


def _walk(addr: int, npages: int, protect: bool, want: int) -> Iterator[tuple[Any, int]]:
    """The PAGEMAP_SCAN calls of regions(): (vector, regions filled) after each, the vector
    reused by the next call."""
    if npages == 0:
        return
    vec = (_Region * _VEC)()
    end = addr + npages * PAGE
    arg = _ScanArg(ctypes.sizeof(_ScanArg), _PM_SCAN_WP_MATCHING | _PM_SCAN_CHECK_WPASYNC
                   if protect else 0, addr, end, 0, ctypes.addressof(vec), _VEC, 0, 0, 0,
                   POPULATED if protect else 0, want)
    fd = _pagemap()
    while True:
        n = _ioctl(fd, _PAGEMAP_SCAN, ctypes.byref(arg))
        if n < 0:
            raise _err("PAGEMAP_SCAN")
        yield vec, n
        # The vector is full only when the walk stopped early.  (walk_end is not used: some
        # kernels leave a stale value there after an internal restart of the walk.)
        if n < _VEC:
            break
        nxt = int(vec[n - 1].end)
        if nxt <= arg.start:
            raise OSError(errno.EIO, "PAGEMAP_SCAN made no progress")
        arg.start = nxt


def scan(addr: int, npages: int, protect: bool = False,
         want: int = PAGE_IS_WRITTEN | PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_PFNZERO
         ) -> np.ndarray:
    """regions() as one uint8 of categories per page (0 where not reported), read from the
    walk's vectors with numpy (an incremental freeze's scan reports thousands of runs)."""
    import numpy as np

    out = np.zeros(npages, dtype=np.uint8)
    for vec, n in _walk(addr, npages, protect, want):
        if n:
            r = np.frombuffer(vec, dtype=np.uint64, count=3 * n).reshape(n, 3)
            pages = ((r[:, :2] - np.uint64(addr)) // np.uint64(PAGE)).tolist()
            for (a, b), c in zip(pages, r[:, 2].tolist(), strict=True):
                out[a:b] = c
    return out


def scan_available() -> bool:
    """True when this host kernel has the PAGEMAP_SCAN ioctl."""
    global _scan_ok
    if _scan_ok is None:
        m = mmap.mmap(-1, PAGE)
        try:
            addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
            regions(addr, 1)
            _scan_ok = True
        except (OSError, ValueError):
            _scan_ok = False
        finally:
            m.close()
    return _scan_ok


def present_pages(addr: int, npages: int) -> np.ndarray | None:
    """Pages of [addr, ...) that are present or swapped (may hold data), or None if unknown.

    For private anonymous memory, a page that is neither has never been written since it was
    last discarded: it reads as zeros."""
    import numpy as np

    if npages == 0:
        return np.zeros(0, dtype=bool)
    try:
        if scan_available():
            return scan(addr, npages, want=PAGE_IS_PRESENT | PAGE_IS_SWAPPED) != 0
        raw = os.pread(_pagemap(), npages * 8, addr // PAGE * 8)
    except OSError:
        return None
    if len(raw) != npages * 8:
        return None
    return (np.frombuffer(raw, dtype=np.uint64) >> np.uint64(62)) != 0


def present_runs(addr: int, npages: int) -> list[tuple[int, int]] | None:
    """present_pages() as [first, end) page runs, in order, or None if unknown; without
    numpy (fork copies with it, and importing numpy would cost a one-fork program ~50 ms)."""
    try:
        if scan_available():
            runs = [(a, b) for a, b, c in regions(addr, npages,
                                                  want=PAGE_IS_PRESENT | PAGE_IS_SWAPPED) if c]
        else:
            raw = os.pread(_pagemap(), npages * 8, addr // PAGE * 8)
            if len(raw) != npages * 8:
                return None
            runs = []
            for i, e in enumerate(memoryview(raw).cast("Q")):
                if e >> 62:
                    runs.append((i, i + 1))
    except OSError:
        return None
    merged: list[tuple[int, int]] = []
    for a, b in runs:
        if merged and merged[-1][1] == a:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def populate_write(addr: int, size: int) -> bool:
    """Fault [addr, addr+size) in for writing with one call instead of a page fault per page
    (Linux >= 5.14); False, and nothing done, where the host cannot (the pages are then
    faulted in one by one by whatever writes them)."""
    return size > 0 and _madvise(addr, size, _MADV_POPULATE_WRITE) == 0


def discard(addr: int, size: int) -> None:
    """Give [addr, addr+size) back to the host (MADV_DONTNEED): it reads as zeros again."""
    _madvise(addr, size, _MADV_DONTNEED)


def uffd_open() -> int | None:
    """A new userfaultfd (close-on-exec, non-blocking, user faults only) with asynchronous
    write protection of populated and unpopulated pages, or None when the host has none."""
    fd = _syscall(_NR_USERFAULTFD, os.O_CLOEXEC | os.O_NONBLOCK | _UFFD_USER_MODE_ONLY)
    if fd < 0:
        return None
    api = _UffdApi(_UFFD_API, _UFFD_FEATURE_WP_ASYNC | _UFFD_FEATURE_WP_UNPOPULATED, 0)
    if _ioctl(fd, _UFFDIO_API, ctypes.byref(api)) != 0:
        os.close(fd)
        return None
    return fd


def uffd_register_wp(fd: int, addr: int, size: int) -> None:
    """Register [addr, addr+size) with userfaultfd fd in write-protect mode (OSError if not)."""
    reg = _UffdRegister(addr, size, _UFFDIO_REGISTER_MODE_WP, 0)
    if _ioctl(fd, _UFFDIO_REGISTER, ctypes.byref(reg)) != 0:
        raise _err("UFFDIO_REGISTER")


def uffd_open_missing() -> int | None:
    """A new userfaultfd (close-on-exec, non-blocking) for missing-page faults, or None.

    Faults the host kernel takes on the process's behalf (a system call reading guest memory)
    are reported too when the host allows it; otherwise (vm.unprivileged_userfaultfd=0
    without CAP_SYS_PTRACE) user-mode faults only."""
    for flags in (0, _UFFD_USER_MODE_ONLY):
        fd = _syscall(_NR_USERFAULTFD, os.O_CLOEXEC | os.O_NONBLOCK | flags)
        if fd < 0:
            continue
        api = _UffdApi(_UFFD_API, 0, 0)
        if _ioctl(fd, _UFFDIO_API, ctypes.byref(api)) == 0:
            return fd
        os.close(fd)
    return None


def uffd_register_missing(fd: int, addr: int, size: int, wp: bool) -> None:
    """Register [addr, addr+size) with userfaultfd fd for missing-page faults (and write
    protection too when wp: the range stays tracked as uffd_register_wp would); OSError if
    the host refuses."""
    mode = _UFFDIO_REGISTER_MODE_MISSING | (_UFFDIO_REGISTER_MODE_WP if wp else 0)
    reg = _UffdRegister(addr, size, mode, 0)
    if _ioctl(fd, _UFFDIO_REGISTER, ctypes.byref(reg)) != 0:
        raise _err("UFFDIO_REGISTER")


def uffd_unregister(fd: int, addr: int, size: int) -> None:
    """Unregister [addr, addr+size) from userfaultfd fd (best effort)."""
    rng = (ctypes.c_uint64 * 2)(addr, size)
    _ioctl(fd, _UFFDIO_UNREGISTER, ctypes.byref(rng))
