"""Written-page tracking for the page scans of incremental freezes (Linux).

Host buffers are registered with one userfaultfd in write-protect *async* mode
(UFFD_FEATURE_WP_ASYNC, Linux 6.7): a protected page's first write is resolved inside the host
kernel -- no message, no handler thread, ~0.5 us -- and only clears the page's protection
mark; one PAGEMAP_SCAN walk per freeze reports the pages written since the last walk and
re-protects them.  The system calls are vkckpt.host.pagemap's; this module decides what is
protected and when, and whether the host's answers can be believed.

Only populated pages (present, swapped or holding a marker) are ever write-protected: a
page that is not populated has no data to lose, and its first write populates it without
protection, so the next scan reports it written anyway.  Protecting unpopulated ranges
would give every page of them a page-table entry (a marker): 2 GiB of host page tables for
a 1 TiB mapping.

Everything here is optional and conservative: `Tracker.get()` is None when the host cannot
track writes (or fails the self-test), `present_pages()` answers None when it cannot tell,
and callers then fall back to comparing page contents.  Nothing here runs in the guest's path.
"""

from __future__ import annotations

import _thread
import ctypes
import mmap
import os

from vkckpt.abi.mman import PAGE
from vkckpt.host.pagemap import (
    PAGE_IS_PFNZERO,
    PAGE_IS_PRESENT,
    PAGE_IS_SWAPPED,
    PAGE_IS_WRITTEN,
    POPULATED,
    discard,
    populate_write,
    present_pages,
    regions,
    scan,
    scan_available,
    uffd_open,
    uffd_register_wp,
)

TYPE_CHECKING = False

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "PAGE_IS_PFNZERO", "PAGE_IS_PRESENT", "PAGE_IS_SWAPPED", "PAGE_IS_WRITTEN", "Tracker",
    "populate_write", "present_pages", "scan_available",
]

_lock = _thread.allocate_lock()  # the threading module costs 3 ms of start-up


class Tracker:
    """One userfaultfd (per host process) tracking writes to registered host buffers."""

    _instance: Tracker | None = None
    _tried = False

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def get(cls) -> Tracker | None:
        """The process's tracker, or None when the host cannot track writes exactly.

        VKCKPT_DIRTY=compare disables it (then page contents are compared)."""
        with _lock:
            if not cls._tried:
                cls._tried = True
                if os.environ.get("VKCKPT_DIRTY", "") != "compare":
                    cls._instance = cls._open()
            return cls._instance

    @classmethod
    def _open(cls) -> Tracker | None:
        if not scan_available():
            return None
        fd = uffd_open()
        if fd is None:
            return None
        t = cls(fd)
        try:
            ok = t._self_test()
        except OSError:
            ok = False
        if not ok:
            os.close(fd)
            return None
        return t

    def register(self, addr: int, size: int) -> None:
        """Track writes to [addr, addr+size) (a whole host mapping) and protect its populated
        pages."""
        uffd_register_wp(self.fd, addr, size)
        self.protect(addr, size)

    def protect(self, addr: int, size: int) -> None:
        """Write-protect the populated pages of [addr, addr+size): the next write to each
        marks it written (an unpopulated page is reported written once it is populated)."""
        regions(addr, size // PAGE, protect=True, want=POPULATED)

    def harvest(self, addr: int, npages: int) -> np.ndarray:
        """Categories of the registered pages, then protect them all again (one walk)."""
        return scan(addr, npages, protect=True)

    def _self_test(self) -> bool:
        """Check on a scratch mapping that writes are reported exactly as this code assumes."""
        n = 4
        m = mmap.mmap(-1, n * PAGE)
        base = ctypes.addressof(ctypes.c_char.from_buffer(m))

        def written(protect: bool) -> list[int]:
            return [p for a, b, c in regions(base, n, protect)
                    if c & PAGE_IS_WRITTEN and c & POPULATED for p in range(a, b)]

        try:
            ctypes.memset(base, 1, PAGE)                    # page 0 present before
            self.register(base, n * PAGE)
            if written(True):
                return False
            ctypes.memset(base + PAGE, 2, 8)               # page 1: first touch
            ctypes.memset(base + 8, 3, 8)                   # page 0: rewrite
            if written(True) != [0, 1] or written(False):  # reported, then re-protected
                return False
            discard(base, PAGE)                             # page 0 discarded
            cats = {p: c for a, b, c in regions(base, n) for p in range(a, b)}
            return not cats.get(0, 0) & PAGE_IS_PRESENT or bool(cats[0] & PAGE_IS_PFNZERO)
        finally:
            m.close()
