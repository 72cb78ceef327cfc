"""A process address space: VMAs kept in step with the Unicorn engine that executes them."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from vkckpt.abi import errno as E
from vkckpt.abi.mman import MADV_DONTNEED, MADV_VALID, TASK_SIZE
from vkckpt.engine.engine import Engine
from vkckpt.errors import GuestError
from vkckpt.vmspace import arena, filemap
from vkckpt.vmspace.account import MAX_MAP_COUNT, MemAccount, space_cost
from vkckpt.vmspace.hostmem import HostBuffer
from vkckpt.vmspace.vma import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_PRIVATE,
    MAP_SHARED,
    PAGE,
    Vma,
    VmaList,
    page_up,
)

MMAP_TOP = 0x7F00_0000_0000
MMAP_BOTTOM = 0x1_0000
USER_TOP = 0x7FFF_FFFF_F000
HEAP_RESERVE = 1 << 30


class VmSpace:
    """The VMAs, brk and memory of one process, mirrored into its engine.

    Invariant: every VMA with prot != 0 is mapped in the engine at its host address;
    PROT_NONE VMAs are not mapped at all, so any access faults like an unmapped page.
    Invariant: of a VMA on a file's pages (filemap.FileBuffer) only the leading
    `file_mapped[start]` bytes, those on pages inside the file, are mapped in the engine.
    Invariant: `charged` (held in `mem`, the vkernel's account) is space_cost() of the
    VMAs; an operation that would take the account past its limit, or the VMA count past
    max_map_count, fails with ENOMEM before it changes anything.
    """

    def __init__(self, engine: Engine, mem: MemAccount | None = None,
                 alloc_bid: Callable[[], int] | None = None,
                 max_map_count: int = MAX_MAP_COUNT) -> None:
        self.engine = engine
        self.alloc_bid = alloc_bid or _local_ids()
        self.vmas = VmaList()
        self.mem = mem if mem is not None else MemAccount()
        self.max_map_count = max_map_count
        self.charged = 0
        self.region_work = 0  # engine region work of the running time slice (kernel.py)
        self.brk_start = 0
        self.brk = 0
        self.file_mapped: dict[int, int] = {}  # file VMA start -> bytes mapped in the engine
        self._settle()  # the engine's own cost; callers check room first (fits_new)

    # -- accounting --------------------------------------------------------------------------
    def check_room(self, nbytes: int, nvmas: int) -> None:
        """ENOMEM unless nbytes more mapped and nvmas more VMAs fit the limits."""
        if nvmas > 0 and len(self.vmas) + nvmas > self.max_map_count:
            raise GuestError(E.ENOMEM, "too many mappings (max_map_count)")
        grow = space_cost(self.vmas.bytes + nbytes, len(self.vmas) + nvmas) - self.charged
        if grow > 0 and not self.mem.fits(grow):
            raise GuestError(E.ENOMEM, "vkernel memory limit")

    def _settle(self) -> None:
        """Bring the account in step with the VMAs after a change."""
        cost = space_cost(self.vmas.bytes, len(self.vmas))
        self.mem.force(cost - self.charged)
        self.charged = cost

    # -- engine mirroring --------------------------------------------------------------------
    def _map(self, v: Vma) -> None:
        if v.prot:
            size = v.size
            if v.buf.file_key is not None:
                size = self.file_mapped[v.start] = v.buf.mapped_len(v.off, v.size)
                if not size:
                    return
            self.engine.map_host(v.start, size, v.prot, v.host_addr(v.start))
            # Unicorn's cost of one more region grows with the square of those there; this
            # guest-determined estimate (one unit ~ 0.6 ms here) ends the slice in time.
            n = len(self.vmas)
            self.region_work += 1 + (n * n >> 16)

    def _unmap(self, v: Vma) -> None:
        if v.prot:
            size = self.file_mapped.pop(v.start, 0) if v.buf.file_key is not None else v.size
            if size:
                self.engine.unmap(v.start, size)

    def refresh(self, v: Vma) -> None:
        """Map v in the engine again (a file VMA whose file has changed size)."""
        self._unmap(v)
        self._map(v)

    def _apply(self, old: list[Vma], new: list[Vma]) -> None:
        for v in old:
            self._unmap(v)
        for v in new:
            self._map(v)

    def _remap(self, start: int, end: int, change: Callable[[], object]) -> None:
        """Run change() on the VMA list, merge equal neighbours around [start, end), and
        bring the engine in step: regions that changed only their protection are changed in
        place, the others unmapped and mapped (each new region is costly: arena.py)."""
        lo, hi = max(start - 1, 0), end + 1
        before = self.vmas.overlapping(lo, hi)
        change()
        self.vmas.merge(lo, hi)
        after = self.vmas.overlapping(lo, hi)
        gone = [v for v in before if not any(v is w for w in after)]
        new = [v for v in after if not any(v is w for w in before)]
        if len(gone) == len(new) and all(
                (a.start, a.end, a.buf, a.off) == (b.start, b.end, b.buf, b.off) and a.prot and
                b.prot and a.buf.file_key is None for a, b in zip(gone, new, strict=True)):
            for v in new:
                self.engine.protect(v.start, v.size, v.prot)
        else:
            self._apply(gone, new)
        self._settle()

    @property
    def mapped_bytes(self) -> int:
        return self.vmas.bytes

    # -- mmap family -------------------------------------------------------------------------
    def mmap(self, addr: int, length: int, prot: int, flags: int, name: str = "",
             data: bytes = b"", path: str = "", file_off: int = 0,
             backing: Callable[[int, int], HostBuffer] | None = None) -> int:
        """Implement mmap(2) for anonymous memory, private file copies (data) and shared
        file mappings (backing(size, bid): the file's pages, filemap.FileBuffer)."""
        if length <= 0 or addr % PAGE or length > USER_TOP:
            raise GuestError(E.EINVAL)
        if not flags & (MAP_PRIVATE | MAP_SHARED):
            raise GuestError(E.EINVAL)
        size = page_up(length)
        fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)
        if fixed:
            if addr + size > USER_TOP or addr < MMAP_BOTTOM:
                raise GuestError(E.EPERM if addr < MMAP_BOTTOM else E.ENOMEM)
            if flags & MAP_FIXED_NOREPLACE and self.vmas.overlapping(addr, addr + size):
                raise GuestError(E.EEXIST)
        elif not (addr >= MMAP_BOTTOM and addr + size <= MMAP_TOP
                  and not self.vmas.overlapping(addr, addr + size)):
            found = self.vmas.find_free(size, MMAP_TOP, MMAP_BOTTOM)
            if found is None:
                raise GuestError(E.ENOMEM)
            addr = found
        old, kept = self.vmas.edges(addr, addr + size) if fixed else ([], 0)
        replaced = sum(min(v.end, addr + size) - max(v.start, addr) for v in old)
        self.check_room(size - replaced, 1 + kept - len(old))
        if fixed:
            self.unmap_range(addr, size)
        if backing is not None:
            buf, off = backing(size, self.alloc_bid()), 0
        elif not data and not name and flags & MAP_ANONYMOUS and not flags & MAP_SHARED and \
                size <= arena.MAX_IN_ARENA:
            buf, off = arena.place(self.vmas, addr, size, self.alloc_bid)
        else:
            buf, off = HostBuffer(size, self.alloc_bid()), 0
        if data:
            buf.view[: min(len(data), size)] = data[:size]
        v = Vma(addr, addr + size, prot & 7, flags & ~(MAP_FIXED | MAP_FIXED_NOREPLACE),
                name, buf, off, path, file_off)
        self._remap(addr, addr + size, lambda: self.vmas.insert(v))
        return addr

    def unmap_range(self, addr: int, size: int) -> None:
        """Remove [addr, addr+size) from the address space (munmap's core).

        ENOMEM when splitting a VMA would pass max_map_count (as Linux's munmap)."""
        old, kept = self.vmas.edges(addr, addr + size)
        if len(self.vmas) + kept - len(old) > self.max_map_count:
            raise GuestError(E.ENOMEM, "too many mappings (max_map_count)")
        def cut() -> None:
            for piece in self.vmas.carve(addr, addr + size)[2]:
                if arena.window_of(piece) is not None and piece.buf.refs:
                    piece.buf.zero(piece.off, piece.size)  # the arena lives on: free pages
        self._remap(addr, addr + size, cut)

    def munmap(self, addr: int, length: int) -> None:
        """Implement munmap(2)."""
        if addr % PAGE or length <= 0 or addr + length > USER_TOP:
            raise GuestError(E.EINVAL)
        self.unmap_range(addr, page_up(length))

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        """Implement mprotect(2): the whole range must be mapped (else ENOMEM)."""
        if addr % PAGE:
            raise GuestError(E.EINVAL)
        end = addr + page_up(length)
        if length == 0:
            return
        if not self.vmas.covered(addr, end):
            raise GuestError(E.ENOMEM)
        old, kept = self.vmas.edges(addr, end)
        if all(v.prot == prot & 7 for v in old):
            return  # nothing changes: no split, no engine remap
        if prot & 2 and any(v.shared and not v.buf.writable for v in old):
            raise GuestError(E.EACCES, "the mapped file is not open for writing")
        self.check_room(0, kept)
        self._remap(addr, end, lambda: self.vmas.carve(addr, end,
                                                       lambda v: v.replace(prot=prot & 7)))

    def madvise(self, addr: int, length: int, advice: int) -> None:
        """Implement madvise(2): MADV_DONTNEED zeroes private pages, other valid advice is a
        hint; as on Linux the mapped parts are advised and a hole makes the call ENOMEM."""
        if advice not in MADV_VALID or addr % PAGE:
            raise GuestError(E.EINVAL)
        end = addr + page_up(length)
        if end >= 1 << 64:  # the page-rounded length wraps around
            raise GuestError(E.EINVAL)
        if advice == MADV_DONTNEED:
            for v in self.vmas.overlapping(addr, end):
                if not v.shared and not v.path:
                    s, e = max(v.start, addr), min(v.end, end)
                    v.buf.zero(v.off + s - v.start, e - s)
        if not self.vmas.covered(addr, end):
            raise GuestError(E.ENOMEM)

    # -- brk ---------------------------------------------------------------------------------
    def set_brk_start(self, addr: int) -> None:
        """Place the program break just above the loaded image (done by exec)."""
        self.brk_start = self.brk = page_up(addr)

    def sys_brk(self, new: int) -> int:
        """Implement brk(2): grow by mapping above the old break, shrink by unmapping.

        Always returns the (possibly unchanged) break. Growth extends the last [heap] VMA in
        place on its reserved host buffer when it can, so the heap stays one region.
        """
        if new < self.brk_start or new - self.brk_start > HEAP_RESERVE:
            return self.brk
        cur_end, want_end = page_up(self.brk), page_up(new)
        if want_end > cur_end:
            if self.vmas.overlapping(cur_end, want_end):
                return self.brk
            try:
                self.check_room(want_end - cur_end, 1)
            except GuestError:
                return self.brk
            self._grow_heap(cur_end, want_end)
        elif want_end < cur_end:
            self.unmap_range(want_end, cur_end - want_end)
        self.brk = new
        return new

    def _grow_heap(self, start: int, end: int) -> None:
        """Map [start, end) as heap, extending the [heap] VMA that ends at start if possible."""
        last = self.vmas.find(start - 1) if start > self.brk_start else None
        if last is not None and last.name == "[heap]" and last.end == start and \
                last.off + end - last.start <= last.buf.size and last.prot == 3:
            buf, off, first = last.buf.incref(), last.off, last.start
            self.vmas.remove(last)
            self._unmap(last)
        else:
            buf, off, first = HostBuffer(HEAP_RESERVE, self.alloc_bid()).incref(), 0, start
        buf.zero(off + start - first, end - start)  # earlier shrinks left old bytes here
        v = Vma(first, end, 3, MAP_PRIVATE | MAP_ANONYMOUS, "[heap]", buf, off)
        self.vmas.insert(v)
        self._map(v)
        buf.decref()
        self._settle()

    # -- memory access -----------------------------------------------------------------------
    def read(self, addr: int, size: int) -> bytes:
        """Copy guest memory (EFAULT if any byte is unmapped)."""
        try:
            return self.engine.read(addr, size)
        except GuestError:
            if not self._files_grew():
                raise
            return self.engine.read(addr, size)

    def _files_grew(self) -> bool:
        """A copy faulted: map file pages the files have grown over since (True if any)."""
        before = sum(self.file_mapped.values())
        filemap.sync_files(self)
        return sum(self.file_mapped.values()) > before

    def write(self, addr: int, data: bytes) -> None:
        """Copy into guest memory as the kernel's copy_to_user does: EFAULT unless every byte
        is mapped writable (Unicorn's own write ignores page protection)."""
        end = addr + len(data)
        v = self.vmas.find(addr)
        if v is None or not v.prot & 2 or (v.end < end and not self._writable(v.end, end)):
            if data:
                raise GuestError(E.EFAULT, f"write {len(data)} bytes at {addr:#x}")
            return
        try:
            self.engine.write(addr, data)
        except GuestError:
            if not self._files_grew():
                raise
            self.engine.write(addr, data)

    def _writable(self, start: int, end: int) -> bool:
        return self.vmas.covered(start, end) and all(
            v.prot & 2 for v in self.vmas.overlapping(start, end))

    def poke(self, addr: int, data: bytes) -> None:
        """Store into guest memory whatever its protection (ELF loading, mremap copies)."""
        at = addr
        while at < addr + len(data):
            v = self.vmas.find(at)
            if v is None:
                raise GuestError(E.EFAULT, f"poke at {at:#x}")
            n = min(v.end, addr + len(data)) - at
            off = v.off + at - v.start
            v.buf.view[off: off + n] = data[at - addr: at - addr + n]
            at += n

    # -- user-copy checks --------------------------------------------------------------------
    def user_span(self, addr: int, n: int, prot: int) -> int:
        """How many leading bytes of [addr, addr+n) the guest could access with prot.

        Linux copies to and from user memory up to the first byte that faults; the VMAs say
        where that is.  (The engine's own accessors also write read-only pages.)"""
        at, end = addr, addr + n
        while at < end:
            v = self.vmas.find(at)
            if v is None or not v.prot & prot:
                break
            at = v.end
        return min(at, end) - addr

    @staticmethod
    def access_ok(addr: int, n: int) -> None:
        """Linux's access_ok(): a user range must end below TASK_SIZE (else EFAULT)."""
        if addr + n > TASK_SIZE:
            raise GuestError(E.EFAULT)

    def read_u64(self, addr: int) -> int:
        return int.from_bytes(self.engine.read(addr, 8), "little")

    def write_u64(self, addr: int, value: int) -> None:
        self.write(addr, (value & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"))

    def read_cstr(self, addr: int, limit: int = 4096) -> bytes:
        """Read a NUL-terminated string of at most limit bytes (ENAMETOOLONG past it)."""
        out = bytearray()
        while len(out) < limit:
            chunk = self.engine.read(addr, min(PAGE - addr % PAGE, limit - len(out)))
            nul = chunk.find(b"\0")
            if nul >= 0:
                return bytes(out + chunk[:nul])
            out += chunk
            addr += len(chunk)
        raise GuestError(E.ENAMETOOLONG)

    # -- fork --------------------------------------------------------------------------------
    def fork(self, engine: Engine) -> VmSpace:
        """A copy of this address space on another engine; MAP_SHARED memory stays shared.

        The copy is charged in full (shared mappings too: every address space that maps a
        page counts it), and ENOMEM comes before anything is copied."""
        if not self.mem.fits(self.charged):
            raise GuestError(E.ENOMEM, "vkernel memory limit")
        child = VmSpace(engine, self.mem, self.alloc_bid, self.max_map_count)
        child.brk_start, child.brk = self.brk_start, self.brk
        copies: dict[int, HostBuffer] = {}
        for v in self.vmas:
            if v.shared:
                nb = v.buf
            else:
                nb = copies.get(id(v.buf))
                if nb is None:
                    nb = copies[id(v.buf)] = HostBuffer(v.buf.size, self.alloc_bid())
                nb.copy_from(v.buf, v.off, v.size)
            nv = v.replace(buf=nb)
            child.vmas.insert(nv)
            child._map(nv)
        child._settle()
        return child

    def release(self) -> None:
        """Drop every mapping (exit or exec) and give back what they and the engine cost;
        the engine itself is closed by the owner."""
        self.vmas.clear()
        self.file_mapped.clear()
        self.mem.uncharge(self.charged)
        self.charged = 0


def _local_ids() -> Callable[[], int]:
    """Buffer ids for a vmspace used outside a kernel (tests)."""
    return itertools.count(1).__next__
