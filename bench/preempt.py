"""Cost of deterministic preemption: block-counting hooks versus bare Unicorn and ``count=``.

Run: ``python -m bench.preempt [--scale 1.0] [--repeat 3]`` (or ``python bench/bench_preempt.py``).
Prints MIPS per mode and the ratio to a bare ``emu_start`` with no hooks, for a store-heavy loop
and an ALU loop (3 instructions per block: the worst case for a per-block hook).
``python -m bench`` runs :func:`run`: bare versus the C counter at the default quantum.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from unicorn import UC_ARCH_X86, UC_MODE_64, Uc
from unicorn import x86_const as X

from vkckpt.engine.preempt import BlockCounter, native_available

if TYPE_CHECKING:
    from bench.common import Profile, Result

CODE, DATA = 0x100000, 0x200000


@dataclass(frozen=True)
class Workload:
    """A loop run RCX times: ``fixed + per_iter * RCX`` instructions, one block per iteration."""

    name: str
    code: bytes
    fixed: int
    per_iter: int
    iters: int

    def insns(self, iters: int) -> int:
        return self.fixed + self.per_iter * iters


WORKLOADS = (
    # xor eax,eax; mov rdi,DATA; 1: mov [rdi],rax; add rax,1; mov [rdi+8],rcx; add rdi,16;
    # and rdi,0x200ff0; dec rcx; jnz 1b
    Workload(
        "store",
        bytes.fromhex("31c048c7c7000020004889074883c00148894f084883c7104881e7f00f200048ffc975e5"),
        2,
        7,
        6_000_000,
    ),
    # xor eax,eax; 1: add rax,1; dec rcx; jnz 1b
    Workload("alu", bytes.fromhex("31c04883c00148ffc975f7"), 1, 3, 200_000_000),
)


def make(w: Workload, iters: int) -> tuple[Uc, int]:
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(CODE, 0x1000)
    uc.mem_map(DATA, 0x1000)
    uc.mem_write(CODE, w.code)
    uc.reg_write(X.UC_X86_REG_RCX, iters)
    return uc, CODE + len(w.code)


def run_bare(uc: Uc, end: int) -> int:
    uc.emu_start(CODE, end)
    return 1


def run_counter(uc: Uc, end: int, quantum: int, force_python: bool) -> int:
    bc = BlockCounter(uc._uch.value, force_python=force_python)
    pc, starts = CODE, 0
    while True:
        bc.arm(quantum)
        uc.emu_start(pc, end)
        starts += 1
        if not bc.expired:
            break
        pc = uc.reg_read(X.UC_X86_REG_RIP)
    bc.close()
    return starts


def run_count(uc: Uc, end: int, quantum: int) -> int:
    pc, starts = CODE, 0
    while pc != end:
        uc.emu_start(pc, end, count=quantum)
        starts += 1
        pc = uc.reg_read(X.UC_X86_REG_RIP)
    return starts


def run_once(w: Workload, mode: str, iters: int) -> tuple[float, int]:
    """Seconds for one run of ``mode`` on a fresh engine, and its number of emu_start calls."""
    uc, end = make(w, iters)
    t0 = time.perf_counter()
    if mode == "bare":
        starts = run_bare(uc, end)
    elif mode == "C q=10k":
        starts = run_counter(uc, end, 10_000, False)
    elif mode == "C q=50k":
        starts = run_counter(uc, end, 50_000, False)
    elif mode == "C q=1M":
        starts = run_counter(uc, end, 1_000_000, False)
    elif mode == "Python q=10k":
        starts = run_counter(uc, end, 10_000, True)
    elif mode == "count=1M insns":
        starts = run_count(uc, end, 1_000_000)
    else:
        raise ValueError(mode)
    secs = time.perf_counter() - t0
    assert uc.reg_read(X.UC_X86_REG_RAX) == iters, (mode, uc.reg_read(X.UC_X86_REG_RAX))
    assert uc.reg_read(X.UC_X86_REG_RIP) == end
    return secs, starts


def run(p: Profile, g: object = None) -> Result:
    """Bare versus the C block counter at the default quantum (50k blocks), per workload."""
    from bench.common import Result

    r = Result("preempt", "block counter vs bare emu_start (micro-benchmark)")
    if not native_available():
        r.notes.append("vkckpt.engine._blockhook is not built: the C counter was not measured")
        return r
    modes = ["bare", "C q=50k"]
    for w in WORKLOADS:
        iters = max(1000, int(w.iters * p.preempt_scale))
        times: dict[str, list[float]] = {m: [] for m in modes}
        for _ in range(max(3, p.repeat)):
            for m in modes:
                times[m].append(run_once(w, m, iters)[0])
        mips = {m: w.insns(iters) / statistics.median(times[m]) / 1e6 for m in modes}
        r.add(f"{w.name}_bare_MIPS", mips["bare"], "MIPS")
        r.add(f"{w.name}_counter_MIPS", mips["C q=50k"], "MIPS")
        r.add(f"{w.name}_ratio", mips["C q=50k"] / mips["bare"], "x bare")
    r.notes.append("informative: store/alu are 7- and 3-instruction blocks, the hook's worst case")
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply loop lengths")
    ap.add_argument("--repeat", type=int, default=5, help="rounds over all modes (median)")
    args = ap.parse_args()
    modes = ["bare", "C q=10k", "C q=1M", "Python q=10k", "count=1M insns"]
    if not native_available():
        print("vkckpt.engine._blockhook is not built: C modes skipped")
        modes = [m for m in modes if not m.startswith("C ")]
    slow = {"Python q=10k": 100, "count=1M insns": 10}  # shorter runs for slow modes
    print(f"{'workload':8} {'mode':15} {'insns':>12} {'seconds':>9} {'MIPS':>8} "
          f"{'vs bare':>8} {'starts':>7}")  # fmt: skip
    for w in WORKLOADS:
        iters = {m: max(1000, int(w.iters * args.scale) // slow.get(m, 1)) for m in modes}
        times: dict[str, list[float]] = {m: [] for m in modes}
        starts: dict[str, int] = {}
        for _ in range(args.repeat):  # interleave modes so drift in host speed hits all alike
            for m in modes:
                secs, starts[m] = run_once(w, m, iters[m])
                times[m].append(secs)
        mips = {m: w.insns(iters[m]) / statistics.median(times[m]) / 1e6 for m in modes}
        for m in modes:
            print(f"{w.name:8} {m:15} {w.insns(iters[m]):>12,} {statistics.median(times[m]):>9.4f} "
                  f"{mips[m]:>8.1f} {mips[m] / mips['bare']:>7.1%} {starts[m]:>7}")  # fmt: skip


if __name__ == "__main__":
    main()
