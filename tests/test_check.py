"""`vkckpt check`: one line a fact, exit 0 with every need met; a missing need (too few host
descriptors) is a FAIL line and exit 1; a missing feature (dirty tracking turned off) is a warn
line and still exit 0; --json carries the same facts."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

from vkckpt.ckpt.hostcheck import MIN_NOFILE, Check, checks, report


def check(*args: str, env: dict | None = None, nofile: int | None = None
          ) -> subprocess.CompletedProcess:
    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    return subprocess.run([sys.executable, "-m", "vkckpt", "check", *args], text=True,
                          capture_output=True, timeout=120, preexec_fn=limit,
                          env={**os.environ, **(env or {})})


def test_this_host_has_what_vkckpt_needs() -> None:
    p = check()
    assert p.returncode == 0, p.stdout + p.stderr
    names = [c.name for c in checks()]
    lines = p.stdout.splitlines()
    assert len(lines) == len(names) and "FAIL" not in p.stdout
    assert all(name in line for name, line in zip(names, lines, strict=True))


def test_too_few_descriptors_fail_and_say_what_to_do() -> None:
    p = check(nofile=MIN_NOFILE // 2)
    assert p.returncode == 1, p.stdout
    line = next(ln for ln in p.stdout.splitlines() if "host descriptors" in ln)
    assert line.startswith("FAIL") and "ulimit -n" in line


def test_a_missing_feature_warns_and_passes() -> None:
    p = check(env={"VKCKPT_DIRTY": "compare"})
    assert p.returncode == 0, p.stdout
    line = next(ln for ln in p.stdout.splitlines() if "exact dirty tracking" in ln)
    assert line.startswith("warn") and "comparing" in line


def test_json_has_the_same_facts() -> None:
    p = check("--json")
    assert p.returncode == 0
    got = json.loads(p.stdout)
    assert [d["name"] for d in got] == [c.name for c in checks()]
    assert {tuple(d) for d in got} == {("name", "ok", "needed", "value", "gives", "without")}


def test_report_marks_and_status() -> None:
    cs = [Check("a", True, True, "1", "gives a", "without a"),
          Check("b", False, False, "0", "gives b", "without b")]
    lines, code = report(cs)
    assert code == 0 and lines[0].startswith("ok") and lines[1].startswith("warn")
    assert lines[1].endswith("0: without b") and lines[0].endswith("1: gives a")
    lines, code = report([*cs, Check("c", False, True, "x", "", "needs c")])
    assert code == 1 and lines[2].startswith("FAIL")
