"""The fast paths of a freeze keep their exact meaning: batched page records are the bytes
add_pages writes, the numpy reading of a PAGEMAP_SCAN walk equals the region list, the
zero-page check misses no non-zero byte, and page runs are found exactly."""

from __future__ import annotations

import ctypes
import mmap
from pathlib import Path

import msgpack
import numpy as np
import pytest

from vkckpt.ckpt import pages as PG
from vkckpt.errors import ImageError
from vkckpt.host import pagemap
from vkckpt.image import ImageReader, ImageWriter
from vkckpt.image.frames import _uint
from vkckpt.vmspace.hostmem import HostBuffer

PAGE = 4096
VK = bytes(16)


def _data(npages: int) -> bytearray:
    rng = np.random.default_rng(5)
    return bytearray(rng.integers(0, 256, npages * PAGE, dtype=np.uint8).tobytes())


RUNS = [(0, 1), (3, 4), (4, 6), (10, 26), (30, 300), (400, 401), (500, 900)]


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_page_runs_write_the_bytes_add_pages_writes(tmp_path: Path, codec: str) -> None:
    data = _data(1000)
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    with ImageWriter(a, vkernel_id=VK, codec=codec) as w:
        w.add("kernel", {"x": 1})
        for s, e in RUNS:
            w.add_pages(2, s, memoryview(data)[s * PAGE:e * PAGE])
        w.add("meta", {"y": 2}, critical=False)
    with ImageWriter(b, vkernel_id=VK, codec=codec) as w:
        w.add("kernel", {"x": 1})
        w.add_page_runs(2, data, RUNS)
        w.add("meta", {"y": 2}, critical=False)
    assert a.read_bytes() == b.read_bytes()
    with ImageReader(b) as r:
        r.check_digests()
        assert r.verify()["pages"] == sum(e - s for s, e in RUNS)


def test_page_runs_are_checked(tmp_path: Path) -> None:
    with ImageWriter(tmp_path / "c.img", vkernel_id=VK) as w:
        for bad in ([(5, 5)], [(-1, 2)], [(0, 11)], [(0, 1.5)]):
            with pytest.raises(ImageError, match="page run"):
                w.add_page_runs(0, bytes(10 * PAGE), bad)
        with pytest.raises(ImageError, match="multiple"):
            w.add_page_runs(0, bytes(PAGE + 1), [(0, 1)])


def test_small_integers_encode_as_msgpack() -> None:
    for n in (0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1):
        assert _uint(n) == msgpack.packb(n)
    with pytest.raises(OverflowError):
        _uint(2**64)


def test_scan_equals_the_region_list() -> None:
    n = 600
    m = mmap.mmap(-1, n * PAGE)
    try:
        base = ctypes.addressof(ctypes.c_char.from_buffer(m))
        rng = np.random.default_rng(3)
        for p in np.flatnonzero(rng.random(n) < 0.4).tolist():
            ctypes.memset(base + p * PAGE, 1 + p % 200, 8)
        got = pagemap.scan(base, n)
        want = np.zeros(n, dtype=np.uint8)
        for a, b, c in pagemap.regions(base, n):
            want[a:b] = c
        assert (got & pagemap.PAGE_IS_PRESENT).any()
        assert np.array_equal(got, want)
        assert len(pagemap.scan(base, 0)) == 0
    finally:
        m.close()


def test_runs_are_exact() -> None:
    rng = np.random.default_rng(1)
    for n in (0, 1, 2, 7, 1000):
        for p in (0.0, 0.02, 0.5, 0.98, 1.0):
            mask = rng.random(n) < p
            want, i = [], 0
            while i < n:
                if mask[i]:
                    j = i
                    while j < n and mask[j]:
                        j += 1
                    want.append((i + 9, j + 9))
                    i = j
                else:
                    i += 1
            assert list(PG.runs(mask, 9)) == want, (n, p)


@pytest.mark.parametrize("density", [0.01, 0.9])
def test_zero_page_check_misses_no_byte(density: float) -> None:
    """Pages whose only non-zero byte is anywhere (first word zero, last byte set, ...)."""
    n = 5000
    buf = HostBuffer(n * PAGE, 1)
    try:
        rng = np.random.default_rng(7)
        view = np.frombuffer(buf.view, dtype=np.uint8)
        want = np.zeros(n, dtype=bool)
        for p in range(0, n, 3):
            at = [0, 7, 8, 100, PAGE - 1][p % 5]
            view[p * PAGE + at] = 1 + p % 255
            want[p] = True
        mask = rng.random(n) < density
        mask[:10] = True
        got = PG._nonzero(buf, 0, mask)
        assert np.array_equal(got, want & mask)
        assert np.array_equal(PG._nonzero(buf, 0, np.ones(n, dtype=bool)), want)
    finally:
        buf.decref()


def test_a_sealed_image_of_batched_runs_checks_with_its_key(tmp_path: Path) -> None:
    """The seal covers the batched records: it is computed after they are hashed."""
    p = tmp_path / "s.img"
    with ImageWriter(p, vkernel_id=VK, key=b"k" * 32) as w:
        w.add("kernel", {"x": 1})
        w.add_page_runs(0, _data(1000), RUNS)
    with ImageReader(p) as r:
        r.check_digests(b"k" * 32)
        with pytest.raises(ImageError, match="does not match the key"):
            r.check_digests(b"j" * 32)
