"""The one-pass image digest of format 1.1, and the 1.0 images that still read.

Format 1.1's trailer holds SHA-256(header || SHA-256(records)), which a writer computes while
it writes; 1.0's held the SHA-256 of every byte before the trailer.  Both are checked exactly
as strongly: any changed byte of header, records or trailer is refused, and neither rule is
accepted for the other version.  A writer killed mid-write, even past the points where it
handed its file to the host's writeback, leaves the last good image as it was."""

from __future__ import annotations

import hashlib
import os
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import yaml

from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.errors import ImageError
from vkckpt.image import FORMAT_MINOR, HEADER_SIZE, TRAILER_SIZE, ImageReader, ImageWriter
from vkckpt.image import writer as W

DATA = Path(__file__).parent / "data"
VK = bytes(range(16))
PAGE = 4096


def pages(n: int, seed: int = 0) -> bytes:
    return b"".join(struct.pack("<II", seed, i) * (PAGE // 8) for i in range(n))


def write(path: Path, npages: int = 700, **kw: object) -> None:
    """An image with records, a large multi-chunk page run (hashed on the helper thread) and
    one-page runs (framed into one write each)."""
    with ImageWriter(path, vkernel_id=VK, **kw) as w:
        w.add("kernel", {"pid_next": 3, "name": "vk"})
        w.add_pages(0, 0, pages(npages))
        for i in range(5):
            w.add_pages(1, 10 * i, pages(1, seed=i + 1))


def checked(path: Path) -> dict:
    with ImageReader(path) as r:
        r.check_digests()
        return r.verify()


def refused(path: Path) -> str:
    with pytest.raises(ImageError) as ei:
        checked(path)
    return str(ei.value)


def relabel(blob: bytes, minor: int) -> bytes:
    """blob with another minor version in its header (CRC fixed up, nothing else)."""
    head = bytearray(blob[:HEADER_SIZE])
    struct.pack_into("<H", head, 10, minor)
    struct.pack_into("<I", head, 96, zlib.crc32(head[:96]))
    return bytes(head) + blob[HEADER_SIZE:]


def test_the_one_pass_digest_is_what_the_reader_verifies(tmp_path: Path) -> None:
    p = tmp_path / "a.img"
    write(p)
    blob = p.read_bytes()
    head, body, trailer = blob[:HEADER_SIZE], blob[HEADER_SIZE:-TRAILER_SIZE], blob[-32:]
    records = hashlib.sha256(body).digest()
    assert struct.unpack_from("<H", head, 10) == (FORMAT_MINOR,) and FORMAT_MINOR >= 1
    assert trailer == hashlib.sha256(head + records).digest()
    assert head[32:48] == records[:16]
    assert checked(p)["pages"] == 705


def test_background_commit_writes_the_same_digest(tmp_path: Path) -> None:
    fg, bg = tmp_path / "fg.img", tmp_path / "bg.img"
    write(fg)
    with ImageWriter(bg, vkernel_id=VK) as w:
        w.add("kernel", {"pid_next": 3, "name": "vk"})
        w.add_pages(0, 0, pages(700))
        for i in range(5):
            w.add_pages(1, 10 * i, pages(1, seed=i + 1))
        _, wait = w.commit_background()
    wait()
    assert bg.read_bytes() == fg.read_bytes()


@pytest.mark.parametrize("where", ["header", "records", "pages", "trailer"])
def test_any_changed_byte_is_refused(tmp_path: Path, where: str) -> None:
    p = tmp_path / "a.img"
    write(p)
    blob = bytearray(p.read_bytes())
    at = {"header": 20, "records": HEADER_SIZE + 30, "pages": len(blob) // 2,
          "trailer": len(blob) - 5}[where]
    blob[at] ^= 0x10
    if where == "header":  # past the header CRC: only the digest can tell
        struct.pack_into("<I", blob, 96, zlib.crc32(blob[:96]))
    p.write_bytes(bytes(blob))
    assert "corrupted" in refused(p)


def test_a_version_relabelled_is_refused(tmp_path: Path) -> None:
    """A 1.1 image claiming to be 1.0, and a 1.0 image claiming to be 1.1, are refused."""
    p = tmp_path / "a.img"
    write(p)
    p.write_bytes(relabel(p.read_bytes(), 0))
    assert "corrupted" in refused(p)
    old = (DATA / "hello-v1.0.img").read_bytes()
    p.write_bytes(relabel(old, 1))
    assert "corrupted" in refused(p)


def test_the_1_0_fixture_reads_verifies_and_thaws_as_recorded(tmp_path: Path) -> None:
    image = DATA / "hello-v1.0.img"
    want = yaml.safe_load((DATA / "hello-v1.0.expected.yaml").read_text())
    with ImageReader(image) as r:
        assert (r.header.major, r.header.minor) == (1, 0)
        r.check_digests()
        r.check_digests(parallel=True)
        assert r.verify()["records"] > 0
    root = tmp_path / "empty"
    (root / "work").mkdir(parents=True)
    out: list[bytes] = []
    k = thaw(str(image), ThawOptions(root=str(root), stdout=out.append, stderr=out.append,
                                     stdin=b"", deliver_sigthaw=False))
    status = k.run()
    assert b"".join(out).decode() == want["output"]
    assert (status, k.sched.ticks) == (want["status"], want["ticks"])
    k.shutdown()


def test_a_damaged_1_0_image_is_still_refused(tmp_path: Path) -> None:
    blob = bytearray((DATA / "hello-v1.0.img").read_bytes())
    blob[len(blob) // 2] ^= 1
    p = tmp_path / "bad.img"
    p.write_bytes(bytes(blob))
    assert "corrupted" in refused(p)


_KILLER = """
import os, signal, struct, sys, threading
from vkckpt.image import ImageWriter
path, when, at = sys.argv[1], sys.argv[2], int(sys.argv[3])
def hook(written):
    name = threading.current_thread().name
    if (when == "write" and written >= at) or (when == "commit" and name == "vkckpt-image-commit"):
        os.kill(os.getpid(), signal.SIGKILL)
data = b"".join(struct.pack("<II", 7, i) * 512 for i in range(1024))
with ImageWriter(path, vkernel_id=bytes(range(16)), fault_hook=hook) as w:
    w.add("kernel", {"pid_next": 9})
    for run in range(6):
        w.add_pages(0, run * 1024, data)
    _, wait = w.commit_background()
wait()
"""


@pytest.mark.parametrize("when", ["write", "commit"])
def test_a_writer_killed_mid_write_leaves_the_last_good_image(tmp_path: Path,
                                                              when: str) -> None:
    """Killed 20 MiB into a 24 MiB image (past two writeback requests) or in the commit
    thread (every byte in the file, trailer being written): the old image is untouched."""
    p = tmp_path / "img"
    write(p, npages=20)
    good = p.read_bytes()
    assert 2 * W._WRITEBACK < (20 << 20) < (24 << 20)
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(p), when, str(20 << 20)],
                          capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert p.read_bytes() == good
    assert checked(p)["pages"] == 25
    assert [n for n in os.listdir(tmp_path) if n != "img"] == []
