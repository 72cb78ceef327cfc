"""Page scanning for images: zero pages cost nothing, incremental images keep changed pages.

The dirty set is exact -- no change is ever missed -- and found in one of two ways:

* **written-page tracking** (Linux >= 6.7, see wp.py): every host buffer that has been in an
  image is registered with a userfaultfd in write-protect async mode.  At each freeze one
  PAGEMAP_SCAN walk per covered range reports the pages written since the previous walk and
  protects them again; each buffer keeps the *generation* (freeze number) at which each page
  was last seen written.  An incremental image then holds every page written since its
  parent's generation, every page that may have been non-zero in the parent and is now absent
  or the zero page (discarded with MADV_DONTNEED), and every page newly covered by a VMA.
  Pages written with unchanged contents are kept too: a superset, never a miss.  No copy of
  guest memory is taken, at freeze or at thaw.
* **comparison** (any host; VKCKPT_DIRTY=compare forces it): each covered page that may hold
  data is compared with a copy taken at the previous freeze.

In both modes only pages the host kernel reports present (or swapped) are read: private
anonymous memory that is neither reads as zeros, so untouched mappings cost nothing.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator

from vkckpt.record import Comparable
from vkckpt.vmspace.vma import PAGE

TYPE_CHECKING = False
if TYPE_CHECKING:
    import numpy as np

    from vkckpt.vmspace.hostmem import HostBuffer

#: The page records (their fields are checked as they are laid down, see restore.py).
RECORDS = {"pages": (1, {}), "zero_pages": (1, {})}
_WORDS = PAGE // 8
_CHUNK = 4096  # pages compared per numpy call (bounds temporaries)


def _np():  # noqa: ANN202 - numpy is imported on first use (thawing small images needs none)
    import numpy

    return numpy


def _wp():  # noqa: ANN202
    from vkckpt.ckpt import wp

    return wp


def _pages(buf: HostBuffer, first: int, end: int) -> np.ndarray:
    np = _np()
    return np.frombuffer(buf.view, dtype=np.uint64, count=(end - first) * _WORDS,
                         offset=first * PAGE).reshape(-1, _WORDS)


def runs(mask: np.ndarray, base: int) -> Iterator[tuple[int, int]]:
    """[start, end) page runs where mask is true, offset by base."""
    np = _np()
    idx = np.flatnonzero(mask)
    if not len(idx):
        return
    breaks = np.flatnonzero(np.diff(idx) != 1)  # a run ends after idx[i] for i in breaks
    starts = np.concatenate((idx[:1], idx[breaks + 1])) + base
    ends = np.concatenate((idx[breaks], idx[-1:])) + (base + 1)
    yield from zip(starts.tolist(), ends.tolist(), strict=True)


def _any_nonzero(pages: np.ndarray) -> np.ndarray:
    """Which rows of pages (n x _WORDS uint64) hold a non-zero byte.  A page's first word
    settles most pages; only the others are read whole, as bytes (numpy's max over uint8 is
    vectorised, ~3x faster than any() over uint64, which converts every word to bool)."""
    np = _np()
    out = pages[:, 0] != 0
    rest = np.flatnonzero(~out)
    if len(rest) * 2 > len(out):
        return pages.view(np.uint8).max(axis=1) != 0
    if len(rest):
        out[rest] = pages[rest].view(np.uint8).max(axis=1) != 0
    return out


def _nonzero(buf: HostBuffer, first: int, mask: np.ndarray) -> np.ndarray:
    """Which pages first+i (where mask[i]) hold a non-zero byte; False where not mask."""
    np = _np()
    out = np.zeros(len(mask), dtype=bool)
    idx = np.flatnonzero(mask)
    if len(idx) * 8 < len(mask) or len(idx) < _CHUNK:  # scattered pages: gather them
        for s in range(0, len(idx), _CHUNK):
            part = idx[s:s + _CHUNK]
            out[part] = _any_nonzero(_pages(buf, first, len(mask) + first)[part])
        return out
    for a, b in runs(mask, 0):
        for s in range(a, b, _CHUNK):
            e = min(b, s + _CHUNK)
            out[s:e] = _any_nonzero(_pages(buf, first + s, first + e))
    return out


def _differs(buf: HostBuffer, mask: np.ndarray, old: np.ndarray) -> np.ndarray:
    """Which pages i (where mask[i]) differ from old[i]; False where not mask."""
    out = _np().zeros(len(mask), dtype=bool)
    for a, b in runs(mask, 0):
        for s in range(a, b, _CHUNK):
            e = min(b, s + _CHUNK)
            out[s:e] = (_pages(buf, s, e) != old[s:e]).any(axis=1)
    return out


def nonzero_runs(buf: HostBuffer, first: int, end: int) -> Iterator[tuple[int, int]]:
    """Runs of pages in [first, end) holding any non-zero byte."""
    return runs(_pages(buf, first, end).any(axis=1), first)


# -- written-page tracking ----------------------------------------------------------------------

Runs = list[tuple[int, int]]


def _mask(m: np.ndarray | Runs, end: int) -> np.ndarray:
    """A page mask of length end from a bool array (cut or zero-padded) or a list of runs."""
    np = _np()
    if isinstance(m, list):
        out = np.zeros(end, dtype=bool)
        for a, b in m:
            out[a:b] = True
        return out
    if len(m) >= end:
        return m[:end]
    out = np.zeros(end, dtype=bool)
    out[: len(m)] = m
    return out


class _Reg:
    """A host buffer registered for write tracking (one per buffer per host process)."""

    def __init__(self, buf: HostBuffer, since: int, initial: np.ndarray | Runs) -> None:
        self.ref = weakref.ref(buf)
        self.addr = buf.addr
        self.since = since       # generation at registration
        self._initial = initial  # pages that may have held data when registered
        self._stamp: np.ndarray | None = None  # generation a page was last seen written

    def alive_for(self, buf: HostBuffer) -> bool:
        return self.ref() is buf and buf.addr == self.addr and buf.addr != 0

    def arrays(self, end: int) -> tuple[np.ndarray, np.ndarray]:
        """(stamp, initial), grown to at least end pages."""
        np = _np()
        if self._stamp is None:
            self._stamp = np.zeros(0, dtype=np.uint32)
        if len(self._stamp) < end:
            self._stamp = np.concatenate((self._stamp,
                                          np.zeros(end - len(self._stamp), np.uint32)))
        if isinstance(self._initial, list) or len(self._initial) < end:
            self._initial = _mask(self._initial, max(end, len(self._stamp)))
        return self._stamp, self._initial


_regs: dict[int, _Reg] = {}
_generation = 0


def _next_generation() -> int:
    global _generation
    _generation += 1
    return _generation


def _reg_for(buf: HostBuffer) -> _Reg | None:
    reg = _regs.get(id(buf))
    if reg is not None and not reg.alive_for(buf):
        del _regs[id(buf)]
        return None
    return reg


def _prune() -> None:
    for key, reg in list(_regs.items()):
        buf = reg.ref()
        if buf is None or not reg.alive_for(buf):
            del _regs[key]


class BufBase(Comparable):
    """What an image chain holds of one host buffer as of its newest image (its page_base)."""

    __slots__ = ("ref", "addr", "gen", "covered", "nonzero", "copy")

    def __init__(self, ref: weakref.ref, addr: int, gen: int, covered: np.ndarray | Runs,
                 nonzero: np.ndarray | Runs, copy: np.ndarray | None = None) -> None:
        self.ref = ref
        self.addr = addr
        self.gen = gen                # generation of that freeze (0: contents are in `copy`)
        self.covered = covered        # pages VMAs covered then
        self.nonzero = nonzero        # pages that may have held data then (a superset)
        self.copy = copy              # comparison mode: the pages' contents then

    def valid_for(self, buf: HostBuffer) -> bool:
        return self.ref() is buf and buf.addr == self.addr and buf.addr != 0


class BufferPlan(Comparable):
    """What one freeze writes for one buffer: runs of pages per covered range."""

    __slots__ = ("write", "zero", "base")

    def __init__(self, write: list[list[tuple[int, int]]], zero: list[list[tuple[int, int]]],
                 base: BufBase) -> None:
        self.write = write  # per covered range
        self.zero = zero
        self.base = base


def _covered_mask(ranges: Runs, end: int) -> np.ndarray:
    return _mask(list(ranges), end)


def _fit(a: np.ndarray | Runs, end: int) -> np.ndarray:
    """A mask cut or zero-padded to length end."""
    return _mask(a, end)


def _present(buf: HostBuffer, ranges: list[tuple[int, int]], end: int) -> np.ndarray:
    """Covered pages that may hold data (present or swapped); all of them if unknown."""
    wp = _wp()
    out = _np().zeros(end, dtype=bool)
    for a, b in ranges:
        got = wp.present_pages(buf.addr + a * PAGE, b - a)
        out[a:b] = True if got is None else got
    return out


def _track(buf: HostBuffer, ranges: Runs, end: int, gen: int
           ) -> tuple[_Reg | None, np.ndarray, np.ndarray]:
    """Harvest written pages of a tracked buffer (registering it first if it is new).

    Returns (registration or None, pages that may hold data now, pages now absent or the zero
    page); both masks cover [0, end) and are False outside the covered ranges."""
    wp = _wp()
    np = _np()
    tracker = wp.Tracker.get()
    reg = _reg_for(buf) if tracker is not None else None
    if tracker is None:
        return None, _present(buf, ranges, end), np.zeros(end, dtype=bool)
    gone = np.zeros(end, dtype=bool)
    if reg is None:
        maybe = _present(buf, ranges, end)  # before any protection marker exists
        reg = _register(tracker, buf, ranges, gen, maybe)
        return reg, maybe, gone
    stamp, initial = reg.arrays(end)
    for a, b in ranges:
        cats = tracker.harvest(buf.addr + a * PAGE, b - a)
        written = (cats & wp.PAGE_IS_WRITTEN) != 0
        stamp[a:b][written] = gen
        gone[a:b] = ((cats & wp.PAGE_IS_PRESENT) == 0) | ((cats & wp.PAGE_IS_PFNZERO) != 0)
    cover = _covered_mask(ranges, end)
    maybe = (initial[:end] | (stamp[:end] != 0)) & cover
    return reg, maybe, gone & cover


def _register(tracker: object, buf: HostBuffer, ranges: Runs, gen: int,
              initial: np.ndarray | Runs) -> _Reg | None:
    """Start tracking writes to buf's covered ranges; None if the host refuses."""
    try:
        tracker.register(buf.addr, buf.size)
        for a, b in ranges:
            tracker.protect(buf.addr + a * PAGE, (b - a) * PAGE)
    except OSError:
        return None
    reg = _regs[id(buf)] = _Reg(buf, gen, initial)
    return reg


def plan_buffer(buf: HostBuffer, ranges: list[tuple[int, int]], base: BufBase | None,
                incremental: bool, gen: int) -> BufferPlan:
    """Decide what a freeze writes for buf (covered page ranges `ranges`, sorted, merged).

    Full images get every non-zero covered page.  Incremental images get the pages that may
    differ from `base` (the parent's view of this buffer) and are non-zero now, and zero
    ranges for pages that may have held data in the parent and are zero now."""
    np = _np()
    end = ranges[-1][1] if ranges else 0
    cover = _covered_mask(ranges, end)
    reg, maybe, gone = _track(buf, ranges, end, gen)
    if base is not None and not base.valid_for(buf):
        base = None
    if not incremental:
        base = None
    if reg is not None:
        if base is not None and base.copy is None and base.gen >= reg.since:
            old_cover = _fit(base.covered, end)
            old_nonzero = _fit(base.nonzero, end)
            stamp = reg.arrays(end)[0][:end]
            cand = ((stamp > base.gen) | (old_nonzero & gone) | ~old_cover) & cover
        else:
            old_cover = np.zeros(end, dtype=bool)
            old_nonzero = old_cover if base is None else _fit(base.nonzero, end) & _fit(
                base.covered, end)
            cand = (maybe | old_nonzero) & cover
        nz = _nonzero(buf, 0, cand)
        write_mask = cand & nz
        zero_mask = cand & ~nz & old_nonzero
        nonzero = ((old_nonzero & ~cand) | write_mask) & cover
        new = BufBase(weakref.ref(buf), buf.addr, gen, cover, nonzero)
    else:
        old_copy = None
        if base is not None and base.copy is not None:
            old_copy = base.copy
        old_nonzero = np.zeros(end, dtype=bool) if base is None else \
            _fit(base.nonzero, end) & _fit(base.covered, end)
        cand = (maybe | old_nonzero) & cover
        nz = _nonzero(buf, 0, cand)
        changed = nz | old_nonzero
        if old_copy is not None:  # pages the parent held: compare with their copy
            held = _fit(base.covered, end).copy()
            held[len(old_copy):] = False
            changed[held] = False
            changed |= _differs(buf, cand & held, old_copy)
        write_mask = cand & changed & nz
        zero_mask = cand & changed & ~nz
        copy = np.zeros((end, _WORDS), dtype=np.uint64)
        for a, b in runs(nz, 0):
            copy[a:b] = _pages(buf, a, b)
        new = BufBase(weakref.ref(buf), buf.addr, 0, cover, nz & cover, copy)
    write, zero = [], []
    for a, b in ranges:
        write.append(list(runs(write_mask[a:b], a)))
        zero.append(list(runs(zero_mask[a:b], a)) if incremental else [])
    return BufferPlan(write, zero, new)


def begin_freeze() -> int:
    """Start a freeze: a new tracking generation (forgets buffers that no longer exist)."""
    _prune()
    return _next_generation()


def thawed_bases(bufs: dict[int, HostBuffer], cover: dict[int, Runs], laid: dict[int, Runs]
                 ) -> dict[int, BufBase]:
    """The incremental bases of buffers whose pages a thaw just laid down (ImageChain.page_base);
    laid[bid] lists the page runs written into each (every other page is zero)."""
    gen = begin_freeze()
    tracker = _wp().Tracker.get()
    out = {}
    for bid, buf in bufs.items():
        ranges = cover[bid]
        held = laid.get(bid, [])
        if tracker is not None and _reg_for(buf) is None and \
                _register(tracker, buf, ranges, gen, held) is not None:
            out[bid] = BufBase(weakref.ref(buf), buf.addr, gen, list(ranges), held)
        else:
            out[bid] = plan_buffer(buf, ranges, None, False, gen).base
    return out


def populate(buf: HostBuffer, first: int, npages: int) -> None:
    """Fault in pages about to be written in one call (cheaper than a fault per page)."""
    _wp().populate_write(buf.addr + first * PAGE, npages * PAGE)
