"""Lazy thaw: page chunks left in the image and faulted in on first touch (host/lazypages).

Thaw then costs the structural records and one table entry per chunk, not the page data.
A chunk is loaded lazily when it is stored uncompressed and no later record of the chain
(pages or zero_pages) touches its pages; every other page record is laid down eagerly, in
chain order, as lay_pages does.  Each lazy chunk's CRC32 is checked by the serving thread
before any byte of it is installed; a mismatch ends the process with one error line and
status 125.  The whole-file SHA-256 of every image is checked on a helper thread while the
guest runs, with the same ending on a mismatch (see vkckpt-thaw(1), "Loading").

Images under LAZY_ABOVE bytes, keyed (sealed) images, read-only (verify) thaws and hosts
without userfaultfd (or a build without `_lazypages`) take the eager path; VKCKPT_THAW=eager
forces it, VKCKPT_THAW=lazy forces the lazy one for any size.
"""

from __future__ import annotations

import _thread
import atexit
import bisect
import os

from vkckpt.abi.mman import PAGE
from vkckpt.ckpt import lay_pages as LP
from vkckpt.ckpt import wp
from vkckpt.ckpt.schema import RECORD_VERSIONS
from vkckpt.errors import ImageError
from vkckpt.host import lazypages
from vkckpt.host.pagemap import discard
from vkckpt.image import CODECS, MAX_CHUNK_PAGES, PageChunk

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vkckpt.image import ImageReader, ImageRecord
    from vkckpt.vmspace.hostmem import HostBuffer

#: Images (the whole chain) smaller than this load eagerly: as cheap, and no helper thread.
LAZY_ABOVE = 4 << 20


def wanted(images: list[ImageReader], lazy: bool | None, keyed: bool, read_only: bool) -> bool:
    """Whether to thaw images lazily (lazy: ThawOptions.lazy, None for automatic)."""
    env = os.environ.get("VKCKPT_THAW", "")
    if env == "eager" or lazy is False or keyed or read_only or not lazypages.available():
        return False
    if lazy or env == "lazy":
        return True
    return sum(r.size for r in images) >= LAZY_ABOVE


class _Op:
    """One page record of the chain, in order; `lazy` until a later record touches it."""

    __slots__ = ("reader", "rec", "lazy")

    def __init__(self, reader: ImageReader, rec: PageChunk | ImageRecord, lazy: bool) -> None:
        self.reader = reader
        self.rec = rec
        self.lazy = lazy


def lay(chain: list[ImageReader], bufs: dict[int, HostBuffer]) -> LP.Laid:
    """lay_pages(chain, bufs), leaving eligible chunks in the image to be faulted in; returns
    what was laid or left (every other covered page is zero).  Falls back to laying a chunk
    eagerly wherever the host refuses to serve it."""
    ops = _plan(chain, bufs)
    laid: LP.Laid = {}
    for op in ops:
        rec = op.rec
        if op.lazy:
            laid.setdefault(rec.buf, []).append((rec.first, rec.first + rec.count))
        elif isinstance(rec, PageChunk):
            if not LP._chunk(op.reader, rec, bufs, laid):
                rec = op.reader.chunk_record(rec)
                LP._put_pages(bufs, rec.fields, op.reader.pages(rec), laid)
        elif rec.type == "pages":
            LP._put_pages(bufs, rec.fields, op.reader.pages(rec), laid)
        elif rec.type == "zero_pages":
            LP._zero_pages(bufs.get(rec.fields["buf"]), rec.fields["ranges"])
    lazy = [op for op in ops if op.lazy]
    if lazy and not _serve(lazy, bufs):
        for op in lazy:
            LP._chunk(op.reader, op.rec, bufs, {})
    return laid


def _plan(chain: list[ImageReader], bufs: dict[int, HostBuffer]) -> list[_Op]:
    """Every page record of chain in order, the eligible chunks marked lazy (held[bid]: the
    lazy ones by page range, sorted and disjoint)."""
    ops: list[_Op] = []
    held: dict[int, list[tuple[int, int, _Op]]] = {}
    for r in chain:
        for rec in r.records_and_pages(RECORD_VERSIONS):
            if isinstance(rec, PageChunk):
                _touch(held, rec.buf, rec.first, rec.first + rec.count)
                op = _Op(r, rec, _eligible(rec, bufs))
                if op.lazy:
                    lst = held.setdefault(rec.buf, [])
                    item = (rec.first, rec.first + rec.count, op)
                    if not lst or lst[-1][0] < rec.first:
                        lst.append(item)  # the writer's order: no search
                    else:
                        bisect.insort(lst, item, key=lambda t: t[0])
            elif rec.type in ("pages", "zero_pages"):
                _touch_record(held, rec)
                op = _Op(r, rec, False)
            else:
                continue
            ops.append(op)
    return ops


def _eligible(rec: PageChunk, bufs: dict[int, HostBuffer]) -> bool:
    buf = bufs.get(rec.buf)
    return buf is not None and rec.codec == CODECS["none"] and \
        1 <= rec.count <= MAX_CHUNK_PAGES and rec.nbytes == rec.count * PAGE and \
        rec.first + rec.count <= buf.size // PAGE


def _touch_record(held: dict[int, list[tuple[int, int, _Op]]], rec: ImageRecord) -> None:
    """A later pages/zero_pages record: the lazy chunks it touches are laid eagerly (all of
    them if it is malformed: the eager path then says what is wrong)."""
    f = rec.fields
    bid = f.get("buf")
    spans: list | None = None
    if rec.type == "pages" and type(f.get("first")) is int and type(f.get("count")) is int:
        spans = [(f["first"], f["first"] + f["count"])]
    elif rec.type == "zero_pages" and isinstance(f.get("ranges"), list):
        spans = [x for x in f["ranges"] if isinstance(x, list) and len(x) == 2
                 and all(type(v) is int for v in x)]
        if len(spans) != len(f["ranges"]):
            spans = None
    if spans is None or type(bid) is not int:
        for lst in held.values():
            for _, _, op in lst:
                op.lazy = False
            lst.clear()
        return
    for a, b in spans:
        _touch(held, bid, a, b)


def _touch(held: dict[int, list[tuple[int, int, _Op]]], bid: int, a: int, b: int) -> None:
    """Pages [a, b) of buffer bid are written again: the lazy chunks there become eager."""
    lst = held.get(bid)
    if not lst or lst[-1][1] <= a:  # the writer's order: nothing held reaches a
        return
    i = max(0, bisect.bisect_right(lst, a, key=lambda t: t[0]) - 1)
    while i < len(lst) and lst[i][0] < b:
        if lst[i][1] > a:
            lst[i][2].lazy = False
            del lst[i]
        else:
            i += 1


def _serve(lazy: list[_Op], bufs: dict[int, HostBuffer]) -> bool:
    """Hand the lazy chunks to host/lazypages; False when the host cannot serve them."""
    tracker = wp.Tracker.get()
    got = lazypages.serving_fd(None if tracker is None else tracker.fd)
    if got is None:
        return False
    fd, track = got
    spans = sorted((bufs[op.rec.buf].addr + op.rec.first * PAGE, op.rec.count * PAGE)
                   for op in lazy)
    ranges: list[tuple[int, int]] = []
    for addr, size in spans:
        if ranges and ranges[-1][0] + ranges[-1][1] == addr:
            ranges[-1] = (ranges[-1][0], ranges[-1][1] + size)
        else:
            ranges.append((addr, size))
    for addr, size in ranges:  # an earlier (overwritten) record of the chain left bytes there
        discard(addr, size)
    by_reader: dict[int, tuple[ImageReader, bytearray]] = {}
    for op in lazy:
        c = op.rec
        _, out = by_reader.setdefault(id(op.reader), (op.reader, bytearray()))
        out += lazypages.ENTRY.pack(bufs[c.buf].addr + c.first * PAGE, c.count * PAGE,
                                    c.data_off, c.crc, c.buf, c.first)
    try:
        lazypages.serve(fd, track, ranges,
                        [(bytes(e), r.fileno(), r.path) for r, e in by_reader.values()])
    except OSError:
        return False
    return True


def check_digests_aside(images: list[ImageReader]) -> None:
    """Check every image's SHA-256 and image id on a helper thread while the guest runs; a
    mismatch ends the process as a lazily found bad chunk does (one line, status 125).  A
    process that ends normally first waits for the check (atexit), so even a short run's
    status is 125 when its image was corrupted."""
    done = _thread.allocate_lock()
    done.acquire()

    def run() -> None:
        try:
            for r in images:
                r.check_digests()
        except ImageError as exc:
            lazypages.fail(str(exc))
        finally:
            done.release()

    def wait() -> None:
        with done:
            pass

    atexit.register(wait)
    _thread.start_new_thread(run, ())
