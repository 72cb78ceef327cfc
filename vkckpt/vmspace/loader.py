"""Load an x86-64 ELF executable (and its PT_INTERP interpreter) into a fresh vmspace and
build its initial stack, as Linux's binfmt_elf does with address randomisation off.

Placement is fixed, so runs are deterministic: an ET_EXEC program at its own addresses, an
ET_DYN one at PIE_BASE (Linux's ELF_ET_DYN_BASE with ASLR off); the interpreter as the first
mmap would place it, at the highest free range below MMAP_TOP (Linux puts it just below
mmap_base: 0x7ffff7fc3000 for glibc's ld.so there, 0x7effff... here).  The auxiliary vector
gives AT_BASE (the interpreter's load address, 0 without one), AT_ENTRY (the program's entry
point, where the interpreter jumps once done), AT_PHDR/AT_PHNUM of the program; there is no
vDSO, so no AT_SYSINFO_EHDR, and glibc makes real system calls for the time."""

from __future__ import annotations

import _thread  # not threading: thaw-and-run stays lean (tests/test_startup.py)
import os
import struct
from collections.abc import Callable

from vkckpt.abi import errno as E
from vkckpt.engine import cpumodel
from vkckpt.errors import GuestError
from vkckpt.host.pagemap import populate_write
from vkckpt.record import Comparable
from vkckpt.vmspace.vma import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PAGE, page_down, page_up
from vkckpt.vmspace.vmspace import MMAP_BOTTOM, MMAP_TOP, USER_TOP, VmSpace

STACK_SIZE = 8 << 20
PIE_BASE = 0x5555_5555_4000
AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ = 0, 3, 4, 5, 6
AT_BASE, AT_FLAGS, AT_ENTRY = 7, 8, 9
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_PLATFORM, AT_HWCAP, AT_CLKTCK = 11, 12, 13, 14, 15, 16, 17
AT_SECURE, AT_RANDOM, AT_HWCAP2, AT_EXECFN = 23, 25, 26, 31
HWCAP = cpumodel.HWCAP  # CPUID.1:EDX of the documented virtual CPU, as Linux gives it
PF_X, PF_W, PF_R = 1, 2, 4
ET_EXEC, ET_DYN, EM_X86_64 = 2, 3, 62
PT_LOAD, PT_INTERP = 1, 3
PHDR_SIZE = 56
MAX_PHDRS_BYTES = 4096  # Linux's load_elf_phdrs refuses larger program header tables
PATH_MAX = 4096  # Linux refuses a PT_INTERP longer than this (or shorter than 2 bytes)


class Loaded(Comparable):
    """Where an executable landed: entry point, program headers, initial stack pointer."""

    __slots__ = ("entry", "phdr", "phnum", "sp")

    def __init__(self, entry: int, phdr: int, phnum: int, sp: int) -> None:
        self.entry = entry
        self.phdr = phdr
        self.phnum = phnum
        self.sp = sp


def _prot(flags: int) -> int:
    return (1 if flags & PF_R else 0) | (2 if flags & PF_W else 0) | (4 if flags & PF_X else 0)


class Segment(Comparable):
    """One PT_LOAD program header."""

    __slots__ = ("flags", "offset", "vaddr", "filesz", "memsz")

    def __init__(self, flags: int, offset: int, vaddr: int, filesz: int, memsz: int) -> None:
        self.flags = flags
        self.offset = offset
        self.vaddr = vaddr
        self.filesz = filesz
        self.memsz = memsz


class ElfImage(Comparable):
    """What execve needs from an ELF file's headers; the segments' bytes stay in the file."""

    __slots__ = ("dyn", "entry", "phoff", "phnum", "loads", "interp")

    def __init__(self, dyn: bool, entry: int, phoff: int, phnum: int,
                 loads: list[Segment], interp: str | None = None) -> None:
        self.dyn = dyn
        self.entry = entry
        self.phoff = phoff
        self.phnum = phnum
        self.loads = loads
        self.interp = interp  # PT_INTERP: the guest path of the program's interpreter


def parse_elf(pread: Callable[[int, int], bytes], file_size: int) -> ElfImage:
    """Read and check the ELF and program headers (at most 4 KiB of them, as Linux).

    Only headers (and the PT_INTERP path) are read; ENOEXEC for anything that is not an
    x86-64 executable whose loadable segments lie inside the file."""
    head = pread(64, 0)
    if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
        raise GuestError(E.ENOEXEC, "not a 64-bit little-endian ELF file")
    (e_type, machine, _, entry, phoff, _, _, _, phentsize,
     phnum) = struct.unpack_from("<HHIQQQIHHH", head, 16)
    if machine != EM_X86_64 or e_type not in (ET_EXEC, ET_DYN):
        raise GuestError(E.ENOEXEC, "not an x86-64 executable")
    if phentsize != PHDR_SIZE or not 0 < phnum * PHDR_SIZE <= MAX_PHDRS_BYTES:
        raise GuestError(E.ENOEXEC, "bad program header table")
    table = pread(phnum * PHDR_SIZE, phoff)
    if len(table) != phnum * PHDR_SIZE:
        raise GuestError(E.ENOEXEC, "program header table beyond the end of the file")
    loads = []
    interp = None
    for i in range(phnum):
        p_type, flags, off, vaddr, _, filesz, memsz, _ = struct.unpack_from(
            "<IIQQQQQQ", table, i * PHDR_SIZE)
        if p_type == PT_INTERP and interp is None:
            interp = _interp_path(pread, off, filesz, file_size)
        if p_type != PT_LOAD:
            continue
        if filesz > memsz or off + filesz > file_size:
            raise GuestError(E.ENOEXEC, "a loadable segment lies beyond the end of the file")
        loads.append(Segment(flags, off, vaddr, filesz, memsz))
    if not loads:
        raise GuestError(E.ENOEXEC, "no loadable segment")
    return ElfImage(e_type == ET_DYN, entry, phoff, phnum, loads, interp)


def _interp_path(pread: Callable[[int, int], bytes], off: int, size: int,
                 file_size: int) -> str:
    """The PT_INTERP string: 2 to PATH_MAX bytes inside the file, the last one NUL (Linux's
    checks in load_elf_binary); ENOEXEC otherwise."""
    if not 2 <= size <= PATH_MAX or off + size > file_size:
        raise GuestError(E.ENOEXEC, "bad PT_INTERP program header")
    raw = pread(size, off)
    if len(raw) != size or raw[-1] != 0:
        raise GuestError(E.ENOEXEC, "PT_INTERP is not a NUL-terminated path")
    return os.fsdecode(raw[:raw.index(0)])  # Linux opens the string up to its first NUL


#: A file's identity for the header cache: (device, inode, size, mtime, ctime) in ns.  A file
#: rewritten in place changes its size or times; one replaced by rename has a new inode.
FileId = tuple[int, int, int, int, int]
_CACHE_SIZE = 64
_cache: dict[FileId, ElfImage] = {}
_cache_lock = _thread.allocate_lock()


def file_identity(st: os.stat_result) -> FileId:
    """The cache key of an open file, from its fstat."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def parse_elf_cached(key: FileId, pread: Callable[[int, int], bytes],
                     file_size: int) -> ElfImage:
    """parse_elf, or the headers parsed before from the same unchanged file (an exec-heavy
    guest execs the same few programs again and again).  Only successful parses are
    kept, at most 64, the oldest dropped first; ElfImage is never changed after parsing."""
    with _cache_lock:
        elf = _cache.get(key)
    if elf is not None:
        return elf
    elf = parse_elf(pread, file_size)
    with _cache_lock:
        if len(_cache) >= _CACHE_SIZE:
            del _cache[next(iter(_cache))]
        _cache[key] = elf
    return elf


def load_elf(vm: VmSpace, elf: ElfImage, pread: Callable[[int, int], bytes],
             name: str) -> tuple[int, int, int]:
    """Map the PT_LOAD segments of the program elf, reading only their file bytes
    (pread(n, offset)), and put the program break above them; returns (entry, phdr address,
    phnum).

    ENOMEM before any segment is read when their memory cannot fit the vkernel's limit."""
    base = PIE_BASE if elf.dyn else 0
    phdr, top = _map_segments(vm, elf, pread, name, base)
    vm.set_brk_start(top)
    return base + elf.entry, phdr, elf.phnum


def load_interp(vm: VmSpace, elf: ElfImage, pread: Callable[[int, int], bytes],
                name: str) -> tuple[int, int]:
    """Map a program's interpreter (ET_DYN: where the first mmap would go, the highest free
    range below MMAP_TOP; ET_EXEC: at its own addresses); returns (load base, entry)."""
    base = 0
    if elf.dyn:
        low = page_down(min(s.vaddr for s in elf.loads))
        span = page_up(max(s.vaddr + s.memsz for s in elf.loads)) - low
        at = vm.vmas.find_free(span, MMAP_TOP, MMAP_BOTTOM) if span <= MMAP_TOP else None
        if at is None:
            raise GuestError(E.ENOMEM, "no room for the interpreter")
        base = at - low
    _map_segments(vm, elf, pread, name, base)
    return base, base + elf.entry


def _map_segments(vm: VmSpace, elf: ElfImage, pread: Callable[[int, int], bytes],
                  name: str, base: int) -> tuple[int, int]:
    """Map elf's PT_LOAD segments at base + their addresses; returns (the program headers'
    address, 0 if no segment holds them; the end of the highest segment)."""
    total = 0
    for s in elf.loads:
        if s.vaddr + s.memsz > USER_TOP or base + s.vaddr + s.memsz > USER_TOP:
            raise GuestError(E.ENOEXEC, "segment out of range")
        total += page_up(s.vaddr + s.memsz) - page_down(s.vaddr)
    vm.check_room(total, len(elf.loads))
    phdr = 0
    top = 0
    for s in elf.loads:
        start = page_down(base + s.vaddr)
        end = page_up(base + s.vaddr + s.memsz)
        vaddr, off, filesz = base + s.vaddr, s.offset, s.filesz
        if start < top:  # shares a page with the previous segment: fill that part in place
            n = max(0, min(top, vaddr + filesz) - vaddr)
            vm.poke(vaddr, pread(n, off) if n else b"")
            vm.poke(vaddr + n, bytes(max(0, min(top, vaddr + s.memsz) - vaddr - n)))
            start = top
        skip = start - vaddr  # bytes of the segment already placed (negative: page lead)
        if skip <= 0:
            data = bytes(-skip) + (pread(filesz, off) if filesz else b"")
        else:
            data = pread(filesz - skip, off + skip) if filesz > skip else b""
        if end > start:
            vm.mmap(start, end - start, _prot(s.flags), MAP_PRIVATE | MAP_FIXED,
                    name=name, path=name, file_off=off + skip)
            _fill(vm, start, data)
        if s.offset <= elf.phoff < s.offset + s.filesz:
            phdr = base + s.vaddr + elf.phoff - s.offset
        top = max(top, end)
    return phdr, top


def _fill(vm: VmSpace, addr: int, data: bytes) -> None:
    """Copy a segment's bytes into its new mapping, its pages backed in one call first
    (pagemap.populate_write: a page fault per page of busybox's text cost more than the
    copy)."""
    if len(data) >= 16 * PAGE:
        v = vm.vmas.find(addr)
        if v is not None:
            populate_write(v.buf.addr + v.off + addr - v.start, page_down(len(data)))
    vm.poke(addr, data)


def build_stack(vm: VmSpace, argv: list[bytes], envp: list[bytes], execfn: bytes,
                entry: int, phdr: int, phnum: int, random16: bytes, base: int = 0) -> int:
    """Map the stack and lay out argc, argv, envp and auxv as Linux does; returns rsp.
    entry, phdr, phnum: the program's; base: its interpreter's load address (0: none)."""
    top = USER_TOP
    vm.mmap(top - STACK_SIZE, STACK_SIZE, 3, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
            name="[stack]")
    blob = bytearray()
    strings_at = top - 8  # keep the last 8 bytes zero like Linux's end marker

    def put(data: bytes) -> int:
        nonlocal blob
        blob = bytearray(data) + blob
        return strings_at - len(blob)

    execfn_at = put(execfn + b"\0")
    env_at = [put(e + b"\0") for e in reversed(envp)][::-1]
    arg_at = [put(a + b"\0") for a in reversed(argv)][::-1]
    platform_at = put(b"x86_64\0")
    random_at = put(random16)
    vm.write(strings_at - len(blob), bytes(blob))
    auxv = [
        (AT_PHDR, phdr), (AT_PHENT, 56), (AT_PHNUM, phnum), (AT_PAGESZ, PAGE), (AT_BASE, base),
        (AT_FLAGS, 0), (AT_ENTRY, entry), (AT_UID, 0), (AT_EUID, 0), (AT_GID, 0), (AT_EGID, 0),
        (AT_PLATFORM, platform_at), (AT_HWCAP, HWCAP), (AT_CLKTCK, 100), (AT_SECURE, 0),
        (AT_RANDOM, random_at), (AT_HWCAP2, 0), (AT_EXECFN, execfn_at), (AT_NULL, 0),
    ]
    words = [len(argv), *arg_at, 0, *env_at, 0]
    for k, v in auxv:
        words += [k, v]
    sp = (strings_at - len(blob) - 8 * len(words)) & ~0xF
    vm.write(sp, struct.pack(f"<{len(words)}Q", *words))
    if sp < top - STACK_SIZE + PAGE:
        raise GuestError(E.E2BIG)
    return sp
