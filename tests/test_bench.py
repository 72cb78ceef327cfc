"""The benchmarks run and report sane numbers (no speed thresholds here: targets live in the
bench output), and the fast paths they measure keep their exact semantics: dirty tracking
never misses a change (with written-page tracking and with the comparison fallback), page
records are byte-identical to msgpack's, and the direct page reader matches the generic one."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import msgpack
import numpy as np
import pytest

from vkckpt.ckpt import pages as PG
from vkckpt.ckpt import wp
from vkckpt.image import (
    PAGES,
    PAGES_VERSION,
    ImageReader,
    ImageWriter,
    PageChunk,
    page_record_parts,
)
from vkckpt.vmspace.hostmem import HostBuffer

REPO = Path(__file__).resolve().parents[1]
PAGE = 4096


# -- python -m bench --quick ---------------------------------------------------------------------

def test_quick_bench_writes_every_benchmark(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO))
    try:
        from bench.__main__ import RESULTS
    finally:
        sys.path.remove(str(REPO))
    out = tmp_path / "quick.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["profile"] == "quick"
    assert set(doc["benchmarks"]) == set(RESULTS)
    for name, res in doc["benchmarks"].items():
        metrics = res["metrics"]
        assert metrics, name
        for key, value in metrics.items():
            assert isinstance(value, (int, float)) and math.isfinite(value), (name, key)
            assert value >= 0, (name, key, value)
        for t in res["targets"]:
            assert t["metric"] in metrics and isinstance(t["ok"], bool), (name, t)
    b = doc["benchmarks"]
    for key in ("single_ratio", "threads4_ratio"):
        assert b["compute"]["metrics"][key] > 0
    assert b["syscalls"]["metrics"]["getppid_per_s"] > 0
    assert b["syscalls"]["metrics"]["null_hook_per_s"] > 0
    assert b["freeze"]["metrics"]["full_rate_MBps"] > 0
    assert b["freeze"]["metrics"]["chain_identical"] == 1  # correctness, not speed
    assert b["image"]["metrics"]["zstd_vs_zstd1"] > 0
    assert b["thaw"]["metrics"]["small_total_s"] > 0
    assert b["scale"]["metrics"]["identical_after_thaw"] == 1
    assert b["parallel"]["metrics"]["identical"] == 1  # correctness, not speed
    assert doc["summary"]["targets"] == sum(len(r["targets"]) for r in b.values())


# -- dirty tracking stays exact ------------------------------------------------------------------

@pytest.fixture(params=["tracking", "compare"])
def dirty_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "tracking":
        if wp.Tracker.get() is None:
            pytest.skip("this host cannot track written pages (userfaultfd WP async)")
    else:
        monkeypatch.setattr(wp.Tracker, "_tried", True)
        monkeypatch.setattr(wp.Tracker, "_instance", None)
    return request.param


def _apply(mem: dict[int, bytes], plan: PG.BufferPlan, buf: HostBuffer) -> None:
    """What a thaw does with one buffer's records."""
    for runs in plan.zero:
        for a, b in runs:
            for p in range(a, b):
                mem.pop(p, None)
    for runs in plan.write:
        for a, b in runs:
            for p in range(a, b):
                mem[p] = bytes(buf.view[p * PAGE:(p + 1) * PAGE])


def _nonzero_pages(buf: HostBuffer, npages: int) -> dict[int, bytes]:
    out = {}
    for p in range(npages):
        page = bytes(buf.view[p * PAGE:(p + 1) * PAGE])
        if any(page):
            out[p] = page
    return out


def test_incremental_plans_never_miss_a_change(dirty_mode: str) -> None:
    """Random writes, rewrites with the same bytes, zeroing writes and discarded pages
    (MADV_DONTNEED) over several freezes, with the covered range shrinking and growing: the
    chain of plans always rebuilds the buffer exactly."""
    rng = np.random.default_rng(7)
    npages = 256
    buf = HostBuffer(npages * PAGE, 1).incref()
    try:
        mem: dict[int, bytes] = {}
        base = None
        ranges = [(0, 200)]
        for step in range(8):
            for p in rng.choice(npages, 20, replace=False).tolist():
                kind = rng.integers(4)
                off = p * PAGE + int(rng.integers(PAGE // 8)) * 8
                if kind == 0:
                    buf.view[off:off + 8] = int(rng.integers(1, 1 << 62)).to_bytes(8, "little")
                elif kind == 1:
                    buf.view[off:off + 8] = bytes(buf.view[off:off + 8])  # same bytes again
                elif kind == 2:
                    buf.view[p * PAGE:(p + 1) * PAGE] = bytes(PAGE)       # zero it by writing
                else:
                    buf.zero(p * PAGE, PAGE)                               # discard it
            if step == 3:
                ranges = [(0, 50), (100, 150)]
            elif step == 5:
                ranges = [(0, 256)]
            gen = PG.begin_freeze()
            plan = PG.plan_buffer(buf, ranges, base, base is not None, gen)
            if base is None:
                mem = {}
            for p in list(mem):  # pages outside the covered ranges are not in the image
                if not any(a <= p < b for a, b in ranges):
                    del mem[p]
            _apply(mem, plan, buf)
            want = {p: d for p, d in _nonzero_pages(buf, npages).items()
                    if any(a <= p < b for a, b in ranges)}
            assert mem == want, f"step {step} ({dirty_mode})"
            base = plan.base
    finally:
        buf.decref()


def test_full_plan_skips_untouched_memory(dirty_mode: str) -> None:
    buf = HostBuffer(64 << 20, 2).incref()
    try:
        buf.view[5 * PAGE] = 1
        buf.view[9000 * PAGE + 17] = 2
        plan = PG.plan_buffer(buf, [(0, (64 << 20) // PAGE)], None, False, PG.begin_freeze())
        assert plan.write == [[(5, 6), (9000, 9001)]]
    finally:
        buf.decref()


# -- page records: encoding and direct reading ---------------------------------------------------

@pytest.mark.parametrize("nbytes", [0, 1, 255, 256, 4096, 65535, 65536, 1 << 20])
def test_page_record_parts_match_msgpack(nbytes: int) -> None:
    data = os.urandom(nbytes)
    for buf, codec, count, crc, first in [(0, 0, 1, 0, 0), (300, 1, 256, 0xFFFFFFFF, 1 << 40),
                                          (1 << 33, 0, 17, 1 << 31, 127)]:
        fields = {"buf": buf, "codec": codec, "count": count, "crc": crc, "data": data,
                  "first": first}
        head, tail = page_record_parts(buf, codec, count, crc, nbytes, first)
        assert head + data + tail == msgpack.packb([PAGES, PAGES_VERSION, True, fields])


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_direct_page_reads_match_generic_reads(tmp_path: Path, codec: str) -> None:
    rng = np.random.default_rng(3)
    data = rng.integers(0, 4, size=700 * PAGE, dtype=np.uint8).tobytes()  # compressible
    path = tmp_path / "p.img"
    with ImageWriter(path, vkernel_id=bytes(16), codec=codec) as w:
        w.add("meta", {"x": 1})
        w.add_pages(3, 10, data)          # several chunks, hashed on the helper thread
        w.add_pages(4, 0, data[:PAGE])
        w.add_pages(5, 7, bytes(PAGE))    # compresses to a tiny record
    r = ImageReader(path)
    assert r.verify()["pages"] == 702
    generic = {}
    for rec in r.records({"meta": 1}):
        if rec.type == PAGES:
            generic[(rec.fields["buf"], rec.fields["first"])] = r.pages(rec)
    direct = {}
    for item in r.records_and_pages({"meta": 1}):
        if isinstance(item, PageChunk):
            dest = memoryview(bytearray(item.count * PAGE))
            r.load_pages(item, dest)
            direct[(item.buf, item.first)] = bytes(dest)
        elif item.type == PAGES:
            direct[(item.fields["buf"], item.fields["first"])] = r.pages(item)
    assert direct == generic
    assert [x.type for x in r.records({"meta": 1}, skip_pages=True)] == ["meta"]
