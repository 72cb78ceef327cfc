"""Save and load address spaces: VMA lists, brk, and which host buffers back them."""

from __future__ import annotations

from vkckpt.errors import ImageError
from vkckpt.vmspace.hostmem import HostBuffer
from vkckpt.vmspace.vma import PAGE, Vma
from vkckpt.vmspace.vmspace import USER_TOP, VmSpace

#: VmSpace fields rebuilt rather than saved: the engine, the id allocator, the vkernel's
#: memory account (its limit is saved in the kernel record), what this space charged to it
#: (recomputed from the VMAs), the max_map_count setting and a per-slice counter.
TRANSIENT = {"engine", "alloc_bid", "mem", "charged", "max_map_count", "region_work"}


def save_vmspace(vm: VmSpace) -> dict:
    """brk and every VMA as [start, end, prot, flags, name, buffer id, offset, path, file_off]."""
    return {"brk_start": vm.brk_start, "brk": vm.brk,
            "vmas": [[v.start, v.end, v.prot, v.flags, v.name, v.buf.bid, v.off, v.path,
                      v.file_off] for v in vm.vmas]}


def covered_pages(bufs: dict[int, HostBuffer], vmspaces: list[VmSpace]) -> dict[int, list[tuple[
        int, int]]]:
    """For each buffer id, the sorted, merged page ranges that VMAs map (what images keep)."""
    spans: dict[int, list[tuple[int, int]]] = {}
    for vm in vmspaces:
        for v in vm.vmas:
            bufs.setdefault(v.buf.bid, v.buf)
            spans.setdefault(v.buf.bid, []).append((v.off // PAGE, (v.off + v.size) // PAGE))
    merged: dict[int, list[tuple[int, int]]] = {}
    for bid, rs in spans.items():
        out: list[tuple[int, int]] = []
        for a, b in sorted(rs):
            if out and a <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], b))
            else:
                out.append((a, b))
        merged[bid] = out
    return merged


def load_vmspace(d: dict, vm: VmSpace, bufs: dict[int, HostBuffer]) -> None:
    """Rebuild vm's VMAs over the already restored buffers and map them into its engine."""
    vm.brk_start, vm.brk = d["brk_start"], d["brk"]
    prev_end = 0
    for row in d["vmas"]:
        if not isinstance(row, list) or len(row) != 9:
            raise ImageError("a VMA record must have 9 fields")
        start, end, prot, flags, name, bid, off, path, file_off = row
        if not (isinstance(start, int) and isinstance(end, int) and start % PAGE == 0
                and end % PAGE == 0 and prev_end <= start < end <= USER_TOP):
            raise ImageError(f"VMA {start!r}-{end!r} is misaligned, empty, overlapping or "
                             f"outside the user address space")
        buf = bufs.get(bid)
        if buf is None or not isinstance(off, int) or off < 0 or off + end - start > buf.size:
            raise ImageError(f"VMA {start:#x}-{end:#x} refers to a missing or too small buffer")
        if not isinstance(prot, int) or prot & ~7:
            raise ImageError(f"VMA {start:#x}-{end:#x} has a bad protection")
        v = Vma(start, end, prot, flags, str(name), buf, off, str(path), int(file_off))
        vm.vmas.insert(v)
        vm._map(v)
        prev_end = end
    if len(vm.vmas) > vm.max_map_count:
        raise ImageError(f"an address space holds {len(vm.vmas)} VMAs, more than "
                         f"max_map_count ({vm.max_map_count})")
    vm._settle()
    if vm.mem.used > vm.mem.limit:
        raise ImageError(f"the image needs more than its memory limit of {vm.mem.limit} bytes "
                         f"(mappings, page tables, engines and pipes)")
