"""vkckpt on a Dask cluster (vkckpt/cluster.py): `vkckpt fanout` and `vkckpt regress --cluster`
on a local cluster with real TCP on loopback give what the same work gives serially, and a
worker killed mid-task has its task made again elsewhere.  (bench/fanout.py measures rates.)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from vkckpt import fanout
from vkckpt.cluster import ClusterError, open_cluster, parse_spec
from vkckpt.guests.build import compile_source
from vkckpt.kernel_state import exec_env

#: A guest that spins (argv[1] loop rounds: freeze points), then prints a random draw and its
#: console input, writes the draw to /work/out.bin, and executes itself as a child that
#: writes $FANVAR to /work/env.txt and exits with its length.
PROBE = r"""
/* fanout probe: spins (freeze points), then reads what a thaw may vary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/wait.h>

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "child") == 0) {
        const char *v = getenv("FANVAR");
        printf("child FANVAR=%s\n", v ? v : "(unset)");
        int e = open("/work/env.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (v) write(e, v, strlen(v));
        close(e);
        return v ? (int)strlen(v) : 0;
    }
    volatile unsigned long x = 0;
    unsigned long spins = argc > 1 ? strtoul(argv[1], 0, 10) : 200000;
    for (unsigned long i = 0; i < spins; i++) x += i * 7;
    unsigned char r[8];
    getrandom(r, sizeof r, 0);
    printf("spin %lu random %02x%02x%02x%02x%02x%02x%02x%02x\n", (unsigned long)x,
           r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
    char buf[4096];
    ssize_t n, total = 0;
    while ((n = read(0, buf, sizeof buf)) > 0) {
        fwrite(buf, 1, (size_t)n, stdout);
        total += n;
    }
    printf("stdin %zd bytes\n", total);
    int fd = open("/work/out.bin", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    write(fd, r, sizeof r);
    close(fd);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/fanprobe", "fanprobe", "child", (char *)0);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    printf("child exited %d\n", WEXITSTATUS(st));
    return 0;
}
"""


def _vkckpt(*args: str, **kw) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "vkckpt", *args], capture_output=True,
                          timeout=120, **kw)


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A root with the probe, images of it frozen early (short and long runs), two inputs."""
    d = tmp_path_factory.mktemp("fanout")
    (d / "probe.c").write_text(PROBE)
    root = d / "root"
    (root / "work").mkdir(parents=True)
    shutil.move(compile_source(d / "probe.c", d), root / "fanprobe")
    out = {"dir": d, "root": root}
    for name, spins in (("short", "200000"), ("long", "150000000")):
        p = _vkckpt("run", "--root", str(root), "--quantum", "997", "--freeze-at", "5000",
                    "--no-control", "-o", str(d / f"{name}.img"), "-e", "FANVAR=orig",
                    "/fanprobe", spins)
        assert p.returncode == 0, p.stderr.decode()
        out[name] = d / f"{name}.img"
    (d / "in1.txt").write_bytes(b"first input\n")
    (d / "in2.txt").write_bytes(b"second\ninput\n")
    out["in1"], out["in2"] = d / "in1.txt", d / "in2.txt"
    return out


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_parse_spec() -> None:
    assert parse_spec("local:3").workers == 3
    assert parse_spec("local").workers == max(1, os.cpu_count() or 1)
    assert parse_spec("tcp://10.0.0.1:8786").address == "tcp://10.0.0.1:8786"
    for bad in ("local:0", "local:x", "tcp://host", "tcp://:1", "udp://h:1", ""):
        with pytest.raises(ValueError):
            parse_spec(bad)


def test_variants_and_their_limits(probe) -> None:
    vs = fanout.variants(3, [["seed", "7,9"], ["env", "A=x,y,z"], ["stdin", str(probe["in1"])]])
    assert [(v.seed, v.env, v.stdin) for v in vs] == [
        (7, (("A", "x"),), b"first input\n"), (9, (("A", "y"),), b"first input\n"),
        (7, (("A", "z"),), b"first input\n")]
    assert [v.seed for v in fanout.variants(3, [["seed"]])] == [0, 1, 2]
    for bad in (["colour"], ["env", "NOVALUE"], ["env", "A=B=C", "x"], ["seed", "-1"],
                ["stdin"], ["env", "=x"]):
        with pytest.raises(ValueError):
            fanout.variants(2, [bad])
    with pytest.raises(Exception, match="exec_env"):
        exec_env([[b"A", b"1"], [b"A", b"2"]])


def test_fanout_on_a_local_cluster_equals_the_serial_runs(probe, tmp_path: Path) -> None:
    """4 runs varying seed, env and stdin: `vkckpt fanout --cluster local:2` (workers on
    127.0.0.1 over TCP) gives, row by row, the rows of the same runs made in this process;
    and each variation did reach its run."""
    vary = [["seed"], ["env", "FANVAR=a,bb"], ["stdin", str(probe["in1"]), str(probe["in2"])]]
    collect = ("/work/out.bin", "/work/env.txt", "/nosuch")
    payload = fanout.pack(str(probe["short"]), str(probe["root"]))
    serial = [asdict(fanout.run_one(payload, v, collect, None))
              for v in fanout.variants(4, vary)]
    jsonl = tmp_path / "runs.jsonl"
    args = ["fanout", str(probe["short"]), "--root", str(probe["root"]), "--runs", "4",
            "--cluster", "local:2", "--jsonl", str(jsonl)]
    for v in vary:
        args += ["--vary", *v]
    for c in collect:
        args += ["--collect", c]
    p = _vkckpt(*args)
    assert p.returncode == 0, p.stderr.decode()
    err = p.stderr.decode()
    assert re.search(r"cluster tcp://127\.0\.0\.1:\d+: 2 worker", err), err
    assert len(re.findall(r"\[\d/4\] run \d: status 0", err)) == 4
    rows = [json.loads(ln) for ln in jsonl.read_text().splitlines()]
    assert rows == serial
    assert all(r["status"] == 0 and r["error"] == "" for r in rows)
    assert len({r["stdout_sha256"] for r in rows}) == 4  # seeds and inputs differ
    assert len({r["files"]["/work/out.bin"] for r in rows}) == 4  # the draws differ
    assert [r["files"]["/work/env.txt"] for r in rows] == [_sha(b"a"), _sha(b"bb")] * 2
    assert all(r["files"]["/nosuch"] is None for r in rows)
    assert [r["env"] for r in rows] == [{"FANVAR": "a"}, {"FANVAR": "bb"}] * 2
    # the serial rows are what a plain thaw gives with the same seed and input
    plain = _vkckpt("thaw", str(probe["short"]), "--root", str(probe["root"]),
                    "--no-control", stdin=probe["in1"].open("rb"))
    assert plain.returncode == 0
    want = plain.stdout.replace(b"FANVAR=orig", b"FANVAR=a").replace(b"exited 4", b"exited 1")
    assert rows[0]["stdout_sha256"] == _sha(want)


def test_regress_on_a_local_cluster_gives_the_serial_verdicts(tmp_path: Path) -> None:
    """Quick-profile cases (points, ckpt-self, fixtures) on `--cluster local:2`: the same
    cases, verdicts and order as serially; with a restore bug planted, both fail alike."""
    def table(*extra: str, env: dict | None = None) -> tuple[int, list[tuple[str, ...]]]:
        cases = ["-k", "execer/points", "-k", "fixture"]
        if env is None:
            cases += ["-k", "ckpt_self"]
        p = _vkckpt("regress", "--quick", *cases, "--no-bisect", *extra,
                    env={**os.environ, **(env or {})})
        rows = [tuple(ln.split()[:4]) for ln in p.stdout.decode().splitlines()
                if re.match(r"^ ?(execer|fixture|ckpt_self)/", ln)]
        return p.returncode, rows
    fixtures = len(list((Path(__file__).parent / "data").glob("*.expected.yaml")))
    serial, cluster = table(), table("--cluster", "local:2")
    assert serial[0] == cluster[0] == 0
    assert serial[1] == cluster[1] and len(serial[1]) == 2 + fixtures
    assert {r[3] for r in serial[1]} == {"pass"}
    bug = {"VKCKPT_TEST_FAULT": "flip-page"}
    serial, cluster = table(env=bug), table("--cluster", "local:2", env=bug)
    assert serial[0] == cluster[0] == 1
    assert serial[1] == cluster[1] and len(serial[1]) == 1 + fixtures
    assert "fail" in {r[3] for r in serial[1]}


def test_a_killed_worker_has_its_task_made_again(probe) -> None:
    """SIGKILL a worker while it runs a long thaw: the scheduler gives the task to another
    worker (the nanny restarts the dead one) and every row is still the serial one."""
    payload = fanout.pack(str(probe["long"]), str(probe["root"]))
    vs = fanout.variants(3, [["seed"]])
    want = [fanout.run_one(payload, v, ("/work/out.bin",), None) for v in vs[:1]]
    killed: list[int] = []
    lines: list[str] = []
    with open_cluster(parse_spec("local:2"), lines.append) as engine:
        pids = engine.client.run(os.getpid)

        def kill_one_busy() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not killed:
                busy = [w for w, keys in engine.client.processing().items() if keys]
                if busy:
                    time.sleep(0.3)  # inside the thaw's run by now
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed.append(pids[busy[0]])
                time.sleep(0.05)
        killer = threading.Thread(target=kill_one_busy)
        killer.start()
        shared = engine.share(payload)
        rows = engine.map(fanout.run_one, [(shared, v, ("/work/out.bin",), None) for v in vs],
                          [f"run {v.run}" for v in vs])
        killer.join()
    assert killed, "no worker was killed"
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)
    assert len(rows) == 3 and all(r.status == 0 and not r.error for r in rows)
    assert asdict(rows[0]) == asdict(want[0])
    done = [ln for ln in lines if ln.startswith("[")]
    assert [ln.split()[0] for ln in done] == ["[1/3]", "[2/3]", "[3/3]"]
    assert sorted(ln.split()[-1] for ln in done) == ["0", "1", "2"]


def test_an_unreachable_scheduler_is_one_error() -> None:
    with pytest.raises(ClusterError, match="cannot connect"):
        with open_cluster(parse_spec("tcp://127.0.0.1:9"), lambda s: None, timeout=2):
            pass


def test_exec_env_is_kept_by_a_freeze_and_thaws_bit_identically(probe, tmp_path: Path) -> None:
    """A fan-out thaw's exec_env is state: frozen with the run, thawed back, frozen again
    into the same bytes, and the thawed run finishes as the run never frozen."""
    from vkckpt.ckpt.restore import ThawOptions, thaw
    from vkckpt.ckpt.snapshot import write_image

    root = tmp_path / "root"

    def fresh_thaw(image: Path, out: list[bytes]):
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(probe["root"], root)
        return thaw(str(image), ThawOptions(root=str(root), stdout=out.append,
                                            stderr=out.append, stdin=b"",
                                            deliver_sigthaw=False))
    gold: list[bytes] = []
    k = fresh_thaw(probe["short"], gold)
    k.exec_env = {b"FANVAR": b"zz"}
    assert k.run(until_ticks=20_000) is None
    mid = len(gold)
    write_image(k, str(tmp_path / "a.img"))
    assert k.run() == 0
    k.shutdown()
    after: list[bytes] = []
    k2 = fresh_thaw(tmp_path / "a.img", after)
    assert k2.exec_env == {b"FANVAR": b"zz"}
    write_image(k2, str(tmp_path / "b.img"))
    assert (tmp_path / "a.img").read_bytes() == (tmp_path / "b.img").read_bytes()
    assert k2.run() == 0
    assert b"".join(after) == b"".join(gold[mid:])
    assert b"child FANVAR=zz" in b"".join(after)
    k2.shutdown()


def test_fanout_on_an_existing_scheduler(probe) -> None:
    """`--cluster tcp://HOST:PORT`: a `dask scheduler` and a `dask worker` started apart
    (as on other hosts) run the thaws; the rows are the serial ones."""
    dask = str(Path(sys.executable).with_name("dask"))
    sched = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
                              "--no-dashboard"], stderr=subprocess.PIPE, text=True)
    worker = None
    try:
        address = None
        for line in sched.stderr:
            if m := re.search(r"Scheduler at:\s+(tcp://127\.0\.0\.1:\d+)", line):
                address = m.group(1)
                break
        assert address, "the scheduler printed no address"
        threading.Thread(target=sched.stderr.read, daemon=True).start()
        worker = subprocess.Popen([dask, "worker", address, "--nthreads", "1",
                                   "--no-dashboard"], stderr=subprocess.DEVNULL)
        payload = fanout.pack(str(probe["short"]), str(probe["root"]))
        vs = fanout.variants(2, [["seed", "5,6"]])
        with open_cluster(parse_spec(address), lambda s: None) as engine:
            engine.client.wait_for_workers(1, timeout=60)
            rows = engine.map(fanout.run_one, [(engine.share(payload), v, (), None)
                                               for v in vs], ["a", "b"])
        assert [asdict(r) for r in rows] == [asdict(fanout.run_one(payload, v, (), None))
                                             for v in vs]
        assert rows[0].status == 0 and rows[0].stdout_sha256 != rows[1].stdout_sha256
    finally:
        for p in (worker, sched):
            if p is not None:
                p.terminate()
                p.wait(timeout=30)
