"""Thawing an overlay run (fs/overlay.py): find its lower layer, recreate its upper one.

The chain's first image is full: it lists the whole upper layer (and, when embedded, the
lower one); each later image applies what changed.  A lower layer named by --root (or the
trusted hint) must have the digest the images record; an embedded one is recreated in a
private directory and must hash to it too.  Either way a mismatch is refused in one line.
"""

from __future__ import annotations

import os
import shutil

from vkckpt.ckpt import schema
from vkckpt.ckpt.schema import RECORD_VERSIONS
from vkckpt.errors import ImageError
from vkckpt.fs import overlay_state as OS
from vkckpt.fs.overlay import Overlay, new_private_dir
from vkckpt.host import fs as hostfs
from vkckpt.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from vkckpt.image import ImageReader

_TYPES = ("overlay", "ovl_entry", "ovl_data")


class OverlayChain(Record):
    """What the images of a chain say of their overlay."""

    __slots__ = ("digest", "embedded", "images", "full", "root")

    def __init__(self, digest: str, embedded: bool, images: list[ImageReader],
                 full: list[bool]) -> None:
        self.full = full  # per image: its upper entries are the whole layer
        self.digest = digest  # the lower layer's tree digest
        self.embedded = embedded  # the first image holds the lower layer
        self.images = images
        self.root: str | None = None  # the recreated embedded lower layer


def records(r: ImageReader) -> Iterator[tuple[str, dict]]:
    """The overlay records of one image, each checked against its schema."""
    for rec in r.records(RECORD_VERSIONS, skip_pages=True):
        if rec.type in _TYPES:
            schema.check(rec.type, rec.fields)
            yield rec.type, rec.fields


def begin(images: list[ImageReader], final_recs: dict[str, list[dict]]) -> OverlayChain | None:
    """The chain's overlay (None when its final image has none); ImageError when its
    images disagree.  An embedded lower layer is recreated now (OverlayChain.root)."""
    if not final_recs.get("overlay"):
        return None
    heads = []
    for r in images:
        got = [f for t, f in records(r) if t == "overlay"]
        if len(got) != 1:
            raise ImageError(f"{r.path}: an image of an overlay run holds exactly one overlay "
                             f"record, found {len(got)}")
        heads.append(got[0])
    digest = heads[0]["lower"]
    for r, h in zip(images, heads, strict=True):
        if h["lower"] != digest or (r is images[0] and not h["full"]) or \
                (h["embedded"] and r is not images[0]):
            raise ImageError(f"{r.path}: its overlay record does not fit its chain (lower "
                             "layer, full or embedded)")
    oc = OverlayChain(digest, heads[0]["embedded"], images, [h["full"] for h in heads])
    if oc.embedded:
        oc.root = new_private_dir("lower")
        try:
            _apply(images[0], oc.root, OS.LOWER, None, lower_ok=True)
        except BaseException:
            _remove(oc.root)
            raise
    return oc


def finish(ov: Overlay | None, oc: OverlayChain, final_id: bytes) -> None:
    """Check the lower layer's digest, then recreate the upper layer image by image; the
    next incremental image hangs on the final one."""
    if ov is None:
        raise ImageError("the image is of an overlay run (--fs overlay) but the vkernel has "
                         "no overlay")
    if ov.digest != oc.digest:
        where = "the embedded lower layer" if oc.embedded else f"guest root {ov.lower}"
        raise ImageError(f"{where} has tree digest {ov.digest}, the image's lower layer is "
                         f"{oc.digest}; give --root the directory the run started in")
    ov.embedded = oc.root
    for r, full in zip(oc.images, oc.full, strict=True):
        if full:  # the whole layer (the first image, or a parent this run did not write)
            for name in os.listdir(ov.upper):
                path = os.path.join(ov.upper, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
        _apply(r, ov.upper, OS.UPPER, ov, lower_ok=oc.embedded and r is oc.images[0])
    ov.changed, ov.gen, ov.written = {}, 1, set()
    ov.image_gen = {final_id: 0}


def _apply(r: ImageReader, top: str, layer: int, ov: Overlay | None, lower_ok: bool) -> None:
    """Apply image r's entries of one layer to directory top (lower_ok: r may hold lower
    entries, the chain's embedded lower layer)."""
    fd = hostfs.open_dir(top)
    loader = OS.LayerLoader(fd, f"{r.path}: {'upper' if layer == OS.UPPER else 'lower'} layer")
    mine = False  # whether the data records that follow belong to this layer's entries
    try:
        for t, f in records(r):
            if t == "ovl_entry":
                mine = f["layer"] == layer
                if f["layer"] not in (OS.UPPER, OS.LOWER) or \
                        (f["layer"] == OS.LOWER and not lower_ok):
                    raise ImageError(f"{r.path}: overlay entry {f['path']!r} of layer "
                                     f"{f['layer']}, which this image cannot hold")
                if mine:
                    loader.entry(f, ov)
            elif t == "ovl_data" and mine:
                loader.data(f)
        loader.finish()
    finally:
        if loader.file is not None:  # refused halfway: the thaw fails, the layer goes
            os.close(loader.file[1])
        os.close(fd)


def abandon(oc: OverlayChain | None, k: object) -> None:
    """A thaw failed: remove the embedded lower layer it recreated, unless a vkernel
    took it over (its overlay removes it at close)."""
    if oc is not None and oc.root:
        ov = getattr(getattr(k, "root", None), "overlay", None)
        if ov is None or ov.embedded != oc.root:
            _remove(oc.root)


def _remove(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
