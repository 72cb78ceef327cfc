"""Lay an image chain's page records into the thawed vkernel's host buffers, base first.

Page chunks go straight from the file into guest memory; every range is checked against
the buffer it names.  Buffers freed after a (parent) image was written are skipped.
"""

from __future__ import annotations

from vkckpt.abi.mman import PAGE
from vkckpt.ckpt import pages as PG
from vkckpt.ckpt.schema import RECORD_VERSIONS
from vkckpt.errors import ImageError
from vkckpt.image import MAX_CHUNK_PAGES, PageChunk
from vkckpt.vmspace.hostmem import PREFAULT_RUN

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vkckpt.image import ImageReader
    from vkckpt.vmspace.hostmem import HostBuffer

#: Page runs laid down per buffer id, in the order they were written.
Laid = dict[int, list[tuple[int, int]]]


def lay_pages(chain: list[ImageReader], bufs: dict[int, HostBuffer]) -> Laid:
    """Write every page record of chain (base image first) into bufs; returns what was laid
    (every other covered page is zero)."""
    laid: Laid = {}
    for r in chain:
        for rec in r.records_and_pages(RECORD_VERSIONS):
            if isinstance(rec, PageChunk):
                if _chunk(r, rec, bufs, laid):
                    continue
                rec = r.chunk_record(rec)  # the generic path below checks and says why
            if rec.type == "pages":
                _put_pages(bufs, rec.fields, r.pages(rec), laid)
            elif rec.type == "zero_pages":
                _zero_pages(bufs.get(rec.fields["buf"]), rec.fields["ranges"])
    return laid


def _chunk(r: ImageReader, rec: PageChunk, bufs: dict[int, HostBuffer], laid: Laid) -> bool:
    """Read a well-formed chunk straight into its buffer; False to take the checked path."""
    buf = bufs.get(rec.buf)
    first, count = rec.first, rec.count
    if buf is None or not 1 <= count <= MAX_CHUNK_PAGES or first + count > buf.size // PAGE:
        return False
    if count >= PREFAULT_RUN:  # shorter runs: the read faults them in (or they are there)
        PG.populate(buf, first, count)
    r.load_pages(rec, buf.view[first * PAGE: (first + count) * PAGE])
    laid.setdefault(rec.buf, []).append((first, first + count))
    return True


def _check_range(buf: HostBuffer, a: object, b: object) -> None:
    if not (isinstance(a, int) and isinstance(b, int) and 0 <= a < b <= buf.size // PAGE):
        raise ImageError(f"page range {a!r}-{b!r} lies outside buffer {buf.bid}")


def _put_pages(bufs: dict[int, HostBuffer], f: dict, data: bytes, laid: Laid) -> None:
    buf = bufs.get(f["buf"])
    if buf is None:
        return  # the buffer was freed after that (parent) image was written
    first = f["first"]
    _check_range(buf, first, first + len(data) // PAGE)
    buf.view[first * PAGE: first * PAGE + len(data)] = data
    laid.setdefault(f["buf"], []).append((first, first + len(data) // PAGE))


def _zero_pages(buf: HostBuffer | None, ranges: list) -> None:
    for a, b in ranges:
        if buf is not None:
            _check_range(buf, a, b)
            buf.view[a * PAGE: b * PAGE] = bytes((b - a) * PAGE)
