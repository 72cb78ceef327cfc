"""Guest pages in the engine's TLB, and where a bad access went.

Every engine runs its TLB in Unicorn's virtual mode with a UC_HOOK_TLB_FILL callback that
maps each guest page to itself, executable only for a fetch and writable only for a load or
store, so no data page is executable in the TLB and stores after the first to a page skip
Unicorn's TLB_NOTDIRTY slow path (a store loop: ~18 -> ~5 ns per store, see
docs/UNICORN-NOTES.md).  No memory hook is installed over guest memory, for any hook there
puts every store back on the slow path; instead the region protections set by
uc_mem_map_ptr/uc_mem_protect (the VMAs') refuse a forbidden access, and emu_start returns
UC_ERR_{READ,WRITE,FETCH}_{UNMAPPED,PROT}.  The faulting address is then read from the
engine's `invalid_addr` field, whose offset is found once per host process by behaviour
(`quirks.offset("invalid_addr")`).  The callback is C (engine/blockhook.c); without the
extension a ctypes callback with the same answers is used (one Python call per TLB miss).
"""

from __future__ import annotations

import ctypes

from vkckpt.engine import libuc, quirks
from vkckpt.engine import ucconst as C
from vkckpt.engine.preempt import native_symbol

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


def install(uch: int) -> None:
    """Put the engine's TLB in virtual mode, filled by the identity callback."""
    libuc.set_tlb_virtual(uch)
    native = native_symbol("vk_tlb_fill_cb")
    libuc.hook_add(uch, C.HOOK_TLB_FILL, native or ctypes.cast(_python_fill,
                                                              ctypes.c_void_p).value or 0)


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
