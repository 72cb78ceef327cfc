"""Instruction hooks that keep host facts out of the guest: rdtsc, rdtscp and cpuid.

* **rdtsc / rdtscp** (``UC_HOOK_INSN``, Unicorn >= 2.1): EDX:EAX is the virtual TSC,
  ``tsc_base + total * tsc_per_block + offset of the instruction in its block`` (the offset
  capped at ``tsc_per_block - 1``), read from the block counter's state; the kernel sets
  ``tsc_base`` before each time slice from the virtual clock (`set_clock`).  The block count
  and address are the C block hook's, so the value depends only on the blocks executed: it is
  the same in two runs and after a freeze at any scheduling point.  It grows by at least one
  block's worth of cycles from one block to the next, and two reads inside one block differ
  by their offsets.  rdtscp's ECX is the fixed TSC_AUX.  The hooks are the C functions of
  blockhook.c (no Python runs); without the extension, Python twins with the same semantics.
* **cpuid** is answered from `cpumodel.LEAVES` (copied once into a C array the hook reads),
  never from the emulator's own table; a leaf or subleaf not listed reads as zeros.
"""

from __future__ import annotations

import ctypes

from vkckpt.engine import cpumodel, libuc
from vkckpt.engine import ucconst as C
from vkckpt.engine.preempt import BlockState, native_symbol
from vkckpt.engine.regs import RegBatch
from vkckpt.errors import VkError

_INSN_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
_MASK64 = 0xFFFF_FFFF_FFFF_FFFF


class CpuidLeaf(ctypes.Structure):
    """One CPUID answer; mirrors ``struct vk_cpuid_leaf`` in blockhook.c."""

    _fields_ = [("leaf", ctypes.c_uint32), ("subleaf", ctypes.c_uint32),
                ("by_subleaf", ctypes.c_uint32), ("regs", ctypes.c_uint32 * 4)]


def _cpuid_table() -> ctypes.Array:
    rows = sorted(cpumodel.LEAVES.items())
    table = (CpuidLeaf * len(rows))()
    for row, ((leaf, sub), regs) in zip(table, rows, strict=True):
        row.leaf, row.subleaf = leaf, sub
        row.by_subleaf = int(leaf in cpumodel.SUBLEAF_LEAVES)
        row.regs[:] = regs
    return table


#: The model's CPUID table as the C hook reads it (one per host process, never freed).
CPUID_TABLE = _cpuid_table()


class CpuModelError(VkError):
    """The loaded Unicorn library cannot give guests the virtual CPU (too old)."""

    def __init__(self, what: str, err: libuc.UcError) -> None:
        super().__init__(f"the Unicorn library cannot {what} ({err}); vkckpt needs Unicorn "
                         f">= 2.1: pip install 'unicorn==2.1.4' or fix LIBUNICORN_PATH")


def select_model(uch: int) -> None:
    """Run the engine on the documented CPU model (before anything else uses it)."""
    try:
        libuc.set_cpu_model(uch, cpumodel.UC_MODEL)
    except libuc.UcError as err:
        raise CpuModelError(f"select the {cpumodel.UC_MODEL_NAME} CPU model", err) from None


class CpuHooks:
    """The rdtsc, rdtscp and cpuid hooks of one engine, reading `state` (the block counter's)."""

    def __init__(self, uch: int, state: BlockState, native: bool) -> None:
        self._uch = uch
        self._state = state
        state.tsc_aux = cpumodel.TSC_AUX
        state.cpuid = ctypes.addressof(CPUID_TABLE)
        state.cpuid_count = len(CPUID_TABLE)
        self._rip = RegBatch(("rip",))
        self._tsc_out = RegBatch(("rax", "rdx", "rcx"))
        self._tsc_out2 = RegBatch(("rax", "rdx"))
        self._out = RegBatch(("rax", "rbx", "rcx", "rdx"))
        self._in = RegBatch(("rax", "rcx"))
        self._cbs: list[object] = []
        names = ("vk_rdtsc_cb", "vk_rdtscp_cb", "vk_cpuid_cb")
        cbs = [native_symbol(n) if native else None for n in names]
        self.native = None not in cbs
        if not self.native:
            cbs = [self._python(f) for f in (self._rdtsc_py, self._rdtscp_py, self._cpuid_py)]
        user = ctypes.addressof(state)
        for insn, cb in zip((C.X86_INS_RDTSC, C.X86_INS_RDTSCP, C.X86_INS_CPUID), cbs,
                            strict=True):
            try:
                libuc.hook_add(uch, C.HOOK_INSN, cb or 0, user, ctypes.c_int(insn))
            except libuc.UcError as err:
                raise CpuModelError("hook rdtsc, rdtscp and cpuid", err) from None

    def _python(self, fn: object) -> int:
        cb = _INSN_CB(fn)
        self._cbs.append(cb)
        return ctypes.cast(cb, ctypes.c_void_p).value or 0

    def set_clock(self, ns: int, ns_per_block: int) -> None:
        """The TSC at the next block entry reads virtual time ns (one block = ns_per_block)."""
        st = self._state
        st.tsc_per_block = cpumodel.TSC_PER_NS * ns_per_block
        st.tsc_base = (cpumodel.tsc_at(ns) - st.total * st.tsc_per_block) & _MASK64

    def tsc(self, rip: int) -> int:
        """The TSC an rdtsc at rip reads now (Python twin of blockhook.c's vk_tsc)."""
        st = self._state
        off = rip - st.block_addr
        if not 0 <= off < st.tsc_per_block:
            off = st.tsc_per_block - 1
        return (st.tsc_base + st.total * st.tsc_per_block + off) & _MASK64

    def _rdtsc_py(self, uch: int, _ud: int) -> int:
        tsc = self.tsc(self._rip.read(uch)[0])
        self._tsc_out2.write(uch, [tsc & 0xFFFF_FFFF, tsc >> 32])
        return 1

    def _rdtscp_py(self, uch: int, _ud: int) -> int:
        tsc = self.tsc(self._rip.read(uch)[0])
        self._tsc_out.write3(uch, tsc & 0xFFFF_FFFF, tsc >> 32, self._state.tsc_aux)
        return 1

    def _cpuid_py(self, uch: int, _ud: int) -> int:
        """Python twin of blockhook.c's vk_cpuid_cb."""
        leaf, sub = self._in.read(uch)
        self._out.write(uch, list(cpumodel.cpuid(leaf, sub)))
        return 1
