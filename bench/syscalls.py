"""Targets 2 and 3: system call rate (getppid_loop) and a contended mutex (mutex_bench).

Beside the getppid rate it measures the floor Unicorn and ctypes put under any Python syscall
handler: a loop of `syscall` instructions with a UC_HOOK_INSN hook that does nothing, registered
the way the engine registers its own (raw `uc_hook_add`, a ctypes callback).
"""

from __future__ import annotations

import ctypes
import time

from unicorn import UC_ARCH_X86, UC_HOOK_INSN, UC_MODE_64, Uc, UcError
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uclib

from bench.common import Guests, Profile, Result, median_pair, timed_run

SYSCALL_TARGET = 250_000
MUTEX_TARGET = 3.0
_HOOK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
# 1: syscall; dec rcx; jnz 1b
_LOOP = bytes.fromhex("0f0548ffc975f9")
_CODE = 0x100000


def null_hook_rate(n: int) -> float:
    """Syscalls per second through a do-nothing Python UC_HOOK_INSN hook."""
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(_CODE, 0x1000)
    uc.mem_write(_CODE, _LOOP)
    uc.reg_write(X.UC_X86_REG_RCX, n)
    cb = _HOOK(lambda _uc, _ud: None)
    h = ctypes.c_size_t()
    err = uclib.uc_hook_add(uc._uch, ctypes.byref(h), UC_HOOK_INSN,
                            ctypes.cast(cb, ctypes.c_void_p), None, ctypes.c_uint64(1),
                            ctypes.c_uint64(0), ctypes.c_int(X.UC_X86_INS_SYSCALL))
    if err:
        raise UcError(err)
    t0 = time.perf_counter()
    uc.emu_start(_CODE, _CODE + len(_LOOP))
    secs = time.perf_counter() - t0
    if uc.reg_read(X.UC_X86_REG_RCX) != 0:
        raise RuntimeError("null hook loop did not finish")
    return n / secs


def run_syscalls(p: Profile, g: Guests) -> Result:
    r = Result("syscalls", "getppid_loop: syscalls per second")
    n = p.syscalls

    def guest() -> float:
        secs, text, _ = timed_run(g, "getppid_loop", [str(n)])
        if f"calls={n}" not in text:
            raise RuntimeError(f"getppid_loop: unexpected output {text!r}")
        return n / secs

    def null() -> float:
        return null_hook_rate(n)

    rate, floor = median_pair(p.repeat, guest, null)
    r.add("getppid_per_s", rate, "calls/s")
    r.add("null_hook_per_s", floor, "calls/s")
    r.add("us_per_call", 1e6 / rate, "us")
    r.add("null_hook_us_per_call", 1e6 / floor, "us")
    r.add("vkernel_share_of_call", 1 - rate / floor, "fraction")
    r.target("getppid_per_s", ">=", SYSCALL_TARGET)
    return r


def run_mutex(p: Profile, g: Guests) -> Result:
    r = Result("mutex", "mutex_bench: 4 threads x 100k lock/unlock")
    secs, text, k = timed_run(g, "mutex_bench", [])
    if "total=400000" not in text:
        raise RuntimeError(f"mutex_bench: unexpected output {text!r}")
    r.add("seconds", secs, "s")
    r.add("blocks", k.sched.ticks, "blocks")
    r.add("futex_free_seconds", timed_run(g, "mutex_bench", [], preempt=False)[0], "s")
    r.target("seconds", "<=", MUTEX_TARGET)
    r.notes.append("futex_free_seconds: bare engines, threads run to completion one by one")
    return r
