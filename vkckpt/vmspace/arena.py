"""Arenas: host memory laid out like the guest addresses it backs, so neighbours can merge.

Each private anonymous mmap used to get its own host buffer, so two adjacent mappings could
never be one engine region, and every region Unicorn adds costs time that grows with the
square of the regions already there (its RAM block allocator; UNICORN-NOTES).  An arena is
one host buffer (reserved, free until touched) for a window of WINDOW guest bytes: guest
address a lives at offset a - window start.  A private anonymous mapping placed next to a
mapping in an arena whose window holds it goes into the same arena, host-contiguous with its
neighbour, and VmaList.merge joins equal neighbours as Linux's vma_merge does.

Arenas are not saved: which buffer is an arena, and its window, follow from the VMAs alone
(a private anonymous unnamed VMA on a WINDOW-sized buffer), so a thawed run places every
later mapping exactly as the run that was never frozen.
"""

from __future__ import annotations

from collections.abc import Callable

from vkckpt.vmspace.hostmem import HostBuffer
from vkckpt.vmspace.vma import MAP_SHARED, Vma, VmaList

#: Guest bytes one arena covers (host address space only; pages cost once touched).
WINDOW = 64 << 20
#: Mappings larger than this get a buffer of their own.
MAX_IN_ARENA = WINDOW // 8


def window_of(v: Vma) -> int | None:
    """The start of the arena window v lies in, or None when v's buffer is no arena."""
    if v.buf.size != WINDOW or v.flags & MAP_SHARED or v.path or v.name:
        return None
    return v.start - v.off


def place(vmas: VmaList, addr: int, size: int,
          alloc_bid: Callable[[], int]) -> tuple[HostBuffer, int]:
    """Buffer and offset for a new private anonymous mapping [addr, addr+size), zeroed.

    The arena of the mapping just above or below is used when its window holds the range;
    else a new window ends at the mapping's end (mmap places mappings top-down, so the next
    ones land below, in it)."""
    for v in (vmas.find(addr + size), vmas.find(addr - 1)):
        start = window_of(v) if v is not None else None
        if start is not None and start <= addr and addr + size <= start + WINDOW:
            v.buf.zero(addr - start, size)  # an earlier mapping may have left bytes here
            return v.buf, addr - start
    start = max(addr + size - WINDOW, 0)
    return HostBuffer(WINDOW, alloc_bid()), addr - start
