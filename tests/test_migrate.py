"""Live migration: `vkckpt receive`, `run --migrate-at --to`, `freeze --pid --to`, between
host processes over loopback TCP, and in process against state digests."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from vkckpt.ckpt import migrate_recv as R
from vkckpt.ckpt import migrate_wire as W
from vkckpt.ckpt.chain import ImageChain
from vkckpt.ckpt.freeze import FreezePlan, serve_guest_request
from vkckpt.ckpt.migrate_send import MigrationError, RunEnded, migrate
from vkckpt.ckpt.migrate_stage import Staged
from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.config import KernelConfig, ProcessSpec
from vkckpt.errors import ImageError
from vkckpt.runner import boot
from vkckpt.testing.digest import state_digest
from vkckpt.testing.workload import make_root

ARGS = ("./memtouch", "16", "8", "20000", "10")  # ~9.4 M blocks, 8 MiB rewritten 1% a phase


def vk(*args: str, cwd: Path, **kw: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vkckpt", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def receiver(root: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    """A `vkckpt receive --once` on a free loopback port, and that port."""
    p = vk("receive", "--listen", "127.0.0.1:0", "--root", str(root), "--once", *extra,
           cwd=root)
    line = p.stderr.readline().decode()
    m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    assert m, line
    return p, int(m.group(1))


def key_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_root(tmp_path, ["memtouch"])


@pytest.fixture
def whole(root: Path, tmp_path: Path) -> tuple[bytes, str]:
    p = vk("run", "--root", str(root), "--stats", str(tmp_path / "w.yaml"), *ARGS, cwd=root)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    return out, (tmp_path / "w.yaml").read_text()


def _migrated(root: Path, tmp_path: Path, send_key: Path | None, recv_key: Path | None,
              *recv_extra: str
              ) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    rp, port = receiver(root, "--stats", str(tmp_path / "r.yaml"),
                        *(("--key", str(recv_key)) if recv_key else ()), *recv_extra)
    sp = vk("run", "--root", str(root), "--migrate-at", "1000000", "--to",
            f"127.0.0.1:{port}", "--stats", str(tmp_path / "s.yaml"),
            *(("--key", str(send_key)) if send_key else ()), *ARGS, cwd=root)
    s_out, s_err = sp.communicate(timeout=300)
    r_out, r_err = rp.communicate(timeout=300)
    return (subprocess.CompletedProcess(sp.args, sp.returncode, s_out, s_err),
            subprocess.CompletedProcess(rp.args, rp.returncode, r_out, r_err))


@pytest.mark.parametrize("keyed", [False, True], ids=["unsealed", "sealed"])
def test_run_moved_mid_run_continues_identically(root: Path, tmp_path: Path, whole: tuple,
                                                 keyed: bool) -> None:
    key = key_file(tmp_path / "k", b"k" * 32) if keyed else None
    s, r = _migrated(root, tmp_path, key, key)
    assert s.returncode == 0, s.stderr
    assert r.returncode == 0, r.stderr
    assert b"migrated to 127.0.0.1" in s.stderr and b"downtime" in s.stderr
    assert s.stdout and r.stdout, "the run should be moved mid-run"
    assert s.stdout + r.stdout == whole[0]
    recv_stats = (tmp_path / "r.yaml").read_text()
    assert re.search(r"ticks: \d+", recv_stats)[0] == re.search(r"ticks: \d+", whole[1])[0]
    sent = (tmp_path / "s.yaml").read_text()
    assert "downtime_ms" in sent and "pages_per_round" in sent


def test_incremental_checkpoint_after_receive_thaws(tmp_path: Path) -> None:
    """The stream's images are gone once the run resumed: the first image the moved run
    writes with incremental on (here by checkpoint(2)) is full, so it thaws on its own."""
    root = make_root(tmp_path, ["ckpt_self"])
    cfg = KernelConfig(root=str(root), quantum=1000, processes=[
        ProcessSpec("/ckpt_self", ["./ckpt_self", "self", "work/self.img"])])
    sock = R.listen("127.0.0.1:0")
    chain = ImageChain()
    got: dict = {}

    def receive() -> None:
        conn, _ = sock.accept()
        with conn:
            rec = R.receive(conn, None)
            got["k"] = thaw(rec.final, ThawOptions(root=str(root)), chain=chain,
                            staged=rec.staged)
            R.answer(conn, True)
            rec.close()

    t = threading.Thread(target=receive)
    t.start()
    k1 = boot(cfg)
    assert k1.run(until_ticks=1) is None
    migrate(k1, f"127.0.0.1:{sock.getsockname()[1]}", None, round_ticks=1000)
    t.join(timeout=120)
    sock.close()
    k1.shutdown()
    k2 = got["k"]
    assert k2.run() is None and k2.host_request is not None  # checkpoint(2), after the move
    serve_guest_request(k2, FreezePlan(incremental=True, chain=chain))
    assert k2.run() == 0
    k3 = thaw(str(root / "work" / "self.img"), ThawOptions(root=str(root)))
    assert k3.run() == 3 << 8  # wait status: exit 3, the thawed checkpoint returned 42
    k2.shutdown()
    k3.shutdown()


def test_wrong_key_is_refused_and_the_run_goes_on_at_home(root: Path, tmp_path: Path,
                                                          whole: tuple) -> None:
    s, r = _migrated(root, tmp_path, key_file(tmp_path / "k1", b"a" * 32),
                     key_file(tmp_path / "k2", b"b" * 32))
    assert r.returncode == 125 and r.stdout == b""
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr  # one error line
    assert s.returncode == 0 and s.stdout == whole[0]
    assert b"migration to 127.0.0.1" in s.stderr and b"failed" in s.stderr


def test_unsealed_stream_is_refused_by_a_keyed_receiver(root: Path, tmp_path: Path,
                                                        whole: tuple) -> None:
    s, r = _migrated(root, tmp_path, None, key_file(tmp_path / "k", b"c" * 32))
    assert r.returncode == 125 and r.stdout == b""
    assert s.returncode == 0 and s.stdout == whole[0]


def test_sender_killed_mid_stream_resumes_nothing(root: Path, tmp_path: Path) -> None:
    rp, port = receiver(root)
    big = ("./memtouch", "256", "128", "100000", "10")  # round 1 alone is 128 MiB
    sp = vk("run", "--root", str(root), "--migrate-at", "1000000", "--to",
            f"127.0.0.1:{port}", *big, cwd=root)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not _connected(port):
        time.sleep(0.01)
    time.sleep(0.05)
    os.kill(sp.pid, signal.SIGKILL)
    sp.communicate(timeout=60)
    out, err = rp.communicate(timeout=300)
    assert rp.returncode == 125, err
    assert out == b"", "the receiver must not run any guest code"
    assert b"migration stream" in err


def _connected(port: int) -> bool:
    """Whether a connection to our listening port is established (ss is not needed)."""
    hexport = f"{port:04X}"
    with open("/proc/net/tcp") as f:
        return any(line.split()[1].endswith(":" + hexport) and line.split()[3] == "01"
                   for line in f.readlines()[1:])


def test_freeze_pid_to_moves_a_running_vkckpt(root: Path, tmp_path: Path,
                                              whole: tuple) -> None:
    ctl = tmp_path / "ctl"
    env = {**os.environ, "VKCKPT_CONTROL_DIR": str(ctl)}
    rp, port = receiver(root)
    long_args = ("./memtouch", "16", "8", "200000", "10")
    gold = vk("run", "--root", str(root), *long_args, cwd=root).communicate(timeout=300)[0]
    sp = vk("run", "--root", str(root), *long_args, cwd=root, env=env)
    sock = ctl / f"{sp.pid}.sock"
    deadline = time.monotonic() + 60
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    f = subprocess.run([sys.executable, "-m", "vkckpt", "freeze", "--pid", str(sp.pid),
                        "--to", f"127.0.0.1:{port}"], env=env, capture_output=True,
                       timeout=300)
    s_out, s_err = sp.communicate(timeout=300)
    assert f.returncode == 0, f.stderr + s_err
    assert f.stdout.startswith(b"tcp:127.0.0.1:")
    r_out, r_err = rp.communicate(timeout=300)
    assert sp.returncode == 0 and rp.returncode == 0, r_err
    assert s_out + r_out == gold


def test_moved_state_digest_matches_the_unmoved_run(root: Path, tmp_path: Path) -> None:
    """In process: the received vkernel, run on to a later tick, is in exactly the state the
    never-moved run is in at that tick."""
    cfg = KernelConfig(root=str(root), processes=[ProcessSpec("/memtouch", list(ARGS))])
    later = 4_000_000
    k0 = boot(cfg)
    assert k0.run(until_ticks=later) is None
    (tmp_path / "gold").mkdir()
    (tmp_path / "moved").mkdir()
    gold = state_digest(k0, tmp_path / "gold")
    k0.shutdown()
    sock = R.listen("127.0.0.1:0")
    port = sock.getsockname()[1]
    got: dict = {}

    def serve() -> None:
        conn, _ = sock.accept()
        with conn:
            rec = R.receive(conn, None)
            got["k"] = thaw(rec.final, ThawOptions(root=str(root)), staged=rec.staged)
            R.answer(conn, True)
            rec.close()

    t = threading.Thread(target=serve)
    t.start()
    k1 = boot(cfg)
    assert k1.run(until_ticks=1_000_000) is None
    st = migrate(k1, f"127.0.0.1:{port}", None)
    t.join(timeout=300)
    sock.close()
    assert len(st.rounds) >= 2 and st.downtime <= st.total
    k2 = got["k"]
    assert k2.sched.ticks == st.ticks < later
    assert k2.run(until_ticks=later) is None
    assert state_digest(k2, tmp_path / "moved") == gold


def test_stream_bounds_are_checked() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(W.GREETING + W.FRAME_HEAD.pack(W.FRAME_MAGIC, W.KIND_ROUND,
                                                 W.MAX_IMAGE_BYTES + 1))
        with pytest.raises(ImageError, match="claims"):
            R.receive(b, None)
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"GET / HTTP/1.0\r\n\r\n")
        with pytest.raises(ImageError, match="not a vkckpt migration stream"):
            R.receive(b, None)
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"VKCKPT-MIGRATE 1\n")
        with pytest.raises(ImageError, match="use the same vkckpt on both hosts"):
            R.receive(b, None)
    with pytest.raises(ValueError):
        W.parse_target("nohost")


def test_run_ending_before_migrate_at_tells_the_receiver(tmp_path: Path) -> None:
    """The receiver exits 124 and runs nothing; the sender's run finishes at home."""
    root = make_root(tmp_path, ["memtouch"])
    short = ("./memtouch", "1", "1", "2", "10")
    rp, port = receiver(root)
    sp = vk("run", "--root", str(root), "--migrate-at", str(10 ** 12), "--to",
            f"127.0.0.1:{port}", *short, cwd=root)
    s_out, s_err = sp.communicate(timeout=120)
    r_out, r_err = rp.communicate(timeout=120)
    gold = vk("run", "--root", str(root), *short, cwd=root).communicate(timeout=120)[0]
    assert sp.returncode == 0 and s_out == gold and gold
    assert b"before --migrate-at; nothing was moved" in s_err and b"told it" in s_err
    assert rp.returncode == 124 and r_out == b""
    assert r_err.strip().splitlines() == [b"vkckpt receive: the sender's run ended before it "
                                          b"could move; nothing to resume"]


def test_run_ending_during_precopy_moves_nothing(root: Path) -> None:
    """In process: the run ends while round 1 waits to be applied; the receiver learns it."""
    cfg = KernelConfig(root=str(root), processes=[ProcessSpec("/memtouch", list(ARGS))])
    k = boot(cfg)
    assert k.run(until_ticks=8_000_000) is None
    sock = R.listen("127.0.0.1:0")
    got: dict = {}

    def serve() -> None:
        conn, _ = sock.accept()
        while k.exit_status is None:  # apply nothing until the sender's run is over
            time.sleep(0.01)
        with conn:
            try:
                R.receive(conn, None)
            except R.SenderEnded as exc:
                got["ended"] = str(exc)

    t = threading.Thread(target=serve)
    t.start()
    with pytest.raises(RunEnded, match="during pre-copy; nothing was moved"):
        migrate(k, f"127.0.0.1:{sock.getsockname()[1]}", None, round_ticks=10 ** 9)
    t.join(timeout=120)
    sock.close()
    assert k.exit_status == 0 and "nothing to resume" in got["ended"]
    k.shutdown()


def test_checkpoint_during_precopy_is_served_at_home(tmp_path: Path) -> None:
    """checkpoint(2) during pre-copy: written at home, the call returns 0 there, pre-copy
    goes on, and the moved run ends exactly as the run never moved (a short quantum gives
    the round scheduling points to end at between the call and the end of the run)."""
    def kernel(name: str) -> tuple[object, list[bytes], Path]:
        (tmp_path / name).mkdir()
        root = make_root(tmp_path / name, ["ckpt_self"])
        out: list[bytes] = []
        cfg = KernelConfig(root=str(root), stdout=out.append, quantum=1000, processes=[
            ProcessSpec("/ckpt_self", ["./ckpt_self", "self", "work/self.img"])])
        return boot(cfg), out, root

    k0, gold, _ = kernel("gold")
    assert k0.run() is None and k0.host_request is not None
    asked_at = k0.sched.ticks
    serve_guest_request(k0, FreezePlan(output=str(tmp_path / "unused.img")))
    assert k0.run() == 0
    end = k0.sched.ticks
    k0.shutdown()
    k1, home, root = kernel("moved")
    assert k1.run(until_ticks=1) is None
    plan = FreezePlan(output=str(tmp_path / "unused2.img"))
    served = threading.Event()
    sock = R.listen("127.0.0.1:0")
    got: dict = {}
    away: list[bytes] = []

    def receive() -> None:
        conn, _ = sock.accept()
        served.wait(120)  # round 1 is applied only once the checkpoint was served
        with conn:
            rec = R.receive(conn, None)
            got["k"] = thaw(rec.final, ThawOptions(root=str(root), stdout=away.append),
                            staged=rec.staged)
            R.answer(conn, True)
            rec.close()

    def serve(k: object) -> None:
        serve_guest_request(k, plan)
        served.set()

    t = threading.Thread(target=receive)
    t.start()
    st = migrate(k1, f"127.0.0.1:{sock.getsockname()[1]}", None,
                 round_ticks=asked_at + 1000, serve=serve)
    t.join(timeout=120)
    sock.close()
    assert served.is_set() and asked_at < st.ticks < end
    assert b"".join(home).startswith(b"checkpointed acc=")
    assert (root / "work" / "self.img").stat().st_size > 0
    k2 = got["k"]
    assert k2.run() == 0 and k2.sched.ticks == end
    assert b"".join(home + away) == b"".join(gold)


def test_receive_timeout_refuses_a_silent_connection(root: Path) -> None:
    rp, port = receiver(root, "--timeout", "1")
    with socket.create_connection(("127.0.0.1", port)):
        out, err = rp.communicate(timeout=60)
    assert rp.returncode == 125 and out == b""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and b"nothing received for 1 s inside the greeting" in lines[0]


def test_checkpoint_nobody_serves_fails_the_migration(tmp_path: Path) -> None:
    """Without a server for checkpoint(2) (freeze --to), a pending call makes the migration
    fail rather than move a caller nothing would wake; the receiver resumes nothing and the
    request is still there for the run loop at home."""
    root = make_root(tmp_path, ["ckpt_self"])
    cfg = KernelConfig(root=str(root), quantum=1000, processes=[
        ProcessSpec("/ckpt_self", ["./ckpt_self", "self", "work/self.img"])])
    sock = R.listen("127.0.0.1:0")
    got: dict = {}

    def receive() -> None:
        conn, _ = sock.accept()
        with conn:
            try:
                R.receive(conn, None)
            except ImageError as exc:
                got["refused"] = str(exc)

    t = threading.Thread(target=receive)
    t.start()
    k = boot(cfg)
    while k.host_request is None:  # the guest's call waits (when pre-copy would meet it
        assert k.run(until_ticks=k.sched.ticks + 1000) is None  # depends on send speed)
    with pytest.raises(MigrationError, match="checkpoint"):
        migrate(k, f"127.0.0.1:{sock.getsockname()[1]}", None, round_ticks=100_000)
    t.join(timeout=120)
    sock.close()
    assert "closed the connection" in got["refused"]
    assert k.host_request is not None and k.exit_status is None
    k.shutdown()


def test_receiver_without_once_waits_on_after_an_ended_stream(root: Path) -> None:
    """Without --once an ENDED stream is logged and the next connection is accepted (a
    peer cannot end a listener that serves several senders)."""
    p = vk("receive", "--listen", "127.0.0.1:0", "--root", str(root), cwd=root)
    try:
        m = re.search(rb"listening on 127\.0\.0\.1:(\d+)", p.stderr.readline())
        assert m
        with socket.create_connection(("127.0.0.1", int(m.group(1)))) as s:
            s.sendall(W.GREETING + W.FRAME_HEAD.pack(W.FRAME_MAGIC, W.KIND_ENDED, 0))
        assert p.stderr.readline() == (b"vkckpt receive: the sender's run ended before it "
                                       b"could move; nothing to resume\n")
        time.sleep(0.2)
        assert p.poll() is None, "the listener should wait for another stream"
    finally:
        p.kill()
        p.communicate(timeout=60)


def test_buffers_freed_and_made_between_rounds(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """mmaps maps and unmaps between round 1 (tick ~60k) and round 2 (~120k): the
    receiver unmaps what a round no longer has, maps what is new, and the moved run ends
    exactly as the unmoved one (output, ticks)."""
    root = make_root(tmp_path, ["mmaps"])

    def kernel(out: list[bytes]) -> object:
        return boot(KernelConfig(root=str(root), stdout=out.append,
                                 processes=[ProcessSpec("/mmaps", ["./mmaps"])]))

    gold: list[bytes] = []
    k0 = kernel(gold)
    assert k0.run() == 0
    end = k0.sched.ticks
    k0.shutdown()
    home: list[bytes] = []
    away: list[bytes] = []
    k = kernel(home)
    assert k.run(until_ticks=60_000) is None
    sock = R.listen("127.0.0.1:0")
    got: dict = {"bufs": []}

    def receive() -> None:
        conn, _ = sock.accept()
        with conn:
            while k.sched.ticks < 100_000:  # hold round 1: the guests run the round out
                time.sleep(0.005)
            rec = R.receive(conn, None)
            got["k"] = thaw(rec.final, ThawOptions(root=str(root), stdout=away.append),
                            staged=rec.staged)
            R.answer(conn, True)
            rec.close()

    real_apply = Staged.apply

    def apply(self: Staged, r: object) -> None:
        real_apply(self, r)
        got["bufs"].append(set(self.bufs))

    monkeypatch.setattr(Staged, "apply", apply)  # records each round's buffer ids
    t = threading.Thread(target=receive)
    t.start()
    st = migrate(k, f"127.0.0.1:{sock.getsockname()[1]}", None, round_ticks=60_000)
    t.join(timeout=120)
    sock.close()
    k.shutdown()
    first, second = got["bufs"][:2]
    assert first - second and second - first, "a buffer should go and another come"
    k2 = got["k"]
    assert st.ticks < end and k2.run() == 0 and k2.sched.ticks == end
    assert b"".join(home + away) == b"".join(gold)
