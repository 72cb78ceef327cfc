"""Run regression cases: golden runs in this process, thaws in fresh host processes.

Every case works in its own directory with one guest root at a fixed host path.  The root's
path is part of a vkernel's state (and files in it are), so the root is saved at the moments
that matter (boot, freeze) and put back before each run that must start from there: golden
and thawed runs then see the same path and the same files, and their state digests compare.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vkckpt.ckpt.chain import ImageChain
from vkckpt.ckpt.freeze import FreezePlan, drive, freeze
from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.ckpt.snapshot import write_image
from vkckpt.config import KernelConfig, ProcessSpec
from vkckpt.guests.build import guest_path
from vkckpt.kernel import VKernel
from vkckpt.regress import bisect as B
from vkckpt.regress.cases import HOST_METADATA, Case
from vkckpt.runner import boot
from vkckpt.testing.oracle import Outcome as OracleOutcome
from vkckpt.testing.oracle import Workload, freeze_points

CHILD_TIMEOUT = 300  # seconds; runs are bounded in ticks too (see Trial.child)


def _sink(_: str) -> None:
    pass


class CaseFailed(Exception):
    """A check that makes the rest of the case meaningless failed."""


@dataclass
class Outcome:
    """How a run (or the part of it after a thaw) ended."""

    stdout: bytes
    stderr: bytes
    status: int | None
    ticks: int
    statuses: dict[int, int] = field(default_factory=dict)

    def diffs(self, want: Outcome, *, ticks: bool = True) -> list[str]:
        """What differs from want, in words (empty when identical)."""
        out = []
        for name in ("stdout", "stderr"):
            a, b = getattr(want, name), getattr(self, name)
            if a != b:
                out.append(f"{name} differs: {_first_line_diff(a, b)}")
        if self.status != want.status:
            out.append(f"exit status {_st(self.status)}, golden {_st(want.status)}")
        if ticks and self.ticks != want.ticks:
            out.append(f"ticks {self.ticks}, golden {want.ticks}")
        if self.statuses != want.statuses:
            out.append(f"process statuses {self.statuses}, golden {want.statuses}")
        return out


def _st(s: int | None) -> str:
    return "none (stopped)" if s is None else f"{s:#x}"


def _first_line_diff(want: bytes, got: bytes) -> str:
    a, b = want.splitlines(keepends=True), got.splitlines(keepends=True)
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"line {i + 1}: golden {x!r}, thawed {y!r}"
    if len(a) != len(b):
        i = min(len(a), len(b))
        extra = (a if len(a) > len(b) else b)[i]
        return (f"{'golden' if len(a) > len(b) else 'thawed'} has {abs(len(a) - len(b))} more "
                f"line(s), from line {i + 1}: {extra!r}")
    return "(same lines, different bytes)"


@dataclass
class CaseResult:
    """What one case found (picklable: it comes back from worker processes)."""

    name: str
    kind: str
    points: int
    result: str                  # pass, fail or error
    seconds: float
    problems: list[str] = field(default_factory=list)
    report: str = ""             # the bisect report of the first divergence
    workdir: str = ""

    @property
    def ok(self) -> bool:
        return self.result == "pass"


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
        snap = self._snap(tag)
        if snap.exists():
            shutil.rmtree(snap)
        shutil.copytree(self.path, snap, symlinks=True)

    def restore(self, tag: str) -> None:
        shutil.rmtree(self.path)
        shutil.copytree(self._snap(tag), self.path, symlinks=True)


@dataclass
class Live:
    """A kernel in this process and what its guests printed so far."""

    k: VKernel
    out: list[bytes]
    err: list[bytes]
    status: int | None = None

    def outcome(self) -> Outcome:
        return Outcome(b"".join(self.out), b"".join(self.err), self.status, self.k.sched.ticks,
                       dict(self.k.statuses))


def _config(wl: Workload, root: Path, out: list[bytes], err: list[bytes]) -> KernelConfig:
    """The workload's vkernel (as oracle.Workload.config, with stdout and stderr apart)."""
    return KernelConfig(root=str(root), quantum=wl.quantum, stdout=out.append,
                        stderr=err.append, stdin=b"", log=_sink,
                        processes=[ProcessSpec(f"/{wl.name}", [wl.name, *wl.args],
                                               dict(wl.env))])


def run_noting(k: VKernel, until: int | None = None) -> tuple[int | None, list[int]]:
    """Run k (to the end or to until), noting the tick of every scheduling point."""
    points: list[int] = []

    def note() -> bool:
        if not points or points[-1] != k.sched.ticks:
            points.append(k.sched.ticks)
        return False

    return k.run(until_ticks=until, stop_when=note), points


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
        self._gold: tuple[Outcome, list[int]] | None = None

    # -- runs in this process ------------------------------------------------------------------

    def boot(self, until: int | None = None) -> Live:
        """A fresh golden kernel (root as at boot), run to the first point >= until."""
        self.root.restore("boot")
        out: list[bytes] = []
        err: list[bytes] = []
        live = Live(boot(_config(self.wl, self.root.path, out, err)), out, err)
        if until is not None:
            live.status = live.k.run(until_ticks=until)
        return live

    def thaw(self, image: Path, snap: str, until: int | None = None,
             chain: ImageChain | None = None) -> Live:
        """The image thawed in this process (root as saved under snap), run to until."""
        self.root.restore(snap)
        out: list[bytes] = []
        err: list[bytes] = []
        k = thaw(str(image), ThawOptions(root=str(self.root.path), stdout=out.append,
                                         stderr=err.append, stdin=b"", deliver_sigthaw=False),
                 chain=chain)
        k.log = _sink
        live = Live(k, out, err, k.exit_status)
        if until is not None and live.status is None:
            live.status = k.run(until_ticks=until)
        return live

    def golden(self) -> tuple[Outcome, list[int]]:
        """The uninterrupted run and the tick of each of its scheduling points (cached)."""
        if self._gold is None:
            live = self.boot()
            live.status, points = run_noting(live.k)
            self._gold = (live.outcome(), points)
            live.k.shutdown()
        return self._gold

    def digest(self, k: VKernel) -> str:
        return B.state_digest(k, self.dir, memory=self.memory)

    def freeze_points(self, k: int, below: float = 1.0) -> list[int]:
        gold, points = self.golden()
        inside = [p for p in points if p < gold.ticks * below]
        return freeze_points(OracleOutcome(b"", gold.status, gold.ticks, {}, inside), k,
                             self.seed)

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
        stats = image.with_suffix(".stats.yaml")
        stats.unlink(missing_ok=True)
        if not extra:
            if limit is None:
                gold = self.golden()[0]
                limit = 2 * gold.ticks + 100 * self.wl.quantum
            extra = ("--freeze-at", str(limit), "-o", str(image.with_suffix(".overrun.img")))
        cmd = [sys.executable, "-m", "vkckpt", "thaw", str(image), "--root",
               str(root or self.root.path), "--no-control", "--stats", str(stats), *extra]
        if not sigthaw:
            cmd.append("--no-sigthaw")
        try:
            p = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL,
                               timeout=CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise CaseFailed(f"`vkckpt thaw {image.name}` did not finish in {CHILD_TIMEOUT} s"
                             ) from None
        if not stats.exists():
            raise CaseFailed(f"`vkckpt thaw {image.name}` failed (exit {p.returncode}): "
                             f"{p.stderr.decode(errors='replace').strip()[-1500:]}")
        st = yaml.safe_load(stats.read_text())
        err = b"".join(ln for ln in p.stderr.splitlines(keepends=True)
                       if not ln.startswith(b"vkckpt: "))
        return Outcome(p.stdout, err, st["status"], st["ticks"],
                       {int(a): int(b) for a, b in (st["statuses"] or {}).items()})

    # -- findings --------------------------------------------------------------------------------

    def fail(self, msg: str) -> None:
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
        def thawed_at(q: int) -> tuple[VKernel, int | None]:
            live = self.thaw(image, snap, q)
            return live.k, live.status

        def default_golden(q: int) -> tuple[VKernel, int | None]:
            live = self.boot(q)
            return live.k, live.status

        if points is None:
            points = self.golden()[1]
        return B.Probe(golden_at or default_golden, thawed_at, [p for p in points if p >= tick],
                       self.dir / "bisect", self.memory, known_bad)

    # -- the check every frozen image gets ---------------------------------------------------------

    def check_image(self, image: Path, live: Live, label: str) -> None:
        """live: the kernel frozen into image, still at the freeze point.  Compares, against
        the golden run: the state right after an in-process thaw and at a later scheduling
        point (digests), and the end of a thaw in a fresh host process (output, statuses,
        ticks)."""
        gold, points = self.golden()
        tick = live.k.sched.ticks
        before_out, before_err = b"".join(live.out), b"".join(live.err)
        self.root.save("frozen")
        later = self.later_point(tick, points, gold.ticks)
        want_now = self.digest(live.k)
        want_later = None
        if later is not None:
            if live.k.run(until_ticks=later) is None:
                want_later = self.digest(live.k)
        live.k.shutdown()
        bad_tick = None
        got = self.thaw(image, "frozen")
        if self.digest(got.k) != want_now:
            self.fail(f"{label}: state right after the thaw differs from the frozen state "
                      f"(tick {tick})")
            bad_tick = tick
        if later is not None and want_later is not None:
            got.status = got.k.run(until_ticks=later)
            if got.status is not None or self.digest(got.k) != want_later:
                self.fail(f"{label}: state digest at tick {later} differs from the golden run")
                bad_tick = bad_tick or later
        got.k.shutdown()
        self.root.restore("frozen")
        end = self.child(image)
        whole = Outcome(before_out + end.stdout, before_err + end.stderr, end.status, end.ticks,
                        end.statuses)
        diffs = whole.diffs(gold)
        for d in diffs:
            self.fail(f"{label}: fresh-process thaw: {d}")
        if diffs or bad_tick is not None:
            self.bisect(f"{label} (frozen at tick {tick}) diverges",
                        self.probe(image, "frozen", tick, bad_tick))
        self.points += 1

    # -- kinds ------------------------------------------------------------------------------------

    def run_points(self) -> None:
        for at in self.freeze_points(self.case.points):
            live = self.boot(at)
            if live.status is not None:
                raise CaseFailed(f"the run ended before tick {at}")
            image = self.dir / f"at-{at}.img"
            write_image(live.k, str(image))
            self.log(f"{self.case.name}: frozen at tick {at}")
            self.check_image(image, live, f"freeze at {at}")

    def run_chain(self) -> None:
        """case.chain images: the first n-1 written by the run every `step` ticks (a full base
        image, then incremental ones), the last by a kernel thawed from the n-1st."""
        gold, _ = self.golden()
        n = self.case.chain - 1
        step = max(1, gold.ticks // (n + 1))
        live = self.boot()
        images: list[Path] = []
        chain = ImageChain()
        while len(images) < n:
            target = (len(images) + 1) * step
            if live.k.sched.ticks >= target:
                target = live.k.sched.ticks + 1
            live.status = live.k.run(until_ticks=target)
            if live.status is not None:
                break
            images.append(self.dir / f"chain.{len(images) + 1:04d}.img")
            write_image(live.k, str(images[-1]), chain=chain, incremental=len(images) > 1)
        if not images:
            raise CaseFailed("the run ended before the first image of the chain")
        if len(images) < n:
            self.fail(f"only {len(images)} of {n} chain images before the run ended")
        tick = live.k.sched.ticks
        self.log(f"{self.case.name}: chain of {len(images)}, last at tick {tick}")
        before = (b"".join(live.out), b"".join(live.err))
        self.check_image(images[-1], live, f"chain of {len(images)} (every {step} ticks)")
        self.points = len(images)
        if not self.problems:
            self._extend_chain(images, tick, before)

    def _extend_chain(self, images: list[Path], tick: int, before: tuple[bytes, bytes]) -> None:
        """A kernel thawed from the chain's last image freezes incrementally on top of it
        (its pages compared with what the thaw laid down); that image thaws to the end."""
        gold, points = self.golden()
        later = self.later_point(tick, points, gold.ticks)
        if later is None:
            return
        chain = ImageChain()
        live = self.thaw(images[-1], "frozen", later, chain)
        if live.status is not None:
            raise CaseFailed(f"the thawed chain ended before tick {later}")
        image = self.dir / f"chain.{len(images) + 1:04d}.img"
        write_image(live.k, str(image), chain=chain, incremental=True)
        got = self.digest(live.k)
        out, err = before[0] + b"".join(live.out), before[1] + b"".join(live.err)
        live.k.shutdown()
        self.root.save("extended")
        ref = self.boot(later)
        want = self.digest(ref.k)
        ref.k.shutdown()
        label = f"incremental image {image.name} of a thawed kernel (tick {later})"
        if got != want:
            self.fail(f"{label}: its state differs from the golden run's")
        self.root.restore("extended")
        end = self.child(image)
        diffs = Outcome(out + end.stdout, err + end.stderr, end.status, end.ticks,
                        end.statuses).diffs(gold)
        for d in diffs:
            self.fail(f"{label}: fresh-process thaw: {d}")
        if diffs:
            self.bisect(f"{label} diverges", self.probe(image, "extended", later, None))
        self.points += 1

    def run_iterated(self) -> None:
        gold, points = self.golden()
        pts = self.freeze_points(self.case.iters)
        if not pts:
            raise CaseFailed("no scheduling point inside the run")
        live = self.boot()
        want = {}
        for p in pts:  # the golden state at every freeze point
            if live.k.run(until_ticks=p) is not None:
                raise CaseFailed(f"the golden run ended before tick {p}")
            want[p] = self.digest(live.k)
        live.k.shutdown()
        live = self.boot(pts[0])
        images = [self.dir / f"iter-1-at-{pts[0]}.img"]
        write_image(live.k, str(images[0]))
        out, err = b"".join(live.out), b"".join(live.err)
        live.k.shutdown()
        self.root.save("iter-1")
        for i, p in enumerate(pts[1:], start=2):
            images.append(self.dir / f"iter-{i}-at-{p}.img")
            part = self.child(images[-2], "--freeze-at", str(p), "-o", str(images[-1]))
            out, err = out + part.stdout, err + part.stderr
            self.root.save(f"iter-{i}")
            self.points += 1
            if part.status is not None or part.ticks != p or not images[-1].exists():
                self.fail(f"thaw {i - 1} did not stop at the freeze at tick {p} (status "
                          f"{_st(part.status)}, tick {part.ticks})")
                self.bisect(f"the thaw of image {i - 1} (tick {pts[i - 2]}) goes astray",
                            self.probe(images[-2], f"iter-{i - 1}", pts[i - 2], p))
                return
            if B.image_digest(images[-1], memory=self.memory) != want[p]:
                self.fail(f"image {i} (frozen at tick {p} by a kernel thawed from image {i - 1})"
                          f" differs from the golden state at tick {p}")
                self.bisect(f"iteration {i - 1} (thawed at tick {pts[i - 2]}, frozen again at "
                            f"{p}) diverges", self.probe(images[-2], f"iter-{i - 1}", pts[i - 2],
                                                         p))
        self.root.restore(f"iter-{len(pts)}")
        end = self.child(images[-1])
        self.points += 1
        whole = Outcome(out + end.stdout, err + end.stderr, end.status, end.ticks, end.statuses)
        diffs = whole.diffs(gold)
        for d in diffs:
            self.fail(f"after {len(pts)} freeze/thaw iterations: {d}")
        if diffs:
            self.bisect(f"the last thaw (tick {pts[-1]}) diverges",
                        self.probe(images[-1], f"iter-{len(pts)}", pts[-1], None))

    def run_ckpt_signals(self) -> None:
        """SIGCKPT runs once before the freeze, SIGTHAW once after the thaw; without SIGTHAW
        the thaw finishes exactly as the frozen run continued."""
        gold, _ = self.golden()
        rounds = [ln for ln in gold.stdout.splitlines() if not ln.endswith(b" times")]
        counts = b"ckpt handler ran %d times\nthaw handler ran %d times\n"
        if not gold.stdout.endswith(counts % (0, 0)):
            raise CaseFailed(f"the golden run does not end with zero counts: {gold.stdout!r}")
        scratch = self.dir / "reference-scratch.img"
        # handlers print their counts at the end: freeze in the first 90 % of the run
        for at in self.freeze_points(self.case.points, below=0.9):
            live = self.boot(at)
            image = self.dir / f"at-{at}.img"
            freeze(live.k, str(image))
            tick = live.k.sched.ticks
            before = (b"".join(live.out), b"".join(live.err))
            self.root.save("frozen")
            live.status, rpoints = run_noting(live.k)
            ref = live.outcome()
            live.k.shutdown()
            label = f"freeze at {at} (after SIGCKPT: tick {tick})"
            if not ref.stdout.endswith(counts % (1, 0)):
                self.fail(f"{label}: the frozen run continued does not count one SIGCKPT: "
                          f"{ref.stdout[-60:]!r}")
            if [ln for ln in ref.stdout.splitlines() if not ln.endswith(b" times")] != rounds:
                self.fail(f"{label}: the SIGCKPT handler changed the work's output")

            def reference_at(q: int, at: int = at) -> tuple[VKernel, int | None]:
                r = self.boot(at)
                freeze(r.k, str(scratch))
                return r.k, r.k.run(until_ticks=q)

            later = self.later_point(tick, rpoints, ref.ticks)
            bad = None
            if later is not None:
                k, st = reference_at(later)
                want = self.digest(k) if st is None else None
                k.shutdown()
                got = self.thaw(image, "frozen", later)
                if want is not None and (got.status is not None or self.digest(got.k) != want):
                    self.fail(f"{label}: state digest at tick {later} differs from the frozen "
                              "run continued")
                    bad = later
                got.k.shutdown()
            self.root.restore("frozen")
            quiet = self.child(image)
            diffs = Outcome(before[0] + quiet.stdout, before[1] + quiet.stderr, quiet.status,
                            quiet.ticks, quiet.statuses).diffs(ref)
            for d in diffs:
                self.fail(f"{label}: thaw without SIGTHAW vs the frozen run continued: {d}")
            self.root.restore("frozen")
            loud = self.child(image, sigthaw=True)
            out = before[0] + loud.stdout
            if not out.endswith(counts % (1, 1)):
                self.fail(f"{label}: thaw with SIGTHAW does not count one SIGCKPT and one "
                          f"SIGTHAW: {out[-60:]!r}")
            if [ln for ln in out.splitlines() if not ln.endswith(b" times")] != rounds:
                self.fail(f"{label}: thaw with SIGTHAW changed the work's output")
            if loud.status != gold.status:
                self.fail(f"{label}: thaw with SIGTHAW exit status {_st(loud.status)}, "
                          f"golden {_st(gold.status)}")
            if diffs or bad is not None:
                self.bisect(f"{label} diverges from the frozen run continued",
                            self.probe(image, "frozen", tick, bad, reference_at, rpoints))
            self.points += 1

    def run_ckpt_self(self) -> None:
        """checkpoint(2): 0 in the checkpointing run, the caller's retval after the thaw."""
        mode = self.case.mode
        self.wl = Workload("ckpt_self", (mode, f"work/{mode}.img"), quantum=997)
        live = self.boot()
        live.status = drive(live.k, FreezePlan())
        run = live.outcome()
        live.k.shutdown()
        image = self.root.path / "work" / f"{mode}.img"
        if run.status != 0 or not image.exists():
            raise CaseFailed(f"the checkpointing run failed: status {_st(run.status)}, "
                             f"output {run.stdout!r}")
        kept = self.dir / f"{mode}.img"
        shutil.copy2(image, kept)
        self.root.save("frozen")
        lines = run.stdout.decode().splitlines()
        end = self.child(kept, limit=2 * run.ticks + 100_000)
        got = end.stdout.decode().splitlines()
        if mode == "self":
            acc = lines[0].split("acc=")[-1]
            want = [f"resumed from the image acc={acc}", lines[1]]
            if not lines[0].startswith("checkpointed acc=") or got != want:
                self.fail(f"thaw printed {got}, expected {want}")
            if end.status != 3 << 8:
                self.fail(f"thaw exit status {_st(end.status)}, expected 0x300 (3)")
        else:
            worker = [ln for ln in lines if ln.startswith("worker")]
            if "parent: checkpoint of the worker returned 0" not in lines:
                self.fail(f"the parent's checkpoint(2) failed: {lines}")
            if not got or got != worker[len(worker) - len(got):] or got[-1] != "worker done":
                self.fail(f"thaw printed {got}, expected the tail of {worker}")
            if end.status != 4 << 8:
                self.fail(f"thaw exit status {_st(end.status)}, expected 0x400 (4)")
        self.points = 1
        self._refreeze_identical(kept)

    def _refreeze_identical(self, image: Path) -> None:
        """Thawed and frozen again at once, the image's state must be unchanged."""
        st = B.load_state(image)
        scope = (st.recs.get("kernel", {}).get(None) or {}).get("scope")
        live = self.thaw(image, "frozen")
        again = self.dir / "refrozen.img"
        write_image(live.k, str(again), scope=scope)
        live.k.shutdown()
        findings = B.diff_states(st, B.load_state(again), labels=("image", "refrozen"))
        if findings:
            self.fail(f"thawed and frozen again, the image differs in {len(findings)} place(s)")
            self.report = "state that differs (image vs thawed and frozen again):\n" + \
                "\n".join(f"  {f.category}: {f.text}" for f in findings[:B.MAX_FINDINGS])

    def run_fixture(self) -> None:
        """An image of an older format version still thaws and finishes as it did."""
        image = Path(self.case.image)
        want = yaml.safe_load(image.with_name(f"{image.stem}.expected.yaml").read_text())
        end = self.child(image, root=self.root.path, limit=2 * want["ticks"] + 100_000)
        exp = Outcome(want["output"].encode(), b"", want["status"], want["ticks"],
                      {int(a): int(b) for a, b in want["statuses"].items()})
        for d in end.diffs(exp):
            self.fail(f"format {want.get('format')} image {image.name}: {d}")
        self.points = 1


RUNNERS = {"points": Trial.run_points, "iterated": Trial.run_iterated,
           "chain": Trial.run_chain, "ckpt-signals": Trial.run_ckpt_signals,
           "ckpt-self": Trial.run_ckpt_self, "fixture": Trial.run_fixture}


def _logger(verbose: bool) -> Callable[[str], None]:
    if not verbose:
        return _sink

    def log(s: str) -> None:
        print(f"vkckpt regress: {s}", file=sys.stderr, flush=True)
    return log


def run_case(case: Case, workdir: str, seed: int, bisect: bool = True,
             verbose: bool = False) -> CaseResult:
    """Run one case in workdir (created); never raises."""
    t0 = time.monotonic()
    d = Path(workdir)
    d.mkdir(parents=True, exist_ok=True)
    log = _logger(verbose)
    trial = None
    try:
        trial = Trial(case, d, seed, bisect, log)
        RUNNERS[case.kind](trial)
        result = "fail" if trial.problems else "pass"
        problems = trial.problems
    except CaseFailed as exc:
        result, problems = "fail", [*(trial.problems if trial else []), str(exc)]
    except Exception:  # a crash of the harness or of the kernel in this process
        result = "error"
        problems = [*(trial.problems if trial else []), traceback.format_exc().rstrip()]
    return CaseResult(case.name, case.kind, trial.points if trial else 0, result,
                      time.monotonic() - t0, problems, trial.report if trial else "",
                      str(d))


def case_dir(base: Path, case: Case) -> Path:
    return base / case.name.replace("/", "__")



def build_guests(cases: list[Case], jobs: int, log: Callable[[str], None]) -> None:
    """Build (or find cached) every guest the cases need, before fanning out."""
    from concurrent.futures import ThreadPoolExecutor

    from vkckpt.guests.build import zig_version
    names = sorted({g for c in cases for g in c.guests})
    if not names:
        return
    log(f"building {len(names)} guest program(s) (cached): {' '.join(names)}")
    zig_version()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(guest_path, names))


def run_suite(cases: list[Case], workdir: Path, *, seed: int, jobs: int = 1,
              bisect: bool = True, progress: Callable[[str], None] = _sink,
              verbose: bool = False) -> list[CaseResult]:
    """Run cases (in parallel host processes with jobs > 1); results in case order."""
    build_guests(cases, jobs, progress)
    results: dict[str, CaseResult] = {}
    total = len(cases)

    def done(r: CaseResult) -> None:
        results[r.name] = r
        progress(f"[{len(results)}/{total}] {r.name}: {r.result} ({r.seconds:.1f} s)")

    args = [(c, str(case_dir(workdir, c)), seed, bisect, verbose) for c in cases]
    if jobs <= 1:
        for a in args:
            progress(f"running {a[0].name}")
            done(run_case(*a))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = multiprocessing.get_context("spawn")  # fresh interpreters: nothing inherited
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futs = {pool.submit(run_case, *a): a[0] for a in args}
            for f in as_completed(futs):
                done(f.result())
    return [results[c.name] for c in cases]
