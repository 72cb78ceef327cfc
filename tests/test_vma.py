"""VmaList: lookups, insert/remove, carve (munmap/mprotect splitting), find_free, refcounts.

The stateful test drives a VmaList with random mmap(MAP_FIXED)/munmap/mprotect-like carves and
compares it page by page with a plain dict model; every page also carries a marker written into
its host buffer, so a wrong offset after a split is caught through the host memory itself.
"""

from __future__ import annotations

import ctypes

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from vkckpt.vmspace.hostmem import HostBuffer
from vkckpt.vmspace.vma import (
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    MAP_SHARED,
    PAGE,
    Vma,
    VmaList,
    page_down,
    page_up,
)

BASE = 0x100000
FLAGS = MAP_PRIVATE | MAP_ANONYMOUS


def P(n: int) -> int:  # noqa: N802 - address of page n of the test window
    return BASE + n * PAGE


def make_vma(start_page: int, npages: int, prot: int = 3, name: str = "",
             buf: HostBuffer | None = None, off: int = 0, **kw) -> Vma:
    buf = buf if buf is not None else HostBuffer(npages * PAGE)
    return Vma(P(start_page), P(start_page + npages), prot, FLAGS, name, buf, off, **kw)


def spans(vl: VmaList) -> list[tuple[int, int, int]]:
    return [(v.start, v.end, v.prot) for v in vl]


# -- helpers ---------------------------------------------------------------------------------


def test_page_rounding():
    assert page_down(0) == 0
    assert page_down(PAGE - 1) == 0
    assert page_down(PAGE) == PAGE
    assert page_down(3 * PAGE + 17) == 3 * PAGE
    assert page_up(0) == 0
    assert page_up(1) == PAGE
    assert page_up(PAGE) == PAGE
    assert page_up(PAGE + 1) == 2 * PAGE


def test_vma_slice_shifts_offsets_and_file_offset():
    buf = HostBuffer(4 * PAGE)
    v = Vma(P(0), P(4), 5, FLAGS, "x", buf, PAGE, path="/f", file_off=0x2000)
    s = v.slice(P(1), P(3))
    assert (s.start, s.end, s.off, s.file_off) == (P(1), P(3), 2 * PAGE, 0x3000)
    assert s.buf is buf and s.prot == 5 and s.name == "x" and s.path == "/f"
    assert s.host_addr(P(2)) == buf.addr + 3 * PAGE
    # a slice reaching past the VMA is clipped to it
    c = v.slice(P(0) - PAGE, P(9))
    assert (c.start, c.end, c.off, c.file_off) == (P(0), P(4), PAGE, 0x2000)
    anon = v.replace(path="", file_off=0).slice(P(2), P(4))
    assert anon.file_off == 0
    assert v.size == 4 * PAGE and not v.shared
    assert v.replace(flags=MAP_SHARED).shared


# -- find / overlapping / covered ------------------------------------------------------------


@pytest.fixture
def three() -> VmaList:
    """VMAs at pages [2,4), [4,6) and [10,13)."""
    vl = VmaList()
    for start, n in ((10, 3), (2, 2), (4, 2)):  # inserted out of order on purpose
        vl.insert(make_vma(start, n, prot=start & 7))
    return vl


def test_iteration_is_sorted_and_a_snapshot(three: VmaList):
    assert [v.start for v in three] == [P(2), P(4), P(10)]
    assert len(three) == 3
    it = iter(three)
    three.remove(three.find(P(4)))
    assert len(list(it)) == 3  # the iterator is a copy taken before the removal


def test_find(three: VmaList):
    assert three.find(P(2)).start == P(2)
    assert three.find(P(4) - 1).start == P(2)
    assert three.find(P(4)).start == P(4)
    assert three.find(P(12) + PAGE - 1).start == P(10)
    for miss in (0, P(2) - 1, P(6), P(9) + 123, P(13), 1 << 47):
        assert three.find(miss) is None


def test_overlapping(three: VmaList):
    assert three.overlapping(P(0), P(2)) == []
    assert [v.start for v in three.overlapping(P(0), P(2) + 1)] == [P(2)]
    assert [v.start for v in three.overlapping(P(3), P(5))] == [P(2), P(4)]
    assert [v.start for v in three.overlapping(P(5), P(11))] == [P(4), P(10)]
    assert three.overlapping(P(6), P(10)) == []
    assert [v.start for v in three.overlapping(0, 1 << 47)] == [P(2), P(4), P(10)]
    assert three.overlapping(P(13), P(20)) == []
    assert [v.start for v in three.overlapping(P(12) + 5, P(12) + 6)] == [P(10)]


def test_covered(three: VmaList):
    assert three.covered(P(2), P(6))          # two adjacent VMAs
    assert three.covered(P(3), P(5))
    assert three.covered(P(10), P(13))
    assert not three.covered(P(2), P(7))      # runs into the hole [6, 10)
    assert not three.covered(P(1), P(3))      # starts in a hole
    assert not three.covered(P(5), P(11))     # hole in the middle
    assert not three.covered(P(12), P(14))    # runs off the end
    assert not three.covered(P(20), P(21))


def test_insert_remove_refcounts():
    vl = VmaList()
    buf = HostBuffer(4 * PAGE)
    a = make_vma(0, 2, buf=buf)
    b = make_vma(2, 2, buf=buf, off=2 * PAGE)
    vl.insert(a)
    vl.insert(b)
    assert buf.refs == 2
    vl.remove(a)
    assert buf.refs == 1 and buf.addr != 0
    assert vl.find(P(0)) is None and vl.find(P(2)) is b
    vl.remove(b)
    assert buf.refs == 0 and buf.addr == 0  # the last reference unmapped the host memory
    assert len(vl) == 0


def test_remove_requires_the_same_object():
    vl = VmaList()
    v = make_vma(0, 1)
    vl.insert(v)
    with pytest.raises(AssertionError):
        vl.remove(v.replace())  # equal fields, different object


def test_clear_frees_every_buffer(three: VmaList):
    bufs = [v.buf for v in three]
    three.clear()
    assert len(three) == 0
    assert all(b.refs == 0 and b.addr == 0 for b in bufs)


# -- carve -----------------------------------------------------------------------------------


def test_carve_middle_splits_and_keeps_offsets():
    vl = VmaList()
    v = make_vma(0, 8, prot=3, name="m")
    buf = v.buf
    for i in range(8):
        buf.view[i * PAGE] = 0x40 + i
    vl.insert(v)
    old, kept, cut = vl.carve(P(3), P(5))
    assert old == [v]
    assert [(k.start, k.end, k.off) for k in kept] == [(P(0), P(3), 0), (P(5), P(8), 5 * PAGE)]
    assert [(c.start, c.end, c.off) for c in cut] == [(P(3), P(5), 3 * PAGE)]
    assert spans(vl) == [(P(0), P(3), 3), (P(5), P(8), 3)]
    assert buf.refs == 2 and buf.addr != 0
    right = vl.find(P(6))
    assert ctypes.string_at(right.host_addr(P(6)), 1) == bytes([0x46])
    assert all(k.name == "m" for k in kept)


def test_carve_whole_vma_frees_buffer():
    vl = VmaList()
    v = make_vma(4, 2)
    keep = make_vma(0, 2)
    vl.insert(v)
    vl.insert(keep)
    old, kept, cut = vl.carve(P(3), P(7))  # wider than v, touching a hole on each side
    assert old == [v] and kept == []
    assert [(c.start, c.end) for c in cut] == [(P(4), P(6))]
    assert v.buf.refs == 0 and v.buf.addr == 0
    assert spans(vl) == [(P(0), P(2), 3)]
    assert keep.buf.refs == 1


def test_carve_nothing_there_is_a_no_op(three: VmaList):
    before = spans(three)
    assert three.carve(P(6), P(10)) == ([], [], [])
    assert spans(three) == before


def test_carve_across_several_vmas():
    vl = VmaList()
    a, b, c = make_vma(0, 3), make_vma(3, 2), make_vma(6, 3)
    for v in (a, b, c):
        vl.insert(v)
    old, kept, cut = vl.carve(P(1), P(7))
    assert old == [a, b, c]
    assert [(k.start, k.end) for k in kept] == [(P(0), P(1)), (P(7), P(9))]
    assert [(x.start, x.end) for x in cut] == [(P(1), P(3)), (P(3), P(5)), (P(6), P(7))]
    assert b.buf.refs == 0 and b.buf.addr == 0
    assert a.buf.refs == 1 and c.buf.refs == 1
    assert vl.find(P(7)).off == PAGE  # c's right piece starts one page into c's buffer


def test_carve_with_transform_puts_pieces_back():
    vl = VmaList()
    v = make_vma(0, 6, prot=3)
    buf = v.buf
    vl.insert(v)
    seen = []

    def to_ro(piece: Vma) -> Vma:
        seen.append((piece.start, piece.end, piece.off))
        return piece.replace(prot=1)

    old, kept, cut = vl.carve(P(2), P(4), to_ro)
    assert seen == [(P(2), P(4), 2 * PAGE)]
    assert [(c.start, c.end, c.prot) for c in cut] == [(P(2), P(4), 1)]
    assert spans(vl) == [(P(0), P(2), 3), (P(2), P(4), 1), (P(4), P(6), 3)]
    assert buf.refs == 3 and buf.addr != 0  # three pieces, no buffer freed in between
    mid = vl.find(P(3))
    assert mid.host_addr(P(3)) == buf.addr + 3 * PAGE


def test_carve_with_transform_whole_single_vma_keeps_buffer_alive():
    """The only VMA of a buffer is removed and put back: the buffer must survive."""
    vl = VmaList()
    v = make_vma(0, 2)
    v.buf.view[0] = 0x5A
    vl.insert(v)
    vl.carve(P(0), P(2), lambda x: x.replace(prot=0))
    (nv,) = list(vl)
    assert nv.buf is v.buf and nv.buf.refs == 1 and nv.buf.addr != 0
    assert nv.prot == 0
    assert ctypes.string_at(nv.host_addr(P(0)), 1) == b"\x5a"


# -- find_free -------------------------------------------------------------------------------


def test_find_free_empty_list():
    vl = VmaList()
    assert vl.find_free(2 * PAGE, P(10), P(0)) == P(8)
    assert vl.find_free(10 * PAGE, P(10), P(0)) == P(0)
    assert vl.find_free(11 * PAGE, P(10), P(0)) is None


def test_find_free_is_top_down(three: VmaList):
    # VMAs at [2,6) and [10,13); window [0, 16)
    assert three.find_free(PAGE, P(16), P(0)) == P(15)
    assert three.find_free(3 * PAGE, P(16), P(0)) == P(13)
    assert three.find_free(4 * PAGE, P(16), P(0)) == P(6)   # [13,16) too small
    assert three.find_free(4 * PAGE, P(12), P(0)) == P(6)   # top inside a VMA
    assert three.find_free(2 * PAGE, P(16), P(0)) == P(14)
    assert three.find_free(5 * PAGE, P(16), P(0)) is None    # [6,10) is 4 pages, [0,2) is 2
    assert three.find_free(2 * PAGE, P(6), P(0)) == P(0)
    assert three.find_free(2 * PAGE, P(6), P(1)) is None     # [0,2) starts below bottom
    assert three.find_free(PAGE, P(11), P(7)) == P(9)


def find_free_model(used: set[int], npages: int, top: int, bottom: int) -> int | None:
    for a in range(top - npages, bottom - 1, -1):
        if not any(p in used for p in range(a, a + npages)):
            return a
    return None


# -- stateful comparison with a page model ---------------------------------------------------

NPAGES = 24
page_idx = st.integers(0, NPAGES - 1)
prots = st.integers(0, 7)


def marker(bid: int, off_page: int) -> bytes:
    return bid.to_bytes(4, "little") + off_page.to_bytes(4, "little")


class VmaMachine(RuleBasedStateMachine):
    """Model: page -> (prot, buffer id, page offset inside that buffer)."""

    def __init__(self) -> None:
        super().__init__()
        self.vl = VmaList()
        self.model: dict[int, tuple[int, int, int]] = {}
        self.bufs: dict[int, HostBuffer] = {}

    def _range(self, a: int, b: int) -> tuple[int, int]:
        lo, hi = min(a, b), max(a, b) + 1
        return lo, hi

    @rule(a=page_idx, b=page_idx, prot=prots, shared=st.booleans())
    def mmap_fixed(self, a: int, b: int, prot: int, shared: bool) -> None:
        lo, hi = self._range(a, b)
        bid = len(self.bufs) + 1
        buf = HostBuffer((hi - lo) * PAGE)
        for i in range(hi - lo):
            buf.view[i * PAGE: i * PAGE + 8] = marker(bid, i)
        self.bufs[bid] = buf
        self.vl.carve(P(lo), P(hi))
        flags = (MAP_SHARED if shared else MAP_PRIVATE) | MAP_ANONYMOUS
        self.vl.insert(Vma(P(lo), P(hi), prot, flags, f"b{bid}", buf, 0))
        for i, p in enumerate(range(lo, hi)):
            self.model[p] = (prot, bid, i)

    @rule(a=page_idx, b=page_idx)
    def munmap(self, a: int, b: int) -> None:
        lo, hi = self._range(a, b)
        old, kept, cut = self.vl.carve(P(lo), P(hi))
        cut_pages = {(c.start - BASE) // PAGE + i for c in cut for i in range(c.size // PAGE)}
        assert cut_pages == {p for p in range(lo, hi) if p in self.model}
        assert all(P(lo) <= c.start < c.end <= P(hi) for c in cut)
        for k in kept:
            assert k.end <= P(lo) or k.start >= P(hi)
            assert self.vl.find(k.start) is k
        for p in range(lo, hi):
            self.model.pop(p, None)

    @rule(a=page_idx, b=page_idx, prot=prots)
    def mprotect(self, a: int, b: int, prot: int) -> None:
        lo, hi = self._range(a, b)
        _, _, new = self.vl.carve(P(lo), P(hi), lambda v: v.replace(prot=prot))
        assert all(v.prot == prot and P(lo) <= v.start < v.end <= P(hi) for v in new)
        for p in range(lo, hi):
            if p in self.model:
                _, bid, off = self.model[p]
                self.model[p] = (prot, bid, off)

    @precondition(lambda self: len(self.vl) > 0)
    @rule(data=st.data())
    def remove_and_reinsert(self, data) -> None:
        v = data.draw(st.sampled_from(list(self.vl)))
        v.buf.incref()  # like carve: hold the buffer while its VMA is out of the list
        refs = v.buf.refs
        self.vl.remove(v)
        assert v.buf.refs == refs - 1 and v.buf.addr != 0
        for p in range(v.start, v.end, PAGE):
            assert self.vl.find(p) is None
        self.vl.insert(v)
        v.buf.decref()

    @rule(a=page_idx, b=page_idx)
    def queries(self, a: int, b: int) -> None:
        lo, hi = self._range(a, b)
        assert self.vl.covered(P(lo), P(hi)) == all(p in self.model for p in range(lo, hi))
        got = self.vl.overlapping(P(lo), P(hi))
        pages = {(v.start - BASE) // PAGE + i for v in got for i in range(v.size // PAGE)}
        assert {p for p in range(lo, hi) if p in self.model} <= pages
        assert all(v.start < P(hi) and v.end > P(lo) for v in got)
        assert [v.start for v in got] == sorted(v.start for v in got)

    @rule(n=st.integers(1, NPAGES), top=st.integers(0, NPAGES), bottom=st.integers(0, NPAGES))
    def find_free(self, n: int, top: int, bottom: int) -> None:
        want = find_free_model(set(self.model), n, top, bottom)
        got = self.vl.find_free(n * PAGE, P(top), P(bottom))
        assert got == (None if want is None else P(want))

    @invariant()
    def list_is_sorted_disjoint_aligned(self) -> None:
        vmas = list(self.vl)
        assert self.vl._starts == [v.start for v in vmas]
        for v in vmas:
            assert v.start < v.end
            assert v.start % PAGE == 0 and v.end % PAGE == 0 and v.off % PAGE == 0
            assert 0 <= v.off and v.off + v.size <= v.buf.size
        for x, y in zip(vmas, vmas[1:], strict=False):
            assert x.end <= y.start

    @invariant()
    def matches_model(self) -> None:
        for p in range(-1, NPAGES + 1):
            v = self.vl.find(P(p) + 123)
            if p not in self.model:
                assert v is None
                continue
            prot, bid, off = self.model[p]
            assert v is not None and v.prot == prot and v.buf is self.bufs[bid]
            assert v.host_addr(P(p)) == v.buf.addr + off * PAGE
            assert ctypes.string_at(v.host_addr(P(p)), 8) == marker(bid, off)
            assert v.name == f"b{bid}"

    @invariant()
    def refcounts(self) -> None:
        users: dict[int, int] = {}
        for v in self.vl:
            users[id(v.buf)] = users.get(id(v.buf), 0) + 1
        for buf in self.bufs.values():
            assert buf.refs == users.get(id(buf), 0)
            if buf.refs == 0:
                assert buf.addr == 0
            else:
                assert buf.addr != 0

    def teardown(self) -> None:
        self.vl.clear()
        assert all(b.refs == 0 and b.addr == 0 for b in self.bufs.values())


VmaMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestVmaListStateful = VmaMachine.TestCase
