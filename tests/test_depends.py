"""`vkckpt inspect`'s depends_on: the guest-root paths an image needs at thaw."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_ckpt_cli import vk
from vkckpt.ckpt.depends import Depends
from vkckpt.ckpt.snapshot import write_image
from vkckpt.testing.oracle import freeze_points, golden, run_until
from vkckpt.testing.workload import Workload, make_root


def test_records_give_paths_and_reasons() -> None:
    d = Depends()
    d.record("process", {"cwd": "/w", "exe": "/bin/x", "root": ""})
    d.record("file", {"kind": "host", "path": "/w/data"})
    d.record("file", {"kind": "host", "path": "/w/gone", "ghost": 3})   # carried in the image
    d.record("file", {"kind": "pipe", "pipe": 1})
    d.record("filemap", {"path": "/w/shm"})
    d.record("vmspace", {"vmas": [[0, 4096, 1, 0, "", 1, 0, "/w/shm", 0],
                                  [0, 4096, 1, 0, "", 2, 0, "/lib/a.so", 0],
                                  [0, 4096, 3, 0, "[heap]", 3, 0, "", 0]]})
    d.record("socket", {"path": "/w/sock"})
    d.record("socket", {"path": None})
    assert d.report() == [
        {"path": "/bin/x", "why": ["exe"]}, {"path": "/lib/a.so", "why": ["private-map"]},
        {"path": "/w", "why": ["cwd"]}, {"path": "/w/data", "why": ["reopen"]},
        {"path": "/w/shm", "why": ["mapped"]}, {"path": "/w/sock", "why": ["socket"]}]


def test_inspect_json_lists_the_executable_and_cwd(tmp_path: Path) -> None:
    wl = Workload("forkpipe")
    gold = golden(wl, make_root(tmp_path, ["forkpipe"]))
    at = freeze_points(gold, 1, seed=5)[0]
    root = make_root(tmp_path, ["forkpipe"])
    k, _, _ = run_until(wl, root, at)
    img = root / "x.img"
    write_image(k, str(img))
    exes = {p.exe for p in k.procs.values()}
    cwds = {p.cwd for p in k.procs.values()}
    k.shutdown()
    p = vk("inspect", "--json", "--no-registers", str(img), cwd=root)
    assert p.returncode == 0, p.stderr
    deps = {d["path"]: d["why"] for d in json.loads(p.stdout)["depends_on"]}
    assert exes and all("exe" in deps[e] for e in exes)
    assert all("cwd" in deps[c] for c in cwds)
