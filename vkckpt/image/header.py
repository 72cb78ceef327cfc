"""The fixed header and trailer of an image: layout, flags, encoding and decoding.

Format 1.1, all integers little endian::

    header   100 bytes  magic b"VKCKPT\\x89\\n", u16 major, u16 minor, u32 flags
                        (bit 0 incremental, bits 8-15 codec id), 16-byte vkernel id,
                        16-byte image id, 16-byte parent image id (zero = none),
                        32-byte NUL-padded ASCII producer, u32 CRC32 of the first 96 bytes
    trailer  48 bytes   magic b"VKCKEND\\n", u64 record count, the image digest

The image id is the first 16 bytes of the SHA-256 of the record stream (see frames.py).
The image digest (`image_digest`) covers the header and every record: in 1.1 it is the
SHA-256 of the 100 header bytes followed by the 32-byte SHA-256 of the record stream, so a
writer computes it in the one pass that gives the image id; in 1.0 it was the SHA-256 of
every byte before the trailer, which needs a second pass once the header is known.
"""

from __future__ import annotations

import hashlib
import struct
import zlib

from vkckpt.image.codecs import CODEC_NAMES
from vkckpt.record import Value
from vkckpt.version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from vkckpt.errors import ImageError
    from vkckpt.image.limits import Limits

FORMAT_MAJOR = 1
FORMAT_MINOR = 2
#: The first minor version whose trailer holds the one-pass image digest.
ONE_PASS_MINOR = 1

MAGIC = b"VKCKPT\x89\n"
TRAILER_MAGIC = b"VKCKEND\n"
_HEADER = struct.Struct("<8sHHI16s16s16s32s")
HEADER_SIZE = _HEADER.size + 4  # 100: the fields plus their CRC32
_TRAILER = struct.Struct("<8sQ32s")
TRAILER_SIZE = _TRAILER.size  # 48
_U32 = struct.Struct("<I")

FLAG_INCREMENTAL = 0x1
_CODEC_SHIFT = 8
_CODEC_MASK = 0xFF << _CODEC_SHIFT
_KNOWN_FLAGS = FLAG_INCREMENTAL | _CODEC_MASK

ID_LEN = 16
PRODUCER_LEN = 32
_NO_ID = bytes(ID_LEN)


class Header(Value):
    """The fixed 100-byte header of an image."""

    __slots__ = ("major", "minor", "flags", "vkernel_id", "image_id", "parent_id", "producer")

    def __init__(self, major: int, minor: int, flags: int, vkernel_id: bytes, image_id: bytes,
                 parent_id: bytes | None, producer: str) -> None:
        self.major = major
        self.minor = minor
        self.flags = flags
        self.vkernel_id = vkernel_id
        self.image_id = image_id
        self.parent_id = parent_id
        self.producer = producer

    @property
    def incremental(self) -> bool:
        """True for an image holding only what changed since its parent."""
        return bool(self.flags & FLAG_INCREMENTAL)

    @property
    def codec_id(self) -> int:
        """The numeric codec the writer used by default for page chunks."""
        return (self.flags & _CODEC_MASK) >> _CODEC_SHIFT

    @property
    def codec(self) -> str:
        """The name of the writer's page codec ("none" or "zstd")."""
        return CODEC_NAMES.get(self.codec_id, f"codec-{self.codec_id}")

    def to_bytes(self) -> bytes:
        """Encode as the 100 on-disk bytes, CRC included."""
        fields = _HEADER.pack(
            MAGIC, self.major, self.minor, self.flags, self.vkernel_id, self.image_id,
            self.parent_id or _NO_ID, self.producer.encode("ascii"),
        )
        return fields + _U32.pack(zlib.crc32(fields))


def _default_producer() -> str:
    return f"vkckpt {__version__}"


def parse_header(head: bytes, size: int, err: Callable[[str], ImageError]) -> Header:
    """Decode and check the header in `head`, the first min(size, HEADER_SIZE) bytes of an
    image of `size` bytes; every fault raises err(problem)."""
    if head[:len(MAGIC)] != MAGIC:
        if head and len(head) < len(MAGIC) and MAGIC.startswith(head):
            raise err(f"is truncated ({len(head)} bytes)")
        raise err("is not a vkckpt image (bad magic)")
    if len(head) >= 12:
        major, minor = struct.unpack_from("<HH", head, 8)
        if major > FORMAT_MAJOR:
            raise err(
                f"was written by a newer vkckpt (format {major}.{minor}); "
                f"this reader supports {FORMAT_MAJOR}.x"
            )
        if major != FORMAT_MAJOR:
            raise err(
                f"has unsupported format {major}.{minor}; this reader supports {FORMAT_MAJOR}.x"
            )
    if len(head) < HEADER_SIZE:
        raise err(f"is truncated ({size} bytes, shorter than its header)")
    (crc,) = _U32.unpack_from(head, _HEADER.size)
    if zlib.crc32(head[:_HEADER.size]) != crc:
        raise err("has a corrupted header (CRC mismatch)")
    _, major, minor, flags, vk, image_id, parent, producer_raw = _HEADER.unpack_from(head)
    codec_id = (flags & _CODEC_MASK) >> _CODEC_SHIFT
    if codec_id not in CODEC_NAMES:
        raise err(f"uses page codec {codec_id}, unknown to this vkckpt; upgrade")
    if flags & ~_KNOWN_FLAGS and minor <= FORMAT_MINOR:
        raise err(f"has unknown header flags {flags & ~_KNOWN_FLAGS:#x}")
    producer_raw = producer_raw.rstrip(b"\0")
    if b"\0" in producer_raw or not producer_raw.isascii():
        raise err("has a malformed producer string in its header")
    parent_id = None if parent == _NO_ID else parent
    if flags & FLAG_INCREMENTAL and parent_id is None:
        raise err("is marked incremental but names no parent image")
    return Header(major, minor, flags, vk, image_id, parent_id, producer_raw.decode("ascii"))


def image_digest(head: bytes, records_sha256: bytes) -> bytes:
    """The trailer digest of a format >= 1.1 image: SHA-256 of its 100 header bytes `head`
    followed by `records_sha256`, the SHA-256 of its record stream (32 bytes)."""
    return hashlib.sha256(head + records_sha256).digest()


def one_pass(header: Header) -> bool:
    """Whether header's image has the one-pass digest (image_digest) in its trailer; format
    1.0 images have the SHA-256 of every byte before the trailer there instead."""
    return header.minor >= ONE_PASS_MINOR


def trailer_bytes(count: int, digest: bytes) -> bytes:
    """The trailer of an image of `count` records and image digest `digest`."""
    return _TRAILER.pack(TRAILER_MAGIC, count, digest)


def parse_trailer(raw: bytes, size: int, limits: Limits,
                  err: Callable[[str], ImageError]) -> tuple[int, bytes]:
    """(record count, image digest) from `raw`, the last TRAILER_SIZE bytes of an image of `size`
    bytes; every fault raises err(problem)."""
    magic, count, digest = _TRAILER.unpack(raw)
    if magic != TRAILER_MAGIC:
        raise err("is truncated or its trailer is damaged (no end marker)")
    body = size - HEADER_SIZE - TRAILER_SIZE
    if count > limits.max_records or count > body // 5:
        raise err(f"has a trailer claiming {count} records, impossible for its size")
    return count, digest
