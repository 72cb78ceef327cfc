"""The seal: an HMAC that proves an image was written by a holder of the key.

An image written with a key ends with a "seal" record (optional, version 1, so older
readers skip it): {"alg": "hmac-sha256", "mac"}, the HMAC-SHA256 under the key of
`seal_input()` -- the header without its image id and CRC, the number of records before the
seal and the SHA-256 of their frames.  The trailer and image id then cover the seal too.
"""

from __future__ import annotations

import hmac
import struct

from vkckpt.image.header import _NO_ID, Header

SEAL = "seal"
SEAL_ALG = "hmac-sha256"
_SEAL_HEAD = struct.Struct("<14sHHI16s16s32sQ")


def seal_input(header: Header, count: int, digest: bytes) -> bytes:
    """What a seal authenticates: header fields but the image id (which hashes the seal),
    the number of records before the seal and the SHA-256 of their frames."""
    return _SEAL_HEAD.pack(b"vkckpt-seal-1\n", header.major, header.minor, header.flags,
                           header.vkernel_id, header.parent_id or _NO_ID,
                           header.producer.encode("ascii"), count) + digest


def seal_mac(key: bytes, header: Header, count: int, digest: bytes) -> bytes:
    """The seal's MAC of those fields under key."""
    return hmac.new(key, seal_input(header, count, digest), "sha256").digest()


def seal_fields(key: bytes, header: Header, count: int, digest: bytes) -> dict:
    """The fields of the seal record that follows `count` records whose frames hash to
    digest, in an image with header's fields."""
    return {"alg": SEAL_ALG, "mac": seal_mac(key, header, count, digest)}


def seal_matches(fields: dict, key: bytes, header: Header, count: int, digest: bytes) -> bool:
    """Whether a seal record's fields seal those records under key (in constant time)."""
    mac = fields.get("mac")
    return fields.get("alg") == SEAL_ALG and isinstance(mac, bytes) and \
        hmac.compare_digest(mac, seal_mac(key, header, count, digest))
