"""`vkckpt run --freeze-*`, `thaw`, `inspect`, `verify`, `freeze --pid`, checkpoint(2),
SIGCKPT/SIGTHAW and incremental chains, through the command line in fresh host processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from vkckpt.ckpt.snapshot import write_image
from vkckpt.image import FORMAT_MAJOR, FORMAT_MINOR
from vkckpt.testing.oracle import Workload, freeze_points, golden, run_until
from vkckpt.testing.workload import make_root


def vk(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vkckpt", *args], cwd=cwd,
                          capture_output=True, timeout=timeout)


def test_run_freeze_at_then_thaw_matches_uninterrupted(tmp_path: Path) -> None:
    root = make_root(tmp_path, ["pthreads"])
    whole = vk("run", "--root", str(root), "./pthreads", cwd=root)
    assert whole.returncode == 0
    img = tmp_path / "p.img"
    first = vk("run", "--root", str(root), "--freeze-at", "300000", "-o", str(img),
               "--compress", "zstd", "./pthreads", cwd=root)
    assert first.returncode == 0, first.stderr
    assert b"frozen at tick" in first.stderr
    second = vk("thaw", str(img), cwd=root)
    assert second.returncode == 0, second.stderr
    assert first.stdout + second.stdout == whole.stdout


def test_incremental_chain_of_five(tmp_path: Path) -> None:
    root = make_root(tmp_path, ["pthreads"])
    whole = vk("run", "--root", str(root), "--quantum", "997", "./pthreads", cwd=root)
    out = tmp_path / "chain.img"
    run = vk("run", "--root", str(root), "--quantum", "997", "--freeze-every", "150000",
             "--incremental", "-o", str(out), "./pthreads", cwd=root)
    assert run.returncode == 0 and run.stdout == whole.stdout
    images = sorted(tmp_path.glob("chain.*.img"))
    assert len(images) >= 5
    fifth = images[4]
    assert b"incremental" in run.stderr
    full, incr = images[0].stat().st_size, fifth.stat().st_size
    assert incr < full, "an incremental image should hold fewer pages than the base image"
    info = yaml.safe_load(vk("inspect", "--no-registers", str(fifth), cwd=root).stdout)
    assert info["incremental"] and info["parent_id"]
    rep = vk("verify", str(fifth), cwd=root)
    assert rep.returncode == 0, rep.stderr
    assert len(yaml.safe_load(rep.stdout)["chain"]) == 5
    thawed = vk("thaw", str(fifth), cwd=root)
    assert thawed.returncode == 0, thawed.stderr
    assert whole.stdout.endswith(thawed.stdout) and thawed.stdout.endswith(b"pthreads OK\n")
    images[2].unlink()  # a missing link is reported, naming the parent
    broken = vk("thaw", str(fifth), cwd=root)
    assert broken.returncode == 125
    assert b"parent image" in broken.stderr and b"not found" in broken.stderr
    assert b"Traceback" not in broken.stderr


def test_inspect_reports_processes_threads_registers_vmas(tmp_path: Path) -> None:
    wl = Workload("forkpipe")
    gold = golden(wl, make_root(tmp_path, ["forkpipe"]))
    at = freeze_points(gold, 1, seed=5)[0]
    root = make_root(tmp_path, ["forkpipe"])
    k, _, _ = run_until(wl, root, at)
    img = root / "x.img"
    write_image(k, str(img))
    p = vk("inspect", str(img), cwd=root)
    assert p.returncode == 0, p.stderr
    info = yaml.safe_load(p.stdout)
    assert info["format"] == f"{FORMAT_MAJOR}.{FORMAT_MINOR}"
    assert info["kernel"]["ticks"] == k.sched.ticks
    assert {pr["pid"] for pr in info["processes"]} == set(k.procs)
    t = info["processes"][0]["threads"][0]
    assert t["registers"]["rip"].startswith("0x") and "xmm15" in t["registers"]
    assert any("[stack]" in v for v in info["processes"][0]["vmas"])
    assert info["pages"]["stored_pages"] <= info["pages"]["covered_pages"]


def test_verify_catches_a_flipped_bit(tmp_path: Path) -> None:
    root = make_root(tmp_path, ["hello"])
    img = tmp_path / "h.img"
    r = vk("run", "--root", str(root), "--quantum", "101", "--freeze-at", "500", "-o", str(img),
           "./hello", cwd=root)
    assert r.returncode == 0
    assert vk("verify", "-q", str(img), cwd=root).returncode == 0
    data = bytearray(img.read_bytes())
    data[len(data) // 2] ^= 0x10
    img.write_bytes(bytes(data))
    bad = vk("verify", str(img), cwd=root)
    assert bad.returncode == 1
    assert len(bad.stderr.strip().splitlines()) == 1 and b"Traceback" not in bad.stderr
    assert vk("thaw", str(img), cwd=root).returncode == 125


def test_sigckpt_runs_before_the_freeze_and_sigthaw_after_the_thaw(tmp_path: Path) -> None:
    root = make_root(tmp_path, ["ckpt_signals"])
    img = tmp_path / "c.img"
    r = vk("run", "--root", str(root), "--freeze-at", "200000", "--continue", "-o", str(img),
           "./ckpt_signals", "4", cwd=root)
    assert r.returncode == 0, r.stderr
    assert b"ckpt handler ran 1 times\nthaw handler ran 0 times\n" in r.stdout
    t = vk("thaw", str(img), cwd=root)
    assert t.returncode == 0, t.stderr
    assert t.stdout.endswith(b"ckpt handler ran 1 times\nthaw handler ran 1 times\n")
    quiet = vk("thaw", "--no-sigthaw", str(img), cwd=root)
    assert quiet.stdout.endswith(b"thaw handler ran 0 times\n")
    assert r.stdout.endswith(quiet.stdout)


def test_checkpoint_syscall_self(tmp_path: Path) -> None:
    root = make_root(tmp_path, ["ckpt_self"])
    r = vk("run", "--root", str(root), "./ckpt_self", "self", "work/self.img", cwd=root)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"checkpointed acc=")
    t = vk("thaw", "--root", str(root), str(root / "work/self.img"), cwd=root)
    assert t.returncode == 3, t.stderr
    lines = t.stdout.decode().splitlines()
    assert lines[0].startswith("resumed from the image acc=")
    assert lines[0].split("acc=")[1] == r.stdout.decode().splitlines()[0].split("acc=")[1]
    assert lines[1] == r.stdout.decode().splitlines()[1]


def test_checkpoint_caller_with_a_sigckpt_handler_is_not_interrupted(tmp_path: Path) -> None:
    root = make_root(tmp_path, ["ckpt_self"])
    r = vk("run", "--root", str(root), "./ckpt_self", "selfsig", "work/s.img", cwd=root)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"checkpointed acc=") and b"SIGCKPT handled 0 times" in r.stdout
    t = vk("thaw", "--root", str(root), str(root / "work/s.img"), cwd=root)
    assert t.returncode == 3 and t.stdout.startswith(b"resumed from the image")


def test_checkpoint_syscall_external(tmp_path: Path) -> None:
    root = make_root(tmp_path, ["ckpt_self"])
    r = vk("run", "--root", str(root), "./ckpt_self", "external", "work/w.img", cwd=root)
    assert r.returncode == 0, r.stderr
    assert b"parent: checkpoint of the worker returned 0\n" in r.stdout
    t = vk("thaw", "--root", str(root), str(root / "work/w.img"), cwd=root)
    assert t.returncode == 4, t.stderr  # the image holds the worker alone: it is init now
    worker = [ln for ln in r.stdout.splitlines(keepends=True) if ln.startswith(b"worker")]
    assert b"".join(worker).endswith(t.stdout) and t.stdout.endswith(b"worker done\n")
    assert b"parent" not in t.stdout


def test_freeze_a_running_vkckpt_by_host_pid(tmp_path: Path) -> None:
    root = make_root(tmp_path, ["compute"])
    whole = vk("run", "--root", str(root), "./compute", "4", cwd=root)
    ctl = tmp_path / "ctl"
    env = {**os.environ, "VKCKPT_CONTROL_DIR": str(ctl)}
    proc = subprocess.Popen([sys.executable, "-m", "vkckpt", "run", "--root", str(root),
                             "./compute", "4"], cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    sock = ctl / f"{proc.pid}.sock"
    deadline = time.monotonic() + 60
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    img = tmp_path / "live.img"
    f = subprocess.run([sys.executable, "-m", "vkckpt", "freeze", "--pid", str(proc.pid), "-o",
                        str(img), "--stop"], env=env, capture_output=True, timeout=120)
    out, err = proc.communicate(timeout=300)
    if f.returncode != 0:  # the run finished before the request was served
        assert proc.returncode == 0 and out == whole.stdout
        return
    assert proc.returncode == 0, err
    t = vk("thaw", str(img), cwd=root)
    assert t.returncode == 0, t.stderr
    assert out + t.stdout == whole.stdout


def test_changed_open_file_refuses_thaw(tmp_path: Path) -> None:
    wl = Workload("files", ("work",))
    gold = golden(wl, make_root(tmp_path, ["files"]))
    for at in gold.points[1:-1]:
        root = make_root(tmp_path, ["files"])
        k, _, _ = run_until(wl, root, at)
        opened = [f for p in k.procs.values() if not p.zombie
                  for f, _ in p.fds.fds.values() if f.kind == "host"]
        if not opened:
            continue
        img = root / "x.img"
        write_image(k, str(img))
        host = root / opened[0].guest_path.lstrip("/")
        host.write_bytes(host.read_bytes() + b"tampered")
        r = vk("thaw", "--root", str(root), str(img), cwd=root)
        assert r.returncode == 125
        assert opened[0].guest_path.encode() in r.stderr and b"--allow-changed-files" in r.stderr
        ok = vk("thaw", "--root", str(root), "--allow-changed-files", str(img), cwd=root)
        assert b"changed since the freeze" not in ok.stderr
        return
    raise AssertionError("no freeze point with an open guest-root file")


def test_thaw_refuses_a_flipped_bit_in_any_record(tmp_path: Path) -> None:
    """Not only page chunks (CRC32) but structural records are covered when thawing."""
    root = make_root(tmp_path, ["hello"])
    img = tmp_path / "h.img"
    assert vk("run", "--root", str(root), "--quantum", "101", "--freeze-at", "500", "-o",
              str(img), "./hello", cwd=root).returncode == 0
    data = img.read_bytes()
    for off in (120, 200, len(data) // 3, len(data) - 60):
        bad = tmp_path / f"b{off}.img"
        flipped = bytearray(data)
        flipped[off] ^= 0x01
        bad.write_bytes(bytes(flipped))
        r = vk("thaw", str(bad), cwd=root)
        assert r.returncode == 125, (off, r.stdout, r.stderr)
        assert b"Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
