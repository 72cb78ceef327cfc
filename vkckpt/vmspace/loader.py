"""Load a static x86-64 ELF executable into a fresh vmspace and build its initial stack."""

from __future__ import annotations

import io
import struct

from vkckpt.abi import errno as E
from vkckpt.engine import cpumodel
from vkckpt.errors import GuestError
from vkckpt.record import Comparable
from vkckpt.vmspace.vma import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PAGE, page_down, page_up
from vkckpt.vmspace.vmspace import USER_TOP, VmSpace

STACK_SIZE = 8 << 20
PIE_BASE = 0x5555_5555_4000
AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ = 0, 3, 4, 5, 6
AT_BASE, AT_FLAGS, AT_ENTRY = 7, 8, 9
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_PLATFORM, AT_HWCAP, AT_CLKTCK = 11, 12, 13, 14, 15, 16, 17
AT_SECURE, AT_RANDOM, AT_HWCAP2, AT_EXECFN = 23, 25, 26, 31
HWCAP = cpumodel.HWCAP  # CPUID.1:EDX of the documented virtual CPU, as Linux gives it
PF_X, PF_W, PF_R = 1, 2, 4


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


def load_elf(vm: VmSpace, image: bytes, name: str) -> tuple[int, int, int]:
    """Map the PT_LOAD segments of image; returns (entry, phdr address, phnum)."""
    from elftools.common.exceptions import ELFError  # late: thawing needs no ELF parser
    from elftools.elf.elffile import ELFFile

    try:
        elf = ELFFile(io.BytesIO(image))
        if elf.get_machine_arch() != "x64" or elf.elfclass != 64:
            raise GuestError(E.ENOEXEC, "not an x86-64 ELF")
        segs = [s for s in elf.iter_segments()]
    except (ELFError, struct.error, ValueError) as exc:
        raise GuestError(E.ENOEXEC, str(exc)) from None
    if any(s["p_type"] == "PT_INTERP" for s in segs):
        raise GuestError(E.ENOEXEC, "dynamically linked programs are not supported")
    base = PIE_BASE if elf["e_type"] == "ET_DYN" else 0
    loads = [s for s in segs if s["p_type"] == "PT_LOAD"]
    if not loads:
        raise GuestError(E.ENOEXEC, "no loadable segment")
    phdr = 0
    top = 0
    for s in loads:
        start = page_down(base + s["p_vaddr"])
        end = page_up(base + s["p_vaddr"] + s["p_memsz"])
        if end > USER_TOP or s["p_filesz"] > s["p_memsz"]:
            raise GuestError(E.ENOEXEC, "segment out of range")
        vaddr, off, filesz = base + s["p_vaddr"], s["p_offset"], s["p_filesz"]
        if start < top:  # shares a page with the previous segment: fill that part in place
            n = max(0, min(top, vaddr + filesz) - vaddr)
            vm.poke(vaddr, image[off: off + n])
            vm.poke(vaddr + n, bytes(max(0, min(top, vaddr + s["p_memsz"]) - vaddr - n)))
            start = top
        skip = start - vaddr  # bytes of the segment already placed (negative: page lead)
        if skip <= 0:
            data = bytes(-skip) + image[off: off + filesz]
        else:
            data = image[off + skip: off + filesz]
        if end > start:
            vm.mmap(start, end - start, _prot(s["p_flags"]), MAP_PRIVATE | MAP_FIXED,
                    name=name, data=data, path=name, file_off=off + skip)
        if s["p_offset"] <= elf["e_phoff"] < s["p_offset"] + s["p_filesz"]:
            phdr = base + s["p_vaddr"] + elf["e_phoff"] - s["p_offset"]
        top = max(top, end)
    vm.set_brk_start(top)
    return base + elf["e_entry"], phdr, elf["e_phnum"]


def build_stack(vm: VmSpace, argv: list[bytes], envp: list[bytes], execfn: bytes,
                entry: int, phdr: int, phnum: int, random16: bytes) -> int:
    """Map the stack and lay out argc, argv, envp and auxv as Linux does; returns rsp."""
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
        (AT_PHDR, phdr), (AT_PHENT, 56), (AT_PHNUM, phnum), (AT_PAGESZ, PAGE), (AT_BASE, 0),
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
