"""VmSpace on a real Unicorn engine: mmap/munmap/mprotect/madvise/brk/fork and the limit.

Every check that memory is (or is not) there goes through the engine, so the VMA list and the
engine's mappings are tested together.
"""

from __future__ import annotations

import pytest

from vkckpt.abi import errno as E
from vkckpt.engine.engine import Engine
from vkckpt.errors import GuestError
from vkckpt.vmspace.account import MemAccount, space_cost
from vkckpt.vmspace.vma import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_PRIVATE,
    MAP_SHARED,
    PAGE,
)
from vkckpt.vmspace.vmspace import HEAP_RESERVE, MADV_DONTNEED, MMAP_BOTTOM, MMAP_TOP, VmSpace

ANON = MAP_PRIVATE | MAP_ANONYMOUS
SHARED = MAP_SHARED | MAP_ANONYMOUS
RW, RO, NONE = 3, 1, 0
FIX = 0x2000_0000  # a free fixed address for tests that want one
MADV_WILLNEED = 3


def new_engine() -> Engine:
    return Engine(on_syscall=lambda: False)


def limited(pages: int, vmas: int) -> VmSpace:
    """A vmspace whose account holds exactly `pages` mapped pages in `vmas` VMAs."""
    return VmSpace(new_engine(), MemAccount(space_cost(pages * PAGE, vmas)))


@pytest.fixture
def vm() -> VmSpace:
    space = VmSpace(new_engine())
    yield space
    space.release()


def errno_of(fn, *args) -> int:
    with pytest.raises(GuestError) as ei:
        fn(*args)
    return ei.value.errno


def faults(vm: VmSpace, addr: int, size: int = 1) -> bool:
    try:
        vm.engine.read(addr, size)
    except GuestError as exc:
        assert exc.errno == E.EFAULT
        return True
    return False


def engine_regions(vm: VmSpace) -> list[tuple[int, int, int]]:
    """The engine's own mappings as (start, end exclusive, perms), merged where contiguous."""
    out: list[list[int]] = []
    for begin, end, perms in sorted(vm.engine.regions()):
        if out and out[-1][1] == begin and out[-1][2] == perms:
            out[-1][1] = end + 1
        else:
            out.append([begin, end + 1, perms])
    return [tuple(r) for r in out]


def vma_regions(vm: VmSpace) -> list[tuple[int, int, int]]:
    """The VMAs the engine should have mapped (prot != 0), merged the same way."""
    out: list[list[int]] = []
    for v in vm.vmas:
        if not v.prot:
            continue
        if out and out[-1][1] == v.start and out[-1][2] == v.prot:
            out[-1][1] = v.end
        else:
            out.append([v.start, v.end, v.prot])
    return [tuple(r) for r in out]


def fill(vm: VmSpace, addr: int, npages: int, base: int = 0x10) -> None:
    """Write a distinct byte pattern into each page."""
    for i in range(npages):
        vm.write(addr + i * PAGE, bytes([base + i]) * PAGE)


def page_byte(vm: VmSpace, addr: int) -> bytes:
    data = vm.read(addr, PAGE)
    assert len(set(data)) == 1, "page is not uniform"
    return data[:1]


# -- mmap ------------------------------------------------------------------------------------


def test_mmap_without_hint_is_top_down_zeroed_and_mapped(vm: VmSpace):
    a = vm.mmap(0, 3 * PAGE, RW, ANON, name="a")
    b = vm.mmap(0, 100, RW, ANON)  # rounded up to a page
    assert a % PAGE == 0 and MMAP_BOTTOM <= a and a + 3 * PAGE <= MMAP_TOP
    assert b + PAGE <= a  # the next mapping goes below the previous one
    assert vm.read(a, 3 * PAGE) == bytes(3 * PAGE)
    vm.write(a + 5, b"hello")
    assert vm.read(a, 10) == b"\0" * 5 + b"hello"
    assert vm.vmas.find(b).size == PAGE
    assert vm.vmas.find(a).name == "a"
    assert vm.mapped_bytes == 4 * PAGE
    assert engine_regions(vm) == vma_regions(vm)


def test_mmap_honours_a_free_hint(vm: VmSpace):
    assert vm.mmap(FIX, 2 * PAGE, RW, ANON) == FIX
    # the same hint again overlaps: the kernel picks another, non-overlapping address
    other = vm.mmap(FIX, 2 * PAGE, RW, ANON)
    assert other != FIX
    assert other + 2 * PAGE <= FIX or other >= FIX + 2 * PAGE
    assert len(vm.vmas) == 2


def test_mmap_with_data_copies_it(vm: VmSpace):
    a = vm.mmap(0, PAGE + 10, RO, ANON, data=b"\x7fELF" + b"z" * 5000)
    assert vm.read(a, 4) == b"\x7fELF"
    assert vm.read(a + 5003, 5) == b"z\0\0\0\0"
    assert vm.vmas.find(a).size == 2 * PAGE


def test_map_fixed_replaces_existing_pages(vm: VmSpace):
    a = vm.mmap(FIX, 4 * PAGE, RW, ANON)
    fill(vm, a, 4)
    assert vm.mmap(a + PAGE, 2 * PAGE, RO, ANON | MAP_FIXED) == a + PAGE
    assert page_byte(vm, a) == b"\x10"
    assert vm.read(a + PAGE, 2 * PAGE) == bytes(2 * PAGE)  # fresh zero pages
    assert page_byte(vm, a + 3 * PAGE) == b"\x13"
    assert [(v.start, v.end, v.prot) for v in vm.vmas] == [
        (a, a + PAGE, RW), (a + PAGE, a + 3 * PAGE, RO), (a + 3 * PAGE, a + 4 * PAGE, RW)]
    assert not any(v.flags & MAP_FIXED for v in vm.vmas)
    assert vm.mapped_bytes == 4 * PAGE
    assert engine_regions(vm) == vma_regions(vm)


def test_map_fixed_noreplace(vm: VmSpace):
    a = vm.mmap(FIX, 2 * PAGE, RW, ANON)
    vm.write(a, b"keep")
    assert errno_of(vm.mmap, a + PAGE, 2 * PAGE, RW, ANON | MAP_FIXED_NOREPLACE) == E.EEXIST
    assert errno_of(vm.mmap, a - PAGE, 2 * PAGE, RW, ANON | MAP_FIXED_NOREPLACE) == E.EEXIST
    assert vm.read(a, 4) == b"keep" and len(vm.vmas) == 1
    # right next to it is free
    assert vm.mmap(a + 2 * PAGE, PAGE, RW, ANON | MAP_FIXED_NOREPLACE) == a + 2 * PAGE
    assert len(vm.vmas) == 2


@pytest.mark.parametrize("args, err", [
    ((0, 0, RW, ANON), E.EINVAL),                         # zero length
    ((FIX + 1, PAGE, RW, ANON | MAP_FIXED), E.EINVAL),    # unaligned fixed address
    ((0, PAGE, RW, MAP_ANONYMOUS), E.EINVAL),             # neither private nor shared
    ((0x1000, PAGE, RW, ANON | MAP_FIXED), E.EPERM),      # below the lowest mappable address
    ((0x7FFF_FFFF_E000, 4 * PAGE, RW, ANON | MAP_FIXED), E.ENOMEM),  # past the user top
])
def test_mmap_errors(vm: VmSpace, args, err):
    assert errno_of(vm.mmap, *args) == err
    assert len(vm.vmas) == 0


def test_mmap_hint_below_min_addr_is_not_used(vm: VmSpace):
    a = vm.mmap(0x1000, PAGE, RW, ANON)
    assert a >= MMAP_BOTTOM


def test_memory_limit():
    small = limited(4, 3)
    a = small.mmap(0, 3 * PAGE, RW, ANON)
    assert errno_of(small.mmap, 0, 2 * PAGE, RW, ANON) == E.ENOMEM
    assert small.mapped_bytes == 3 * PAGE
    small.mmap(0, PAGE, RW, ANON)  # exactly at the limit is fine
    assert errno_of(small.mmap, 0, PAGE, RW, ANON) == E.ENOMEM
    small.munmap(a, PAGE)
    small.mmap(0, PAGE, RW, ANON)  # room again after munmap
    assert small.mapped_bytes == 4 * PAGE
    assert small.mem.used <= small.mem.limit
    small.release()
    assert small.mem.used == 0  # the engine's share too


def test_map_fixed_over_existing_at_the_limit():
    small = limited(4, 3)
    a = small.mmap(0, 4 * PAGE, RW, ANON)
    try:
        assert small.mmap(a + PAGE, PAGE, RO, ANON | MAP_FIXED) == a + PAGE
        assert small.mapped_bytes == 4 * PAGE
    finally:
        small.release()


# -- munmap ----------------------------------------------------------------------------------


def test_munmap_middle_splits_and_unmaps_in_the_engine(vm: VmSpace):
    a = vm.mmap(FIX, 5 * PAGE, RW, ANON)
    fill(vm, a, 5)
    vm.munmap(a + PAGE, 2 * PAGE)
    assert [(v.start, v.end) for v in vm.vmas] == [(a, a + PAGE), (a + 3 * PAGE, a + 5 * PAGE)]
    assert faults(vm, a + PAGE) and faults(vm, a + 3 * PAGE - 1)
    assert faults(vm, a + PAGE - 4, 8)  # straddling the new edge
    assert page_byte(vm, a) == b"\x10"
    assert page_byte(vm, a + 3 * PAGE) == b"\x13"
    assert page_byte(vm, a + 4 * PAGE) == b"\x14"
    with pytest.raises(GuestError) as ei:
        vm.write(a + 2 * PAGE, b"x")
    assert ei.value.errno == E.EFAULT
    assert vm.mapped_bytes == 3 * PAGE
    assert engine_regions(vm) == vma_regions(vm)


def test_munmap_spanning_vmas_and_holes(vm: VmSpace):
    a = vm.mmap(FIX, PAGE, RW, ANON | MAP_FIXED)
    b = vm.mmap(FIX + 2 * PAGE, 3 * PAGE, RW, ANON | MAP_FIXED)
    c = vm.mmap(FIX + 6 * PAGE, PAGE, RW, ANON | MAP_FIXED)
    vm.write(c, b"c")
    vm.write(b + 2 * PAGE, b"b")
    vm.mprotect(b, 3 * PAGE, RO)
    vm.munmap(a, 4 * PAGE - 1)  # rounds up to [a, a + 4 pages): a whole, b's first two pages
    assert [(v.start, v.end) for v in vm.vmas] == [(b + 2 * PAGE, b + 3 * PAGE), (c, c + PAGE)]
    assert faults(vm, a) and faults(vm, b) and faults(vm, b + PAGE)
    assert vm.read(b + 2 * PAGE, 1) == b"b" and vm.read(c, 1) == b"c"
    assert vm.vmas.find(b + 2 * PAGE).prot == RO
    assert engine_regions(vm) == vma_regions(vm)


def test_munmap_partial_keeps_tail(vm: VmSpace):
    b = vm.mmap(FIX, 3 * PAGE, RW, ANON)
    fill(vm, b, 3)
    vm.munmap(b, PAGE + 1)  # rounds up to two pages
    assert faults(vm, b + PAGE)
    assert page_byte(vm, b + 2 * PAGE) == b"\x12"
    vm.munmap(b + 10 * PAGE, PAGE)  # nothing there: not an error
    assert len(vm.vmas) == 1


@pytest.mark.parametrize("addr, length", [(FIX + 1, PAGE), (FIX, 0), (FIX, -PAGE)])
def test_munmap_einval(vm: VmSpace, addr, length):
    vm.mmap(FIX, PAGE, RW, ANON)
    assert errno_of(vm.munmap, addr, length) == E.EINVAL
    assert len(vm.vmas) == 1


# -- mprotect --------------------------------------------------------------------------------


def test_mprotect_partial_keeps_data_and_records_prot(vm: VmSpace):
    a = vm.mmap(FIX, 4 * PAGE, RW, ANON)
    fill(vm, a, 4)
    vm.mprotect(a + PAGE, 2 * PAGE, RO)
    assert [(v.start, v.end, v.prot) for v in vm.vmas] == [
        (a, a + PAGE, RW), (a + PAGE, a + 3 * PAGE, RO), (a + 3 * PAGE, a + 4 * PAGE, RW)]
    assert [page_byte(vm, a + i * PAGE) for i in range(4)] == [b"\x10", b"\x11", b"\x12", b"\x13"]
    assert engine_regions(vm) == [(a, a + PAGE, RW), (a + PAGE, a + 3 * PAGE, RO),
                                  (a + 3 * PAGE, a + 4 * PAGE, RW)]
    # all pieces still share the one host buffer, at the right offsets
    bufs = {id(v.buf) for v in vm.vmas}
    assert len(bufs) == 1 and next(iter(vm.vmas)).buf.refs == 3
    vm.mprotect(a, 4 * PAGE, RW)  # over several VMAs at once
    assert {v.prot for v in vm.vmas} == {RW}
    assert page_byte(vm, a + 2 * PAGE) == b"\x12"


def test_prot_none_faults_and_comes_back(vm: VmSpace):
    a = vm.mmap(FIX, 3 * PAGE, RW, ANON)
    fill(vm, a, 3)
    vm.mprotect(a + PAGE, PAGE, NONE)
    assert faults(vm, a + PAGE) and faults(vm, a + 2 * PAGE - 1)
    assert page_byte(vm, a) == b"\x10" and page_byte(vm, a + 2 * PAGE) == b"\x12"
    assert vm.vmas.find(a + PAGE).prot == NONE  # still a VMA, just inaccessible
    assert vm.mapped_bytes == 3 * PAGE
    assert engine_regions(vm) == [(a, a + PAGE, RW), (a + 2 * PAGE, a + 3 * PAGE, RW)]
    vm.mprotect(a + PAGE, PAGE, RO)
    assert page_byte(vm, a + PAGE) == b"\x11"  # the bytes survived PROT_NONE


def test_mmap_prot_none_is_not_in_the_engine(vm: VmSpace):
    a = vm.mmap(0, 2 * PAGE, NONE, ANON)
    assert faults(vm, a)
    assert engine_regions(vm) == []
    vm.mprotect(a, 2 * PAGE, RW)
    assert vm.read(a, 2 * PAGE) == bytes(2 * PAGE)


def test_mprotect_errors(vm: VmSpace):
    a = vm.mmap(FIX, PAGE, RW, ANON)
    vm.mmap(FIX + 2 * PAGE, PAGE, RW, ANON)
    assert errno_of(vm.mprotect, a + 1, PAGE, RO) == E.EINVAL
    assert errno_of(vm.mprotect, a, 3 * PAGE, RO) == E.ENOMEM  # hole at a + PAGE
    assert {v.prot for v in vm.vmas} == {RW}  # nothing changed on failure
    vm.mprotect(a, 0, RO)  # zero length: success, no change
    assert {v.prot for v in vm.vmas} == {RW}


# -- madvise ---------------------------------------------------------------------------------


def test_madvise_dontneed_zeroes_private_pages(vm: VmSpace):
    a = vm.mmap(FIX, 3 * PAGE, RW, ANON)
    fill(vm, a, 3)
    vm.madvise(a + PAGE, PAGE, MADV_DONTNEED)
    assert page_byte(vm, a) == b"\x10"
    assert vm.read(a + PAGE, PAGE) == bytes(PAGE)
    assert page_byte(vm, a + 2 * PAGE) == b"\x12"
    vm.madvise(a, 3 * PAGE, MADV_WILLNEED)  # other advice changes nothing
    assert page_byte(vm, a) == b"\x10"
    assert errno_of(vm.madvise, a + 1, PAGE, MADV_DONTNEED) == E.EINVAL
    assert errno_of(vm.madvise, a, 4 * PAGE, MADV_DONTNEED) == E.ENOMEM


def test_madvise_dontneed_keeps_shared_pages(vm: VmSpace):
    """Shared anonymous memory keeps its contents (they live in the shared object)."""
    a = vm.mmap(FIX, PAGE, RW, SHARED)
    vm.write(a, b"shared")
    vm.madvise(a, PAGE, MADV_DONTNEED)
    assert vm.read(a, 6) == b"shared"


# -- brk -------------------------------------------------------------------------------------


def test_brk_grow_and_shrink(vm: VmSpace):
    vm.set_brk_start(0x40_1234)
    start = 0x40_2000
    assert vm.brk_start == vm.brk == start
    assert vm.sys_brk(0) == start  # a query
    assert vm.vmas.find(start) is None and faults(vm, start)

    top = vm.sys_brk(start + 3 * PAGE + 5)
    assert top == start + 3 * PAGE + 5 == vm.brk
    heap = vm.vmas.find(start)
    assert heap.name == "[heap]" and heap.end == start + 4 * PAGE and heap.prot == RW
    vm.write(start, b"A" * (4 * PAGE))

    assert vm.sys_brk(start + PAGE) == start + PAGE
    assert vm.vmas.find(start).end == start + PAGE
    assert faults(vm, start + PAGE) and faults(vm, start + 4 * PAGE - 1)
    assert vm.read(start, PAGE) == b"A" * PAGE

    assert vm.sys_brk(start + 4 * PAGE) == start + 4 * PAGE
    assert vm.read(start + PAGE, 3 * PAGE) == bytes(3 * PAGE)  # given back, so zero again
    assert vm.read(start, PAGE) == b"A" * PAGE


def test_brk_shrink_to_start_removes_heap_and_regrows_zeroed(vm: VmSpace):
    vm.set_brk_start(0x40_0000)
    vm.sys_brk(0x40_0000 + 2 * PAGE)
    vm.write(0x40_0000, b"B" * 2 * PAGE)
    assert vm.sys_brk(0x40_0000) == 0x40_0000
    assert vm.vmas.find(0x40_0000) is None and faults(vm, 0x40_0000)
    assert vm.sys_brk(0x40_0000 + PAGE) == 0x40_0000 + PAGE
    assert vm.read(0x40_0000, PAGE) == bytes(PAGE)


def test_brk_refusals_return_the_old_break(vm: VmSpace):
    start = 0x40_0000
    vm.set_brk_start(start)
    assert vm.sys_brk(start + PAGE) == start + PAGE
    assert vm.sys_brk(start - PAGE) == start + PAGE              # below the start
    assert vm.sys_brk(start + HEAP_RESERVE + PAGE) == start + PAGE  # past the reserve
    vm.mmap(start + 4 * PAGE, PAGE, RW, ANON | MAP_FIXED)
    assert vm.sys_brk(start + 8 * PAGE) == start + PAGE          # would overlap a mapping
    assert vm.vmas.find(start).end == start + PAGE
    assert vm.sys_brk(start + 4 * PAGE) == start + 4 * PAGE      # up to it is fine




def test_brk_grows_after_mprotect_split_the_heap(vm: VmSpace):
    start = 0x40_0000
    vm.set_brk_start(start)
    assert vm.sys_brk(start + 4 * PAGE) == start + 4 * PAGE
    vm.mprotect(start + 2 * PAGE, PAGE, RO)
    assert vm.sys_brk(start + 6 * PAGE) == start + 6 * PAGE


def test_brk_shrink_unmaps_split_heap_pieces(vm: VmSpace):
    start = 0x40_0000
    vm.set_brk_start(start)
    vm.sys_brk(start + 4 * PAGE)
    vm.mprotect(start + 2 * PAGE, PAGE, RO)
    assert vm.sys_brk(start + PAGE) == start + PAGE
    assert faults(vm, start + 2 * PAGE) and faults(vm, start + 3 * PAGE)
    assert vm.mapped_bytes == PAGE


def test_brk_respects_memory_limit():
    small = limited(3, 2)
    small.set_brk_start(0x40_0000)
    small.mmap(0, PAGE, RW, ANON)
    assert small.sys_brk(0x40_0000 + 3 * PAGE) == 0x40_0000
    assert small.sys_brk(0x40_0000 + 2 * PAGE) == 0x40_0000 + 2 * PAGE
    assert small.mapped_bytes == 3 * PAGE
    small.release()


# -- fork ------------------------------------------------------------------------------------


def test_fork_copies_private_and_shares_shared(vm: VmSpace):
    priv = vm.mmap(FIX, 2 * PAGE, RW, ANON)
    shared = vm.mmap(FIX + 4 * PAGE, PAGE, RW, SHARED)
    vm.set_brk_start(0x40_0000)
    vm.sys_brk(0x40_0000 + PAGE)
    vm.write(priv, b"before")
    vm.write(shared, b"before")
    vm.write(0x40_0000, b"heap")

    child = vm.fork(new_engine())
    try:
        assert child.engine is not vm.engine
        assert child.brk_start == vm.brk_start and child.brk == vm.brk
        assert [(v.start, v.end, v.prot, v.flags) for v in child.vmas] == \
            [(v.start, v.end, v.prot, v.flags) for v in vm.vmas]
        assert child.read(priv, 6) == b"before" and child.read(0x40_0000, 4) == b"heap"

        vm.write(priv, b"parent")
        vm.write(shared, b"parent")
        vm.write(0x40_0000, b"PHEA")
        assert child.read(priv, 6) == b"before"      # private: a copy
        assert child.read(0x40_0000, 4) == b"heap"
        assert child.read(shared, 6) == b"parent"    # shared: the same memory

        child.write(priv + PAGE, b"child")
        child.write(shared + 8, b"child")
        assert vm.read(priv + PAGE, 5) == bytes(5)
        assert vm.read(shared + 8, 5) == b"child"

        sv = vm.vmas.find(shared)
        assert child.vmas.find(shared).buf is sv.buf and sv.buf.refs == 2
        assert child.vmas.find(priv).buf is not vm.vmas.find(priv).buf
        assert child.sys_brk(0x40_0000 + 2 * PAGE) == 0x40_0000 + 2 * PAGE
        assert vm.brk == 0x40_0000 + PAGE
    finally:
        child.release()
    assert vm.read(shared, 6) == b"parent"  # the child's exit left shared memory alone


def test_fork_of_split_private_mapping(vm: VmSpace):
    a = vm.mmap(FIX, 3 * PAGE, RW, ANON)
    fill(vm, a, 3)
    vm.mprotect(a + PAGE, PAGE, NONE)
    child = vm.fork(new_engine())
    try:
        assert [page_byte(child, a), page_byte(child, a + 2 * PAGE)] == [b"\x10", b"\x12"]
        assert faults(child, a + PAGE)
        pieces = list(child.vmas)
        assert len({id(v.buf) for v in pieces}) == 1  # one copy for the one parent buffer
        assert pieces[0].buf.refs == 3
        child.mprotect(a + PAGE, PAGE, RO)
        assert page_byte(child, a + PAGE) == b"\x11"
        child.madvise(a, PAGE, MADV_DONTNEED)
        assert page_byte(vm, a) == b"\x10"
    finally:
        child.release()


def test_release_frees_host_memory(vm: VmSpace):
    vm.mmap(FIX, PAGE, RW, ANON)
    vm.set_brk_start(0x40_0000)
    vm.sys_brk(0x40_0000 + PAGE)
    bufs = [v.buf for v in vm.vmas]
    vm.release()
    assert len(vm.vmas) == 0
    assert all(b.refs == 0 and b.addr == 0 for b in bufs)


# -- memory access helpers -------------------------------------------------------------------


def test_u64_and_cstr_helpers(vm: VmSpace):
    a = vm.mmap(FIX, 2 * PAGE, RW, ANON)
    vm.write_u64(a, -1)
    assert vm.read_u64(a) == 0xFFFF_FFFF_FFFF_FFFF
    vm.write_u64(a + 8, 0x1122334455667788)
    assert vm.read(a + 8, 2) == b"\x88\x77"
    # a string crossing the page boundary
    vm.write(a + PAGE - 3, b"abcdef\0")
    assert vm.read_cstr(a + PAGE - 3) == b"abcdef"
    vm.write(a, b"x" * 64)
    with pytest.raises(GuestError) as ei:
        vm.read_cstr(a, limit=16)
    assert ei.value.errno == E.ENAMETOOLONG
    # running off the end of the mapping faults
    vm.write(a + 2 * PAGE - 4, b"abcd")
    assert errno_of(vm.read_cstr, a + 2 * PAGE - 4) == E.EFAULT


def test_fork_copies_only_pages_the_host_backs() -> None:
    """Forking a process with a huge, mostly untouched mapping costs no host memory for the
    untouched part (a guest could otherwise exhaust the host with mmap + fork)."""
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    vm = VmSpace(Engine(lambda: False), MemAccount(1 << 40))  # commit is not what is tested
    a = vm.mmap(0, 3 << 30, 3, MAP_PRIVATE | MAP_ANONYMOUS)
    vm.write(a + 12345, b"hello")
    vm.write(a + (2 << 30) + 7, b"world")
    before = rss()
    kids = [vm.fork(Engine(lambda: False)) for _ in range(3)]
    assert rss() - before < 256 << 20
    for kid in kids:
        assert kid.read(a + 12345, 5) == b"hello" and kid.read(a + (2 << 30) + 7, 5) == b"world"
        assert kid.read(a + (1 << 30), 8) == bytes(8)


@pytest.mark.parametrize("use_scan", [True, False])
def test_present_runs_are_the_present_pages(use_scan: bool, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    """Fork copies the runs present_runs() gives: the same pages present_pages() reports,
    by PAGEMAP_SCAN or by reading /proc/self/pagemap."""
    from vkckpt.host import pagemap
    from vkckpt.vmspace.hostmem import HostBuffer

    if use_scan and not pagemap.scan_available():
        pytest.skip("this host kernel has no PAGEMAP_SCAN")  # the other case still runs
    monkeypatch.setattr(pagemap, "scan_available", lambda: use_scan)
    buf = HostBuffer(64 * 4096)
    for page in (0, 1, 2, 7, 30, 31, 63):
        buf.view[page * 4096] = 1
    want = [int(i) for i in pagemap.present_pages(buf.addr, 64).nonzero()[0]]
    runs = pagemap.present_runs(buf.addr, 64)
    assert [p for a, b in runs for p in range(a, b)] == want == [0, 1, 2, 7, 30, 31, 63]
    assert runs == [(0, 3), (7, 8), (30, 32), (63, 64)]
    child = HostBuffer(64 * 4096)
    child.copy_from(buf, 0, 64 * 4096)
    assert bytes(child.view) == bytes(buf.view)
