"""Live migration's receiving memory: guest pages built from each pre-copy round as it lands.

A thaw of the whole chain at the final stop would lay every round's pages then (the guests'
whole memory, ~300 ms at 256 MiB).  Instead each round, once its digests (and seal) are
checked, is laid at once into host buffers kept here by buffer id, exactly as lay_pages
would lay that image of the chain: new buffers are mapped, buffers the round no longer has
are unmapped, page runs are recorded in order.  The final thaw (restore.thaw with
staged=...) then adopts these buffers for the final image's buffer records (same id, same
size), lays only the final image's pages and derives the page bases from every run laid.
Nothing here runs guest code; a refused stream just unmaps what was built.
"""

from __future__ import annotations

from vkckpt.ckpt import schema
from vkckpt.ckpt.lay_pages import Laid, lay_pages
from vkckpt.ckpt.schema import RECORD_VERSIONS
from vkckpt.errors import ImageError
from vkckpt.image.limits import MAX_GUEST_MEMORY
from vkckpt.vmspace.state import check_memory, load_buffers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vkckpt.image import ImageReader
    from vkckpt.vmspace.hostmem import HostBuffer


class Staged:
    """The checked images of one stream, base first, and the memory their rounds built:
    `bufs` by buffer id, `laid` the page runs written into each, in order.  Only the last
    image need still be open; of the others the final thaw uses the header and path."""

    def __init__(self) -> None:
        self.images: list[ImageReader] = []
        self.bufs: dict[int, HostBuffer] = {}
        self.laid: Laid = {}

    def add(self, r: ImageReader) -> None:
        """r has been checked (digests, seal, link to the previous image): keep it."""
        self.images.append(r)

    def apply(self, r: ImageReader) -> None:
        """Lay round r's pages (r is the newest image added) over the memory built so far."""
        kr, rows, vms = _structure(r)
        limit = kr["memory_limit"]
        if type(limit) is not int or not 0 < limit <= MAX_GUEST_MEMORY:
            raise ImageError(f"{r.path}: kernel memory_limit {limit!r} is out of range")
        check_memory(vms, rows, limit)
        ids = [d["bid"] for d in rows]
        if len(set(ids)) != len(ids):
            raise ImageError(f"{r.path}: a buffer id is duplicated")
        for bid in [b for b in self.bufs if b not in ids]:
            _unmap(self.bufs.pop(bid))  # freed since the previous round
            self.laid.pop(bid, None)
        for d in rows:
            old = self.bufs.get(d["bid"])
            if old is not None and old.size != d["size"]:
                raise ImageError(f"{r.path}: buffer {d['bid']} changed its size")
        self.bufs.update(load_buffers([d for d in rows if d["bid"] not in self.bufs],
                                      kr["next_bid"]))
        for bid, runs in lay_pages([r], self.bufs).items():
            self.laid.setdefault(bid, []).extend(runs)

    def adopt(self, bufs: dict[int, HostBuffer]) -> None:
        """Put the built buffers in place of the fresh ones the final image's records mapped
        (same id and size); every other built buffer is unmapped.  Once only."""
        for bid, fresh in list(bufs.items()):
            built = self.bufs.pop(bid, None)
            if built is None:
                continue
            if built.size != fresh.size:
                _unmap(built)
                raise ImageError(f"buffer {bid} changed its size in the final image")
            bufs[bid] = built
            _unmap(fresh)
        self.close_buffers()

    def laid_for(self, bufs: dict[int, HostBuffer], final: Laid) -> Laid:
        """The runs laid into bufs by the rounds, then by the final image (final)."""
        out: Laid = {bid: list(self.laid[bid]) for bid in bufs if bid in self.laid}
        for bid, runs in final.items():
            out.setdefault(bid, []).extend(runs)
        return out

    def close_buffers(self) -> None:
        for buf in self.bufs.values():
            _unmap(buf)
        self.bufs.clear()

    def close(self) -> None:
        """Unmap what is not adopted and close the images."""
        self.close_buffers()
        for r in self.images:
            r.close()
        self.images.clear()


def _unmap(buf: HostBuffer) -> None:
    if buf.refs == 0:
        buf.incref().decref()  # the last reference unmaps


def _structure(r: ImageReader) -> tuple[dict, list[dict], list[dict]]:
    """The kernel record, buffer records and vmspace records of r, schema-checked."""
    got: dict[str, list[dict]] = {"kernel": [], "buffer": [], "vmspace": []}
    for rec in r.records(RECORD_VERSIONS, skip_pages=True):
        if rec.type in got:
            schema.check(rec.type, rec.fields)
            got[rec.type].append(rec.fields)
    if len(got["kernel"]) != 1:
        raise ImageError(f"{r.path}: image must hold exactly one kernel record")
    return got["kernel"][0], got["buffer"], got["vmspace"]
