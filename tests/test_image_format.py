"""Checkpoint image container: round trips, determinism, atomicity and hostile input.

Every malformed image -- truncated, bit-flipped, mutated by hypothesis, hand-built with
absurd lengths or nesting -- must be refused with an ImageError (never another exception
and never a hang); a writer that fails or is SIGKILLed must leave the previous image intact.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vkckpt.errors import ImageError
from vkckpt.host.fs import TEMP_PREFIX
from vkckpt.image import (
    CODECS,
    DEFAULT_LIMITS,
    FORMAT_MINOR,
    HEADER_SIZE,
    MAGIC,
    MIGRATIONS,
    PAGE,
    TRAILER_MAGIC,
    TRAILER_SIZE,
    Header,
    ImageReader,
    ImageRecord,
    ImageWriter,
    Limits,
)

VK = bytes(range(16))
PARENT = b"P" * 16
KNOWN = {"kernel": 1, "task": 1}
REPO = Path(__file__).resolve().parent.parent


# -- helpers ---------------------------------------------------------------------------


def page_data(npages: int, seed: int = 0) -> bytes:
    """Half incompressible, half zero pages, so zstd chunks take both codec paths."""
    rnd = random.Random(seed)
    out = bytearray()
    for i in range(npages):
        out += rnd.randbytes(PAGE) if i % 2 == 0 else bytes(PAGE)
    return bytes(out)


def write_sample(path: Path, codec: str = "none", npages: int = 600, **kw) -> Header:
    with ImageWriter(path, vkernel_id=VK, codec=codec, **kw) as w:
        w.add("kernel", {"pid_next": 7, "name": "vk0", "regs": [1, 2, 3], "blob": b"\x00\xff"})
        w.add("task", {"tid": 1, "state": {"b": 2, "a": 1}}, version=1)
        w.add("debug.note", {"text": "optional"}, critical=False)
        w.add_pages(0, 16, page_data(npages))
        w.add_pages(1, 0, memoryview(page_data(3, seed=1)))
        return w.commit()


def read_everything(path: Path, known: dict[str, int] | None = None) -> dict:
    """Open, stream every record (decoding pages) and verify; return verify()'s stats."""
    with ImageReader(path) as r:
        for rec in r.records(KNOWN if known is None else known):
            if rec.type == "pages":
                r.pages(rec)
        return r.verify()


def make_image(payloads: list[bytes], *, major: int = 1, minor: int = 0, flags: int = 0,
               count: int | None = None) -> bytes:
    """Hand-build a correctly sealed image around raw record payloads."""
    body = b"".join(struct.pack("<I", len(p)) + p for p in payloads)
    return seal(body, major=major, minor=minor, flags=flags,
                count=len(payloads) if count is None else count)


def seal(body: bytes, *, major: int = 1, minor: int = 0, flags: int = 0, count: int = 0) -> bytes:
    image_id = hashlib.sha256(body).digest()[:16]
    fields = struct.pack("<8sHHI16s16s16s32s", MAGIC, major, minor, flags, VK, image_id,
                         bytes(16), b"test")
    head = fields + struct.pack("<I", zlib.crc32(fields))
    if minor >= 1:  # format 1.1 on: SHA-256 of the header and of the records' SHA-256
        digest = hashlib.sha256(head + hashlib.sha256(body).digest()).digest()
    else:           # format 1.0: SHA-256 of every byte before the trailer
        digest = hashlib.sha256(head + body).digest()
    return head + body + struct.pack("<8sQ32s", TRAILER_MAGIC, count, digest)


def reseal(blob: bytes) -> bytes:
    """Recompute header id/CRC and trailer of a (possibly mutated) body, keeping its count."""
    body = blob[HEADER_SIZE:-TRAILER_SIZE]
    count = struct.unpack_from("<Q", blob, len(blob) - TRAILER_SIZE + 8)[0]
    return seal(body, count=count)


def rec(rtype: str, fields: dict, version: int = 1, critical: bool = True) -> bytes:
    return msgpack.packb([rtype, version, critical, fields])


def expect_image_error(path: Path, match: str | None = None) -> ImageError:
    with pytest.raises(ImageError, match=match) as ei:
        read_everything(path)
    assert str(path) in str(ei.value)
    return ei.value


def temp_files(directory: Path) -> list[str]:
    return [n for n in os.listdir(directory) if n.startswith(TEMP_PREFIX)]


# -- round trips -----------------------------------------------------------------------


@pytest.mark.parametrize("durable", [True, False])
def test_only_a_durable_image_is_synced(tmp_path: Path, durable: bool,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """durable=False (a migration's images) commits and renames without any fsync; the
    image reads back the same."""
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    p = tmp_path / "a.img"
    with ImageWriter(p, vkernel_id=VK, durable=durable) as w:
        w.add("kernel", {"n": 1})
        w.add_pages(0, 0, page_data(600))
        w.commit()
    assert bool(synced) == durable
    with ImageReader(p) as r:
        assert r.verify()["pages"] == 600


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_round_trip(tmp_path: Path, codec: str) -> None:
    p = tmp_path / "a.img"
    hdr = write_sample(p, codec, parent_id=PARENT, incremental=True)
    assert hdr.codec == codec and hdr.incremental and hdr.parent_id == PARENT
    with ImageReader(p) as r:
        assert r.header == hdr
        assert r.header.producer.startswith("vkckpt ")
        recs = list(r.records(KNOWN))
        assert recs[0] == ImageRecord("kernel", 1, True,
                                      {"blob": b"\x00\xff", "name": "vk0", "pid_next": 7,
                                       "regs": [1, 2, 3]})
        assert recs[1].fields == {"tid": 1, "state": {"a": 1, "b": 2}}
        assert "debug.note" not in [x.type for x in recs]  # optional and unknown: skipped
        chunks = [x for x in recs if x.type == "pages"]
        assert [(c.fields["buf"], c.fields["first"], c.fields["count"]) for c in chunks] == [
            (0, 16, 256), (0, 272, 256), (0, 528, 88), (1, 0, 3)]
        assert b"".join(r.pages(c) for c in chunks[:3]) == page_data(600)
        assert r.pages(chunks[3]) == page_data(3, seed=1)
        used = {c.fields["codec"] for c in chunks}
        assert used == ({CODECS["zstd"]} if codec == "zstd" else {CODECS["none"]})
        stats = r.verify()
    assert stats == {"records": 7, "pages": 603, "chunks": 4, "bytes": p.stat().st_size,
                     "types": {"kernel": 1, "task": 1, "debug.note": 1, "pages": 4}}
    raw = [x.type for x in ImageReader(p).records()]  # no `known`: everything, as stored
    assert raw[:3] == ["kernel", "task", "debug.note"]


def test_zstd_stores_incompressible_chunks_raw(tmp_path: Path) -> None:
    p = tmp_path / "a.img"
    with ImageWriter(p, vkernel_id=VK, codec="zstd") as w:
        w.add_pages(0, 0, random.Random(5).randbytes(3 * PAGE))
        w.add_pages(0, 3, bytes(3 * PAGE))
    with ImageReader(p) as r:
        a, b = r.records(KNOWN)
        assert a.fields["codec"] == 0 and len(a.fields["data"]) == 3 * PAGE
        assert b.fields["codec"] == 1 and len(b.fields["data"]) < PAGE
        assert r.pages(b) == bytes(3 * PAGE)
    assert ImageReader(p).header.codec == "zstd"


def test_identical_input_gives_identical_bytes_and_id(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.img", tmp_path / "b.img", tmp_path / "c.img"
    ha, hb = write_sample(a, "zstd"), write_sample(b, "zstd")
    assert a.read_bytes() == b.read_bytes() and ha.image_id == hb.image_id
    with ImageWriter(c, vkernel_id=VK, codec="zstd") as w:  # same maps, other key order
        w.add("kernel", {"regs": [1, 2, 3], "blob": b"\x00\xff", "name": "vk0", "pid_next": 7})
        w.add("task", {"state": {"a": 1, "b": 2}, "tid": 1})
        w.add("debug.note", {"text": "optional"}, critical=False)
        w.add_pages(0, 16, page_data(600))
        w.add_pages(1, 0, page_data(3, seed=1))
    assert c.read_bytes() == a.read_bytes()
    write_sample(c, "zstd", npages=601)
    assert ImageReader(c).header.image_id != ha.image_id


def test_image_id_is_content_hash(tmp_path: Path) -> None:
    p = tmp_path / "a.img"
    hdr = write_sample(p)
    blob = p.read_bytes()
    body = blob[HEADER_SIZE:-TRAILER_SIZE]
    assert hdr.image_id == hashlib.sha256(body).digest()[:16]
    # format 1.1 on: the trailer digest is SHA-256(header || SHA-256(records)), one pass
    assert hdr.minor == FORMAT_MINOR >= 1 and blob[-32:] == hashlib.sha256(
        blob[:HEADER_SIZE] + hashlib.sha256(body).digest()).digest()
    assert struct.unpack_from("<Q", blob, len(blob) - 40)[0] == 7
    assert len(blob) == HEADER_SIZE + len(body) + TRAILER_SIZE


def test_empty_image(tmp_path: Path) -> None:
    p = tmp_path / "e.img"
    with ImageWriter(p, vkernel_id=VK) as w:
        w.add_pages(0, 0, b"")
    assert read_everything(p) == {"records": 0, "pages": 0, "chunks": 0,
                                  "bytes": HEADER_SIZE + TRAILER_SIZE, "types": {}}


# -- writer --------------------------------------------------------------------------


def test_writer_refuses_what_readers_would_refuse(tmp_path: Path) -> None:
    with ImageWriter(tmp_path / "w.img", vkernel_id=VK) as w:
        with pytest.raises(ImageError, match=r"field 'fds'\[0\]: map key 3"):
            w.add("task", {"fds": [{3: "stdin"}]})
        with pytest.raises(ImageError, match="nested deeper"):
            deep: list = []
            for _ in range(40):
                deep = [deep]
            w.add("task", {"x": deep})
        with pytest.raises(ImageError, match="cannot be stored"):
            w.add("task", {"x": {1, 2}})
        with pytest.raises(ImageError, match="cannot be encoded"):
            w.add("task", {"x": 1 << 70})
        with pytest.raises(ImageError, match="multiple of 4096"):
            w.add_pages(0, 0, b"x" * 100)
        with pytest.raises(ImageError, match="str keys"):
            w.add("task", {1: 2})  # type: ignore[dict-item]
        with pytest.raises(ImageError, match="over the .* byte limit"):
            w.add("blob", {"parts": [b"x" * (2 << 20)] * 40})
        w.add("task", {"ok": True})  # the writer is still usable after refusals
    assert [r.type for r in ImageReader(tmp_path / "w.img").records()] == ["task"]
    with pytest.raises(ImageError, match="parent image id"):
        ImageWriter(tmp_path / "x.img", vkernel_id=VK, incremental=True)
    with pytest.raises(ImageError, match="unknown codec"):
        ImageWriter(tmp_path / "x.img", vkernel_id=VK, codec="lz77")
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("fail_at", [0, 50, 100, 5000, 700_000, 2_400_000, "commit"])
def test_failed_write_leaves_existing_image_intact(tmp_path: Path, fail_at: int | str) -> None:
    p = tmp_path / "a.img"
    write_sample(p, "none", npages=10)
    good = p.read_bytes()
    final_size = len(good) + 590 * PAGE + 1000  # bigger than any point the hook can reach

    def hook(written: int) -> None:
        limit = final_size if fail_at == "commit" else fail_at
        if written >= limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(ImageError, match="No space left") as ei:
        with ImageWriter(p, vkernel_id=VK, fault_hook=hook) as w:
            w.add("kernel", {"x": 1})
            w.add_pages(0, 0, page_data(600))
            final_size = w.bytes_written
            w.commit()
    assert isinstance(ei.value.__cause__, OSError) and ei.value.__cause__.errno == errno.ENOSPC
    assert p.read_bytes() == good
    assert temp_files(tmp_path) == []
    read_everything(p)


def test_exception_in_block_aborts(tmp_path: Path) -> None:
    p = tmp_path / "a.img"
    with pytest.raises(RuntimeError):
        with ImageWriter(p, vkernel_id=VK) as w:
            w.add("kernel", {})
            raise RuntimeError("boom")
    assert not p.exists() and temp_files(tmp_path) == []
    with pytest.raises(ImageError, match="already aborted"):
        w.add("kernel", {})


# -- hostile and damaged input ---------------------------------------------------------


def test_truncation_everywhere(tmp_path: Path) -> None:
    src = tmp_path / "a.img"
    write_sample(src, "zstd", npages=40)
    blob = src.read_bytes()
    p = tmp_path / "t.img"
    for cut in [*range(0, len(blob), 97), len(blob) - 1]:
        p.write_bytes(blob[:cut])
        expect_image_error(p)


def test_bit_flips_are_caught_by_verify(tmp_path: Path) -> None:
    src = tmp_path / "a.img"
    write_sample(src, "zstd", npages=20)
    blob = src.read_bytes()
    rnd = random.Random(1)
    offsets = [*range(HEADER_SIZE + 8), *range(len(blob) - TRAILER_SIZE - 8, len(blob))]
    offsets += rnd.sample(range(len(blob)), 300)
    p = tmp_path / "f.img"
    for off in offsets:
        bad = bytearray(blob)
        bad[off] ^= 1 << rnd.randrange(8)
        p.write_bytes(bad)
        with pytest.raises(ImageError):
            with ImageReader(p) as r:
                r.verify()


@pytest.mark.parametrize("parallel", [False, True], ids=["one thread", "id aside"])
def test_digests_of_a_large_image_catch_a_flip_anywhere(tmp_path: Path, parallel: bool) -> None:
    """check_digests over more than 4 MiB of records (thaw hashes the image id on a second
    thread there): a flipped bit in the first, middle or last record byte is refused."""
    src = tmp_path / "big.img"
    write_sample(src, "none", npages=2600)  # ~5 MiB of records
    ImageReader(src).check_digests(parallel=parallel)
    blob = src.read_bytes()
    end = len(blob) - TRAILER_SIZE
    assert end - HEADER_SIZE > 4 << 20
    p = tmp_path / "f.img"
    for off in (HEADER_SIZE, (HEADER_SIZE + end) // 2, end - 1):
        bad = bytearray(blob)
        bad[off] ^= 0x10
        p.write_bytes(bad)
        with pytest.raises(ImageError, match="corrupted"):
            ImageReader(p).check_digests(parallel=parallel)


def test_bad_page_crc_and_length_are_caught_by_pages(tmp_path: Path) -> None:
    src = tmp_path / "a.img"
    write_sample(src, "none", npages=1)
    blob = bytearray(src.read_bytes())
    pos = blob.rfind(bytes(64))  # inside a zero page of the last chunk
    blob[pos] ^= 0x40
    p = tmp_path / "b.img"
    p.write_bytes(reseal(bytes(blob)))
    with ImageReader(p) as r:
        chunk = [x for x in r.records(KNOWN) if x.type == "pages"][-1]
        with pytest.raises(ImageError, match="fail their CRC check"):
            r.pages(chunk)
        short = ImageRecord("pages", 1, True, {**chunk.fields, "data": chunk.fields["data"][:-1]})
        with pytest.raises(ImageError, match="instead of"):
            r.pages(short)
        with pytest.raises(ImageError, match="fail their CRC check"):
            r.verify()


def test_zstd_bomb_is_bounded(tmp_path: Path) -> None:
    import zstandard

    bomb = zstandard.ZstdCompressor(level=1).compress(bytes(64 << 20))
    fields = {"buf": 0, "first": 0, "count": 1, "codec": 1, "crc": zlib.crc32(bytes(PAGE)),
              "data": bomb}
    p = tmp_path / "z.img"
    p.write_bytes(make_image([rec("pages", fields)]))
    expect_image_error(p, "instead of 4096")
    garbage = {**fields, "data": b"\x28\xb5\x2f\xfd" + b"\xff" * 30}
    p.write_bytes(make_image([rec("pages", garbage)]))
    expect_image_error(p, "do not decompress")


def test_wrong_magic(tmp_path: Path) -> None:
    p = tmp_path / "x.img"
    for content in (b"", b"hello world" * 20, b"\x7fELF" + bytes(200)):
        p.write_bytes(content)
        expect_image_error(p, "not a vkckpt image")
    p.write_bytes(MAGIC[:5])
    expect_image_error(p, "truncated")


def test_not_a_file(tmp_path: Path) -> None:
    expect_image_error(tmp_path / "missing.img", "cannot open")
    expect_image_error(tmp_path, "cannot open|not a regular file")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    expect_image_error(fifo, "not a regular file")  # and does not block


def test_newer_major_version(tmp_path: Path) -> None:
    p = tmp_path / "v2.img"
    p.write_bytes(make_image([rec("kernel", {})], major=2, minor=3))
    err = expect_image_error(p)
    assert "written by a newer vkckpt (format 2.3); this reader supports 1.x" in str(err)
    p.write_bytes(make_image([rec("kernel", {})], major=1, minor=7, flags=1 << 20))
    assert read_everything(p)["records"] == 1  # newer minor: readable, unknown flag ignored
    p.write_bytes(make_image([rec("kernel", {})], flags=1 << 20))
    expect_image_error(p, "unknown header flags")
    p.write_bytes(make_image([rec("kernel", {})], flags=9 << 8))
    expect_image_error(p, "page codec 9")


def test_unknown_records(tmp_path: Path) -> None:
    p = tmp_path / "u.img"
    p.write_bytes(make_image([rec("kernel", {"a": 1}), rec("future.opt", {}, critical=False)]))
    assert [x.type for x in ImageReader(p).records(KNOWN)] == ["kernel"]
    p.write_bytes(make_image([rec("kernel", {"a": 1}), rec("future.thing", {})]))
    with pytest.raises(ImageError, match="'future.thing' is critical and unknown .*upgrade"):
        list(ImageReader(p).records(KNOWN))


def test_newer_record_version(tmp_path: Path) -> None:
    p = tmp_path / "n.img"
    p.write_bytes(make_image([rec("kernel", {}, version=2)]))
    with pytest.raises(ImageError, match="'kernel' is at version 2, newer than the 1"):
        list(ImageReader(p).records(KNOWN))
    p.write_bytes(make_image([rec("kernel", {}), rec("task", {}, version=9, critical=False)]))
    assert [x.type for x in ImageReader(p).records(KNOWN)] == ["kernel"]
    p.write_bytes(make_image([rec("pages", {}, version=2)]))
    with pytest.raises(ImageError, match="'pages' is at version 2"):
        list(ImageReader(p).records(KNOWN))


def test_migrations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "m.img"
    with ImageWriter(p, vkernel_id=VK) as w:
        w.add("example.counter", {"n": 5, "keep": "x"}, version=1)
        w.add("example.counter", {"count": 6, "unit": "s"}, version=2)
    got = list(ImageReader(p).records({"example.counter": 2}))
    assert got == [
        ImageRecord("example.counter", 2, True, {"keep": "x", "count": 5, "unit": "ticks"}),
        ImageRecord("example.counter", 2, True, {"count": 6, "unit": "s"})]
    with pytest.raises(ImageError, match="no migration from it"):
        list(ImageReader(p).records({"example.counter": 3}))
    monkeypatch.setitem(MIGRATIONS, ("example.counter", 2),
                        lambda f: {**f, "count": f["count"] * 10})
    got = list(ImageReader(p).records({"example.counter": 3}))
    assert [(x.version, x.fields["count"]) for x in got] == [(3, 50), (3, 60)]
    with ImageWriter(p, vkernel_id=VK) as w:
        w.add("example.counter", {"n": "not a number"}, version=1)
    with pytest.raises(ImageError, match="malformed and could not be upgraded"):
        list(ImageReader(p).records({"example.counter": 2}))


def test_oversized_lengths(tmp_path: Path) -> None:
    p = tmp_path / "o.img"
    good = make_image([rec("kernel", {})])
    body_at = HEADER_SIZE
    for claim, match in [(0xFFFFFFFF, "claims 4294967295 bytes .the limit"),
                         (DEFAULT_LIMITS.max_record, "only .* remain"), (0, "claims 0 bytes")]:
        bad = bytearray(good)
        bad[body_at:body_at + 4] = struct.pack("<I", claim)
        p.write_bytes(reseal(bytes(bad)))
        expect_image_error(p, match)
    for inner in (b"\xc6\xff\xff\xff\xff", b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff",
                  b"\xdb\xff\xff\xff\xff", b"\xc7\x05\x01abcde"):
        payload = b"\x94\xa6kernel\x01\xc3\x81\xa1x" + inner
        p.write_bytes(make_image([payload]))
        expect_image_error(p, "not valid msgpack")
    p.write_bytes(make_image([rec("kernel", {})], count=1 << 40))
    expect_image_error(p, "trailer claiming")
    p.write_bytes(make_image([rec("kernel", {})], count=2))
    expect_image_error(p, "holds 1 records but its trailer says 2")


def test_limits_are_configurable(tmp_path: Path) -> None:
    p = tmp_path / "l.img"
    p.write_bytes(make_image([rec("kernel", {"s": "x" * 100})]))
    with pytest.raises(ImageError, match="not valid msgpack"):
        list(ImageReader(p, limits=Limits(max_str=50)).records())
    with pytest.raises(ImageError, match="claims .* bytes .the limit is 20"):
        list(ImageReader(p, limits=Limits(max_record=20)).records())


@pytest.mark.parametrize("depth", [33, 40, 1000, 100_000])
def test_deep_nesting(tmp_path: Path, depth: int) -> None:
    p = tmp_path / "d.img"
    inner = b"\x91" * (depth - 2) + b"\xc0"  # the record array and fields map are 2 levels
    p.write_bytes(make_image([b"\x94\xa6kernel\x01\xc3\x81\xa1x" + inner]))
    expect_image_error(p, "nests deeper than 32|not valid msgpack")
    ok = b"\x91" * 29 + b"\xc0"  # 32 levels in all: allowed
    p.write_bytes(make_image([b"\x94\xa6kernel\x01\xc3\x81\xa1x" + ok]))
    assert read_everything(p)["records"] == 1


def test_malformed_record_shapes(tmp_path: Path) -> None:
    p = tmp_path / "s.img"
    for obj in (5, [], ["kernel", 1, True], ["", 1, True, {}], ["k", 0, True, {}],
                ["k", True, True, {}], ["k", 1, 1, {}], ["k", 1, True, []],
                ["k", 1, True, {b"x": 1}], ["k", 1, True, {}, 5]):
        p.write_bytes(make_image([msgpack.packb(obj)]))
        expect_image_error(p, "is corrupted")
    p.write_bytes(make_image([msgpack.packb(["k", 1, True, {}]) + b"\x00"]))
    expect_image_error(p, "not valid msgpack")
    for fields in ({}, {"buf": 0, "first": 0, "count": 0, "codec": 0, "crc": 0, "data": b""},
                   {"buf": 0, "first": 0, "count": 1, "codec": 7, "crc": 0, "data": b""},
                   {"buf": -1, "first": 0, "count": 1, "codec": 0, "crc": 0, "data": b""}):
        p.write_bytes(make_image([rec("pages", fields)]))
        expect_image_error(p)


# -- fuzzing ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_image(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    p = tmp_path_factory.mktemp("fuzz") / "small.img"
    with ImageWriter(p, vkernel_id=VK, codec="zstd") as w:
        w.add("kernel", {"n": 1, "l": [1, "two", b"3", None, 1.5, {"k": [True]}]})
        w.add("opt", {"x": "y"}, critical=False)
        w.add_pages(2, 5, bytes(PAGE) + random.Random(3).randbytes(PAGE))
        w.add_pages(3, 0, random.Random(4).randbytes(PAGE))
    return p.read_bytes()


def survives(path: Path, blob: bytes) -> None:
    path.write_bytes(blob)
    try:
        read_everything(path)
    except ImageError:
        pass


mutation = st.tuples(
    st.sampled_from(["flip", "set", "insert", "delete", "truncate"]),
    st.floats(0, 1), st.integers(0, 255), st.integers(1, 64),
)


def mutate(blob: bytes, ops: list[tuple[str, float, int, int]]) -> bytes:
    b = bytearray(blob)
    for kind, where, value, n in ops:
        i = min(int(where * len(b)), max(len(b) - 1, 0))
        if kind == "flip" and b:
            b[i] ^= 1 << (value % 8)
        elif kind == "set" and b:
            b[i] = value
        elif kind == "insert":
            b[i:i] = bytes([value]) * n
        elif kind == "delete":
            del b[i:i + n]
        elif kind == "truncate":
            del b[i:]
    return bytes(b)


FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(ops=st.lists(mutation, min_size=1, max_size=4))
def test_fuzz_mutations(tmp_path: Path, small_image: bytes, ops: list) -> None:
    survives(tmp_path / "fz.img", mutate(small_image, ops))


@FUZZ
@given(ops=st.lists(mutation.filter(lambda m: m[0] != "truncate"), min_size=1, max_size=4))
def test_fuzz_resealed_mutations(tmp_path: Path, small_image: bytes, ops: list) -> None:
    """Mutate only the record stream, then fix the checksums so decoding is reached."""
    body = small_image[HEADER_SIZE:-TRAILER_SIZE]
    blob = small_image[:HEADER_SIZE] + mutate(body, ops) + small_image[-TRAILER_SIZE:]
    survives(tmp_path / "fr.img", reseal(blob))


@FUZZ
@given(payloads=st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=3))
def test_fuzz_arbitrary_payloads(tmp_path: Path, payloads: list[bytes]) -> None:
    survives(tmp_path / "fa.img", make_image(payloads))


# -- crash safety ------------------------------------------------------------------------

CHILD = """
import os, sys
from vkckpt.image import ImageWriter, PAGE
path, gen = sys.argv[1], 0
print("ready", flush=True)
while True:
    gen += 1
    with ImageWriter(path, vkernel_id=b"K" * 16, codec=("zstd", "none")[gen % 2]) as w:
        w.add("kernel", {"gen": gen})
        for buf in range(4):
            w.add_pages(buf, 0, os.urandom(PAGE) * 512 + bytes(PAGE * 512))
"""


def test_sigkill_during_write_keeps_previous_image(tmp_path: Path) -> None:
    p = tmp_path / "ck.img"
    write_sample(p, "zstd", npages=20)
    rnd = random.Random(1234)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    for _ in range(7):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(p)], stdout=subprocess.PIPE,
                                 env=env, cwd=tmp_path)
        try:
            assert child.stdout is not None and child.stdout.readline() == b"ready\n"
            time.sleep(rnd.uniform(0.0, 0.5))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
            child.stdout.close()  # type: ignore[union-attr]
        assert child.returncode == -signal.SIGKILL
        stats = read_everything(p, {"kernel": 1})
        assert stats["records"] >= 1
        assert ImageReader(p).header.vkernel_id in (VK, b"K" * 16)
    # A killed writer can leave its temp file behind, but never at `path`.
    for name in temp_files(tmp_path):
        assert name.startswith(TEMP_PREFIX)


def test_background_commit_writes_the_same_image(tmp_path: Path) -> None:
    """commit_background: the same bytes at the path, nothing there until wait() returns."""
    fg = tmp_path / "fg.img"
    bg = tmp_path / "bg.img"
    header = write_sample(fg)
    with ImageWriter(bg, vkernel_id=VK) as w:
        w.add("kernel", {"pid_next": 7, "name": "vk0", "regs": [1, 2, 3], "blob": b"\x00\xff"})
        w.add("task", {"tid": 1, "state": {"b": 2, "a": 1}}, version=1)
        w.add("debug.note", {"text": "optional"}, critical=False)
        w.add_pages(0, 16, page_data(600))
        w.add_pages(1, 0, memoryview(page_data(3, seed=1)))
        bg_header, wait = w.commit_background()
    assert bg_header == header
    wait()
    assert bg.read_bytes() == fg.read_bytes()
    assert not temp_files(tmp_path)


def test_background_commit_failure_reaches_wait_and_leaves_the_path(tmp_path: Path) -> None:
    path = tmp_path / "x.img"
    write_sample(path)
    before = path.read_bytes()

    def full_disk_while_committing(written: int) -> None:
        import threading

        if threading.current_thread().name == "vkckpt-image-commit":
            raise OSError(errno.ENOSPC, "No space left on device")

    with ImageWriter(path, vkernel_id=VK, fault_hook=full_disk_while_committing) as w:
        w.add("kernel", {"pid_next": 8})
        w.add_pages(0, 0, page_data(300))
        _, wait = w.commit_background()
    with pytest.raises(ImageError, match="space"):
        wait()
    assert path.read_bytes() == before
    assert not temp_files(tmp_path)
