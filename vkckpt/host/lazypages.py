"""Lazy page loading (Linux userfaultfd): host ranges whose pages come from an image file on
first touch, each page chunk's CRC32 checked before any of it is installed.

The work is done by the C module `_lazypages` on a host thread of its own, which needs no
GIL: faults come from Unicorn (inside uc_emu_start) as well as from Python code reading
guest memory.  One process has at most one serving userfaultfd; which one (the written-page
tracker's, or a new one) and what is loaded lazily is decided in ckpt/lazy_thaw.py.

Every operation that discards, unmaps or copies host memory in bulk while chunks may still
be missing goes through `forget`, `drop` or `materialise` first (vmspace/hostmem.py); a
freeze calls `materialise_all`.  `active` stays False (and all of these are free) until a
lazy thaw added chunks.
"""

from __future__ import annotations

import os
import struct

from vkckpt.host.pagemap import uffd_open_missing, uffd_register_missing, uffd_unregister

try:
    from vkckpt.host import _lazypages as _c
except ImportError:  # built without it (optional extension): every thaw is eager
    _c = None

#: One chunk for `add`: host address, length, file offset, CRC32, buffer id, first page.
ENTRY = struct.Struct("<6Q")

active = False
_own_fd: int | None = None


#: One frame from `scan_frames`: offset, length, kind (0 other, 1 page chunk, 2 a "pages"
#: record not byte-exact), then a chunk's buf, first, count, codec, crc, data offset, bytes.
FRAME = struct.Struct("<10Q")


def scan_frames(fd: int, start: int, end: int, max_record: int, max_frames: int,
                max_bin: int, prefix: bytes) -> list[tuple[int, ...]] | None:
    """An image's record frames in [start, end) with its page chunks parsed, in C (one or
    two small reads per frame, no GIL); None without the extension or on any doubt (the
    caller's own walk then finds what is wrong)."""
    if _c is None:
        return None
    raw = _c.scan(fd, start, end, max_record, max_frames, max_bin, prefix)
    return None if raw is None else list(FRAME.iter_unpack(raw))


def _after_fork_in_child() -> None:
    """A forked child holds nothing lazily (the C module forgets its table too): its copies
    of the ranges are not registered any more.  Host fork() of a process that still holds
    lazy chunks would lose them: call materialise_all() first."""
    global active, _own_fd
    active = False
    if _own_fd is not None:
        os.close(_own_fd)  # the parent's address space
        _own_fd = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def available() -> bool:
    """Whether this build can load pages lazily (the host may still refuse, see `serve`)."""
    return _c is not None


def serving_fd(tracker_fd: int | None) -> tuple[int, bool] | None:
    """(userfaultfd, wp) to register lazy ranges with: the write tracker's own descriptor when
    there is one (a range belongs to one userfaultfd: the tracker's registration of the same
    buffer would fail otherwise), else a new one; None when the host has none."""
    global _own_fd
    if _c is None:
        return None
    if tracker_fd is not None:
        return tracker_fd, True
    if _own_fd is None:
        _own_fd = uffd_open_missing()
    return None if _own_fd is None else (_own_fd, False)


def serve(fd: int, wp: bool, ranges: list[tuple[int, int]],
          sources: list[tuple[bytes, int, str]]) -> None:
    """Load the chunks of sources ((ENTRY records, image fd, image path) each) on demand:
    register ranges ((addr, size), page-aligned, exactly the chunks', no page populated)
    with userfaultfd fd (for write protection too when wp).

    OSError when the host refuses a registration; then nothing stays registered or held."""
    global active
    assert _c is not None
    _c.start(fd, wp)
    for entries, image_fd, path in sources:  # before any fault can come
        _c.add(entries, image_fd, path)
    active = True
    done: list[tuple[int, int]] = []
    try:
        for addr, size in ranges:
            uffd_register_missing(fd, addr, size, wp)
            done.append((addr, size))
    except OSError:
        for addr, size in done:
            uffd_unregister(fd, addr, size)
        for addr, size in ranges:
            _c.drop(addr, size)
        raise


def materialise(addr: int, size: int) -> None:
    """Copy in (checked) every missing chunk of [addr, addr+size)."""
    if active:
        _c.materialise(addr, size)


def materialise_all() -> None:
    """Copy in every missing chunk (before a freeze reads guest memory in bulk)."""
    if active:
        _c.materialise(0, 1 << 63)


def forget(addr: int, size: int) -> None:
    """[addr, addr+size) is about to be discarded (reads as zeros after)."""
    if active:
        _c.forget(addr, size)


def drop(addr: int, size: int) -> None:
    """[addr, addr+size) is about to be unmapped."""
    if active:
        _c.drop(addr, size)


def fail(message: str) -> None:
    """End the process with the line `vkckpt: message` and status 125, as a chunk that fails
    its check does; never two such lines, whichever thread fails first."""
    _c.fail(message)


def stats() -> dict[str, int]:
    """Counters of the serving thread (tests, bench)."""
    if _c is None:
        return {}
    chunks, missing, faults, copied, zero = _c.stats()
    return {"chunks": chunks, "missing": missing, "faults": faults, "copied": copied,
            "zero_pages": zero}
