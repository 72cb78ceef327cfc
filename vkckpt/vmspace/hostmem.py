"""Host memory that backs guest pages: anonymous host mappings we own and hand to Unicorn.

After a lazy thaw (ckpt/lazy_thaw.py) some pages are still in the image: every bulk copy,
discard or unmap here first asks host/lazypages to copy in, forget or drop them.
"""

from __future__ import annotations

import ctypes
import mmap

from vkckpt.abi.mman import PAGE
from vkckpt.host import lazypages
from vkckpt.host.pagemap import populate_write, present_runs

#: pages: shorter runs are faulted in by the copy itself (a page fault each cost ~1-4 us on
#: a loaded host; one madvise backs a whole run)
PREFAULT_RUN = 16

# The interpreter's own symbols include libc's; ctypes.util.find_library would spawn a
# compiler or ldconfig subprocess (and import subprocess) just to name the same library.
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_MAP_NORESERVE = 0x4000
_MAP_FAILED = ctypes.c_void_p(-1).value


class HostBuffer:
    """A page-aligned, zero-filled host mapping; pages cost nothing until first touched.

    Several VMAs may share one buffer at different offsets (after a split) and several
    vmspaces may share one buffer (MAP_SHARED across fork); `refs` counts the users.
    """

    file_key: tuple[int, int] | None = None  # a file's host identity (filemap.FileBuffer)
    writable = True  # the backing may be mapped writable

    def __init__(self, size: int, bid: int = 0) -> None:
        addr = _libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE,
                          mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE, -1, 0)
        if addr in (None, _MAP_FAILED):
            raise MemoryError(f"host mmap of {size} bytes failed (errno {ctypes.get_errno()})")
        self.addr: int = addr
        self.size = size
        self.bid = bid  # the kernel-wide id images and futex keys use
        self.refs = 0
        self.view = memoryview((ctypes.c_ubyte * size).from_address(addr)).cast("B")

    def copy_from(self, other: HostBuffer, off: int, length: int) -> None:
        """Copy [off, off+length) of other into the same offsets of this buffer.

        Only pages the host has ever backed are copied (the rest read as zeros in both), so
        forking a process with large untouched mappings costs no host memory for them
        (pages a lazy thaw has not loaded yet are loaded first: absent, they would be lost).
        A run of at least PREFAULT_RUN pages is backed in one call before it is copied."""
        lazypages.materialise(other.addr + off, length)
        npages = length // PAGE
        runs = present_runs(other.addr + off, npages) if npages > 16 else None
        if runs is None:
            ctypes.memmove(self.addr + off, other.addr + off, length)
            return
        for first, end in runs:
            a = off + first * PAGE
            if end - first >= PREFAULT_RUN:
                populate_write(self.addr + a, (end - first) * PAGE)
            ctypes.memmove(self.addr + a, other.addr + a, (end - first) * PAGE)
        tail = length - npages * PAGE
        if tail:
            ctypes.memmove(self.addr + off + npages * PAGE, other.addr + off + npages * PAGE,
                           tail)

    def zero(self, off: int, length: int) -> None:
        """Give back [off, off+length) to the host: it reads as zeros again (MADV_DONTNEED)."""
        lazypages.forget(self.addr + off, length)
        _libc.madvise(self.addr + off, length, mmap.MADV_DONTNEED)

    def incref(self) -> HostBuffer:
        """Take one more reference; returns self."""
        self.refs += 1
        return self

    def decref(self) -> None:
        """Drop a reference and unmap the host memory with the last one."""
        self.refs -= 1
        if self.refs == 0 and self.addr:
            self.view.release()
            lazypages.drop(self.addr, self.size)
            _libc.munmap(self.addr, self.size)
            self.addr = 0


def materialise_all() -> None:
    """Load every page a lazy thaw left in its image (before a freeze reads guest memory in
    bulk: its page scans take absent pages for zeros)."""
    lazypages.materialise_all()
