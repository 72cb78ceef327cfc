"""host/lazypages on a bare host buffer: a chunk is installed whole on first touch, a discarded
chunk is never read and reads as zeros, a partly discarded one keeps the rest, a fork copy
holds every lazy page, an unmapped buffer is forgotten -- with the written-page tracker's
userfaultfd (write-protected copies) and, in a child process, with one of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from pathlib import Path

from vkckpt.abi.mman import PAGE
from vkckpt.ckpt import wp
from vkckpt.host import lazypages
from vkckpt.vmspace.hostmem import HostBuffer

PAGES = 4     # per chunk
CHUNKS = 3
SKIP = 100    # bytes before the page data in the file


def _served(path: Path) -> tuple[HostBuffer, bytes]:
    """A buffer whose CHUNKS chunks of random bytes are served lazily from the file at path."""
    size = PAGES * PAGE
    data = os.urandom(CHUNKS * size)
    path.write_bytes(b"h" * SKIP + data)
    buf = HostBuffer(CHUNKS * size, bid=7).incref()
    entries = b"".join(
        lazypages.ENTRY.pack(buf.addr + i * size, size, SKIP + i * size,
                             zlib.crc32(data[i * size:(i + 1) * size]), 7, i * PAGES)
        for i in range(CHUNKS))
    tracker = wp.Tracker.get()
    got = lazypages.serving_fd(None if tracker is None else tracker.fd)
    assert got is not None, "this host has no userfaultfd"
    fd = os.open(path, os.O_RDONLY)
    lazypages.serve(got[0], got[1], [(buf.addr, buf.size)], [(entries, fd, str(path))])
    os.close(fd)  # the module holds its own duplicate
    return buf, data


def check_all(tmp: Path) -> None:
    """Every property of the module docstring, in this process's serving mode."""
    size = PAGES * PAGE
    buf, data = _served(tmp / "a.img")
    s0 = lazypages.stats()
    assert bytes(buf.view[size + 5: size + 9]) == data[size + 5: size + 9]  # chunk 1 only
    s1 = lazypages.stats()
    assert (s1["copied"] - s0["copied"], s0["missing"] - s1["missing"]) == (1, 1)
    assert bytes(buf.view[size: 2 * size]) == data[size: 2 * size]
    buf.zero(0, size)                    # chunk 0 whole: forgotten, never read
    assert lazypages.stats()["copied"] == s1["copied"]
    assert bytes(buf.view[:size]) == bytes(size)
    buf.zero(2 * size + PAGE, PAGE)      # one page of chunk 2: the rest is loaded first
    assert bytes(buf.view[2 * size: 2 * size + PAGE]) == data[2 * size: 2 * size + PAGE]
    assert bytes(buf.view[2 * size + PAGE: 2 * size + 2 * PAGE]) == bytes(PAGE)
    zero = lazypages.stats()["zero_pages"]
    buf.zero(size, size)                 # a finished chunk discarded: zeros, not the image
    assert bytes(buf.view[size: 2 * size]) == bytes(size)
    assert lazypages.stats()["zero_pages"] > zero  # answered by the thread

    other, data2 = _served(tmp / "b.img")  # a fork copy of pages never touched
    child = HostBuffer(other.size)
    child.copy_from(other, 0, other.size)
    assert bytes(child.view) == data2
    held = lazypages.stats()["chunks"]
    buf.decref()
    assert lazypages.stats()["chunks"] == held - CHUNKS
    other.decref()


def test_with_the_tracker_userfaultfd(tmp_path: Path) -> None:
    assert wp.Tracker.get() is not None, "the host tracks writes (Linux >= 6.7)"
    check_all(tmp_path)


def test_with_a_userfaultfd_of_its_own(tmp_path: Path) -> None:
    code = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
            "import test_lazy_pages as t; t.check_all(Path(sys.argv[2])); print('ok')")
    env = dict(os.environ, VKCKPT_DIRTY="compare")
    p = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-2000:]


def test_a_bad_chunk_is_never_installed(tmp_path: Path) -> None:
    code = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
            "import test_lazy_pages as t; p = Path(sys.argv[2]) / 'a.img'; "
            "buf, data = t._served(p); raw = bytearray(p.read_bytes()); raw[t.SKIP] ^= 1; "
            "p.write_bytes(bytes(raw)); x = bytes(buf.view[:8]); print('seen', x.hex())")
    p = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    err = p.stderr.splitlines()
    assert p.returncode == 125 and "seen" not in p.stdout
    assert len(err) == 1 and "pages 0..3 of buffer 7 fail their CRC check" in err[0], err
