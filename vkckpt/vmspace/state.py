"""Save and load address spaces: VMA lists, brk, and which host buffers back them."""

from __future__ import annotations

from vkckpt.errors import ImageError
from vkckpt.vmspace.filemap import FileBuffer
from vkckpt.vmspace.hostmem import HostBuffer
from vkckpt.vmspace.vma import PAGE, Vma
from vkckpt.vmspace.vmspace import USER_TOP, VmSpace

#: VmSpace fields rebuilt rather than saved, and why.
TRANSIENT = {"engine": "rebuilt at thaw", "alloc_bid": "the kernel's id allocator",
             "mem": "the vkernel's memory account: its limit is in the kernel record",
             "charged": "recomputed from the VMAs", "max_map_count": "a setting",
             "region_work": "a per-slice counter, 0 at a scheduling point",
             "file_mapped": "follows from the VMAs and the sizes of the mapped files"}

VMSPACE_VERSION = 1
BUFFER_VERSION = 1
FILEMAP_VERSION = 1
#: The type/range tables ckpt/schema.py checks (VMA rows: load_vmspace and check_memory).
VMSPACE_SCHEMA = {"pid": "u32", "brk": "u64", "brk_start": "u64"}
BUFFER_SCHEMA = {"bid": "u64", "size": "u64"}
FILEMAP_SCHEMA = {"bid": "u64", "size": "u64", "path": "str", "file_off": "u64",
                  "writable": "bool"}
RECORDS = {"buffer": (BUFFER_VERSION, BUFFER_SCHEMA),
           "filemap": (FILEMAP_VERSION, FILEMAP_SCHEMA),
           "vmspace": (VMSPACE_VERSION, VMSPACE_SCHEMA)}


def save_vmspace(vm: VmSpace) -> dict:
    """brk and every VMA as [start, end, prot, flags, name, buffer id, offset, path, file_off]."""
    return {"brk_start": vm.brk_start, "brk": vm.brk,
            "vmas": [[v.start, v.end, v.prot, v.flags, v.name, v.buf.bid, v.off, v.path,
                      v.file_off] for v in vm.vmas]}


def save_buffer(buf: HostBuffer) -> dict:
    """A host buffer: its id and size (its pages are separate records)."""
    return {"bid": buf.bid, "size": buf.size}


def file_buffers(vmspaces: list[VmSpace]) -> dict[int, FileBuffer]:
    """The file buffers (shared file mappings) the VMAs use, by buffer id."""
    return {v.buf.bid: v.buf for vm in vmspaces for v in vm.vmas
            if isinstance(v.buf, FileBuffer)}


def save_filemap(buf: FileBuffer) -> dict:
    """A shared file mapping's buffer: the file and range it maps, never its pages (they
    are the file's: thaw maps the file again)."""
    return {"bid": buf.bid, "size": buf.size, "path": buf.path, "file_off": buf.file_off,
            "writable": buf.writable}


def check_filemap(d: dict, bufs: dict[int, HostBuffer], next_bid: int) -> None:
    """Refuse a filemap record whose id, size, offset or path is impossible."""
    bid, size, off, path = d["bid"], d["size"], d["file_off"], d["path"]
    if bid in bufs or not isinstance(bid, int) or not 0 < bid < next_bid:
        raise ImageError(f"buffer id {bid!r} is duplicated or out of range")
    if not isinstance(size, int) or size <= 0 or size % PAGE or size > USER_TOP:
        raise ImageError(f"file mapping {bid} has an impossible size {size!r}")
    if not isinstance(off, int) or off < 0 or off % PAGE or off + size > 1 << 63:
        raise ImageError(f"file mapping {bid} has an impossible file offset {off!r}")
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        raise ImageError(f"file mapping {bid}: {path!r} is not an absolute guest path")


def load_buffers(rows: list[dict], next_bid: int) -> dict[int, HostBuffer]:
    """Map a fresh host buffer for each record (ids below next_bid, each once)."""
    bufs = {}
    for d in rows:
        size, bid = d["size"], d["bid"]
        if not isinstance(size, int) or size <= 0 or size % PAGE:
            raise ImageError(f"buffer {bid!r} has an impossible size {size!r}")
        if bid in bufs or not isinstance(bid, int) or not 0 < bid < next_bid:
            raise ImageError(f"buffer id {bid!r} is duplicated or out of range")
        try:
            bufs[bid] = HostBuffer(size, bid)
        except MemoryError:
            raise ImageError(f"buffer {bid} of {size} bytes cannot be mapped on this "
                             "host") from None
    return bufs


def check_memory(vmspaces: list[dict], buffers: list[dict], limit: int) -> None:
    """Refuse more host memory than the image's processes may map: no process maps more than
    limit, no buffer is larger, and there are no more buffers than VMAs to use them."""
    nvmas = 0
    for d in vmspaces:
        vmas = d.get("vmas")
        if not isinstance(vmas, list) or not all(
                isinstance(v, list) and len(v) == 9 and isinstance(v[0], int)
                and isinstance(v[1], int) for v in vmas):
            raise ImageError(f"vmspace of process {d.get('pid')!r}: malformed VMA list")
        total = sum(max(0, v[1] - v[0]) for v in vmas)
        nvmas += len(vmas)
        if total > limit:
            raise ImageError(f"process {d.get('pid')!r} maps {total} bytes, more than its "
                             f"memory limit of {limit}")
    if len(buffers) > nvmas:
        raise ImageError(f"the image has {len(buffers)} buffers for {nvmas} VMAs")
    for d in buffers:
        if isinstance(d["size"], int) and d["size"] > limit:
            raise ImageError(f"buffer {d['bid']!r} of {d['size']} bytes is larger than the "
                             f"memory limit of {limit}")


def covered_pages(bufs: dict[int, HostBuffer], vmspaces: list[VmSpace]) -> dict[int, list[tuple[
        int, int]]]:
    """For each buffer id, the sorted, merged page ranges that VMAs map (what images keep);
    shared file mappings' buffers are not among them."""
    spans: dict[int, list[tuple[int, int]]] = {}
    for vm in vmspaces:
        for v in vm.vmas:
            if v.buf.file_key is not None:
                continue  # a file's pages: the file holds them, not the image
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
