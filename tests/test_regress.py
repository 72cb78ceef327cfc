"""`vkckpt regress`: the quick profile passes (as CI runs it), and a planted restore bug
(VKCKPT_TEST_FAULT, inherited by the fresh thaw processes) is caught, bisected to the first
diverging scheduling point and explained: register, thread, instruction, memory range."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vkckpt.regress import bisect as B
from vkckpt.regress import cases as C
from vkckpt.regress.imagediff import diff_images
from vkckpt.regress.kinds import KINDS
from vkckpt.regress.trial import Trial
from vkckpt.testing.oracle import run_noting

DATA = Path(__file__).parent / "data"


def regress(*args: str, fault: str | None = None, timeout: float = 180
            ) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "VKCKPT_TEST_FAULT"}
    if fault:
        env["VKCKPT_TEST_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "vkckpt", "regress", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def _rows(table: str) -> dict[str, list[str]]:
    """case name -> the other columns of the results table."""
    rows = {}
    for line in table.splitlines():
        cells = line.split()
        if cells and "/" in cells[0] and len(cells) == 5:
            rows[cells[0]] = cells[1:]
    return rows


def test_quick_profile_passes_with_junit(tmp_path: Path) -> None:
    names = [ln.split("\t")[0] for ln in regress("--quick", "--list").stdout.splitlines()]
    kinds = {ln.split("\t")[1] for ln in regress("--quick", "--list").stdout.splitlines()}
    assert set(KINDS) <= kinds, "the quick profile must exercise every kind of case"
    assert "fixture/hello-v1.0" in names
    junit = tmp_path / "regress.xml"
    r = regress("--quick", "--jobs", "2", "--junit", str(junit))
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    rows = _rows(r.stdout)
    assert list(rows) == names
    assert all(cols[2] == "pass" and int(cols[1]) >= 1 for cols in rows.values()), r.stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("failures"), suite.get("errors")) == ("0", "0")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == names
    assert not any(c.find("failure") is not None or c.find("error") is not None for c in cases)
    assert "[1/" in r.stderr and f"[{len(names)}/{len(names)}]" in r.stderr  # progress


def test_dropped_register_is_bisected_and_named(tmp_path: Path) -> None:
    """r12 holds live values in pthreads' threads at its freeze points; zeroing it on restore
    must fail the case and the report must name register, thread, instruction and tick."""
    junit = tmp_path / "j.xml"
    r = regress("--quick", "-k", "pthreads/points", "--junit", str(junit),
                "--workdir", str(tmp_path / "w"), fault="drop-register:r12")
    assert r.returncode == 1, r.stdout + r.stderr[-2000:]
    out = r.stdout
    assert _rows(out)["pthreads/points"][2] == "fail"
    m = re.search(r"first diverging scheduling point: tick (\d+)", out)
    assert m, out
    tick = int(m.group(1))
    assert re.search(r"registers: thread \d+ \(pid 1\) register r12: golden 0x[0-9a-f]+ "
                     r"thawed 0\b", out), out
    insn = re.search(r"instruction: \w+ thread \d+ \(pid 1\) at rip 0x([0-9a-f]+): "
                     r"((?:[0-9a-f]{2} )+)\s*([a-z]\w*)", out)
    assert insn, out
    # the freeze point is where the thawed state first differs (the restore itself is wrong)
    assert f"frozen at tick {tick}" in out
    images = re.search(r"images: golden (\S+)\s+thawed (\S+)", out)
    assert images and Path(images.group(1)).exists() and Path(images.group(2)).exists()
    failure = ET.parse(junit).getroot().find("testsuite/testcase/failure")
    assert failure is not None and "register r12" in (failure.text or "")


def test_flipped_page_is_reported_as_memory(tmp_path: Path) -> None:
    r = regress("--quick", "-k", "forkpipe/points", fault="flip-page")
    assert r.returncode == 1, r.stdout + r.stderr[-2000:]
    assert re.search(r"first diverging scheduling point: tick \d+", r.stdout), r.stdout
    m = re.search(r"memory: pid 1 0x([0-9a-f]+)-0x([0-9a-f]+) in \S+ .*1 byte\(s\) differ, "
                  r"first at 0x[0-9a-f]+: golden 0x([0-9a-f]{2}) thawed 0x([0-9a-f]{2})",
                  r.stdout)
    assert m, r.stdout
    assert int(m.group(3), 16) ^ int(m.group(4), 16) == 0xFF


def test_bisect_finds_a_divergence_in_the_middle(tmp_path: Path) -> None:
    """A thawed run that goes wrong only at tick X: bisect lands on the first scheduling point
    at or after X, names the register and thread, and disassembles at rip."""
    case = C.Case("forkpipe/points", "points", C.WORKLOADS["forkpipe"], points=1)
    trial = Trial(case, tmp_path, seed=1, bisect=True, log=lambda s: None)
    points = trial.golden().points
    bad = points[len(points) // 2]

    def golden_at(q: int):  # noqa: ANN202
        live = trial.boot(q)
        return live.k, live.status

    def broken_at(q: int):  # noqa: ANN202
        live = trial.boot(q)
        if live.k.sched.ticks >= bad:
            p = live.k.procs[1]
            p.engine.set_reg("r13", 0xDEAD)  # the owner thread's registers are the engine's
        return live.k, live.status

    res = B.bisect(B.Probe(golden_at, broken_at, points[1:], tmp_path / "b"))
    assert res.first == bad and res.last_same == points[points.index(bad) - 1]
    assert res.probes <= len(points).bit_length() + 2
    regs = [f.text for f in res.findings if f.category == "registers"]
    assert any("register r13" in t and "thawed 0xdead" in t for t in regs), regs
    assert res.instructions and re.search(r"at rip 0x[0-9a-f]+: ", res.instructions[0])
    assert f"tick {bad}" in res.text()


def test_diff_names_fds_signals_and_scheduler(tmp_path: Path) -> None:
    """Record-level differences land in the right categories."""
    case = C.Case("signals/points", "points", C.WORKLOADS["signals"], points=1)
    trial = Trial(case, tmp_path, seed=1, bisect=False, log=lambda s: None)
    points = trial.golden().points
    live = trial.boot(points[len(points) // 2])
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    from vkckpt.ckpt.snapshot import write_image
    write_image(live.k, str(a))
    live.k.sched.idle_ns += 1
    t = next(iter(live.k.threads.values()))
    t.sigmask ^= 1 << 9
    live.k.procs[1].fds.fds.pop(max(live.k.procs[1].fds.fds))
    write_image(live.k, str(b))
    cats = {f.category for f in diff_images(a, b)}
    assert {"scheduler", "signals", "fds"} <= cats, cats


def test_jobs_give_the_same_results() -> None:
    one = regress("-k", "execer/points", "-k", "signals/points", "--points", "2")
    two = regress("-k", "execer/points", "-k", "signals/points", "--points", "2", "--jobs", "2")
    assert one.returncode == two.returncode == 0, one.stdout + two.stdout

    def strip(rows: dict[str, list[str]]) -> dict[str, list[str]]:
        return {k: v[:3] for k, v in rows.items()}
    assert strip(_rows(one.stdout)) == strip(_rows(two.stdout))


@pytest.mark.parametrize("args", [["--points", "0"], ["--iters", "1"], ["-k", "no-such-case"],
                                  ["--jobs", "0"], ["--bogus"]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    r = regress(*args)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr


def test_full_profile_covers_every_workload() -> None:
    assert C.uncovered_guests() == [], "add new guests to cases.WORKLOADS or cases.EXCLUDED"
    full = C.build_cases(C.FULL)
    assert {c.workload.name for c in full if c.kind == "points"} >= \
        set(C.WORKLOADS) - {"ckpt_signals"}
    assert all(c.points == 8 for c in full if c.kind == "points")
    quick = C.build_cases(C.QUICK)
    assert all(c.chain <= 3 and c.points <= 2 for c in quick)


def test_fixture_is_small_and_documented() -> None:
    images = sorted(DATA.glob("*.img"))
    assert images, "tests/data must hold an image of the current format"
    for img in images:
        assert img.stat().st_size < 100_000
        assert img.with_name(f"{img.stem}.expected.yaml").is_file()
    assert "Never rewrite or delete" in (DATA / "README.md").read_text()


def test_fault_hook_is_inert_unless_set(tmp_path: Path) -> None:
    """Without VKCKPT_TEST_FAULT, restore is untouched: thaw + freeze is byte-identical."""
    assert "VKCKPT_TEST_FAULT" not in os.environ
    case = C.Case("pthreads/points", "points", C.WORKLOADS["pthreads"], points=1)
    trial = Trial(case, tmp_path, seed=1, bisect=False, log=lambda s: None)
    live = trial.boot(100_000)
    st, _ = run_noting(live.k, 100_000)
    assert st is None
    from vkckpt.ckpt.snapshot import write_image
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    write_image(live.k, str(a))
    again = trial.thaw(a, "boot")
    write_image(again.k, str(b))
    assert a.read_bytes() == b.read_bytes()


def test_compat_cases_compare_with_the_host(tmp_path: Path, monkeypatch) -> None:
    """A compat case passes when the host and the vkernel agree, a known difference passes
    while it lasts, and an unexpected difference (here: a known one with its note taken
    away) or a name the suite does not have fails."""
    import dataclasses

    from vkckpt.regress.kinds import compat

    dirs = iter(range(10))

    def trial(name: str) -> Trial:
        case = C.Case(f"compat/{name}", "compat", compat=name, points=1)
        return Trial(case, tmp_path / str(next(dirs)), 1, False, lambda s: None)

    for name in ("busybox-sh/trap-signal", "busybox/find-name"):
        t = trial(name)
        KINDS["compat"](t)
        assert t.problems == [] and t.points == 1, (name, t.problems)
    plain = dataclasses.replace(compat._BY_ID["busybox/find-name"], known="")
    monkeypatch.setitem(compat._BY_ID, "busybox/find-name", plain)
    t = trial("busybox/find-name")
    KINDS["compat"](t)
    assert len(t.problems) == 1 and "host (b'" in t.problems[0]
    assert C.compat_ids(("sqlite3/wal*",)) == ["sqlite3/wal", "sqlite3/wal-exclusive"]
    assert {c.kind for c in C.build_cases(C.QUICK)} >= {"compat"}
