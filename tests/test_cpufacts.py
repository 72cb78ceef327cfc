"""Guest-visible CPU and host facts are virtual (issue 11, attack 7): rdtsc/rdtscp on the
virtual clock, rdrand/rdseed hidden consistently, one documented CPUID model, fixed auxv and
host facts.  Each would differ between two runs, or from the documented model, on the host's
values."""

from __future__ import annotations

import ctypes
import mmap
import re
import struct
from pathlib import Path

import pytest

from vkckpt.ckpt.snapshot import write_image
from vkckpt.config import KernelConfig, ProcessSpec
from vkckpt.engine import cpumodel, libuc
from vkckpt.engine import ucconst as C
from vkckpt.engine.cpuhooks import CpuHooks, CpuModelError, select_model
from vkckpt.engine.engine import Engine
from vkckpt.engine.preempt import BlockCounter, native_available
from vkckpt.runner import boot
from vkckpt.testing.oracle import (
    Workload,
    freeze_points,
    frozen_and_thawed_here,
    golden,
    run_until,
    thaw_in_new_process,
)
from vkckpt.testing.workload import make_root

WL = Workload("cpufacts", ("3000",), quantum=997)


def _run(root: Path) -> str:
    out: list[bytes] = []
    k = boot(KernelConfig(root=str(root), stdout=out.append, stderr=out.append,
                          processes=[ProcessSpec("/cpufacts", ["cpufacts", "3000"])]))
    assert k.run() == 0
    k.shutdown()
    return b"".join(out).decode()


@pytest.fixture(scope="module")
def facts(tmp_path_factory) -> str:
    return _run(make_root(tmp_path_factory.mktemp("cf"), ["cpufacts"]))


def _line(out: str, prefix: str) -> str:
    found = [ln for ln in out.splitlines() if ln.startswith(prefix)]
    assert len(found) == 1, f"{prefix!r} in:\n{out}"
    return found[0]


def test_two_runs_are_byte_identical(facts: str, make_root) -> None:
    """Host TSC values and host randomness made two identical runs differ."""
    assert _run(make_root("cpufacts")) == facts


def test_rdtsc_is_monotonic_and_on_the_virtual_clock(facts: str) -> None:
    m = re.search(r"rdtsc: first=(\d+) after 3000 reads \+(\d+), backwards=0 equal=0", facts)
    assert m, facts
    assert int(m[2]) >= 3000 * cpumodel.TSC_PER_NS * 10  # at least one block per read
    for line in ("rdtsc: same block pair increases: 1", "rdtscp: aux=0 after rdtsc: 1",
                 "rdtsc: 3 GHz on CLOCK_MONOTONIC: 1", "thread: tsc after main's: 1",
                 "main: tsc after thread's: 1", "child: tsc after parent's: 1"):
        assert line in facts.splitlines(), line


def test_rdrand_and_rdseed_are_hidden_consistently(facts: str) -> None:
    """They returned host randomness (rdseed even though CPUID denied it)."""
    assert _line(facts, "rdrand:") == "rdrand: cpuid=0 SIGILL"
    assert _line(facts, "rdseed:") == "rdseed: cpuid=0 SIGILL"


def test_cpuid_is_the_documented_model(facts: str) -> None:
    leaves = [0, 1, 7, *range(0x80000000, 0x80000005)]
    for leaf in leaves:
        regs = " ".join(f"{r:08x}" for r in cpumodel.cpuid(leaf, 0))
        assert _line(facts, f"cpuid {leaf:08x}.0:") == f"cpuid {leaf:08x}.0: {regs}"
    assert _line(facts, "vendor:") == "vendor: GenuineIntel brand: vkckpt virtual CPU @ 3.00GHz"
    ecx1, ebx7 = cpumodel.cpuid(1, 0)[2], cpumodel.cpuid(7, 0)[1]
    assert not ecx1 >> 30 & 1 and not ebx7 >> 18 & 1, "RDRAND/RDSEED must not be advertised"


def _cpuid_engine() -> tuple[object, mmap.mmap]:
    """A bare engine of the vkernel's CPU model with one page at 0x1000 holding `cpuid`
    (the page is returned too: it must outlive the engine's use of it)."""
    uch = libuc.open_x86_64()
    select_model(uch)
    page = mmap.mmap(-1, 0x1000)
    page.write(bytes.fromhex("0fa2"))
    libuc.check(libuc.lib.uc_mem_map_ptr(uch, 0x1000, 0x1000, 7, ctypes.addressof(
        ctypes.c_char.from_buffer(page))))
    return uch, page


def _run_cpuid(uch: object, rax: int, rcx: int) -> tuple[int, ...]:
    """Run the `cpuid` at 0x1000 of _cpuid_engine() with rax/rcx; its rax, rbx, rcx, rdx."""
    for name, v in (("rax", rax), ("rcx", rcx)):
        libuc.lib.uc_reg_write(uch, C.X86_REG[name], ctypes.byref(ctypes.c_uint64(v)))
    libuc.check(libuc.lib.uc_emu_start(uch, 0x1000, 0x1002, 0, 0))
    out = []
    for name in ("rax", "rbx", "rcx", "rdx"):
        v = ctypes.c_uint64()
        libuc.lib.uc_reg_read(uch, C.X86_REG[name], ctypes.byref(v))
        out.append(v.value)
    return tuple(out)


def _raw_cpuid(leaf: int, sub: int = 0) -> tuple[int, ...]:
    """CPUID of the emulator's own model (no vkckpt hook)."""
    uch, page = _cpuid_engine()
    out = tuple(v & 0xFFFF_FFFF for v in _run_cpuid(uch, leaf, sub))
    libuc.lib.uc_close(uch)
    return out


def test_every_advertised_feature_is_in_the_emulated_model() -> None:
    index = {"eax": 0, "ebx": 1, "ecx": 2, "edx": 3}
    for (leaf, reg), bits in cpumodel.FEATURES.items():
        model = _raw_cpuid(leaf)[index[reg]]
        for name, bit in bits.items():
            if name not in cpumodel.PLATFORM_ONLY:
                assert model >> bit & 1, f"{name} advertised but the emulator lacks it"
    assert _raw_cpuid(1)[2] >> 30 & 1 == 0, "the model executes RDRAND"
    for name, (leaf, reg, bit) in cpumodel.ABSENT.items():
        assert not cpumodel.cpuid(leaf, 0)[index[reg]] >> bit & 1, f"{name} is advertised"


def _tsc_probe(python: bool) -> dict[str, int]:
    """Run rdtsc, rdtsc, rdtscp in one block and rdtsc in the next; registers they set."""
    code = bytes.fromhex("0f31 4989c0 0f31 4989c1 0f01f9 4989c2 4989cb eb00 0f31 4989c4"
                         .replace(" ", ""))
    uch = libuc.open_x86_64()
    select_model(uch)
    page = mmap.mmap(-1, 0x1000)
    page.write(code)
    libuc.check(libuc.lib.uc_mem_map_ptr(uch, 0x1000, 0x1000, 7, ctypes.addressof(
        ctypes.c_char.from_buffer(page))))
    counter = BlockCounter(uch, force_python=python)
    hooks = CpuHooks(uch, counter.state, native=not python)
    assert hooks.native is not python
    hooks.set_clock(1000, 10)
    libuc.lib.uc_reg_write(uch, C.X86_REG["rbx"], ctypes.byref(ctypes.c_uint64(0x77)))
    libuc.check(libuc.lib.uc_emu_start(uch, 0x1000, 0x1000 + len(code), 0, 0))
    regs = {}
    for name in ("r8", "r9", "r10", "r11", "r12", "rdx", "rbx"):
        v = ctypes.c_uint64()
        libuc.lib.uc_reg_read(uch, C.X86_REG[name], ctypes.byref(v))
        regs[name] = v.value
    counter.close()
    libuc.lib.uc_close(uch)
    return regs


@pytest.mark.parametrize("python", [False, True], ids=["native", "python"])
def test_tsc_hooks_read_the_block_clock(python: bool) -> None:
    """TSC = 3 x ns at the slice start + 30 per block entered + offset in the block."""
    if not python:
        assert native_available()
    regs = _tsc_probe(python)
    assert regs == {"r8": 3030, "r9": 3035, "r10": 3040, "r11": cpumodel.TSC_AUX,
                    "r12": 3060, "rdx": 0, "rbx": 0x77}


@pytest.mark.parametrize("python", [False, True], ids=["native", "python"])
def test_cpuid_hooks_answer_from_the_table(python: bool) -> None:
    uch, page = _cpuid_engine()
    counter = BlockCounter(uch, force_python=python)
    hooks = CpuHooks(uch, counter.state, native=not python)
    assert hooks.native is not python
    for leaf, sub in ((0, 5), (1, 0), (4, 1), (4, 2), (4, 9), (7, 0), (0x80000002, 3),
                      (0x40000000, 0), (0xFFFFFFFF, 0)):
        got = _run_cpuid(uch, leaf | 0xAB << 32, sub)
        assert got == cpumodel.cpuid(leaf, sub), (hex(leaf), sub)
    counter.close()
    libuc.lib.uc_close(uch)


def test_host_facts_are_fixed(facts: str) -> None:
    hwcap = struct.unpack("<I", struct.pack("<I", cpumodel.cpuid(1, 0)[3]))[0]
    auxv = _line(facts, "auxv:")
    assert f"hwcap={hwcap:#x} hwcap2=0 platform=x86_64 minsigstksz=0 sysinfo_ehdr=0 " \
           "execfn=/cpufacts random=" in auxv
    assert _line(facts, "uname:") == "uname: Linux vkckpt 6.1.0-vkckpt #1 SMP vkckpt x86_64"
    assert _line(facts, "cpus:") == "cpus: affinity=1 onln=1 conf=1 getcpu=0"
    m = re.fullmatch(r"sysinfo: rc=0 uptime=(\d+) totalram=(\d+) freeram=(\d+) procs=1 unit=1",
                     _line(facts, "sysinfo:"))
    assert m and int(m[2]) == KernelConfig(root=".").memory_limit and int(m[3]) < int(m[2])
    assert _line(facts, "clock_getres:") == "clock_getres: 10 ns"
    assert "unimplemented syscall" not in facts


def test_frozen_anywhere_thaws_with_the_same_facts(tmp_path: Path) -> None:
    """The TSC of a thawed run continues the clock exactly (block count mid-slice included)."""
    gold = golden(WL, make_root(tmp_path, [WL.name]))
    points = freeze_points(gold, 6, seed=3)
    assert len(points) == 6
    for at in points:
        before, after, k2 = frozen_and_thawed_here(WL, make_root(tmp_path, [WL.name]), at)
        assert k2.run() == gold.status
        assert b"".join(before) + b"".join(after) == gold.output, f"output differs at {at}"
        assert k2.sched.ticks == gold.ticks
        k2.shutdown()
    root = make_root(tmp_path, [WL.name])
    k, before, _ = run_until(WL, root, points[len(points) // 2])
    write_image(k, str(root / "y.img"))
    k.shutdown()
    out = thaw_in_new_process(root / "y.img", root)
    assert b"".join(before) + out.output == gold.output


def test_a_library_that_cannot_hook_rdtsc_is_one_clear_error(monkeypatch,
                                                             no_engine_pool) -> None:
    """Unicorn < 2.1 cannot hook rdtsc: refuse to run rather than leak the host TSC."""
    from unicorn import x86_const

    monkeypatch.setattr(C, "X86_INS_RDTSC", x86_const.UC_X86_INS_RDRAND)  # never hookable
    with pytest.raises(CpuModelError, match=r"needs Unicorn >= 2\.1: pip install"):
        Engine(lambda: False)
