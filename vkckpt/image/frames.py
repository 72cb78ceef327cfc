"""The record stream between header and trailer: framing, and the reader's and writer's views
of a frame before (or instead of) decoding it.

Each record is a frame: u32 length L (<= limits.MAX_RECORD) + L bytes of msgpack encoding
[type: str, version: int, critical: bool, fields: map of str keys].  Maps are written with
sorted keys (use lists for ordered data); map keys must be str (bytes are allowed in nested
maps).  The image id is the first 16 bytes of the SHA-256 of the frames, so identical content
gives identical ids and byte-identical files.

Page data travels in "pages" records (critical, version 1) of at most 256 pages each:
{"buf", "first", "count", "codec", "crc" (CRC32 of the uncompressed bytes), "data"}.  The
writer builds their frames by hand around the data (`page_record_parts`), and the reader
recognises frames built that way (`PageChunk`) to read their data straight into place.
"""

from __future__ import annotations

import msgpack

from vkckpt.image.codecs import _DECODE_ERRORS
from vkckpt.record import Comparable, Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PAGES = "pages"
PAGES_VERSION = 1
MAX_CHUNK_PAGES = 256


class ImageRecord(Comparable):
    """One decoded image record: its type, layout version, criticality and fields.

    (Not vkckpt.record.Record, the base of the runtime objects' records.)"""

    __slots__ = ("type", "version", "critical", "fields")

    def __init__(self, type: str, version: int, critical: bool, fields: dict) -> None:
        self.type = type
        self.version = version
        self.critical = critical
        self.fields = fields


def _depth_exceeds(obj: Any, limit: int) -> bool:
    """True if decoded `obj` nests lists/maps more than `limit` deep (iteratively)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > limit:
            return True
        for x in o.values() if isinstance(o, dict) else o:
            if isinstance(x, (list, dict)):
                stack.append((x, d + 1))
    return False


_ARRAY_HEADS = frozenset(range(0x90, 0xA0)) | {0xDC, 0xDD}
_MAP_HEADS = frozenset(range(0x80, 0x90)) | {0xDE, 0xDF}


def _count_objects(data: bytes, max_objects: int, max_depth: int) -> int | str:
    """The number of objects msgpack `data` decodes to, found without building them (arrays
    and maps by their headers, scalars skipped in C); "objects" or "depth" as soon as it
    holds more than max_objects or nests deeper than max_depth."""
    u = msgpack.Unpacker(None, raw=False, max_buffer_size=max(1, len(data)))
    u.feed(data)
    left = [1]  # items still to visit at each open level
    objects = 0
    try:
        while left:
            if not left[-1]:
                left.pop()
                continue
            left[-1] -= 1
            objects += 1
            if objects > max_objects:
                return "objects"
            head = data[u.tell()]
            if head in _ARRAY_HEADS:
                n = u.read_array_header()
            elif head in _MAP_HEADS:
                n = 2 * u.read_map_header()
            else:
                u.skip()
                continue
            if n:
                if len(left) >= max_depth:
                    return "depth"
                left.append(n)
    except (IndexError, *_DECODE_ERRORS):
        return objects  # malformed: the decoder says how
    return objects


def _peek(data: bytes) -> tuple[str, int, bool] | None:
    """(type, version, critical) of a record payload, decoding nothing else; None when the
    payload does not start like [str, int, bool, ...] (then the full decode says why)."""
    u = msgpack.Unpacker(None, raw=False, max_buffer_size=max(1, len(data)), max_str_len=256,
                         max_bin_len=0, max_array_len=0, max_map_len=0, max_ext_len=0)
    u.feed(data)
    try:
        if u.read_array_header() != 4:
            return None
        rtype, version, critical = u.unpack(), u.unpack(), u.unpack()
    except _DECODE_ERRORS:
        return None
    if not isinstance(rtype, str) or not rtype or type(version) is not int or version < 1 \
            or type(critical) is not bool:
        return None
    return rtype, version, critical


def _bin_header(n: int) -> bytes:
    """msgpack's header for a bin of n bytes (what packb writes with use_bin_type=True)."""
    if n < 0x100:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 0x10000:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


_pk = msgpack.packb
_PAGES_PREFIX = b"\x94" + _pk(PAGES) + _pk(PAGES_VERSION) + _pk(True) + b"\x86"
_PAGES_BUF = _PAGES_PREFIX + _pk("buf")
_K_CODEC, _K_COUNT, _K_CRC, _K_DATA, _K_FIRST = (_pk(k) for k in ("codec", "count", "crc",
                                                                   "data", "first"))


def page_record_parts(buf: int, codec: int, count: int, crc: int, nbytes: int,
                      first: int) -> tuple[bytes, bytes]:
    """The bytes before and after the page data of a "pages" record payload.

    head + data + tail is exactly msgpack.packb([PAGES, PAGES_VERSION, True, {"buf": buf,
    "codec": codec, "count": count, "crc": crc, "data": data, "first": first}]) (sorted keys),
    built without copying the data."""
    head = b"".join((_PAGES_BUF, _uint(buf), _K_CODEC, _uint(codec), _K_COUNT, _uint(count),
                     _K_CRC, _uint(crc), _K_DATA, _bin_header(nbytes)))
    return head, _K_FIRST + _uint(first)


_FIXINT = [bytes((i,)) for i in range(0x80)]


def _uint(n: int) -> bytes:
    """msgpack's encoding of the integer n >= 0 (the shortest, as packb writes it), without
    packb's cost of a Packer per call; OverflowError from 2**64 on, as packb."""
    if n < 0x80:
        return _FIXINT[n]
    if n < 0x100:
        return b"\xcc" + n.to_bytes(1, "big")
    if n < 0x10000:
        return b"\xcd" + n.to_bytes(2, "big")
    if n < 0x100000000:
        return b"\xce" + n.to_bytes(4, "big")
    return b"\xcf" + n.to_bytes(8, "big")


_PAGE_HEAD_MAX = len(_PAGES_PREFIX) + 4 + 9 + 6 + 9 + 6 + 9 + 4 + 9 + 5 + 5  # 85


def _read_uint(b: bytes, pos: int) -> tuple[int | None, int]:
    """A msgpack unsigned integer at b[pos:] in its shortest encoding: (value, end)."""
    if pos >= len(b):
        return None, pos
    t = b[pos]
    if t < 0x80:
        return t, pos + 1
    width = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}.get(t)
    if width is None or pos + 1 + width > len(b):
        return None, pos
    return int.from_bytes(b[pos + 1:pos + 1 + width], "big"), pos + 1 + width


def _read_bin_len(b: bytes, pos: int) -> tuple[int | None, int]:
    width = {0xC4: 1, 0xC5: 2, 0xC6: 4}.get(b[pos]) if pos < len(b) else None
    if width is None or pos + 1 + width > len(b):
        return None, pos
    return int.from_bytes(b[pos + 1:pos + 1 + width], "big"), pos + 1 + width


class PageChunk(Value):
    """A "pages" record located but not read: where its data lies in the file."""

    __slots__ = ("index", "off", "n", "buf", "first", "count", "codec", "crc", "data_off",
                 "nbytes")

    def __init__(self, index: int, off: int, n: int, buf: int, first: int, count: int,
                 codec: int, crc: int, data_off: int, nbytes: int) -> None:
        self.index = index
        self.off = off
        self.n = n
        self.buf = buf
        self.first = first
        self.count = count
        self.codec = codec
        self.crc = crc
        self.data_off = data_off
        self.nbytes = nbytes
