"""One regression case being run: its directory, guest root, golden run and findings.

Every case works in its own directory with one guest root at a fixed host path.  The root's
path is part of a vkernel's state (and files in it are), so the root is saved at the moments
that matter (boot, freeze) and put back before each run that must start from there: golden
and thawed runs then see the same path and the same files, and their state digests compare.
The kinds of case (kinds/) are built from the steps here.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vkckpt.ckpt.chain import ImageChain
from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.guests.build import guest_path
from vkckpt.kernel import VKernel
from vkckpt.regress import bisect as B
from vkckpt.regress.cases import HOST_METADATA, Case
from vkckpt.runner import boot
from vkckpt.testing.digest import state_digest
from vkckpt.testing.oracle import freeze_points, run_noting, thaw_child
from vkckpt.testing.outcome import Outcome

CHILD_TIMEOUT = 300  # seconds; runs are bounded in ticks too (see Trial.child)


def sink(_: str) -> None:
    """A log that drops everything."""


class CaseFailed(Exception):
    """A check that makes the rest of the case meaningless failed."""


class Root:
    """A guest root at a fixed path whose contents can be saved and put back by tag."""

    def __init__(self, path: Path, guests: tuple[str, ...]) -> None:
        self.path = path
        (path / "work").mkdir(parents=True)
        for n in guests:
            shutil.copy2(guest_path(n), path / n)
        self.save("boot")

    def _snap(self, tag: str) -> Path:
        return self.path.with_name(f"{self.path.name}.{tag}")

    def save(self, tag: str) -> None:
        """Keep the root's contents under tag (replacing what tag held)."""
        snap = self._snap(tag)
        if snap.exists():
            shutil.rmtree(snap)
        shutil.copytree(self.path, snap, symlinks=True)

    def restore(self, tag: str) -> None:
        """Put back the contents saved under tag."""
        shutil.rmtree(self.path)
        shutil.copytree(self._snap(tag), self.path, symlinks=True)


@dataclass
class Live:
    """A kernel in this process and what its guests printed so far."""

    k: VKernel
    out: list[bytes]
    err: list[bytes]
    status: int | None = None

    def printed(self) -> tuple[bytes, bytes]:
        """(stdout, stderr) so far."""
        return b"".join(self.out), b"".join(self.err)

    def outcome(self) -> Outcome:
        """How the run stands now."""
        return Outcome(*self.printed(), self.status, self.k.sched.ticks, dict(self.k.statuses))


class Trial:
    """One case being run: its directory, root, golden run and findings."""

    def __init__(self, case: Case, workdir: Path, seed: int, bisect: bool,
                 log: Callable[[str], None]) -> None:
        self.case, self.dir, self.seed, self.do_bisect, self.log = case, workdir, seed, bisect, log
        self.problems: list[str] = []
        self.report = ""
        self.points = 0
        self.wl = case.workload
        self.memory = self.wl is None or self.wl.name not in HOST_METADATA
        self.root = Root(workdir / "root", case.guests)
        self._gold: Outcome | None = None

    # -- runs in this process ------------------------------------------------------------------

    def boot(self, until: int | None = None) -> Live:
        """A fresh golden kernel (root as at boot), run to the first point >= until."""
        self.root.restore("boot")
        out: list[bytes] = []
        err: list[bytes] = []
        live = Live(boot(self.wl.config(self.root.path, out, err, stdin=b"", log=sink)),
                    out, err)
        if until is not None:
            live.status = live.k.run(until_ticks=until)
        return live

    def thaw(self, image: Path, snap: str, until: int | None = None,
             chain: ImageChain | None = None) -> Live:
        """The image thawed in this process (root as saved under snap), run to until;
        chain: extended with the image, for incremental freezes on top of it."""
        self.root.restore(snap)
        out: list[bytes] = []
        err: list[bytes] = []
        k = thaw(str(image), ThawOptions(root=str(self.root.path), stdout=out.append,
                                         stderr=err.append, stdin=b"", deliver_sigthaw=False),
                 chain=chain)
        k.log = sink
        live = Live(k, out, err, k.exit_status)
        if until is not None and live.status is None:
            live.status = k.run(until_ticks=until)
        return live

    def golden(self) -> Outcome:
        """The uninterrupted run, with the tick of each of its scheduling points (cached)."""
        if self._gold is None:
            live = self.boot()
            live.status, points = run_noting(live.k)
            self._gold = live.outcome()
            self._gold.points = points
            live.k.shutdown()
        return self._gold

    def digest(self, k: VKernel) -> str:
        """k's state digest (pages left out for HOST_METADATA workloads)."""
        return state_digest(k, self.dir, memory=self.memory)

    def freeze_points(self, k: int, below: float = 1.0) -> list[int]:
        """Up to k golden scheduling points in the run's first `below` (from the seed)."""
        return freeze_points(self.golden(), k, self.seed, below)

    def later_point(self, tick: int, points: list[int], end: int) -> int | None:
        """A scheduling point after tick (chosen from the seed) for the digest check."""
        later = [p for p in points if tick < p < end]
        if not later:
            return None
        return random.Random(f"{self.seed}:{self.case.name}:{tick}").choice(later)

    # -- thaws in fresh host processes -----------------------------------------------------------

    def child(self, image: Path, *extra: str, sigthaw: bool = False,
              root: Path | None = None, limit: int | None = None) -> Outcome:
        """`vkckpt thaw IMAGE --stats` in a new host process (VKCKPT_TEST_FAULT inherited).
        A run to the end is stopped (frozen) at tick `limit` (default: twice the golden run's
        ticks), so a thawed run that goes astray ends as "still running" instead of hanging."""
        if not extra:
            if limit is None:
                limit = 2 * self.golden().ticks + 100 * self.wl.quantum
            extra = ("--freeze-at", str(limit), "-o", str(image.with_suffix(".overrun.img")))
        try:
            p, st = thaw_child(image, root or self.root.path, *extra, sigthaw=sigthaw,
                               stdin=subprocess.DEVNULL, timeout=CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise CaseFailed(f"`vkckpt thaw {image.name}` did not finish in {CHILD_TIMEOUT} s"
                             ) from None
        if st is None:
            raise CaseFailed(f"`vkckpt thaw {image.name}` failed (exit {p.returncode}): "
                             f"{p.stderr.decode(errors='replace').strip()[-1500:]}")
        err = b"".join(ln for ln in p.stderr.splitlines(keepends=True)
                       if not ln.startswith(b"vkckpt: "))
        return Outcome(p.stdout, err, st["status"], st["ticks"],
                       {int(a): int(b) for a, b in (st["statuses"] or {}).items()})

    # -- findings --------------------------------------------------------------------------------

    def fail(self, msg: str) -> None:
        """Record a problem (the case goes on)."""
        self.log(f"{self.case.name}: {msg}")
        self.problems.append(msg)

    def bisect(self, what: str, probe: B.Probe) -> None:
        """Bisect the first divergence of the case (later ones are only listed)."""
        if not self.do_bisect or self.report:
            return
        self.log(f"{self.case.name}: bisecting {what}")
        probe.log = lambda s: self.log(f"{self.case.name}: {s}")
        res = B.bisect(probe)
        self.report = f"{what}\n{res.text()}"

    def probe(self, image: Path, snap: str, tick: int, known_bad: int | None,
              golden_at: B.Runner | None = None, points: list[int] | None = None) -> B.Probe:
        """How to rebuild the golden run (default: a fresh boot) and the thaw of image."""
        def thawed_at(q: int) -> tuple[VKernel, int | None]:
            live = self.thaw(image, snap, q)
            return live.k, live.status

        def default_golden(q: int) -> tuple[VKernel, int | None]:
            live = self.boot(q)
            return live.k, live.status

        if points is None:
            points = self.golden().points
        return B.Probe(golden_at or default_golden, thawed_at, [p for p in points if p >= tick],
                       self.dir / "bisect", self.memory, known_bad)
