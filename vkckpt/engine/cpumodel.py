"""The one virtual CPU every guest sees, on every host: its CPUID leaves and time-stamp counter.

The emulator runs Unicorn's Sandy Bridge model, chosen explicitly (`UC_CTL_CPU_MODEL`) so a
new Unicorn default cannot change what executes; it has no RDRAND/RDSEED, so both raise #UD
(SIGILL), as on a CPU without them.  CPUID is answered from `LEAVES` below (a hook, never the
emulator's own table), which reports a subset of what the model executes: everything the
model's leaves 0-7 and 0x80000000-0x80000008 report, without XSAVE/OSXSAVE (signal frames
carry the FXSAVE image only), without the hypervisor bit, with the invariant-TSC bit and the
brand string below.  A leaf or subleaf not in `LEAVES` reads as zeros.

The TSC counts `TSC_PER_NS` cycles per virtual nanosecond (3 GHz on CLOCK_MONOTONIC),
plus the offset of the instruction in its translated block; rdtscp's TSC_AUX is `TSC_AUX`.
tests/test_cpufacts.py checks every advertised bit against the emulator's model.
"""

from __future__ import annotations

import struct

#: Unicorn's UC_CPU_X86_SANDYBRIDGE, set on every engine before its first use.
UC_MODEL = 17
UC_MODEL_NAME = "Sandy Bridge"

VENDOR = b"GenuineIntel"
BRAND = b"vkckpt virtual CPU @ 3.00GHz"
SIGNATURE = 0x000206A1          # family 6, model 42, stepping 1
TSC_PER_NS = 3                  # the TSC runs at 3 GHz of virtual time
TSC_AUX = 0                     # rdtscp's ECX: CPU 0 (the only CPU)
MAX_BASIC, MAX_EXTENDED = 0x7, 0x80000008

#: Feature bits by (leaf, register): name -> bit.  The CPUID values below are built from these.
FEATURES: dict[tuple[int, str], dict[str, int]] = {
    (1, "edx"): {
        "fpu": 0, "de": 2, "pse": 3, "tsc": 4, "msr": 5, "pae": 6, "mce": 7, "cx8": 8,
        "apic": 9, "sep": 11, "mtrr": 12, "pge": 13, "mca": 14, "cmov": 15, "pat": 16,
        "pse36": 17, "clflush": 19, "mmx": 23, "fxsr": 24, "sse": 25, "sse2": 26,
    },
    (1, "ecx"): {
        "sse3": 0, "pclmulqdq": 1, "ssse3": 9, "cx16": 13, "sse4_1": 19, "sse4_2": 20,
        "popcnt": 23, "aes": 25,
    },
    (0x80000001, "ecx"): {"lahf_lm": 0},
    (0x80000001, "edx"): {"syscall": 11, "nx": 20, "rdtscp": 27, "lm": 29},
    (0x80000007, "edx"): {"invariant_tsc": 8},
}

#: Bits that describe the virtual platform, not instructions the emulator model must have.
PLATFORM_ONLY = frozenset({"invariant_tsc"})
#: Features a guest must not count on, by (leaf, register, bit): none is advertised, and
#: RDRAND, RDSEED, MOVBE, BMI1 and BMI2 also raise #UD (the model lacks them).
ABSENT: dict[str, tuple[int, str, int]] = {
    "rdrand": (1, "ecx", 30), "rdseed": (7, "ebx", 18), "movbe": (1, "ecx", 22),
    "bmi1": (7, "ebx", 3), "bmi2": (7, "ebx", 8), "fsgsbase": (7, "ebx", 0),
    "rdpid": (7, "ecx", 22), "avx": (1, "ecx", 28), "xsave": (1, "ecx", 26),
    "osxsave": (1, "ecx", 27), "hypervisor": (1, "ecx", 31),
}


def _bits(leaf: int, reg: str) -> int:
    return sum(1 << b for b in FEATURES.get((leaf, reg), {}).values())


def _words(raw: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{len(raw) // 4}I", raw)


def _leaves() -> dict[tuple[int, int], tuple[int, int, int, int]]:
    vendor = _words(VENDOR)  # EBX, EDX, ECX order
    brand = _words(BRAND.ljust(48, b"\0"))
    cache = {  # deterministic cache descriptors (leaf 4): L1d, L1i, L2 (the model's own)
        0: (0x00000121, 0x01C0003F, 0x0000003F, 0x00000001),
        1: (0x00000122, 0x01C0003F, 0x0000003F, 0x00000001),
        2: (0x00000143, 0x03C0003F, 0x00000FFF, 0x00000001),
    }
    leaves = {
        (0, 0): (MAX_BASIC, vendor[0], vendor[2], vendor[1]),
        (1, 0): (SIGNATURE, 0x00000800, _bits(1, "ecx"), _bits(1, "edx")),  # CLFLUSH 64 B
        (2, 0): (0x00000001, 0, 0, 0x002C307D),
        (6, 0): (0x00000004, 0, 0, 0),                                        # ARAT
        (MAX_EXTENDED - 8, 0): (MAX_EXTENDED, vendor[0], vendor[2], vendor[1]),
        (0x80000001, 0): (SIGNATURE, 0, _bits(0x80000001, "ecx"), _bits(0x80000001, "edx")),
        (0x80000005, 0): (0x01FF01FF, 0x01FF01FF, 0x40020140, 0x40020140),
        (0x80000006, 0): (0, 0x42004200, 0x02008140, 0),
        (0x80000007, 0): (0, 0, 0, _bits(0x80000007, "edx")),
        (0x80000008, 0): (0x00003028, 0, 0, 0),                               # 40-bit phys, 48 virt
    }
    leaves.update({(4, sub): regs for sub, regs in cache.items()})
    for i in range(3):
        leaves[(0x80000002 + i, 0)] = brand[4 * i:4 * i + 4]
    return leaves


#: CPUID (leaf, subleaf) -> (EAX, EBX, ECX, EDX).  Only leaves 4 and 7 look at the subleaf.
LEAVES = _leaves()
SUBLEAF_LEAVES = frozenset({4, 7})
#: AT_HWCAP, as Linux gives it on x86: CPUID.1:EDX.
HWCAP = LEAVES[(1, 0)][3]


def cpuid(leaf: int, subleaf: int) -> tuple[int, int, int, int]:
    """What CPUID returns for EAX=leaf, ECX=subleaf (zeros for a leaf the model lacks)."""
    leaf &= 0xFFFF_FFFF
    key = (leaf, subleaf & 0xFFFF_FFFF if leaf in SUBLEAF_LEAVES else 0)
    return LEAVES.get(key, (0, 0, 0, 0))


def tsc_at(ns: int) -> int:
    """The TSC at virtual time ns, at the start of a block (64-bit wrap)."""
    return ns * TSC_PER_NS & 0xFFFF_FFFF_FFFF_FFFF
