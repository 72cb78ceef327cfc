"""The central oracle: a run frozen at any point and thawed finishes like the run never frozen.

Used by the pytest suite and by `vkckpt regress`.  A *workload* is a guest program with
arguments; every function here is deterministic for a given workload, quantum and seed.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.ckpt.snapshot import write_image
from vkckpt.config import KernelConfig, ProcessSpec
from vkckpt.guests.build import guest_path
from vkckpt.kernel import VKernel
from vkckpt.runner import boot


@dataclass(frozen=True)
class Workload:
    """A bundled guest run as pid 1 with arguments (cwd is the guest root)."""

    name: str
    args: tuple[str, ...] = ()
    quantum: int = 997  # small slices: many distinct scheduling (freeze) points
    env: tuple[tuple[str, str], ...] = ()

    def config(self, root: Path, out: list[bytes]) -> KernelConfig:
        return KernelConfig(root=str(root), quantum=self.quantum, stdout=out.append,
                            stderr=out.append,
                            processes=[ProcessSpec(f"/{self.name}", [self.name, *self.args],
                                                   dict(self.env))])


@dataclass
class Outcome:
    """How a run ended: everything the oracle compares."""

    output: bytes
    status: int | None
    ticks: int
    statuses: dict[int, int] = field(default_factory=dict)
    points: list[int] = field(default_factory=list)  # ticks at every scheduling point

    def same_as(self, other: Outcome) -> list[str]:
        """Names of what differs (empty when identical)."""
        diffs = []
        if self.output != other.output:
            diffs.append("output")
        if self.status != other.status:
            diffs.append(f"status {self.status} != {other.status}")
        if self.ticks != other.ticks:
            diffs.append(f"ticks {self.ticks} != {other.ticks}")
        if self.statuses != other.statuses:
            diffs.append("process statuses")
        return diffs


def make_root(base: Path, names: list[str]) -> Path:
    """A fresh guest root holding the named guests and an empty /work directory."""
    root = Path(tempfile.mkdtemp(prefix="root-", dir=base))
    (root / "work").mkdir()
    for n in names:
        shutil.copy2(guest_path(n), root / n)
    return root


def golden(wl: Workload, root: Path) -> Outcome:
    """The uninterrupted run."""
    out: list[bytes] = []
    k = boot(wl.config(root, out))
    points: list[int] = []

    def note() -> bool:
        if not points or points[-1] != k.sched.ticks:
            points.append(k.sched.ticks)
        return False

    status = k.run(stop_when=note)
    return Outcome(b"".join(out), status, k.sched.ticks, dict(k.statuses), points)


def freeze_points(gold: Outcome, k: int, seed: int) -> list[int]:
    """Up to k scheduling points of the golden run (where freezes land), chosen from seed."""
    inside = [p for p in gold.points if 0 < p < gold.ticks]
    rng = random.Random(seed)
    return sorted(rng.sample(inside, min(k, len(inside))))


def run_until(wl: Workload, root: Path, at: int) -> tuple[VKernel, list[bytes], int | None]:
    """Run to the first scheduling point at or after tick `at`."""
    out: list[bytes] = []
    k = boot(wl.config(root, out))
    return k, out, k.run(until_ticks=at)


def state_digest(k: VKernel, tmp: Path) -> str:
    """SHA-256 of a full image of k: registers, memory, files, signals, scheduler, clock."""
    path = tmp / f"digest-{os.getpid()}-{id(k)}.img"
    write_image(k, str(path))  # no chain: k's own images are untouched
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.unlink()
    return digest


def thaw_in_process(image: Path, stdout: list[bytes], root: Path | None = None) -> VKernel:
    """Thaw image here (in root: needed when the image lies inside it, see ckpt/trust.py)."""
    return thaw(str(image), ThawOptions(root=None if root is None else str(root),
                                        stdout=stdout.append, stderr=stdout.append,
                                        deliver_sigthaw=False))


def frozen_and_thawed_here(wl: Workload, root: Path, at: int
                           ) -> tuple[list[bytes], list[bytes], VKernel]:
    """Run wl in root to tick `at`, freeze it into root/x.img and thaw that in this process:
    (the output before the freeze, the thawed run's output list, the thawed vkernel)."""
    k, before, status = run_until(wl, root, at)
    if status is not None:
        raise AssertionError(f"{wl.name} ended before tick {at}")
    image = root / "x.img"
    write_image(k, str(image))
    k.shutdown()
    after: list[bytes] = []
    return before, after, thaw_in_process(image, after, root)


def thaw_in_new_process(image: Path, root: Path, *extra: str) -> Outcome:
    """`vkckpt thaw IMAGE` in a fresh host process; its stats come back through --stats."""
    stats = image.with_suffix(".stats.yaml")
    p = subprocess.run([sys.executable, "-m", "vkckpt", "thaw", str(image), "--root", str(root),
                        "--no-control", "--no-sigthaw", "--stats", str(stats), *extra],
                       capture_output=True, timeout=600)
    if not stats.exists():
        raise AssertionError(f"thaw failed ({p.returncode}): {p.stderr.decode()[-2000:]}")
    st = yaml.safe_load(stats.read_text())
    return Outcome(p.stdout + p.stderr, st["status"], st["ticks"], st["statuses"])
