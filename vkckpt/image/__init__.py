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
"""

from vkckpt.abi.mman import PAGE
from vkckpt.image.codecs import CODECS
from vkckpt.image.frames import (
    MAX_CHUNK_PAGES,
    PAGES,
    PAGES_VERSION,
    ImageRecord,
    PageChunk,
    page_record_parts,
)
from vkckpt.image.header import (
    FORMAT_MAJOR,
    FORMAT_MINOR,
    HEADER_SIZE,
    MAGIC,
    TRAILER_MAGIC,
    TRAILER_SIZE,
    Header,
)
from vkckpt.image.limits import DEFAULT_LIMITS, Limits
from vkckpt.image.migrate import MIGRATIONS, migration
from vkckpt.image.reader import ImageReader
from vkckpt.image.writer import ImageWriter

__all__ = [
    "CODECS", "DEFAULT_LIMITS", "FORMAT_MAJOR", "FORMAT_MINOR", "HEADER_SIZE", "MAGIC",
    "MAX_CHUNK_PAGES", "MIGRATIONS", "PAGE", "PAGES", "PAGES_VERSION", "TRAILER_MAGIC",
    "TRAILER_SIZE", "Header", "ImageReader", "ImageRecord", "ImageWriter", "Limits", "PageChunk",
    "migration", "page_record_parts",
]
