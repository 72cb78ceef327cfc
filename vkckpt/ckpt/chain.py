"""Incremental image chains: the bookkeeping a freeze extends, and reading a chain back.

An `ImageChain` is what the next incremental image hangs on: the newest image written (or
thawed), the page bases dirty tracking compares against (pages.py) and the key that seals
every image.  Whoever drives freezes holds one (a FreezePlan, the control server, a test)
and passes it to write_image, which extends it; the vkernel itself knows nothing of images.
"""

from __future__ import annotations

import os

from vkckpt.ckpt.schema import RECORD_VERSIONS
from vkckpt.errors import ImageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vkckpt.ckpt.pages import BufBase
    from vkckpt.image import ImageReader

MAX_CHAIN = 1000


class ImageChain:
    """The parent of the next incremental image: (image id, path) of the newest one, or None
    (the next image is full); its page bases by buffer id; the sealing key (--key) or None."""

    __slots__ = ("parent", "page_base", "key")

    def __init__(self, key: bytes | None = None) -> None:
        self.parent: tuple[bytes, str] | None = None
        self.page_base: dict[int, BufBase] = {}
        self.key = key

    def extend(self, image_id: bytes, path: str, base: dict[int, BufBase]) -> None:
        """The image at path (pages as in base) is now the newest of the chain."""
        self.parent = (image_id, path)
        self.page_base = base

    def lose(self, image_id: bytes, path: str) -> None:
        """That image never became durable: if it is the newest, the next one is full."""
        if self.parent == (image_id, path):
            self.parent = None


def load_chain(path: str) -> list[ImageReader]:
    """The image and its ancestors, base first; every link's ids are checked."""
    from vkckpt.image import ImageReader  # writing a chain needs no reader

    chain = [ImageReader(path)]
    seen = {chain[0].header.image_id}
    while chain[0].header.incremental:
        child = chain[0]
        parent = ImageReader(_parent_path(child))
        if parent.header.image_id != child.header.parent_id:
            raise ImageError(f"{parent.path}: is not the parent of {child.path} "
                             f"(image id mismatch)")
        if parent.header.vkernel_id != child.header.vkernel_id:
            raise ImageError(f"{parent.path}: belongs to another vkernel")
        if parent.header.image_id in seen or len(chain) >= MAX_CHAIN:
            raise ImageError(f"{child.path}: the incremental chain loops or is too long")
        seen.add(parent.header.image_id)
        chain.insert(0, parent)
    return chain


def _parent_path(child: ImageReader) -> str:
    """Where child's parent is: beside it, by the file name its meta record gives."""
    hint = meta(child).get("parent_path")
    if not isinstance(hint, str) or not hint:
        raise ImageError(f"{child.path}: incremental image without a parent path")
    ppath = os.path.join(os.path.dirname(os.path.abspath(child.path)), os.path.basename(hint))
    if not os.path.exists(ppath):
        raise ImageError(f"{child.path}: parent image {os.path.basename(hint)} not found "
                         f"beside it")
    return ppath


def meta(r: ImageReader) -> dict:
    """The image's meta record (it precedes the kernel record), or {}."""
    for rec in r.records(RECORD_VERSIONS):
        if rec.type == "meta":
            return rec.fields
        if rec.type == "kernel":
            break
    return {}


class DigestCheck:
    """check_digests() of every image of a chain on a helper thread (hashlib drops the GIL).

    A chain smaller than INLINE_DIGESTS is checked at once: starting a thread (and importing
    threading, ~3 ms) would cost more than the hashing it overlaps.
    """

    INLINE_DIGESTS = 4 << 20

    def __init__(self, chain: list[ImageReader]) -> None:
        self.error: ImageError | None = None
        self.thread = None
        if sum(os.path.getsize(r.path) for r in chain) < self.INLINE_DIGESTS:
            self._run(chain)
            return
        import threading

        self.thread = threading.Thread(target=self._run, args=(chain,), daemon=True)
        self.thread.start()

    def _run(self, chain: list[ImageReader]) -> None:
        try:
            for r in chain:
                r.check_digests(parallel=True)
        except ImageError as exc:
            self.error = exc

    def join(self) -> None:
        """Wait for the check; raises its ImageError."""
        if self.thread is not None:
            self.thread.join()
        if self.error is not None:
            raise self.error
