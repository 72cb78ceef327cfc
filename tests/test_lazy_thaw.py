"""Lazy thaw (ckpt/lazy_thaw.py, host/lazypages.c): page chunks left in the image and faulted
in on first touch finish every run exactly as the run never frozen, through further freezes,
forks and fresh processes; a bad chunk is never installed and ends the run with one line."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from vkckpt.abi.mman import PAGE
from vkckpt.ckpt import lazy_thaw
from vkckpt.ckpt.chain import ImageChain
from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.ckpt.schema import RECORD_VERSIONS
from vkckpt.ckpt.snapshot import write_image
from vkckpt.host import lazypages
from vkckpt.image import HEADER_SIZE, TRAILER_SIZE, ImageReader, PageChunk
from vkckpt.image.header import image_digest
from vkckpt.testing.oracle import (
    Workload,
    freeze_points,
    golden,
    run_noting,
    run_until,
    thaw_child,
    thaw_in_new_process,
)
from vkckpt.testing.workload import make_root

WORKLOADS = [Workload("mmaps", ("work",)), Workload("forkpipe"), Workload("pthreads"),
             Workload("execer"), Workload("signals")]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    assert lazypages.available(), "the _lazypages extension was not built"
    return tmp_path_factory.mktemp("lazy")


def _thaw(image: Path, out: list[bytes], root: Path, lazy: bool,
          chain: ImageChain | None = None):  # noqa: ANN202 - a VKernel
    return thaw(str(image), ThawOptions(root=str(root), stdout=out.append, stderr=out.append,
                                        deliver_sigthaw=False, lazy=lazy), chain=chain)


def _frozen(wl: Workload, base: Path, at: int) -> tuple[Path, Path, list[bytes]]:
    """(root, image, output before) of wl frozen at tick `at` into root/x.img."""
    root = make_root(base, [wl.name])
    k, before, status = run_until(wl, root, at)
    assert status is None
    image = root / "x.img"
    write_image(k, str(image))
    k.shutdown()
    return root, image, before


def _missing() -> int:
    return lazypages.stats()["missing"]


@pytest.mark.parametrize("wl", WORKLOADS, ids=lambda w: w.name)
@pytest.mark.parametrize("lazy", [True, False], ids=["lazy", "eager"])
def test_thawed_run_finishes_like_the_golden_one(base: Path, wl: Workload, lazy: bool) -> None:
    """Lazily (chunks still in the image when the guest starts) or eagerly (none)."""
    gold = golden(wl, make_root(base, [wl.name]))
    for at in freeze_points(gold, 2, seed=13):
        root, image, before = _frozen(wl, base, at)
        held = _missing()
        out: list[bytes] = []
        k = _thaw(image, out, root, lazy)
        assert (_missing() > held) == lazy
        status, _ = run_noting(k)
        assert b"".join(before + out) == gold.output
        assert (status, k.sched.ticks, dict(k.statuses)) == (gold.status, gold.ticks,
                                                             gold.statuses)
        k.shutdown()


def test_freezing_again_after_a_lazy_thaw_full_and_incremental(base: Path) -> None:
    """A lazily thawed vkernel frozen at once (full, then incremental on its chain) before
    it touched its pages: both images thaw (lazily) and finish like the golden run."""
    wl = WORKLOADS[0]
    gold = golden(wl, make_root(base, [wl.name]))
    first, second = freeze_points(gold, 2, seed=5)
    root, image, before = _frozen(wl, base, first)
    out: list[bytes] = []
    chain = ImageChain()
    k = _thaw(image, out, root, True, chain)
    assert _missing() > 0
    write_image(k, str(root / "full.img"))  # nothing run: every page still in x.img
    assert k.run(until_ticks=second) is None
    write_image(k, str(root / "inc.img"), chain=chain, incremental=True)
    assert ImageReader(root / "inc.img").header.incremental
    k.shutdown()
    for name in ("full.img", "inc.img"):
        again: list[bytes] = []
        k2 = _thaw(root / name, again, root, True)
        status, _ = run_noting(k2)
        mid = out if name == "inc.img" else []
        assert b"".join(before + mid + again) == gold.output, name
        assert (status, k2.sched.ticks) == (gold.status, gold.ticks), name
        k2.shutdown()


def test_fork_right_after_a_lazy_thaw(base: Path) -> None:
    """forkpipe frozen before its first fork: the children's copies hold the lazy pages."""
    wl = WORKLOADS[1]
    gold = golden(wl, make_root(base, [wl.name]))
    root, image, before = _frozen(wl, base, gold.points[1])
    out: list[bytes] = []
    k = _thaw(image, out, root, True)
    assert _missing() > 0
    status, _ = run_noting(k)
    assert b"".join(before + out) == gold.output
    assert (status, k.sched.ticks) == (gold.status, gold.ticks)
    k.shutdown()


def test_image_unlinked_under_a_lazy_thaw_still_loads(base: Path) -> None:
    wl = WORKLOADS[2]
    gold = golden(wl, make_root(base, [wl.name]))
    root, image, before = _frozen(wl, base, freeze_points(gold, 1, seed=3)[0])
    out: list[bytes] = []
    k = _thaw(image, out, root, True)
    image.unlink()
    status, _ = run_noting(k)
    assert b"".join(before + out) == gold.output and status == gold.status
    k.shutdown()


@pytest.mark.parametrize("mode", ["lazy", "eager"])
def test_fresh_process_thaw(base: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    wl = WORKLOADS[0]
    gold = golden(wl, make_root(base, [wl.name]))
    root, image, before = _frozen(wl, base, freeze_points(gold, 1, seed=9)[0])
    monkeypatch.setenv("VKCKPT_THAW", mode)
    got = thaw_in_new_process(image, root)
    assert b"".join(before) + got.output == gold.output
    assert (got.status, got.ticks) == (gold.status, gold.ticks)


def _chunk_at_rip(wl: Workload, base: Path, at: int) -> tuple[Path, Path, PageChunk]:
    """wl frozen at `at`, and the page chunk holding the code its thread runs next."""
    root = make_root(base, [wl.name])
    k, _, status = run_until(wl, root, at)
    assert status is None
    p = k.procs[1]
    rip = p.engine.get_state()["rip"]
    v = p.vm.vmas.find(rip)
    page = (v.off + rip - v.start) // PAGE
    image = root / "x.img"
    write_image(k, str(image))
    bid = v.buf.bid
    k.shutdown()
    for rec in ImageReader(image).records_and_pages(RECORD_VERSIONS):
        if isinstance(rec, PageChunk) and rec.buf == bid and \
                rec.first <= page < rec.first + rec.count:
            return root, image, rec
    raise AssertionError("no chunk holds the next instruction")


def _corrupt_consistently(image: Path, at: int) -> None:
    """Flip the byte at offset `at`, then rewrite the image id and the trailer's digest (by
    the image's format rule, vkckpt-image(5)) so that only the chunk's CRC32 can tell (as a
    guest rewriting its own image could)."""
    data = bytearray(image.read_bytes())
    data[at] ^= 0x5A
    end = len(data) - TRAILER_SIZE
    data[32:48] = hashlib.sha256(data[HEADER_SIZE:end]).digest()[:16]  # header.image_id
    data[96:100] = zlib.crc32(bytes(data[:96])).to_bytes(4, "little")
    data[len(data) - 32:] = image_digest(bytes(data[:HEADER_SIZE]),
                                         hashlib.sha256(data[HEADER_SIZE:end]).digest())
    image.write_bytes(bytes(data))


@pytest.mark.parametrize("mode", ["lazy", "eager"])
def test_corrupted_chunk_is_never_installed(base: Path, mode: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The chunk holding the next instruction fails its CRC: one error line, status 125,
    and the guest writes nothing more (it never ran past touching it)."""
    wl = WORKLOADS[0]
    gold = golden(wl, make_root(base, [wl.name]))
    root, image, chunk = _chunk_at_rip(wl, base, gold.points[len(gold.points) // 2])
    _corrupt_consistently(image, chunk.data_off + chunk.nbytes // 2)
    ImageReader(image).check_digests()  # the whole-file checks pass: only the CRC can tell
    monkeypatch.setenv("VKCKPT_THAW", mode)
    p, stats = thaw_child(image, root)
    err = p.stderr.decode().splitlines()
    assert p.returncode == 125 and stats is None
    assert len(err) == 1 and "fail their CRC check" in err[0], err
    assert f"of buffer {chunk.buf}" in err[0]
    assert p.stdout == b""


def test_image_truncated_under_a_lazy_thaw_stops_the_run(base: Path) -> None:
    """The image loses its page data after the thaw: the run stops with one line, 125."""
    wl = WORKLOADS[0]
    gold = golden(wl, make_root(base, [wl.name]))
    root, image, _ = _frozen(wl, base, freeze_points(gold, 1, seed=2)[0])
    script = ("import os, sys\n"
              "from vkckpt.ckpt.restore import ThawOptions, thaw\n"
              "k = thaw(sys.argv[1], ThawOptions(root=sys.argv[2], lazy=True,"
              " deliver_sigthaw=False, stdout=lambda b: None, stderr=lambda b: None))\n"
              "os.truncate(sys.argv[1], 4096)\n"
              "k.run()\nprint('finished')\n")
    p = subprocess.run([sys.executable, "-c", script, str(image), str(root)],
                       capture_output=True, timeout=300, env=dict(os.environ))
    err = p.stderr.decode().splitlines()
    assert p.returncode == 125, p.stderr
    assert len(err) == 1 and "truncated" in err[0], err
    assert b"finished" not in p.stdout


def test_corruption_anywhere_ends_the_run_with_125(base: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A flipped byte in the last chunk, the trailer's SHA-256 left as it was: whether the
    guest touches that chunk (its CRC32) or not (the SHA-256 on the helper thread, waited
    for at exit), the run ends with one line and status 125, never with the guest's own."""
    wl = WORKLOADS[0]
    gold = golden(wl, make_root(base, [wl.name]))
    root, image, _ = _frozen(wl, base, freeze_points(gold, 1, seed=4)[0])
    chunks = [r for r in ImageReader(image).records_and_pages(RECORD_VERSIONS)
              if isinstance(r, PageChunk)]
    data = bytearray(image.read_bytes())
    data[chunks[-1].data_off + 7] ^= 1
    image.write_bytes(bytes(data))
    monkeypatch.setenv("VKCKPT_THAW", "lazy")
    p, _ = thaw_child(image, root)
    err = p.stderr.decode().splitlines()
    assert p.returncode == 125 and gold.status != 125
    assert len(err) == 1 and "is corrupted" in err[0], err


def test_zstd_chunks_load_eagerly_with_the_same_result(base: Path) -> None:
    """Compressed chunks are not served lazily (no libzstd in C): laid at thaw, same run."""
    wl = WORKLOADS[2]
    gold = golden(wl, make_root(base, [wl.name]))
    root = make_root(base, [wl.name])
    k, before, status = run_until(wl, root, freeze_points(gold, 1, seed=8)[0])
    assert status is None
    write_image(k, str(root / "z.img"), codec="zstd")
    k.shutdown()
    held = _missing()
    out: list[bytes] = []
    k = _thaw(root / "z.img", out, root, True)
    assert _missing() == held
    status, _ = run_noting(k)
    assert b"".join(before + out) == gold.output and status == gold.status
    k.shutdown()


def test_when_thaw_is_lazy(base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sealed and read-only thaws, VKCKPT_THAW=eager and small images are eager."""
    wl = WORKLOADS[2]
    gold = golden(wl, make_root(base, [wl.name]))
    _, image, _ = _frozen(wl, base, freeze_points(gold, 1, seed=1)[0])
    small = [ImageReader(image)]
    assert small[0].size < lazy_thaw.LAZY_ABOVE
    monkeypatch.delenv("VKCKPT_THAW", raising=False)
    assert not lazy_thaw.wanted(small, None, keyed=False, read_only=False)
    assert lazy_thaw.wanted(small, True, keyed=False, read_only=False)
    assert not lazy_thaw.wanted(small, True, keyed=True, read_only=False)
    assert not lazy_thaw.wanted(small, True, keyed=False, read_only=True)
    monkeypatch.setenv("VKCKPT_THAW", "lazy")
    assert lazy_thaw.wanted(small, None, keyed=False, read_only=False)
    monkeypatch.setenv("VKCKPT_THAW", "eager")
    assert not lazy_thaw.wanted(small, True, keyed=False, read_only=False)
