"""Page scanning for images: zero pages cost nothing, incremental images keep changed pages.

The dirty set is exact: it is computed by comparing each covered page with a copy taken at
the previous freeze (numpy, ~45 ms per 256 MiB), never by trusting write hooks.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from vkckpt.vmspace.hostmem import HostBuffer
from vkckpt.vmspace.vma import PAGE

_WORDS = PAGE // 8


def _pages(buf: HostBuffer, first: int, end: int) -> np.ndarray:
    return np.frombuffer(buf.view, dtype=np.uint64, count=(end - first) * _WORDS,
                         offset=first * PAGE).reshape(-1, _WORDS)


def runs(mask: np.ndarray, base: int) -> Iterator[tuple[int, int]]:
    """[start, end) page runs where mask is true, offset by base."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.view(np.int8), [0]))))
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        yield base + int(a), base + int(b)


def nonzero_runs(buf: HostBuffer, first: int, end: int) -> Iterator[tuple[int, int]]:
    """Runs of pages in [first, end) holding any non-zero byte."""
    return runs(_pages(buf, first, end).any(axis=1), first)


def changed_runs(buf: HostBuffer, first: int, end: int, base: np.ndarray | None
                 ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(runs to write, runs now zero) of pages in [first, end) that differ from base.

    base holds the buffer's pages 0..len(base) at the previous freeze; pages past it
    count as having been zero.
    """
    cur = _pages(buf, first, end)
    old = np.zeros_like(cur)
    if base is not None:
        hi = min(end, len(base))
        if hi > first:
            old[: hi - first] = base[first:hi]
    changed = (cur != old).any(axis=1)
    nonzero = cur.any(axis=1)
    return list(runs(changed & nonzero, first)), list(runs(changed & ~nonzero, first))


def copy_base(buf: HostBuffer, ranges: list[tuple[int, int]]) -> np.ndarray:
    """A copy of the buffer's pages up to the end of its last covered range (zeros between)."""
    end = ranges[-1][1] if ranges else 0
    out = np.zeros((end, _WORDS), dtype=np.uint64)
    for a, b in ranges:
        out[a:b] = _pages(buf, a, b)
    return out
