"""Crafted images (vkckpt/testing/hostile_images.py) through `vkckpt thaw`, `verify` and
`inspect`: every refusal is one stderr line with the documented exit status, nothing hangs,
tracebacks or costs more than a bounded amount of time and host memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vkckpt.ckpt.snapshot import write_image
from vkckpt.testing import hostile_images as H
from vkckpt.testing.oracle import Workload, freeze_points, golden, run_until
from vkckpt.testing.workload import make_root

#: What a command may cost on a crafted image: seconds, and KiB of RSS above its parent
#: (the reader's limits allow about 4 million decoded objects a pass: ~270 MiB of lists).
TIME_LIMIT = 60.0
RSS_LIMIT_KIB = 384 << 10
REFUSED_STATUS = {"thaw": 125, "verify": 1, "inspect": 1}
#: The corpus's commands as `vkckpt ARGV`, each forked from one prepared interpreter.
CLI_JOBS = ("import sys; from vkckpt.cli import main; from vkckpt.testing.forkrun import serve; "
            "sys.exit(serve(sys.argv[1:], main))")


def make_seed(base: Path) -> tuple[Path, Path]:
    """A valid image of forkpipe frozen mid-run (processes, pipes, sleepers), outside its
    root, and that root."""
    wl = Workload("forkpipe")
    gold = golden(wl, make_root(base, ["forkpipe"]))
    for at in freeze_points(gold, 40, seed=2):
        root = make_root(base, ["forkpipe"])
        k, _, _ = run_until(wl, root, at)
        seed = base / "seed.img"
        write_image(k, str(seed))
        kinds = {r[0] for r in H.load_records(seed)}
        k.shutdown()
        if {"waitq", "pipe", "thread", "process", "file"} <= kinds:
            return seed, root
    raise AssertionError("no freeze point of forkpipe has sleepers on pipes")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[H.Crafted], list[dict]]:
    base = tmp_path_factory.mktemp("corpus")
    seed, root = make_seed(base)
    keyfile = base / "key"
    keyfile.write_bytes(H.KEY)
    keyfile.chmod(0o600)
    cases = H.build(seed, root, base / "crafted")
    jobs = []
    for c in cases:
        for cmd in ("thaw", "verify", "inspect"):
            tag = base / f"{c.name}.{cmd}"
            jobs.append({"argv": c.argv(cmd, root, keyfile), "stdout": f"{tag}.out",
                         "stderr": f"{tag}.err", "cwd": str(base)})
    spec, out = base / "jobs.json", base / "results.json"
    spec.write_text(json.dumps({"jobs": jobs, "timeout": TIME_LIMIT}))
    subprocess.run([sys.executable, "-c", CLI_JOBS, str(spec), str(out)], check=True,
                   timeout=1800)
    return cases, json.loads(out.read_text())


def problems_of(c: H.Crafted, cmd: str, r: dict) -> list[str]:
    """What is wrong with result r of command cmd on crafted image c."""
    want = getattr(c, cmd)
    lines = r["stderr"].strip().splitlines()
    bad = []
    if r["code"] is None:
        bad.append(f"did not finish in {TIME_LIMIT} s")
    if r["rss_kib"] > RSS_LIMIT_KIB:
        bad.append(f"took {r['rss_kib'] >> 10} MiB of RSS")
    if "Traceback" in r["stderr"]:
        bad.append("printed a traceback")
    refused = r["code"] == REFUSED_STATUS[cmd] and len(lines) == 1
    if want == H.REFUSED and not refused:
        bad.append(f"exit {r['code']} with {len(lines)} stderr lines, not one refusal")
    elif want == H.REFUSED and cmd == "thaw" and c.why and c.why not in r["stderr"]:
        bad.append(f"refusal does not say {c.why!r}")
    elif want == H.ANY and not (r["code"] == 0 or refused):
        bad.append(f"exit {r['code']} with {len(lines)} stderr lines")
    elif isinstance(want, int) and r["code"] != want:
        bad.append(f"exit {r['code']}, not {want}")
    return [f"{c.name}: {cmd}: {b}: {r['stderr'].strip()[-300:]!r}" for b in bad]


def test_every_crafted_image_is_refused_in_one_line(corpus) -> None:
    cases, results = corpus
    assert len(results) == 3 * len(cases) and len(cases) >= 45
    problems = []
    for i, c in enumerate(cases):
        for j, cmd in enumerate(("thaw", "verify", "inspect")):
            problems += problems_of(c, cmd, results[3 * i + j])
    assert not problems, "\n".join(problems)


def test_the_corpus_is_cheap(corpus) -> None:
    _, results = corpus
    assert sum(r["seconds"] for r in results) < 300
    assert max(r["rss_kib"] for r in results) < RSS_LIMIT_KIB
