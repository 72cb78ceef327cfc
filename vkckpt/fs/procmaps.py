"""/proc/PID/maps and smaps_rollup, and the memory figures status, stat and statm share.

The vkernel maps every page a VMA covers into host memory it owns, so "resident" here is
every accessible page (PROT_NONE reservations excluded): a deterministic figure, never the
host's page residency.  File mappings name their guest path; the heap and stack are
"[heap]" and "[stack]"; there is no vDSO.
"""

from __future__ import annotations

from vkckpt.record import Record

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable

    from vkckpt.process import Process

_FILE_DEV = "08:01"  # fs/inodes.py's VIRTUAL_DEV (0x801), as major:minor
_NAME_COLUMN = 72  # fs/proc/task_mmu.c pads the header to 25 + 6 * sizeof(void *) - 1


class VmUsage(Record):
    """Byte counts and bounds of an address space, as fs/proc/array.c reports them."""

    __slots__ = ("size", "rss", "anon", "stack", "text", "lib", "data", "start_code",
                 "end_code", "start_data", "end_data", "start_brk", "start_stack")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)


def vm_usage(p: Process) -> VmUsage:
    """The figures of p's vmspace (all zero for a zombie)."""
    u = VmUsage()
    if p.zombie or p.vm is None:
        return u
    for v in p.vm.vmas:
        u.size += v.size
        if not v.prot:
            continue
        u.rss += v.size
        if not v.path:
            u.anon += v.size
        if v.name == "[stack]":
            u.stack += v.size
            u.start_stack = v.end
        elif v.prot & 2 and not v.shared:
            u.data += v.size
        if v.prot & 4 and v.path:
            if v.path == p.exe:
                u.text += v.size
                u.start_code = u.start_code or v.start
                u.end_code = v.end
            else:
                u.lib += v.size
        elif v.path == p.exe and v.prot & 2:
            u.start_data = u.start_data or v.start
            u.end_data = v.end
    u.start_brk = p.vm.brk_start
    return u


def maps(p: Process, file_ino: Callable[[str], int]) -> bytes:
    """Implement /proc/PID/maps: one line per VMA; file_ino gives a guest path's st_ino."""
    if p.zombie or p.vm is None:
        return b""
    out = []
    for v in p.vm.vmas:
        perms = "".join(c if v.prot & bit else "-" for c, bit in (("r", 1), ("w", 2), ("x", 4)))
        perms += "s" if v.shared else "p"
        if v.path:
            head = f"{v.start:08x}-{v.end:08x} {perms} {v.file_off:08x} {_FILE_DEV} " \
                   f"{file_ino(v.path)} "
        else:
            head = f"{v.start:08x}-{v.end:08x} {perms} 00000000 00:00 0 "
        name = v.path or v.name
        out.append(head.ljust(_NAME_COLUMN) + " " + name if name else head)
    return ("\n".join(out) + "\n").encode() if out else b""


_ROLLUP = ("Rss", "Pss", "Pss_Dirty", "Pss_Anon", "Pss_File", "Pss_Shmem", "Shared_Clean",
           "Shared_Dirty", "Private_Clean", "Private_Dirty", "Referenced", "Anonymous",
           "LazyFree", "AnonHugePages", "ShmemPmdMapped", "FilePmdMapped", "Shared_Hugetlb",
           "Private_Hugetlb", "Swap", "SwapPss", "Locked")


def smaps_rollup(p: Process) -> bytes:
    """Implement /proc/PID/smaps_rollup: the sums of every VMA (private, all dirty)."""
    if p.zombie or p.vm is None:
        return b""
    vmas = list(p.vm.vmas)
    if not vmas:
        return b""
    u = vm_usage(p)
    kb = {"Rss": u.rss, "Pss": u.rss, "Pss_Dirty": u.rss, "Pss_Anon": u.anon,
          "Pss_File": u.rss - u.anon, "Private_Dirty": u.rss, "Referenced": u.rss,
          "Anonymous": u.anon}
    head = f"{vmas[0].start:08x}-{vmas[-1].end:08x} ---p 00000000 00:00 0 "
    lines = [head.ljust(_NAME_COLUMN) + " [rollup]"]
    lines += [f"{name + ':':<16}{kb.get(name, 0) // 1024:8d} kB" for name in _ROLLUP]
    return ("\n".join(lines) + "\n").encode()
