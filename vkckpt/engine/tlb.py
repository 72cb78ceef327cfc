"""Guest pages in the engine's TLB, and where a bad access went.

Every engine runs its TLB in Unicorn's virtual mode with a UC_HOOK_TLB_FILL callback in C
(engine/blockhook.c) that maps each guest page to itself with the permissions of the
engine's mapping there: a table of ranges this module keeps beside every region the engine
maps, unmaps or protects.  A fetch's entry is never writable and a data access's never
executable, so stores after the first to a page skip Unicorn's TLB_NOTDIRTY slow path (a
store loop: ~18 -> ~5 ns per store, see UNICORN-NOTES).  No memory hook is installed over
guest memory (any hook there puts every store back on the slow path).  An access the table
refuses fails its fill: emu_start returns UC_ERR_EXCEPTION at once, with RIP at the
faulting instruction, the table says the access's kind and whether anything was mapped, and
the engine's `invalid_addr` field (offset probed by behaviour: `quirks.offset`) the exact
address.  Because no fault waits for Unicorn's stop check after each load and store, code
is compiled without it (`quirks.skip_access_exit_checks`: ~18% of a busybox sort).

QEMU sizes its TLB (256 entries to start, up to 2^20) only when it is flushed, by how full
it was; Unicorn never flushes it on its own, so a guest whose working set is over 1 MiB
would miss forever in 256 entries.  The callback counts its fills, and after a run with
many the engine flushes its TLB so QEMU can double it (the sort: ~8% faster).  The TLB's
size is the host's business: guests cannot observe it.

Without the C extension a ctypes callback maps every page with the identity fill and the
regions' own protections refuse accesses (emu_start returns UC_ERR_{READ,WRITE,FETCH}_
{UNMAPPED,PROT}); that path keeps Unicorn's stop check, one Python call per TLB miss.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

from vkckpt.engine import libuc, quirks
from vkckpt.engine import ucconst as C
from vkckpt.engine.preempt import native_library, native_symbol

_DATA = C.PROT_READ | C.PROT_WRITE
_CODE = C.PROT_READ | C.PROT_EXEC


class _TlbEntry(ctypes.Structure):
    _fields_ = [("paddr", ctypes.c_uint64), ("perms", ctypes.c_int32)]


_FILL = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int,
                         ctypes.POINTER(_TlbEntry), ctypes.c_void_p)


@_FILL
def _python_fill(_uc: int, addr: int, kind: int, entry: ctypes._Pointer, _ud: int) -> bool:
    entry.contents.paddr = addr
    entry.contents.perms = _CODE if kind == C.MEM_FETCH else _DATA
    return True


#: TLB fills since the last flush after which the next run's end flushes it
GROW_AFTER = 4096


class TlbState(ctypes.Structure):
    """struct vk_tlb_state (blockhook.c): the fill count, the last refusal, the ranges."""

    _fields_ = [("fills", ctypes.c_uint64), ("fault_page", ctypes.c_uint64),
                ("fault_type", ctypes.c_int32), ("fault_unmapped", ctypes.c_int32),
                ("faulted", ctypes.c_int32), ("unmapping", ctypes.c_int32),
                ("ranges", ctypes.c_void_p), ("count", ctypes.c_uint64),
                ("cap", ctypes.c_uint64)]


def _native() -> tuple[int, ctypes.CDLL] | None:
    """The C fill callback and the library holding the range functions, if usable."""
    lib = native_library()
    fill = native_symbol("vk_tlb_fill_cb")
    if lib is None or fill is None:
        return None
    size = lib.vk_tlb_state_size
    size.restype = ctypes.c_uint64
    if size() != ctypes.sizeof(TlbState):
        return None
    lib.vk_tlb_set.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64,
                               ctypes.c_int64]
    lib.vk_tlb_set.restype = ctypes.c_int
    lib.vk_tlb_release.argtypes = [ctypes.c_void_p]
    return fill, lib


class Tlb:
    """An engine's TLB: virtual mode, the fill from its mappings, growing it when it misses."""

    def __init__(self, uch: int) -> None:
        self.uch = uch
        self.state = TlbState()
        self.flushes = 0
        native = _native()
        self._lib = native[1] if native else None
        libuc.set_tlb_virtual(uch)
        if native is not None:
            # the end of every run would otherwise fill (and be refused) the page of `until`
            libuc.use_exits(uch)
            # no fault waits for the stop check any more: compile loads and stores without it
            quirks.skip_access_exit_checks(uch)
            libuc.hook_add(uch, C.HOOK_TLB_FILL, native[0], ctypes.addressof(self.state))
        else:
            libuc.hook_add(uch, C.HOOK_TLB_FILL,
                           ctypes.cast(_python_fill, ctypes.c_void_p).value or 0)

    @property
    def native(self) -> bool:
        """True when the C callback fills from the table (and refuses bad accesses)."""
        return self._lib is not None

    def set(self, start: int, end: int, prot: int | None) -> None:
        """[start, end) is now mapped with prot (PROT_* bits), or unmapped (None)."""
        if self._lib is not None and self._lib.vk_tlb_set(
                ctypes.addressof(self.state), start, end, -1 if prot is None else prot & 7):
            raise MemoryError("the engine's range table")

    def ranges(self) -> list[tuple[int, int, int]]:
        """The table as (start, end, prot) in address order (for tests and debugging)."""
        st = self.state
        if not st.count:
            return []
        raw = (ctypes.c_int64 * (3 * st.count)).from_address(st.ranges)
        return [(raw[i] & (2**64 - 1), raw[i + 1] & (2**64 - 1), raw[i + 2])
                for i in range(0, 3 * st.count, 3)]

    def unmapping(self, unmap: Callable[[], object]) -> None:
        """Run unmap (uc_mem_unmap calls) letting their fills through: Unicorn looks the
        first page up as code to drop its translated blocks, then flushes every page, and a
        refusal there would stop the engine with UC_ERR_EXCEPTION."""
        self.state.unmapping = 1
        try:
            unmap()
        finally:
            self.state.unmapping = 0

    def before_run(self) -> None:
        self.state.faulted = 0

    def fault(self, uch: int) -> tuple[int, bool, bool, bool] | None:
        """(address, write, fetch, unmapped) of the access the last run's fill refused."""
        st = self.state
        if not st.faulted:
            return None
        addr = fault_address(uch)  # its offset is probed at the first fault, not at start
        if addr is None or addr >> 12 != st.fault_page >> 12:
            addr = st.fault_page  # the field is unknown: the page is what is certain
        return (addr, st.fault_type == C.MEM_WRITE, st.fault_type == C.MEM_FETCH,
                bool(st.fault_unmapped))

    def after_run(self) -> None:
        """Flush after many fills, so QEMU resizes the TLB for the working set."""
        if self.state.fills >= GROW_AFTER:
            self.state.fills = 0
            self.flushes += 1
            libuc.flush_tlb(self.uch)

    def reset(self) -> None:
        """Forget every range and count (the engine was scrubbed for reuse: engine/pool.py)."""
        self.close()
        self.state.fills = self.state.faulted = 0
        self.flushes = 0

    def close(self) -> None:
        """Free the range table (the engine is closed)."""
        if self._lib is not None:
            self._lib.vk_tlb_release(ctypes.addressof(self.state))


def install(uch: int) -> Tlb:
    """Put the engine's TLB in virtual mode, filled from the engine's mappings."""
    return Tlb(uch)


#: emu_start's error for a bad access -> (write, fetch, unmapped)
FAULTS = {
    C.ERR_READ_UNMAPPED: (False, False, True), C.ERR_WRITE_UNMAPPED: (True, False, True),
    C.ERR_FETCH_UNMAPPED: (False, True, True), C.ERR_READ_PROT: (False, False, False),
    C.ERR_WRITE_PROT: (True, False, False), C.ERR_FETCH_PROT: (False, True, False),
}


def fault_address(uch: int) -> int | None:
    """The address of the access that stopped the engine (None if the field is unknown)."""
    off = quirks.offset("invalid_addr")
    if off is None:
        return None
    return ctypes.c_uint64.from_address(uch + off).value
