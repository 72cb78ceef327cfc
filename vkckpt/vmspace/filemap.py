"""Shared file mappings: host MAP_SHARED mappings of guest-root files handed to the engine.

A FileBuffer is the host's own mmap(MAP_SHARED) of a file range, so the guest's stores land
in the host page cache: read(2), write(2) and every other mapping of the file (in any
process of the vkernel, or of the host) see one copy, and write-back is the host's.  Its
pages are the file's, never anonymous memory: fork shares them, images do not hold them
(an image records the file and range; thaw maps the file again), and dirty tracking never
sees them.

A host page past the end of the file raises SIGBUS in the *vkernel* when touched, so the
engine maps only the part of a VMA inside the file (`mapped_len`); the rest faults like an
unmapped page and the kernel turns that into the guest's SIGBUS, or maps it first when the
file has grown since (file_fault).  A shrinking truncate unmaps at once (sync_files).
"""

from __future__ import annotations

import ctypes
import mmap
import os

from vkckpt.abi import errno as E
from vkckpt.abi.mman import PAGE
from vkckpt.errors import GuestError
from vkckpt.vmspace.hostmem import _MAP_FAILED, HostBuffer, _libc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vkckpt.host.fds import HostFds
    from vkckpt.vmspace.vmspace import VmSpace

_libc.msync.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


class FileBuffer(HostBuffer):
    """The host's mapping of file bytes [file_off, file_off+size) of one open file.

    Raises OSError when the host refuses the mapping (ENODEV for a directory, say).
    Owns `fd`, a host descriptor of the file (counted in `fds`), closed with the last
    reference; `writable` says whether the file was opened for writing (so the mapping may
    be made writable).  `private` (a read-only thaw) maps the file copy-on-write: stores
    never reach it.  Invariant: `view` is empty (pages past EOF must never be touched by
    the vkernel itself); the engine alone reads and writes them.
    """

    def __init__(self, fd: int, size: int, file_off: int, path: str, writable: bool, bid: int,
                 fds: HostFds, private: bool = False) -> None:
        fds.take()
        try:
            own = os.dup(fd)
        except OSError:
            fds.give()
            raise
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable or private else 0)
        kind = mmap.MAP_PRIVATE if private else mmap.MAP_SHARED
        addr = _libc.mmap(None, size, prot, kind, own, file_off)
        if addr in (None, _MAP_FAILED):
            err = ctypes.get_errno()
            os.close(own)
            fds.give()
            raise OSError(err, f"host mmap of {size} file bytes: {os.strerror(err)}")
        st = os.fstat(own)
        self.addr: int = addr
        self.size = size
        self.bid = bid
        self.refs = 0
        self.view = memoryview(b"")
        self.fd = own
        self.fds = fds
        self.file_off = file_off
        self.path = path
        self.writable = writable
        self.private = private
        self.file_key = (st.st_dev, st.st_ino)

    def file_size(self) -> int:
        """The file's size now."""
        return os.fstat(self.fd).st_size

    def mapped_len(self, off: int, length: int) -> int:
        """How many bytes of buffer range [off, off+length) lie on pages inside the file
        (the engine may map only those)."""
        inside = (self.file_size() + PAGE - 1) // PAGE * PAGE - self.file_off - off
        return max(0, min(length, inside))

    def sync(self, off: int, length: int, flags: int) -> None:
        """msync(2) the host pages of [off, off+length) with the host's MS_* flags."""
        _libc.msync(self.addr + off, length, flags)

    def copy_from(self, other: HostBuffer, off: int, length: int) -> None:
        raise TypeError("file pages are shared, never copied")

    def zero(self, off: int, length: int) -> None:
        """Nothing: a file's pages read back from the file (MADV_DONTNEED on a shared map)."""

    def decref(self) -> None:
        """Drop a reference; the last unmaps the host mapping and closes the file."""
        self.refs -= 1
        if self.refs == 0 and self.addr:
            _libc.munmap(self.addr, self.size)
            os.close(self.fd)
            self.fds.give()
            self.addr = 0


def msync(vm: VmSpace, addr: int, length: int, host_flags: int) -> None:
    """Implement msync(2) over a fully mapped range of vm: the host writes back the file
    pages of shared file mappings in it (stores are already in the host page cache)."""
    if addr % PAGE:
        raise GuestError(E.EINVAL)
    end = addr + (length + PAGE - 1) // PAGE * PAGE
    if not vm.vmas.covered(addr, end):
        raise GuestError(E.ENOMEM)
    for v in vm.vmas.overlapping(addr, end):
        if isinstance(v.buf, FileBuffer) and v.shared:
            s = max(v.start, addr)
            n = min(vm.file_mapped.get(v.start, 0) - (s - v.start), min(v.end, end) - s)
            if n > 0:
                v.buf.sync(v.off + s - v.start, n, host_flags)


def file_fault(vm: VmSpace, addr: int) -> bool | None:
    """A fault at addr in vm: None if no file mapping holds it unmapped, True once the page
    (inside the file again since it was mapped) is mapped to retry, False for SIGBUS."""
    v = vm.vmas.find(addr)
    if v is None or v.buf.file_key is None or not v.prot:
        return None
    if addr - v.start < vm.file_mapped.get(v.start, 0):
        return None  # mapped: a protection fault
    vm.refresh(v)
    return addr - v.start < vm.file_mapped.get(v.start, 0)


def sync_files(vm: VmSpace) -> None:
    """Bring vm's engine in step with the sizes of the files it maps (after a truncate:
    pages now past EOF must leave the engine before anything touches them)."""
    for v in vm.vmas:
        if v.buf.file_key is not None and v.prot and \
                v.buf.mapped_len(v.off, v.size) != vm.file_mapped.get(v.start, 0):
            vm.refresh(v)
