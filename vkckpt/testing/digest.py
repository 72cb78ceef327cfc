"""State digests: a kernel's whole state as one SHA-256, taken from a full image of it.

Two kernels with equal digests are in the same state (registers, memory, files, signals,
scheduler, clock); host-only values an image records for thaw's own checks are left out.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import msgpack

from vkckpt.ckpt.restore import load_chain
from vkckpt.ckpt.snapshot import RECORD_VERSIONS, write_image

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vkckpt.kernel import VKernel


def normalized(rtype: str, fields: dict) -> dict:
    """Fields with host-only values removed: an open file's fingerprint mtime is the host's
    clock at the last write (thaw uses it to detect changed files; the guest never sees it)."""
    if rtype == "file" and isinstance(fields.get("fingerprint"), dict):
        fields = {**fields, "fingerprint": {**fields["fingerprint"], "mtime_ns": None}}
    return fields


def image_digest(path: str | os.PathLike[str], *, memory: bool = True) -> str:
    """SHA-256 over a full image's records (normalized; pages only when memory is True)."""
    h = hashlib.sha256()
    r = load_chain(str(path))[-1]
    if r.header.incremental:
        raise ValueError(f"{path}: digests are taken of full images only")
    for rec in r.records(RECORD_VERSIONS):
        if rec.type == "pages":
            if memory:
                f = rec.fields
                h.update(msgpack.packb([f["buf"], f["first"], f["count"]]))
                h.update(r.pages(rec))
        elif rec.type != "meta":
            h.update(msgpack.packb([rec.type, rec.version, normalized(rec.type, rec.fields)],
                                   use_bin_type=True))
    return h.hexdigest()


def state_digest(k: VKernel, tmp: Path, *, memory: bool = True) -> str:
    """Digest of k's whole state (a full image written into tmp); k is left as it was."""
    path = tmp / f"digest-{os.getpid()}-{id(k)}.img"
    try:
        write_image(k, str(path))  # no chain: a full image, and k's own chain is untouched
        return image_digest(path, memory=memory)
    finally:
        path.unlink(missing_ok=True)
