"""The engine's TLB runs in virtual mode with no memory hook (engine/tlb.py): forbidden and
unmapped accesses still stop it, with the exact address and kind, and stores are fast."""

from __future__ import annotations

import ctypes
import mmap
import struct

import pytest

from vkckpt.engine import quirks
from vkckpt.engine.engine import Engine, Stop

CODE, DATA = 0x400000, 0x600000


def _engine(code: bytes, data_prot: int) -> tuple[Engine, list[mmap.mmap]]:
    e = Engine(lambda: False)
    pages = [mmap.mmap(-1, 0x1000), mmap.mmap(-1, 0x1000)]
    pages[0].write(code)
    for addr, page, prot in ((CODE, pages[0], 5), (DATA, pages[1], data_prot)):
        e.map_host(addr, 0x1000, prot, ctypes.addressof(ctypes.c_char.from_buffer(page)))
    return e, pages


def _store(addr: int) -> bytes:
    return b"\x48\xbb" + struct.pack("<Q", addr) + b"\x48\x89\x0b" + b"\xf4"  # mov [rbx],rcx


def _load(addr: int) -> bytes:
    return b"\x48\xbb" + struct.pack("<Q", addr) + b"\x48\x8b\x0b" + b"\xf4"  # mov rcx,[rbx]


def _jump(addr: int) -> bytes:
    return b"\x48\xbb" + struct.pack("<Q", addr) + b"\xff\xe3"  # jmp rbx


def test_the_fault_address_field_is_found() -> None:
    assert quirks.offset("invalid_addr") is not None


@pytest.mark.parametrize(("code", "prot", "addr", "kind"), [
    (_store(DATA + 0x123), 1, DATA + 0x123, (True, False, False)),      # read-only page
    (_load(DATA + 0x7), 0, DATA + 0x7, (False, False, False)),          # PROT_NONE page
    (_store(0x7777_0000_1235), 3, 0x7777_0000_1235, (True, False, True)),  # unmapped
    (_load(0x5555_0000_0009), 3, 0x5555_0000_0009, (False, False, True)),
    (_jump(DATA + 0x10), 3, DATA + 0x10, (False, True, False)),         # data is not code
    (_jump(0x6666_0000_0000), 3, 0x6666_0000_0000, (False, True, True)),
])
def test_a_bad_access_stops_at_its_instruction_with_its_address(
        code: bytes, prot: int, addr: int, kind: tuple[bool, bool, bool]) -> None:
    e, _pages = _engine(code, prot)
    try:
        assert e.run(CODE, 1000) is Stop.FAULT
        f = e.fault
        assert (f.addr, f.write, f.fetch, f.unmapped) == (addr, *kind)
        want_rip = addr if kind[1] else CODE + 10  # a fetch faults at its target
        assert e.reg("rip") == want_rip
    finally:
        e.close()


def test_protection_changes_apply_to_pages_already_in_the_tlb() -> None:
    e, _pages = _engine(_store(DATA), 3)
    try:
        assert e.run(CODE, 1000) is not Stop.FAULT  # the page is in the TLB, writable
        e.protect(DATA, 0x1000, 1)
        assert e.run(CODE, 1000) is Stop.FAULT and e.fault.write
    finally:
        e.close()


def test_the_python_fill_gives_the_same_answers(monkeypatch: pytest.MonkeyPatch,
                                                no_engine_pool: None) -> None:
    """Without the C extension the ctypes callback maps pages the same way."""
    from vkckpt.engine import tlb

    monkeypatch.setattr(tlb, "native_symbol", lambda name: None)
    e, _pages = _engine(_store(DATA + 8)[:-1] + _jump(DATA), 1)  # no hlt between
    try:
        assert e.run(CODE, 1000) is Stop.FAULT
        assert (e.fault.addr, e.fault.write, e.fault.unmapped) == (DATA + 8, True, False)
        e.protect(DATA, 0x1000, 3)
        assert e.run(CODE, 1000) is Stop.FAULT and e.fault.fetch  # then jumps into data
    finally:
        e.close()


def test_the_range_table_follows_map_protect_and_unmap() -> None:
    e = Engine(lambda: False)
    pages = mmap.mmap(-1, 4 * 0x1000)
    try:
        if not e.tlb.native:
            pytest.fail("the C extension is not built")
        e.map_host(DATA, 4 * 0x1000, 3, ctypes.addressof(ctypes.c_char.from_buffer(pages)))
        e.protect(DATA + 0x1000, 0x1000, 1)
        e.unmap(DATA + 0x2000, 0x1000)
        assert e.tlb.ranges() == [(DATA, DATA + 0x1000, 3), (DATA + 0x1000, DATA + 0x2000, 1),
                                  (DATA + 0x3000, DATA + 0x4000, 3)]
        e.protect(DATA, 0x2000, 5)
        assert e.tlb.ranges()[0] == (DATA, DATA + 0x2000, 5)  # the pieces it covers are one
        e.unmap(DATA, 0x2000)
        e.unmap(DATA + 0x3000, 0x1000)
        assert e.tlb.ranges() == []
    finally:
        e.close()


def test_loads_and_stores_compile_without_unicorns_stop_check() -> None:
    """No fault needs it (a refused fill stops at once), so the flag is set on every engine."""
    off = quirks.offset("no_exit_request")
    assert off is not None
    e = Engine(lambda: False)
    try:
        assert ctypes.c_uint8.from_address(e.uch + off).value == 1
    finally:
        e.close()


def _page_walk(npages: int) -> bytes:
    """mov rbx, DATA; mov ecx, npages; loop: mov rax, [rbx]; add rbx, 4096; dec ecx; jnz loop;
    hlt"""
    return (b"\x48\xbb" + struct.pack("<Q", DATA) + b"\xb9" + struct.pack("<I", npages)
            + b"\x48\x8b\x03\x48\x81\xc3\x00\x10\x00\x00\xff\xc9\x75\xf2\xf4")


def test_the_tlb_grows_to_a_working_set_over_its_first_size() -> None:
    """2048 pages walked again and again: QEMU's 256-entry TLB misses on each, until the
    flushes after runs with many fills let it double up to the working set."""
    n = 2048
    e = Engine(lambda: False)
    code = mmap.mmap(-1, 0x1000)
    data = mmap.mmap(-1, n * 0x1000)
    code.write(_page_walk(n))
    try:
        e.map_host(CODE, 0x1000, 5, ctypes.addressof(ctypes.c_char.from_buffer(code)))
        e.map_host(DATA, n * 0x1000, 3, ctypes.addressof(ctypes.c_char.from_buffer(data)))
        fills = []  # per run; a run that ended in a flush had at least GROW_AFTER
        for _ in range(12):
            before, flushes = e.tlb.state.fills, e.tlb.flushes
            assert e.run(CODE, 1_000_000) is Stop.INTERRUPT  # the hlt
            fills.append(None if e.tlb.flushes > flushes else e.tlb.state.fills - before)
        assert e.tlb.flushes >= 3  # 256 -> 512 -> 1024 -> 2048 -> 4096 entries
        assert fills[-1] is not None and fills[-1] < n // 10, fills
    finally:
        e.close()
