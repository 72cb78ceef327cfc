"""Virtual memory areas and the pure algebra over a sorted, non-overlapping list of them."""

from __future__ import annotations

import bisect
from collections.abc import Callable

from vkckpt.abi.mman import (  # noqa: F401 - re-exported: callers import them from here
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_GROWSDOWN,
    MAP_NORESERVE,
    MAP_PRIVATE,
    MAP_SHARED,
    MAP_STACK,
    PAGE,
)
from vkckpt.record import Value
from vkckpt.vmspace.hostmem import HostBuffer


def page_down(x: int) -> int:
    """Round down to a page boundary."""
    return x & ~(PAGE - 1)


def page_up(x: int) -> int:
    """Round up to a page boundary."""
    return (x + PAGE - 1) & ~(PAGE - 1)


class Vma(Value):
    """One mapping [start, end): protection, MAP_* flags, a name, and its host backing.

    Invariant: start < end, both page aligned; guest address a lives at buf.addr + off + a - start.
    `path`/`file_off` record where a file-backed mapping came from (for images and reports).
    """

    __slots__ = ("start", "end", "prot", "flags", "name", "buf", "off", "path", "file_off")

    def __init__(self, start: int, end: int, prot: int, flags: int, name: str, buf: HostBuffer,
                 off: int, path: str = "", file_off: int = 0) -> None:
        self.start = start
        self.end = end
        self.prot = prot
        self.flags = flags
        self.name = name
        self.buf = buf
        self.off = off
        self.path = path
        self.file_off = file_off

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def shared(self) -> bool:
        return bool(self.flags & MAP_SHARED)

    def host_addr(self, addr: int) -> int:
        """Host address of guest address addr inside this VMA."""
        return self.buf.addr + self.off + (addr - self.start)

    def slice(self, start: int, end: int) -> Vma:
        """The part of this VMA inside [start, end) (same backing, shifted offsets)."""
        s, e = max(start, self.start), min(end, self.end)
        delta = s - self.start
        return self.replace(start=s, end=e, off=self.off + delta,
                            file_off=self.file_off + delta if self.path else 0)


class VmaList:
    """A sorted list of non-overlapping VMAs with the splitting operations Linux performs."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._vmas: list[Vma] = []
        self.bytes = 0  # sum of the VMAs' sizes, kept in step by insert and remove

    def __iter__(self):
        return iter(list(self._vmas))

    def __len__(self) -> int:
        return len(self._vmas)

    def find(self, addr: int) -> Vma | None:
        """The VMA containing addr, or None."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and self._vmas[i].end > addr:
            return self._vmas[i]
        return None

    def overlapping(self, start: int, end: int) -> list[Vma]:
        """VMAs that intersect [start, end), in address order."""
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        out = []
        while i < len(self._vmas) and self._vmas[i].start < end:
            if self._vmas[i].end > start:
                out.append(self._vmas[i])
            i += 1
        return out

    def covered(self, start: int, end: int) -> bool:
        """True when every page of [start, end) belongs to some VMA."""
        at = start
        for v in self.overlapping(start, end):
            if v.start > at:
                return False
            at = v.end
        return at >= end

    def insert(self, vma: Vma) -> None:
        """Add a VMA (taking a reference on its buffer); the caller guarantees no overlap."""
        vma.buf.incref()
        i = bisect.bisect_left(self._starts, vma.start)
        self._starts.insert(i, vma.start)
        self._vmas.insert(i, vma)
        self.bytes += vma.size

    def remove(self, vma: Vma) -> None:
        """Remove exactly this VMA object, dropping its reference on the buffer."""
        i = bisect.bisect_left(self._starts, vma.start)
        assert self._vmas[i] is vma
        del self._starts[i], self._vmas[i]
        self.bytes -= vma.size
        vma.buf.decref()

    def edges(self, start: int, end: int) -> tuple[list[Vma], int]:
        """The VMAs carve(start, end) would touch, and how many edge pieces it would keep."""
        old = self.overlapping(start, end)
        return old, sum((v.start < start) + (v.end > end) for v in old)

    def carve(self, start: int, end: int, transform: Callable[[Vma], Vma] | None = None,
              ) -> tuple[list[Vma], list[Vma], list[Vma]]:
        """Remove [start, end) from the list, splitting VMAs at its edges.

        Returns (old, kept, cut): the VMAs that were touched, the edge pieces put back, and the
        pieces inside the range that were taken out.  With `transform`, each cut piece is
        replaced by transform(piece) and put back (mprotect); otherwise the cut pieces' buffers
        may be freed on return, so use them for bounds only.
        """
        old = self.overlapping(start, end)
        kept, cut = [], []
        for v in old:
            v.buf.incref()  # held until the pieces are back in, so no buffer dies in between
            self.remove(v)
            if v.start < start:
                kept.append(v.slice(v.start, start))
            if v.end > end:
                kept.append(v.slice(end, v.end))
            cut.append(v.slice(start, end))
        for k in kept:
            self.insert(k)
        if transform is not None:
            cut = [transform(c) for c in cut]
            for c in cut:
                self.insert(c)
        for v in old:
            v.buf.decref()
        return old, kept, cut

    def merge(self, start: int, end: int) -> None:
        """Join neighbours in [start, end) that are one mapping split in two: same buffer at
        contiguous offsets, same protection, flags and name, anonymous (Linux's vma_merge)."""
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        while i + 1 < len(self._vmas) and self._vmas[i].start < end:
            a, b = self._vmas[i], self._vmas[i + 1]
            if a.end == b.start and a.buf is b.buf and a.off + a.size == b.off and \
                    (a.prot, a.flags, a.name) == (b.prot, b.flags, b.name) and \
                    not a.path and not b.path:
                joined = a.replace(end=b.end)
                a.buf.incref()
                self.remove(a)
                self.remove(b)
                self.insert(joined)
                a.buf.decref()
            else:
                i += 1

    def clear(self) -> None:
        """Remove every VMA (dropping all buffer references)."""
        for v in list(self._vmas):
            self.remove(v)

    def find_free(self, size: int, top: int, bottom: int) -> int | None:
        """Highest address a with [a, a+size) free and bottom <= a, a+size <= top (top-down)."""
        hi = top
        for v in reversed(self._vmas):
            if v.start >= hi:
                continue
            if v.end <= hi - size:
                break
            hi = v.start
        return hi - size if hi - size >= bottom else None
