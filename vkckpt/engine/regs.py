"""x86-64 register names, Unicorn ids and raw ctypes access (the binding is ~4x slower)."""

from __future__ import annotations

import ctypes

from vkckpt.engine.libuc import lib
from vkckpt.engine.ucconst import X86_REG

GPRS = (
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags",
)
BASES = ("fs_base", "gs_base")
FPU_CTRL = ("fpcw", "fpsw", "fptag", "fop", "fip", "fdp", "mxcsr")
ST_REGS = tuple(f"st{i}" for i in range(8))
XMM_REGS = tuple(f"xmm{i}" for i in range(16))
#: Every register a thread owns, in the order images and frames list them.
ALL_REGS = GPRS + BASES + FPU_CTRL + ST_REGS + XMM_REGS
#: Byte width of each wide register; all others are 8-byte integers.
WIDTH = {**{n: 10 for n in ST_REGS}, **{n: 16 for n in XMM_REGS}}

REG_ID = {n: X86_REG[n] for n in ALL_REGS}
SYSCALL_ARGS = ("rax", "rdi", "rsi", "rdx", "r10", "r8", "r9", "rip", "rflags")

_u64 = ctypes.c_uint64
# Prototypes without argtypes checking: every argument is passed as a plain int (address),
# which makes a call ~4x cheaper than through the binding's checked prototypes.
_BATCH = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                          ctypes.c_int)
_raw_read_batch = _BATCH(ctypes.cast(lib.uc_reg_read_batch, ctypes.c_void_p).value)
_raw_write_batch = _BATCH(ctypes.cast(lib.uc_reg_write_batch, ctypes.c_void_p).value)


class RegBatch:
    """A fixed list of 8-byte registers read or written with one raw ctypes call."""

    def __init__(self, names: tuple[str, ...]) -> None:
        n = len(names)
        self.names = names
        self._ids = (ctypes.c_int * n)(*[REG_ID[x] for x in names])
        self._vals = (_u64 * n)()
        self._ptrs = (ctypes.c_void_p * n)(
            *[ctypes.addressof(self._vals) + 8 * i for i in range(n)]
        )
        self._n = n
        self._ids_at = ctypes.addressof(self._ids)
        self._ptrs_at = ctypes.addressof(self._ptrs)

    def read(self, uch: int) -> ctypes.Array:
        """Read all registers of the batch; returns the values array (valid until next read)."""
        _raw_read_batch(uch, self._ids_at, self._ptrs_at, self._n)
        return self._vals

    def write(self, uch: int, values: list[int]) -> None:
        """Write all registers of the batch from values (same order as names)."""
        vals = self._vals
        for i, v in enumerate(values):
            vals[i] = v & 0xFFFFFFFFFFFFFFFF
        _raw_write_batch(uch, self._ids_at, self._ptrs_at, self._n)

    def write3(self, uch: int, a: int, b: int, c: int) -> None:
        """write() for a batch of exactly three registers, without building a list."""
        vals = self._vals
        vals[0] = a & 0xFFFFFFFFFFFFFFFF
        vals[1] = b
        vals[2] = c
        _raw_write_batch(uch, self._ids_at, self._ptrs_at, 3)


def read_wide(uch: int, name: str) -> int:
    """Read a 10- or 16-byte register as an unsigned little-endian integer."""
    buf = (ctypes.c_ubyte * 16)()
    lib.uc_reg_read(uch, REG_ID[name], buf)
    return int.from_bytes(bytes(buf)[: WIDTH[name]], "little")


def write_wide(uch: int, name: str, value: int) -> None:
    """Write a 10- or 16-byte register from an unsigned integer."""
    raw = value.to_bytes(16, "little")
    buf = (ctypes.c_ubyte * 16).from_buffer_copy(raw)
    if name.startswith("st"):
        # Keep the physical register's unused bytes intact: read-modify-write 10 bytes.
        buf = (ctypes.c_ubyte * 16).from_buffer_copy(raw[:10] + bytes(6))
    lib.uc_reg_write(uch, REG_ID[name], buf)
