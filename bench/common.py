"""Shared pieces of the benchmarks: results with targets, guest roots, running a vkernel."""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vkckpt.config import KernelConfig, ProcessSpec
from vkckpt.guests.build import guest_path
from vkckpt.kernel import VKernel
from vkckpt.runner import boot


@dataclass
class Profile:
    """How big to make each benchmark: `full` meets the issue's sizes, `quick` runs in < 60 s."""

    name: str
    repeat: int            # runs per side of a side-by-side comparison (median kept)
    compute_scale: int     # compute guest: 5M iterations per unit
    compute_mt_scale: int  # compute_mt guest: 4 threads x 2.5M iterations per unit
    syscalls: int          # getppid calls
    map_mb: int            # memtouch: mapped
    touch_mb: int          # memtouch: touched
    nproc: int             # spawner: processes
    nthreads: int          # spawner: threads per process
    preempt_scale: float   # bench_preempt loop lengths
    maps: int              # limits maps: mmap + mprotect pairs (and twice as many)


FULL = Profile("full", 3, 4, 2, 1_000_000, 1024, 256, 200, 5, 1.0, 750)
QUICK = Profile("quick", 1, 1, 1, 200_000, 256, 32, 40, 5, 0.1, 150)


@dataclass
class Check:
    """One target: `metric op target` (op is '>=' or '<=')."""

    metric: str
    op: str
    target: float
    ok: bool = False


@dataclass
class Result:
    """What one benchmark measured: named numbers, their units, and the targets they face."""

    name: str
    title: str
    metrics: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, metric: str, value: float, unit: str = "") -> float:
        self.metrics[metric] = value
        self.units[metric] = unit
        return value

    def target(self, metric: str, op: str, target: float) -> None:
        value = self.metrics[metric]
        ok = value >= target if op == ">=" else value <= target
        self.checks.append(Check(metric, op, target, ok))

    def to_json(self) -> dict:
        return {
            "title": self.title, "seconds": round(self.seconds, 3),
            "metrics": self.metrics, "units": self.units,
            "targets": [{"metric": c.metric, "op": c.op, "target": c.target, "ok": c.ok}
                        for c in self.checks],
            "notes": self.notes,
        }


class Guests:
    """A temporary guest root holding bundled guests (built on demand, cached)."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="vkckpt-bench-"))
        self.root = self.base / "root"
        self.root.mkdir()
        (self.root / "work").mkdir()
        self.artifacts: dict[str, Path] = {}  # images one benchmark leaves for another

    def add(self, name: str) -> str:
        dst = self.root / name
        if not dst.exists():
            shutil.copy2(guest_path(name), dst)
        return f"/{name}"

    def path(self, name: str) -> Path:
        return self.base / name

    def cleanup(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


class Console:
    """Collects a guest's output; `lines` counts complete lines seen so far."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.lines = 0

    def __call__(self, data: bytes) -> None:
        self.chunks.append(bytes(data))
        self.lines += data.count(b"\n")

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")


def config(g: Guests, name: str, args: list[str], out: Console, **kw: object) -> KernelConfig:
    prog = g.add(name)
    return KernelConfig(root=str(g.root), stdout=out, stderr=out, log=lambda s: None,
                        processes=[ProcessSpec(prog, [name, *args])], **kw)


def timed_run(g: Guests, name: str, args: list[str], **kw: object) -> tuple[float, str, VKernel]:
    """Boot and run a guest to completion; (seconds of k.run, output, kernel)."""
    out = Console()
    k = boot(config(g, name, args, out, **kw))
    t0 = time.perf_counter()
    status = k.run()
    secs = time.perf_counter() - t0
    k.shutdown()
    if status != 0:
        raise RuntimeError(f"{name} {args} exited with status {status}: {out.text[-500:]}")
    return secs, out.text, k


def run_until_lines(k: VKernel, out: Console, n: int) -> None:
    """Run k to the first scheduling point after its output has n complete lines."""
    status = k.run(on_schedule_point=lambda _k: out.lines >= n)
    if status is not None:
        raise RuntimeError(f"guest ended (status {status}) before printing {n} lines: "
                           f"{out.text[-500:]}")


def median_pair(repeat: int, a: Callable[[], float], b: Callable[[], float]
                ) -> tuple[float, float]:
    """Medians of a() and b(), interleaved so drift in host speed hits both alike."""
    ta, tb = [], []
    for _ in range(repeat):
        ta.append(a())
        tb.append(b())
    return statistics.median(ta), statistics.median(tb)


def memory_status() -> dict[str, int]:
    """VmRSS, VmHWM and VmSize of this process in bytes (Linux)."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "VmSize"):
                    out[key] = int(rest.split()[0]) * 1024
    except OSError:
        out["VmHWM"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def mb(nbytes: float) -> float:
    return nbytes / 1e6


def cpu_count() -> int:
    return os.cpu_count() or 1
