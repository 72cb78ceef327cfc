"""The central oracle: a run frozen at any point and thawed finishes like the run never frozen.

Used by the pytest suite and by `vkckpt regress`.  A *workload* is a guest program with
arguments; every function here is deterministic for a given workload, quantum and seed.
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.ckpt.snapshot import write_image
from vkckpt.kernel import VKernel
from vkckpt.runner import boot
from vkckpt.testing.outcome import Outcome
from vkckpt.testing.workload import Workload


def run_noting(k: VKernel, until: int | None = None) -> tuple[int | None, list[int]]:
    """Run k (to the end or to until), noting the tick of every scheduling point it passes."""
    points: list[int] = []

    def note(k: VKernel) -> bool:
        if not points or points[-1] != k.sched.ticks:
            points.append(k.sched.ticks)
        return False

    return k.run(until_ticks=until, on_schedule_point=note), points


def points_where(wl: Workload, root: Path, cond: Callable[[VKernel], bool]) -> list[int]:
    """The ticks of the scheduling points of a run of wl at which cond(kernel) holds (where a
    freeze would catch that state)."""
    k = boot(wl.config(root, []))
    hits: list[int] = []

    def note(k: VKernel) -> bool:
        if cond(k) and (not hits or hits[-1] != k.sched.ticks):
            hits.append(k.sched.ticks)
        return False

    k.run(on_schedule_point=note)
    k.shutdown()
    return hits


def golden(wl: Workload, root: Path) -> Outcome:
    """The uninterrupted run (stdout and stderr interleaved in Outcome.stdout)."""
    out: list[bytes] = []
    k = boot(wl.config(root, out))
    status, points = run_noting(k)
    return Outcome(b"".join(out), b"", status, k.sched.ticks, dict(k.statuses), points)


def freeze_points(gold: Outcome, k: int, seed: int, below: float = 1.0) -> list[int]:
    """Up to k scheduling points of the golden run (where freezes land) in its first `below`
    fraction, chosen from seed."""
    inside = [p for p in gold.points if 0 < p < gold.ticks and p < gold.ticks * below]
    rng = random.Random(seed)
    return sorted(rng.sample(inside, min(k, len(inside))))


def run_until(wl: Workload, root: Path, at: int) -> tuple[VKernel, list[bytes], int | None]:
    """Run to the first scheduling point at or after tick `at`."""
    out: list[bytes] = []
    k = boot(wl.config(root, out))
    return k, out, k.run(until_ticks=at)


def image_at(wl: Workload, root: Path, at: int, image: Path) -> Path:
    """Run wl in root to the first scheduling point at or after tick `at` and freeze it into
    image (a seed for crafted images); the vkernel is shut down."""
    k, _, _ = run_until(wl, root, at)
    write_image(k, str(image))
    k.shutdown()
    return image


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


def image_records(path: Path, kinds: tuple[str, ...] | None = None) -> list[tuple[str, dict]]:
    """(type, fields) of the image's records, pages left out; only `kinds` when given."""
    from vkckpt.ckpt.schema import RECORD_VERSIONS
    from vkckpt.image import ImageReader

    with ImageReader(str(path)) as r:
        return [(rec.type, rec.fields) for rec in r.records(RECORD_VERSIONS, skip_pages=True)
                if kinds is None or rec.type in kinds]


def thaw_refreeze_finish(image: Path, root: Path, before: list[bytes], gold: Outcome,
                         check: Callable[[VKernel], None] | None = None,
                         kinds: tuple[str, ...] | None = None) -> None:
    """Thaw image here, `check` the thawed vkernel, freeze it again (its records of `kinds`
    must equal the image's) and run it to the end: with `before`, the output, status, ticks
    and statuses of the golden run."""
    after: list[bytes] = []
    k = thaw_in_process(image, after, root)
    try:
        if check is not None:
            check(k)
        again = image.with_name(image.stem + "-again.img")
        write_image(k, str(again))
        if image_records(again, kinds) != image_records(image, kinds):
            raise AssertionError("freeze -> thaw -> freeze differs")
        status = k.run()
        if b"".join(before) + b"".join(after) != gold.output:
            raise AssertionError(f"output differs from the golden run after {image.name}")
        got = (status, k.sched.ticks, k.statuses)
        if got != (gold.status, gold.ticks, gold.statuses):
            raise AssertionError(f"(status, ticks, statuses) {got} != the golden run's")
    finally:
        k.shutdown()


def thaw_child(image: Path, root: Path, *extra: str, sigthaw: bool = False,
               stdin: int | None = None, timeout: float = 600
               ) -> tuple[subprocess.CompletedProcess[bytes], dict | None]:
    """`vkckpt thaw IMAGE --stats` in a fresh host process: the finished process and its
    stats (status, ticks, statuses; None when it wrote none).  Raises TimeoutExpired."""
    with tempfile.TemporaryDirectory(prefix="vkckpt-stats-") as tmp:  # never beside the
        stats = Path(tmp) / "stats.yaml"  # image: a fixture's directory stays clean
        cmd = [sys.executable, "-m", "vkckpt", "thaw", str(image), "--root", str(root),
               "--no-control", "--stats", str(stats), *extra]
        if not sigthaw:
            cmd.append("--no-sigthaw")
        p = subprocess.run(cmd, capture_output=True, stdin=stdin, timeout=timeout)
        return p, (yaml.safe_load(stats.read_text()) if stats.exists() else None)


def thaw_in_new_process(image: Path, root: Path, *extra: str) -> Outcome:
    """thaw_child's outcome; AssertionError when the thaw failed."""
    p, st = thaw_child(image, root, *extra)
    if st is None:
        raise AssertionError(f"thaw failed ({p.returncode}): {p.stderr.decode()[-2000:]}")
    return Outcome(p.stdout, p.stderr, st["status"], st["ticks"], st["statuses"])
