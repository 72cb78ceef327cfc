"""Run regression cases (each in its own directory) and collect their results.

A case's kind (kinds/) runs it on a Trial (trial.py): golden runs in this process, thaws in
fresh host processes.  With --jobs, cases run in parallel worker processes.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vkckpt.guests.build import guest_path
from vkckpt.regress.cases import Case
from vkckpt.regress.kinds import KINDS
from vkckpt.regress.trial import CaseFailed, Trial, sink
from vkckpt.testing import fault


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
        """The case passed."""
        return self.result == "pass"


def _logger(verbose: bool) -> Callable[[str], None]:
    """The per-case log: stderr with --verbose, else nowhere."""
    if not verbose:
        return sink

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
        KINDS[case.kind](trial)
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
    """Where a case works under the suite's directory."""
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
              bisect: bool = True, progress: Callable[[str], None] = sink,
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
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx,
                                 initializer=fault.install_from_env) as pool:
            futs = {pool.submit(run_case, *a): a[0] for a in args}
            for f in as_completed(futs):
                done(f.result())
    return [results[c.name] for c in cases]
