"""`vkckpt regress --cluster`: the suite's cases spread over a Dask cluster (cluster.py).

A case travels as its Case record plus the bytes of any host file it names (a fixture's image
and its expected outcome), so a worker needs no filesystem shared with the client: it runs
the case in a temporary directory of its own (building the guests it needs, cached), removes
the directory when the case passes and keeps it, named in the result, when it does not.
Results come back in case order, so the report is the serial one.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

from vkckpt.cluster import ClusterSpec, open_cluster
from vkckpt.regress.cases import Case
from vkckpt.regress.run import CaseResult, run_case
from vkckpt.testing import fault

#: A fixture image shipped to a worker is at most this big (they are a few MiB).
MAX_FIXTURE = 256 << 20


def case_files(case: Case) -> dict[str, bytes]:
    """The host files case names, by file name: a fixture's image and expected outcome."""
    if case.kind != "fixture":
        return {}
    image = Path(case.image)
    files = {}
    for p in (image, image.with_name(f"{image.stem}.expected.yaml")):
        if p.stat().st_size > MAX_FIXTURE:
            raise ValueError(f"{p}: a fixture over {MAX_FIXTURE >> 20} MiB")
        files[p.name] = p.read_bytes()
    return files


def run_shipped(case: Case, files: dict[str, bytes], seed: int, bisect: bool,
                verbose: bool) -> CaseResult:
    """run_case on a worker, in a temporary directory of its own holding files (never
    raises: a crash is the case's error result)."""
    fault.install_from_env()
    top = Path(tempfile.mkdtemp(prefix="vkckpt-regress-case-"))
    if files:
        (top / "files").mkdir()
        for name, data in files.items():
            (top / "files" / Path(name).name).write_bytes(data)
        case = dataclasses.replace(case, image=str(top / "files" / Path(case.image).name))
    r = run_case(case, str(top / "case"), seed, bisect, verbose)
    if r.ok:
        shutil.rmtree(top, ignore_errors=True)
        r.workdir = ""
    else:
        r.workdir = f"{socket.gethostname()}:{r.workdir}"
    return r


def run_on_cluster(cases: list[Case], spec: ClusterSpec, *, seed: int, bisect: bool,
                   verbose: bool, progress: Callable[[str], None]) -> list[CaseResult]:
    """Every case on the cluster spec names; results in case order."""
    calls = [(c, case_files(c), seed, bisect, verbose) for c in cases]
    with open_cluster(spec, progress) as engine:
        return engine.map(run_shipped, calls, [c.name for c in cases],
                          done=lambda i, r: f"{r.result} ({r.seconds:.1f} s)")
