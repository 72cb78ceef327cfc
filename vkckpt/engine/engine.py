"""The one module that talks to Unicorn: an engine per vmspace, raw register I/O, hooks, runs.

Hooks only record what happened (an interrupt) and stop the engine; the one exception
is the syscall hook, which calls the kernel's syscall entry directly and stops the engine only
when that entry asks for it (a blocking call, an exit, a pending signal).  Handling the common
call inside the hook saves an emu_start round trip (~4 us) per syscall.  Memory faults need no
hook: the TLB fill refuses the access and emu_start says why (engine/tlb.py).
"""

from __future__ import annotations

import ctypes
import enum
from collections.abc import Callable

from vkckpt.abi import errno as E
from vkckpt.engine import libuc, pool, quirks, tlb
from vkckpt.engine import regs as R
from vkckpt.engine import ucconst as C
from vkckpt.engine.cpuhooks import CpuHooks, select_model
from vkckpt.engine.libuc import lib
from vkckpt.engine.preempt import BlockCounter, NoCounter
from vkckpt.engine.sysentry import SyscallHook
from vkckpt.errors import GuestError
from vkckpt.record import Comparable

_emu_start, _emu_stop = lib.uc_emu_start, lib.uc_emu_stop
_mem_read, _mem_write = lib.uc_mem_read, lib.uc_mem_write
_context_save, _context_restore = lib.uc_context_save, lib.uc_context_restore
UNTIL_NEVER = 0xFFFF_FFFF_FFFF_FFFF
TCG_BUFFER = 8 << 20
_HOOK_INTR = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p)
_LINUX_FPU = (("fpcw", 0x37F), ("mxcsr", 0x1F80))  # Linux's initial x87 and SSE control words
Entry = Callable[[int, tuple[int, ...]], tuple[int | None, bool]]


class Stop(enum.Enum):
    """Why one run of the engine ended."""

    QUANTUM = "quantum"      # the block budget ran out
    SYSCALL = "syscall"      # the syscall entry asked to stop (RIP is past the instruction)
    PARKED = "parked"        # a parked run reached a syscall (RIP is on the instruction)
    FAULT = "fault"          # a bad memory access (RIP at the faulting instruction)
    INTERRUPT = "interrupt"  # a CPU exception such as #DE or #BP
    ILLEGAL = "illegal"      # an invalid opcode


class Fault(Comparable):
    """A memory fault: address and whether it was a write, a fetch and/or unmapped memory."""

    __slots__ = ("addr", "write", "fetch", "unmapped")

    def __init__(self, addr: int, write: bool, fetch: bool, unmapped: bool) -> None:
        self.addr = addr
        self.write = write
        self.fetch = fetch
        self.unmapped = unmapped


def _uc_prot(prot: int) -> int:
    """Unicorn's permission bits have the same values as PROT_*."""
    return prot & 7


class Engine:
    """One Unicorn engine: the CPU and address space of one vmspace."""

    def __init__(self, on_syscall: Callable[[int, tuple[int, ...]], tuple[int | None, bool]],
                 preempt: bool = True) -> None:
        """on_syscall(nr, args) -> (value for RAX or None, stop): see engine/sysentry.py.
        preempt=False (benchmarks only) installs no block counter: a run goes on until a
        trap or a syscall stop, the budget is ignored and no tick is ever counted, so the
        schedule is no longer deterministic.  It measures the emulator with no hook cost.
        The engine is an idle one from engine/pool.py when there is one (scrubbed: no guest
        can tell it from a new one), else a new one."""
        core = pool.POOL.take(preempt)
        if core is None:
            core = _Core.build(on_syscall, preempt)
        self._adopt(core, on_syscall)

    def _adopt(self, core: _Core, on_syscall: Entry) -> None:
        """Become the owner of core's Unicorn engine and hooks."""
        self._core: _Core | None = core
        core.owner = self
        self.uch: int = core.uch
        self.counter: BlockCounter | NoCounter = core.counter
        self.tlb: tlb.Tlb = core.tlb
        self.cpu: CpuHooks = core.cpu
        self.sys: SyscallHook = core.sys
        self.sys._entry = on_syscall  # sysentry.py keeps the kernel's entry there
        self._gpr = core.gpr
        self.user_mode = core.user_mode
        self.fault: Fault | None = None
        self.intno: int | None = None
        self._stop_reason: Stop | None = None

    # -- hooks -------------------------------------------------------------------------------
    def _intr_cb(self, _uc: int, intno: int, _ud: int) -> None:
        self.intno = intno
        self._stop_reason = Stop.INTERRUPT
        _emu_stop(self.uch)

    # -- running -----------------------------------------------------------------------------
    def set_clock(self, ns: int, ns_per_block: int) -> None:
        """The guest's TSC reads virtual time ns at the next block (see cpuhooks)."""
        self.cpu.set_clock(ns, ns_per_block)

    def run(self, rip: int, budget: int, park: bool = False) -> Stop:
        """Run from rip until the block budget is spent or a trap stops the engine.

        park=True (phase 2 of a parallel round) also stops before the first syscall, which
        runs no handler: RIP is left on the instruction and the block that ended there is
        not counted, for it is counted again when the thread resumes at the syscall (Unicorn
        ends a translated block after `syscall`, so that block is the syscall alone).  A
        parked run then a run from RIP count, and execute, exactly what one run would.  No
        Python runs during a parked run except the interrupt hook, which only records."""
        self.begin_run(budget, park)
        return self.finish_run(_emu_start(self.uch, rip, UNTIL_NEVER, 0, 0), park)

    def begin_run(self, budget: int, park: bool = False) -> None:
        """Everything run() does before uc_emu_start (rounds.py batches the emu_starts of
        several engines in C, then calls finish_run for each)."""
        self._stop_reason = None
        self.fault = None
        self.intno = None
        self.sys.stopped = False
        self.counter.arm(budget)
        self.tlb.before_run()
        if park:
            self.sys.set_park(True)

    def finish_run(self, err: int, park: bool = False) -> Stop:
        """Everything run() does after uc_emu_start returned err: why the engine stopped."""
        if park:
            self.sys.set_park(False)
        self.tlb.after_run()
        if self.sys.error is not None:
            exc, self.sys.error = self.sys.error, None
            raise exc
        if self._stop_reason is Stop.INTERRUPT:
            self._forget_exception()
            return Stop.INTERRUPT
        if self.sys.stopped:
            return Stop.SYSCALL
        if park:
            at = self.sys.take_parked()
            if at is not None:
                self.set_reg("rip", at)
                self.counter.uncount()
                return Stop.PARKED
        if err == C.ERR_INSN_INVALID:
            return Stop.ILLEGAL
        refused = self.tlb.fault(self.uch) if err == C.ERR_EXCEPTION else None
        if refused is not None:  # RIP is at the faulting instruction
            self.fault = Fault(*refused)
            return Stop.FAULT
        kind = tlb.FAULTS.get(err)
        if kind is not None:  # RIP is at the faulting instruction
            addr = tlb.fault_address(self.uch)
            self.fault = Fault(self.reg("rip") if addr is None else addr, *kind)
            return Stop.FAULT
        libuc.check(err)
        if self.counter.expired:
            return Stop.QUANTUM
        return Stop.QUANTUM  # emu_start ended at no trap: treat as a preemption point

    def _forget_exception(self) -> None:
        """The exception was delivered as a signal: reset old_exception like a real iret."""
        quirks.forget_exception(self.uch)

    def stop(self) -> None:
        """Ask the engine to stop at the next block boundary (from inside a hook)."""
        _emu_stop(self.uch)

    # -- registers ---------------------------------------------------------------------------
    def reg(self, name: str) -> int:
        """Read one 8-byte register."""
        v = ctypes.c_uint64()
        lib.uc_reg_read(self.uch, R.REG_ID[name], ctypes.byref(v))
        return v.value

    def set_reg(self, name: str, value: int) -> None:
        """Write one 8-byte register."""
        v = ctypes.c_uint64(value & 0xFFFFFFFFFFFFFFFF)
        lib.uc_reg_write(self.uch, R.REG_ID[name], ctypes.byref(v))

    def get_state(self) -> dict[str, int]:
        """Read every register a thread owns, by name."""
        st = dict(zip(self._gpr.names, list(self._gpr.read(self.uch)), strict=True))
        for n in R.ST_REGS + R.XMM_REGS:
            st[n] = R.read_wide(self.uch, n)
        return st

    def set_state(self, st: dict[str, int]) -> None:
        """Write every register a thread owns, by name (missing names are left alone)."""
        names = tuple(n for n in self._gpr.names if n in st)
        R.RegBatch(names).write(self.uch, [st[n] for n in names])
        for n in R.ST_REGS + R.XMM_REGS:
            if n in st:
                R.write_wide(self.uch, n, st[n])

    def reset_fpu(self) -> None:
        """Give the CPU Linux's initial x87 and SSE control words (a fresh engine has zeros)."""
        for name, value in _LINUX_FPU:
            self.set_reg(name, value)

    def context_new(self) -> libuc.Context:
        """A context holding a copy of the CPU's current state (one thread's registers)."""
        return libuc.Context.saved(self.uch)

    def context_save(self, ctx: libuc.Context) -> None:
        """Save the CPU into ctx (cheap thread switch)."""
        libuc.check(_context_save(self.uch, ctx.ptr))

    def context_load(self, ctx: libuc.Context) -> None:
        """Load the CPU from ctx."""
        libuc.check(_context_restore(self.uch, ctx.ptr))

    # -- memory ------------------------------------------------------------------------------
    def map_host(self, addr: int, size: int, prot: int, host_addr: int) -> None:
        """Map host memory at host_addr as guest [addr, addr+size) with prot."""
        libuc.check(lib.uc_mem_map_ptr(self.uch, addr, size, _uc_prot(prot), host_addr))
        self.tlb.set(addr, addr + size, _uc_prot(prot))

    def unmap(self, addr: int, size: int) -> None:
        """Remove [addr, addr+size) from the engine."""
        self.tlb.unmapping(lambda: libuc.check(lib.uc_mem_unmap(self.uch, addr, size)))
        self.tlb.set(addr, addr + size, None)

    def protect(self, addr: int, size: int, prot: int) -> None:
        """Change the protection of an already mapped range."""
        libuc.check(lib.uc_mem_protect(self.uch, addr, size, _uc_prot(prot)))
        self.tlb.set(addr, addr + size, _uc_prot(prot))

    def regions(self) -> list[tuple[int, int, int]]:
        """The engine's mapped regions as (begin, end inclusive, perms)."""
        return libuc.mem_regions(self.uch)

    def read(self, addr: int, size: int) -> bytes:
        """Copy guest memory out; an unmapped byte anywhere gives EFAULT."""
        if size == 0:
            return b""
        buf = ctypes.create_string_buffer(size)
        if addr < 0 or _mem_read(self.uch, addr, buf, size) != C.ERR_OK:
            raise GuestError(E.EFAULT, f"read {size} bytes at {addr:#x}")
        return buf.raw

    def write(self, addr: int, data: bytes) -> None:
        """Copy data into guest memory; an unmapped byte anywhere gives EFAULT."""
        if not data:
            return
        if addr < 0 or _mem_write(self.uch, addr, data, len(data)) != C.ERR_OK:
            raise GuestError(E.EFAULT, f"write {len(data)} bytes at {addr:#x}")

    def close(self) -> None:
        """Release the engine now (its memory belongs to the vmspace's host buffers).

        The engine is scrubbed and kept for another process (engine/pool.py) or, when the
        pool is full, closed, which frees its translation cache (several MiB) at once
        instead of at some later garbage collection.  Either way this object is unusable
        afterwards; __del__ closes an engine that was never closed."""
        core, self._core = getattr(self, "_core", None), None
        if core is None:
            return
        if not core.recycle():
            core.destroy()
        self.cpu = None  # type: ignore[assignment]
        self.uch = 0

    def __del__(self) -> None:
        core, self._core = getattr(self, "_core", None), None
        if core is not None:
            core.destroy()  # at a garbage collection: never into the pool
            self.uch = 0


def _idle_entry(nr: int, args: tuple[int, ...]) -> tuple[int | None, bool]:
    """The syscall entry of an engine in the pool: nothing runs there."""
    raise RuntimeError("a system call on an idle engine")


class _Core:
    """A Unicorn engine with its hooks: what an Engine is built from and the pool keeps.

    `owner` is the Engine using it (None while idle); `pristine` is the CPU right after it
    was built and `state0` the hooks' counter state then, both put back by recycle()."""

    __slots__ = ("uch", "preempt", "tlb", "counter", "cpu", "sys", "intr", "gpr", "user_mode",
                 "pristine", "state0", "owner")

    @classmethod
    def build(cls, on_syscall: Entry, preempt: bool) -> _Core:
        """A new engine: CPU model, translation cache size, TLB mode, then every hook."""
        c = cls()
        c.owner = None
        c.preempt = preempt
        c.uch = uch = libuc.open_x86_64()
        select_model(uch)
        libuc.set_tcg_buffer_size(uch, TCG_BUFFER)
        c.tlb = tlb.install(uch)
        c.counter = BlockCounter(uch) if preempt else NoCounter()
        c.cpu = CpuHooks(uch, c.counter.state, c.counter.native)
        c.sys = SyscallHook(uch, on_syscall)
        c.intr = _HOOK_INTR(c._on_intr)
        libuc.hook_add(uch, C.HOOK_INTR, ctypes.cast(c.intr, ctypes.c_void_p).value or 0)
        c.gpr = R.RegBatch(R.GPRS + R.BASES + R.FPU_CTRL)
        for name, value in _LINUX_FPU:  # a new engine has zeros
            libuc.check(lib.uc_reg_write(uch, R.REG_ID[name], ctypes.byref(ctypes.c_uint64(value))))
        c.user_mode = quirks.enter_user_mode(uch)  # CPL 3, as a Linux process runs
        c.pristine = libuc.Context.saved(uch)
        c.state0 = bytes(c.counter.state)
        return c

    def _on_intr(self, uc: int, intno: int, ud: int) -> None:
        if self.owner is not None:
            self.owner._intr_cb(uc, intno, ud)

    def recycle(self) -> bool:
        """Scrub the engine and give it to the pool; False when it must be closed instead.
        Precondition: the engine is not running."""
        if pool.POOL.capacity <= 0:
            return False
        try:
            self.tlb.unmapping(lambda: pool.scrub(self.uch, self.pristine))
        except libuc.UcError:
            return False
        self.tlb.reset()
        st = self.counter.state
        ctypes.memmove(ctypes.addressof(st), self.state0, len(self.state0))
        self.counter.disarm()
        self.sys.error = None
        self.sys.stopped = False
        if self.sys.native:
            self.sys.state.flags = 0
        self.sys._entry = _idle_entry
        self.owner = None
        return pool.POOL.give(self.preempt, self)

    def destroy(self) -> None:
        """Close the engine for good."""
        if self.uch:
            self.owner = None
            self.counter.close()
            lib.uc_close(self.uch)
            self.tlb.close()
            self.uch = 0
