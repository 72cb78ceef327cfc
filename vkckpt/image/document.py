"""An image as an editable document and back: `vkckpt decode` and `vkckpt encode`.

A document is a plain tree (dicts, lists, str, int, float, bool, None, bytes)::

    {"document": 1, "pages": "base64" | "ref" | "none",
     "header": {"format": "1.2", "flags", "codec", "vkernel_id", "image_id", "parent_id",
                "producer"},
     "records": [{"type", "version", "critical", "fields"}, ...]}

Ids are hex (parent_id null for none).  With pages "base64" every "pages" record keeps its
"data" exactly as stored (compressed or not), so `assemble(from_document(to_document(p)))`
is byte-identical to p; with "ref" their data is replaced by where it lies in the file (not
encodable); with "none" they are left out.  Encoding recomputes the page chunks'
CRCs, the image id, the trailer digest and (with a key) the seal; from_document checks
every shape and bound the reader would, so a hostile document fails with one ImageError
line, never by exhausting memory.
"""

from __future__ import annotations

import hashlib
import io
import zlib

import msgpack

from vkckpt.abi.mman import PAGE
from vkckpt.errors import ImageError
from vkckpt.image.codecs import CODEC_NAMES, _canon, _EncodeError, _zstd
from vkckpt.image.frames import MAX_CHUNK_PAGES, PAGES
from vkckpt.image.header import (
    _CODEC_MASK,
    _CODEC_SHIFT,
    _NO_ID,
    _U32,
    ID_LEN,
    PRODUCER_LEN,
    Header,
    image_digest,
    one_pass,
    trailer_bytes,
)
from vkckpt.image.limits import DEFAULT_LIMITS, Limits
from vkckpt.image.reader import ImageReader
from vkckpt.image.seal import SEAL, seal_fields

DOCUMENT_VERSION = 1
PAGE_MODES = ("none", "ref", "base64")
_HEADER_KEYS = {"format", "flags", "codec", "vkernel_id", "image_id", "parent_id", "producer"}
_RECORD_KEYS = {"type", "version", "critical", "fields"}


def _payload(rtype: str, version: int, critical: bool, fields: dict) -> bytes:
    return msgpack.packb([rtype, version, critical, fields], use_bin_type=True)


def _canonical(rtype: str, version: int, critical: bool, fields: dict,
               limits: Limits) -> bytes | None:
    """The payload a writer gives this record (None if no writer could write it)."""
    try:
        return _payload(rtype, version, critical, _canon(fields, 2, limits))
    except (_EncodeError, TypeError, ValueError, OverflowError):
        return None


def to_document(path: str, pages: str = "base64", *,
                limits: Limits = DEFAULT_LIMITS) -> dict:
    """Decode the image at path (checked as the reader checks it) into a document."""
    if pages not in PAGE_MODES:
        raise ImageError(f"unknown pages mode {pages!r} (choose from {', '.join(PAGE_MODES)})")
    with ImageReader(path, limits=limits) as r:
        r.check_digests()
        h = r.header
        records = []
        for index, off, data in r._frames():
            rec = r._decode(data, index, off)
            if _canonical(rec.type, rec.version, rec.critical, rec.fields, limits) != data:
                raise r._err(f"record {index} at offset {off} is not in the canonical form "
                             "a writer gives; it cannot be decoded to re-encode exactly")
            fields = rec.fields
            if rec.type == PAGES:
                if pages == "none":
                    continue
                if pages == "ref":
                    fields = {k: v for k, v in fields.items() if k != "data"}
                    stored = rec.fields.get("data")
                    fields["ref"] = {"offset": off, "length": _U32.size + len(data),
                                     "data_length": len(stored) if isinstance(
                                         stored, bytes) else None}
            records.append({"type": rec.type, "version": rec.version,
                            "critical": rec.critical, "fields": fields})
    return {"document": DOCUMENT_VERSION, "pages": pages, "header": {
        "format": f"{h.major}.{h.minor}", "flags": h.flags, "codec": h.codec,
        "vkernel_id": h.vkernel_id.hex(), "image_id": h.image_id.hex(),
        "parent_id": None if h.parent_id is None else h.parent_id.hex(),
        "producer": h.producer}, "records": records}


def _fail(problem: str) -> ImageError:
    return ImageError(f"document {problem}")


def _hex_id(value: object, what: str, optional: bool = False) -> bytes | None:
    if value is None and optional:
        return None
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        raw = None
    if raw is None or len(raw) != ID_LEN:
        raise _fail(f"header {what} is not {2 * ID_LEN} hex digits")
    return None if optional and raw == _NO_ID else raw


def _header(doc: dict) -> Header:
    h = doc.get("header")
    if not isinstance(h, dict) or set(h) != _HEADER_KEYS:
        raise _fail(f"header must be a map of {', '.join(sorted(_HEADER_KEYS))}")
    fmt = h["format"]
    parts = fmt.split(".") if isinstance(fmt, str) else []
    if len(parts) != 2 or not all(p.isdigit() and len(p) <= 5 for p in parts):
        raise _fail(f"header format {fmt!r} is not MAJOR.MINOR")
    flags = h["flags"]
    if type(flags) is not int or not 0 <= flags < 1 << 32:
        raise _fail(f"header flags {flags!r} is not a 32-bit unsigned integer")
    codec = CODEC_NAMES.get((flags & _CODEC_MASK) >> _CODEC_SHIFT)
    if h["codec"] != codec:
        raise _fail(f"header codec {h['codec']!r} does not match its flags ({codec!r})")
    producer = h["producer"]
    if not isinstance(producer, str) or not producer.isascii() or "\0" in producer \
            or len(producer) > PRODUCER_LEN:
        raise _fail(f"header producer must be at most {PRODUCER_LEN} ASCII characters")
    _hex_id(h["image_id"], "image_id")  # recomputed, but must still be an id
    major, minor = (int(p) for p in parts)
    if major > 0xFFFF or minor > 0xFFFF:
        raise _fail(f"header format {fmt!r} does not fit the header")
    return Header(major, minor, flags, _hex_id(h["vkernel_id"], "vkernel_id"), _NO_ID,
                  _hex_id(h["parent_id"], "parent_id", optional=True), producer)


def from_document(doc: object, *, limits: Limits = DEFAULT_LIMITS
                  ) -> tuple[Header, list[bytes]]:
    """The header (image id not yet known) and record payloads a document describes."""
    if not isinstance(doc, dict) or doc.get("document") != DOCUMENT_VERSION:
        raise _fail(f"is not a vkckpt image document (version {DOCUMENT_VERSION})")
    if doc.get("pages") == "ref":
        raise _fail("was decoded with --pages ref (page data left in the image): decode "
                    "with --pages base64 to encode it")
    if doc.get("pages") not in ("none", "base64"):
        raise _fail(f"pages must be one of {', '.join(PAGE_MODES)}")
    header = _header(doc)
    recs = doc.get("records")
    if not isinstance(recs, list):
        raise _fail("records must be a list")
    if len(recs) > limits.max_records:
        raise _fail(f"holds more than {limits.max_records} records")
    payloads = []
    for i, rec in enumerate(recs):
        if not isinstance(rec, dict) or set(rec) != _RECORD_KEYS:
            raise _fail(f"record {i} must be a map of critical, fields, type, version")
        rtype, version, critical, fields = (rec[k] for k in ("type", "version", "critical",
                                                            "fields"))
        if not isinstance(rtype, str) or not rtype or len(rtype) > 256:
            raise _fail(f"record {i} has no valid type")
        if type(version) is not int or not 1 <= version < 1 << 32:
            raise _fail(f"record {i} ({rtype}) version {version!r} is not an integer >= 1")
        if type(critical) is not bool:
            raise _fail(f"record {i} ({rtype}) critical {critical!r} is not true or false")
        if not isinstance(fields, dict) or not all(isinstance(k, str) for k in fields):
            raise _fail(f"record {i} ({rtype}) fields must be a map with string keys")
        if rtype == PAGES:
            fields = _with_crc(fields)
        try:
            payload = _payload(rtype, version, critical, _canon(fields, 2, limits))
        except _EncodeError as e:
            raise _fail(f"record {i} ({rtype}) field {''.join(reversed(e.where))}: "
                        f"{e.problem}") from None
        except (TypeError, ValueError, OverflowError) as e:
            raise _fail(f"record {i} ({rtype}) cannot be encoded: {e}") from None
        if len(payload) > limits.max_record:
            raise _fail(f"record {i} ({rtype}) encodes to {len(payload)} bytes, over the "
                        f"{limits.max_record} byte limit")
        payloads.append(payload)
    return header, payloads


def _with_crc(fields: dict) -> dict:
    """A "pages" record's fields with its CRC computed again from its data (so pages can be
    edited by hand); as given when the data does not decode to its `count` pages, which the
    reader then refuses."""
    data, codec, count = fields.get("data"), fields.get("codec"), fields.get("count")
    if not isinstance(data, bytes) or type(count) is not int or \
            not 0 < count <= MAX_CHUNK_PAGES or codec not in CODEC_NAMES:
        return fields
    want = count * PAGE
    if CODEC_NAMES[codec] == "zstd":
        zstd = _zstd()
        try:  # read at most one byte past the pages: the frame's own sizes are untrusted
            with zstd.ZstdDecompressor().stream_reader(io.BytesIO(data),
                                                       read_across_frames=False) as r:
                data = r.read(want + 1)
        except (zstd.ZstdError, ValueError, OSError, MemoryError):
            return fields
    if len(data) != want:
        return fields
    return {**fields, "crc": zlib.crc32(data)}


def assemble(header: Header, payloads: list[bytes], key: bytes | None = None) -> bytes:
    """The image bytes of header and payloads: image id, trailer digest and, with key, a
    fresh seal (replacing a final seal record) computed as the writer computes them."""
    if key is not None:
        if payloads and _is_seal(payloads[-1]):
            payloads = payloads[:-1]
        body = hashlib.sha256(b"".join(_U32.pack(len(p)) + p for p in payloads)).digest()
        payloads = [*payloads, _payload(SEAL, 1, False,
                                        seal_fields(key, header, len(payloads), body))]
    frames = b"".join(_U32.pack(len(p)) + p for p in payloads)
    records_sha = hashlib.sha256(frames).digest()
    h = Header(header.major, header.minor, header.flags, header.vkernel_id,
               records_sha[:ID_LEN], header.parent_id, header.producer)
    head = h.to_bytes()
    digest = image_digest(head, records_sha) if one_pass(h) else \
        hashlib.sha256(head + frames).digest()
    return head + frames + trailer_bytes(len(payloads), digest)


def _is_seal(payload: bytes) -> bool:
    from vkckpt.image.frames import _peek
    got = _peek(payload[:300])
    return got is not None and got[0] == SEAL


def check_bytes(data: bytes, key: bytes | None = None, *,
                limits: Limits = DEFAULT_LIMITS) -> dict:
    """Run the reader's checks (framing, bounds, page CRCs, digests; the seal under key) on
    an encoded image before it is published; returns verify()'s stats."""
    import tempfile
    with tempfile.NamedTemporaryFile(prefix="vkckpt-encode-", suffix=".img") as f:
        f.write(data)
        f.flush()
        try:
            with ImageReader(f.name, limits=limits) as r:
                stats = r.verify()
                if key is not None:
                    r.check_digests(key)
        except ImageError as e:  # the temporary file's name means nothing to the user
            raise ImageError(str(e).replace(f"checkpoint image {f.name}",
                                            "the encoded image")) from None
    return stats
