"""The checkpoint image container: a header, a stream of framed msgpack records, a trailer.

It owns the bytes and knows no kernel object (see vkckpt-image(5)).  One concept a module:

    header.py        the fixed header and trailer: layout, flags, encoding and decoding
    frames.py        record framing, object counting and peeking, page-record frames
    codecs.py        page codecs (zstd) and the canonical encoding of record fields
    seal.py          the HMAC seal of an image written with a key
    writer.py        ImageWriter: records into a temp file, then an atomic commit
    background.py    the writer's helper threads (hashing, the background commit)
    reader.py        ImageReader: validation and the record stream
    reader_pages.py  ImageReader's page loading
    limits.py        bounds on everything read from an image
    migrate.py       upgrades of old record versions
    document.py      an image as an editable document and back (vkckpt decode/encode)
    doctext.py       such a document as YAML or JSON text, read within bounds
"""

from __future__ import annotations

#: Each public name -> the module defining it, imported on first use (PEP 562), so that
#: importing one piece (limits.py, by the vmspace's account) loads neither the reader nor
#: the writer, nor msgpack, hashlib and datetime with them: a run's start-up stays small.
_WHERE = {
    "PAGE": "vkckpt.abi.mman", "CODECS": "vkckpt.image.codecs",
    "MAX_CHUNK_PAGES": "vkckpt.image.frames", "PAGES": "vkckpt.image.frames",
    "PAGES_VERSION": "vkckpt.image.frames", "ImageRecord": "vkckpt.image.frames",
    "PageChunk": "vkckpt.image.frames", "page_record_parts": "vkckpt.image.frames",
    "FORMAT_MAJOR": "vkckpt.image.header", "FORMAT_MINOR": "vkckpt.image.header",
    "HEADER_SIZE": "vkckpt.image.header", "MAGIC": "vkckpt.image.header",
    "TRAILER_MAGIC": "vkckpt.image.header", "TRAILER_SIZE": "vkckpt.image.header",
    "Header": "vkckpt.image.header", "DEFAULT_LIMITS": "vkckpt.image.limits",
    "Limits": "vkckpt.image.limits", "MIGRATIONS": "vkckpt.image.migrate",
    "migration": "vkckpt.image.migrate", "ImageReader": "vkckpt.image.reader",
    "ImageWriter": "vkckpt.image.writer",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> object:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(__import__(where, fromlist=[name]), name)  # importlib costs ~2 ms
    globals()[name] = value
    return value
