"""Attacks on the control socket (issue 11, class 5): other local users, malformed peers.

Tests run as root; "another user" is a child process started with uid/gid OTHER.  Each test
is an attack that worked on the old server or client and must now be refused."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from vkckpt.ckpt import control
from vkckpt.ckpt.control import ControlServer
from vkckpt.config import KernelConfig, ProcessSpec
from vkckpt.kernel import VKernel
from vkckpt.runner import boot

OTHER = 54321  # a uid and gid nobody on the test machine has



def attacker(path: str, request: str, times: int = 1) -> str:
    """A client (run as OTHER): send request `times` times, one connection each; the
    answers, one a line, or ERR and the errno of a failed connect."""
    out = []
    for _ in range(times):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        try:
            s.connect(path)
            try:
                s.sendall(request.encode() + b"\n")
            except BrokenPipeError:
                pass  # refused before the request was read: the answer waits anyway
            out.append(s.recv(65536).decode().strip() or "EOF")
        except OSError as exc:
            out.append(f"ERR {exc.errno}")
        finally:
            s.close()
    return "\n".join(out) + "\n"


class AsOther:
    """fn(*args) in a forked child with uid and gid OTHER; communicate() gives what it
    returned (a string)."""

    def __init__(self, fn: Callable[..., str], *args: object) -> None:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                os.close(r)
                os.setgroups([])
                os.setresgid(OTHER, OTHER, OTHER)
                os.setresuid(OTHER, OTHER, OTHER)
                os.write(w, fn(*args).encode())
                code = 0
            except BaseException as exc:  # noqa: BLE001
                os.write(w, f"child failed: {exc!r}".encode())
            finally:
                os._exit(code)
        os.close(w)
        self.pid, self.fd, self.status = pid, r, None

    def poll(self) -> int | None:
        if self.status is None:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = st
        return self.status

    def communicate(self) -> str:
        chunks = []
        while chunk := os.read(self.fd, 65536):
            chunks.append(chunk)
        os.close(self.fd)
        if self.status is None:
            self.status = os.waitpid(self.pid, 0)[1]
        return b"".join(chunks).decode()

    def kill(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.communicate()


def _open_dir(path: str) -> str:
    os.mkdir(path)
    os.chmod(path, 0o777)
    return ""


def _fake_foreign_server(path: str, answer: str) -> str:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)
    conn, _ = listener.accept()
    conn.recv(65536)
    conn.sendall(answer.encode() + b"\n")
    return ""


#: Acting as another user takes root (CI runs the suite as root).
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")


@pytest.fixture
def base(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory like /tmp, where every user may create names (pytest's tmp_path is
    private to root)."""
    d = Path(tempfile.mkdtemp(prefix="vkckpt-ctltest-", dir="/tmp"))
    d.chmod(0o1777)
    monkeypatch.setenv("VKCKPT_CONTROL_DIR", str(d / "ctl"))
    monkeypatch.chdir(d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def kernel(make_root) -> VKernel:  # noqa: ANN001
    root = make_root("hello")
    return boot(KernelConfig(root=str(root), processes=[ProcessSpec("/hello", ["hello"])],
                             stdout=lambda b: None, log=lambda s: None))


@contextmanager
def listening(base: Path, default: str | None = None) -> Iterator[ControlServer]:
    server = ControlServer(default or str(base / "default.img"))
    try:
        yield server
    finally:
        server.close()


def exchange(path: str, data: bytes, timeout: float = 5.0) -> bytes:
    """A raw client: send data, read until a newline or end of file."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(data)
        out = b""
        while not out.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def serving(server: ControlServer, k: VKernel, busy: threading.Thread | AsOther,
            timeout: float = 10.0) -> None:
    """Play the run loop (serve requests at scheduling points) until busy ends."""
    deadline = time.monotonic() + timeout
    alive = busy.is_alive if isinstance(busy, threading.Thread) else lambda: busy.poll() is None
    while alive() and time.monotonic() < deadline:
        while server.pending():
            server.serve(k)
        time.sleep(0.005)


def ask(server: ControlServer, k: VKernel, data: bytes, timeout: float = 10.0) -> dict:
    """One request through the socket, served as the run loop would; the parsed answer."""
    got: dict[str, bytes] = {}
    th = threading.Thread(target=lambda: got.update(reply=exchange(server.path, data, timeout)))
    th.start()
    serving(server, k, th, timeout)
    th.join(timeout)
    assert "reply" in got, "no answer"
    return json.loads(got["reply"])


def freeze_request(path: Path | str, **extra: object) -> bytes:
    return json.dumps({"op": "freeze", "output": str(path), **extra}).encode() + b"\n"


# -- 1. the private directory and the socket's mode ---------------------------------------------

@needs_root
def test_directory_precreated_by_another_user_is_refused(base: Path, kernel: VKernel,
                                                         capsys: pytest.CaptureFixture) -> None:
    """The issue's attack: another user pre-creates the directory (0777), root runs with
    umask 000, and the other user asks for an image on top of a root-only file."""
    ctl = base / "ctl"
    assert AsOther(_open_dir, str(ctl)).communicate() == ""
    secret = base / "secret"
    secret.write_bytes(b"root only\n")
    secret.chmod(0o600)
    old = os.umask(0)
    try:
        with listening(base) as server:
            child = AsOther(attacker, str(ctl / f"{os.getpid()}.sock"),
                            freeze_request(secret).decode().strip())
            serving(server, kernel, child)
            out = child.communicate()
            assert secret.read_bytes() == b"root only\n"
            assert out.startswith("ERR"), out
            assert server.path is None
            assert not any(ctl.iterdir())
    finally:
        os.umask(old)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"owned by uid {OTHER}" in err[0] and "VKCKPT_CONTROL_DIR" in err[0]


def test_symlinked_directory_is_refused(base: Path, capsys: pytest.CaptureFixture) -> None:
    elsewhere = base / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (base / "ctl").symlink_to(elsewhere)
    with listening(base) as server:
        assert server.path is None
    assert not any(elsewhere.iterdir())
    err = capsys.readouterr().err
    assert "symbolic link" in err and "control socket disabled" in err


@pytest.mark.parametrize("mode", [0o755, 0o770, 0o701])
def test_too_open_directory_is_refused(base: Path, mode: int,
                                       capsys: pytest.CaptureFixture) -> None:
    ctl = base / "ctl"
    ctl.mkdir()
    ctl.chmod(mode)
    with listening(base) as server:
        assert server.path is None
    assert not any(ctl.iterdir())
    err = capsys.readouterr().err.strip()
    assert f"mode {mode:04o}" in err and f"chmod 700 {ctl}" in err


def test_a_file_in_place_of_the_directory_is_refused(base: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    (base / "ctl").write_text("not a directory\n")
    with listening(base) as server:
        assert server.path is None
    assert (base / "ctl").read_text() == "not a directory\n"
    assert "not a directory" in capsys.readouterr().err


@needs_root
def test_socket_is_0600_and_directory_0700_under_umask_000(base: Path) -> None:
    old = os.umask(0)
    try:
        with listening(base) as server:
            st = os.lstat(server.path)
            assert st.st_mode & 0o777 == 0o600
            assert os.lstat(base / "ctl").st_mode & 0o777 == 0o700
    finally:
        os.umask(old)
    assert AsOther(attacker, server.path, "{}").communicate().startswith("ERR")


def test_an_existing_private_directory_is_shared_by_runs(base: Path) -> None:
    (base / "ctl").mkdir(mode=0o700)
    with listening(base) as a:
        assert a.path == str(base / "ctl" / f"{os.getpid()}.sock")


# -- 2. peer credentials -------------------------------------------------------------------------

@needs_root
def test_other_users_are_refused_even_when_they_can_reach_the_socket(
        base: Path, kernel: VKernel, capsys: pytest.CaptureFixture) -> None:
    secret = base / "secret"
    secret.write_bytes(b"root only\n")
    secret.chmod(0o600)
    with listening(base) as server:
        os.chmod(base / "ctl", 0o711)  # an administrator's mistake: the socket is reachable
        os.chmod(server.path, 0o666)
        child = AsOther(attacker, server.path, freeze_request(secret).decode().strip(), 3)
        serving(server, kernel, child)
        out = child.communicate()
        answers = [json.loads(ln) for ln in out.splitlines()]
        assert len(answers) == 3, out
        for a in answers:
            assert a["ok"] is False and f"uid {OTHER}" in a["error"]
        # the owner is still served
        assert ask(server, kernel, freeze_request(base / "mine.img"))["ok"] is True
    assert secret.read_bytes() == b"root only\n"
    err = [ln for ln in capsys.readouterr().err.splitlines() if f"uid {OTHER}" in ln]
    assert len(err) == 1, err


# -- 3. the request schema -----------------------------------------------------------------------

BAD_REQUESTS = {
    "nul": b'{"op": "freeze", "output": "/tmp/a\\u0000b.img"}\n',
    "lone surrogate": b'{"op": "freeze", "output": "/tmp/\\ud800.img"}\n',
    "deep nesting": b"[" * 60000 + b"\n",
    "deep object": b'{"op": "freeze", "output": ' + b'{"a": ' * 30000 + b"\n",
    "relative output": b'{"op": "freeze", "output": "rel.img"}\n',
    "unknown field": b'{"op": "freeze", "output": "/tmp/u.img", "evil": 1}\n',
    "codec smuggled": b'{"op": "freeze", "output": "/tmp/u.img", "codec": "bogus"}\n',
    "stop not bool": b'{"op": "freeze", "output": "/tmp/s.img", "stop": "yes"}\n',
    "incremental int": b'{"op": "freeze", "output": "/tmp/i.img", "incremental": 1}\n',
    "output int": b'{"op": "freeze", "output": 5}\n',
    "output list": b'{"op": "freeze", "output": ["/tmp/l.img"]}\n',
    "stop NaN": b'{"op": "freeze", "output": "/tmp/n.img", "stop": NaN}\n',
    "duplicate key": b'{"op": "freeze", "output": "/tmp/d.img", "output": "/tmp/e.img"}\n',
    "two objects": b'{"op": "freeze", "output": "/tmp/t.img"} {"op": "freeze"}\n',
    "unknown op": b'{"op": "thaw"}\n',
    "no op": b"{}\n",
    "not an object": b"[1]\n",
    "not utf-8": b'{"op": "freeze", "output": "/tmp/\xff.img"}\n',
    "over-long": b'{"op": "freeze", "output": "/' + b"a" * 70000 + b'"}\n',
    "output too long": b'{"op": "freeze", "output": "/' + b"a" * 5000 + b'"}\n',
}


def test_malformed_requests_are_refused_and_the_server_survives(base: Path, kernel: VKernel
                                                                ) -> None:
    with listening(base) as server:
        for name, data in BAD_REQUESTS.items():
            a = ask(server, kernel, data)
            assert a["ok"] is False and isinstance(a["error"], str) and a["error"], name
            assert set(a) == {"ok", "error"}, name
        good = ask(server, kernel, freeze_request(base / "good.img"))
    assert good["ok"] is True and good["image"] == str(base / "good.img"), good
    assert set(good) == {"ok", "image", "ticks", "image_id", "pages"}
    assert sorted(p.name for p in base.iterdir()) == ["ctl", "good.img"]


# -- 4. the accept loop ------------------------------------------------------------------------

def test_idle_and_dribbling_connections_do_not_block_requests(base: Path,
                                                              kernel: VKernel) -> None:
    timeout = getattr(control, "REQUEST_TIMEOUT", 2.0)
    with listening(base) as server:
        idle = []
        for _ in range(5):
            s = socket.socket(socket.AF_UNIX)
            s.connect(server.path)
            idle.append(s)
        stop = threading.Event()

        def dribble() -> None:
            s = socket.socket(socket.AF_UNIX)
            s.connect(server.path)
            try:
                while not stop.is_set():
                    s.sendall(b" ")
                    time.sleep(0.1)
            except OSError:
                pass
            finally:
                s.close()
        th = threading.Thread(target=dribble)
        th.start()
        t0 = time.monotonic()
        a = ask(server, kernel, freeze_request(base / "through.img"))
        assert a["ok"] is True and time.monotonic() - t0 < 4  # one at a time: >= 10 s
        t0 = time.monotonic()
        th.join(timeout + 2)  # the dribbler is cut off by the per-connection deadline
        assert not th.is_alive()
        stop.set()
        for s in idle:
            s.settimeout(timeout + 2)
            reply = s.recv(4096)
            assert reply == b"" or json.loads(reply)["ok"] is False
            s.close()
        assert time.monotonic() - t0 < timeout + 2


def test_accept_loop_survives_fd_exhaustion(base: Path, kernel: VKernel,
                                            capsys: pytest.CaptureFixture) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with listening(base) as server:
        c = socket.socket(socket.AF_UNIX)
        c.settimeout(10)
        used = len(os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (used + 32, hard))
        fill = []
        try:
            while True:
                fill.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        try:
            c.connect(server.path)  # the server's accept() now fails with EMFILE
            time.sleep(0.5)
        finally:
            for fd in fill:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        got: dict[str, bytes] = {}

        def talk() -> None:
            c.sendall(freeze_request(base / "after.img"))
            got["reply"] = c.recv(4096)
        th = threading.Thread(target=talk)
        th.start()
        serving(server, kernel, th)
        c.close()
        assert json.loads(got["reply"])["ok"] is True
        assert ask(server, kernel, freeze_request(base / "again.img"))["ok"] is True
    err = capsys.readouterr().err
    assert err.count("file descriptors") == 1, err


def test_a_flood_of_connections_gets_busy_answers_not_a_dead_server(base: Path,
                                                                    kernel: VKernel) -> None:
    most = getattr(control, "MAX_CONNECTIONS", 32)
    with listening(base) as server:
        flood = []
        for _ in range(most + 8):
            s = socket.socket(socket.AF_UNIX)
            s.connect(server.path)
            flood.append(s)
        busy = 0
        for s in flood[-8:]:
            s.settimeout(5)
            reply = s.recv(4096)
            busy += json.loads(reply)["ok"] is False and "busy" in reply.decode()
        assert busy == 8
        for s in flood:
            s.close()
        time.sleep(0.1)
        assert ask(server, kernel, freeze_request(base / "after.img"))["ok"] is True


# -- 5. failed freezes are reported -------------------------------------------------------------

def test_failed_sigusr1_freeze_is_reported(base: Path, kernel: VKernel,
                                           capsys: pytest.CaptureFixture) -> None:
    with listening(base, "/nonexistent-dir/x.img") as server:
        os.kill(os.getpid(), signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while not server.pending() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.serve(kernel) is True  # the run goes on
        assert server.failed_signal_freezes == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SIGUSR1" in err[0] and "/nonexistent-dir/x.img" in err[0]


def _vk_env(base: Path) -> dict[str, str]:
    return {**os.environ, "VKCKPT_CONTROL_DIR": str(base / "ctl")}


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert path.exists(), proc.stderr.read() if proc.poll() is not None else "no socket"


def test_failed_sigusr1_freeze_makes_the_run_exit_125(base: Path, make_root) -> None:  # noqa: ANN001
    root = make_root("compute")
    out = base / "gone"  # exists when the run pins it at start-up, removed before the freeze
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "vkckpt", "run", "--root", str(root), "-o",
                             str(out / "x.img"), "./compute", "1000"], cwd=root,
                            env=_vk_env(base), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        sock = base / "ctl" / f"{proc.pid}.sock"
        _wait_for(sock, proc)
        out.rmdir()
        proc.send_signal(signal.SIGUSR1)
        first = proc.stderr.readline()
        assert "SIGUSR1" in first and str(out / "x.img") in first, first
        f = subprocess.run([sys.executable, "-m", "vkckpt", "freeze", "--pid", str(proc.pid),
                            "--stop", "-o", str(base / "ok.img")], env=_vk_env(base),
                           capture_output=True, text=True, timeout=120)
        assert f.returncode == 0, f.stderr
        _, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 125, rest
    assert "Traceback" not in rest and "exit status 125" in rest
    assert not sock.exists()


# -- 6. the client validates answers ------------------------------------------------------------

GOOD_ANSWER = {"ok": True, "image": "/x.img", "ticks": 7, "image_id": "ab" * 16, "pages": 3}
BAD_ANSWERS = {
    "a list": b"[1]\n",
    "spoofed ok": b'{"ok": true}\n',
    "wrong types": json.dumps({**GOOD_ANSWER, "image": 5, "ticks": "x"}).encode() + b"\n",
    "extra field": json.dumps({**GOOD_ANSWER, "extra": 1}).encode() + b"\n",
    "bad image id": json.dumps({**GOOD_ANSWER, "image_id": "zz"}).encode() + b"\n",
    "ok not bool": json.dumps({**GOOD_ANSWER, "ok": 1}).encode() + b"\n",
    "error not str": b'{"ok": false, "error": 3}\n',
    "over-long": b'{"ok": false, "error": "' + b"x" * (1 << 20) + b'"}\n',
    "no newline, closed": b'{"ok": false, "error": "x"}',
    "two answers": b'{"ok": false, "error": "x"}\n{"ok": false, "error": "y"}\n',
    "deep": b"[" * 60000 + b"\n",
    "garbage": b"\x00\xff\n",
}


def _fake_server(path: Path, answer: bytes, dribble: bool = False) -> threading.Thread:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(10)
        try:
            conn.recv(65536)
            if dribble:
                for _ in range(60):
                    conn.sendall(b" ")
                    time.sleep(0.1)
            else:
                conn.sendall(answer)
        except OSError:
            pass
        finally:
            conn.close()
            listener.close()
    th = threading.Thread(target=serve)
    th.start()
    return th


def _freeze_cli(base: Path, pid: int, timeout: float = 5) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vkckpt", "freeze", "--pid", str(pid), "-o",
                           "x.img", "--timeout", str(timeout)], env=_vk_env(base), cwd=base,
                          capture_output=True, text=True, timeout=60)


def _assert_one_error(r: subprocess.CompletedProcess, what: str) -> None:
    assert r.returncode == 1, (what, r.stdout, r.stderr[:500])
    assert r.stdout == "" and "Traceback" not in r.stderr, (what, r.stderr[:500])
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vkckpt: ") and len(lines[0]) < 400, \
        (what, r.stderr[:500])


def test_the_client_refuses_malformed_answers(base: Path) -> None:
    ctl = base / "ctl"
    ctl.mkdir(mode=0o700)
    pid = 999_999
    th = _fake_server(ctl / f"{pid}.sock", json.dumps(GOOD_ANSWER).encode() + b"\n")
    r = _freeze_cli(base, pid)
    th.join()
    assert r.returncode == 0 and r.stdout == f"/x.img (tick 7, image id {'ab' * 16})\n", r.stderr
    for what, answer in BAD_ANSWERS.items():
        (ctl / f"{pid}.sock").unlink()
        th = _fake_server(ctl / f"{pid}.sock", answer)
        r = _freeze_cli(base, pid)
        th.join()
        _assert_one_error(r, what)


def test_the_client_gives_up_on_a_dribbling_server(base: Path) -> None:
    ctl = base / "ctl"
    ctl.mkdir(mode=0o700)
    th = _fake_server(ctl / "999998.sock", b"", dribble=True)
    t0 = time.monotonic()
    r = _freeze_cli(base, 999_998, timeout=1)
    assert time.monotonic() - t0 < 4
    th.join()
    _assert_one_error(r, "dribble")
    assert "1 s" in r.stderr or "time" in r.stderr


@needs_root
def test_the_client_refuses_a_server_of_another_user(base: Path) -> None:
    ctl = base / "ctl"
    ctl.mkdir(mode=0o700)
    os.chown(ctl, OTHER, OTHER)
    sock = ctl / "999997.sock"
    fake = AsOther(_fake_foreign_server, str(sock), json.dumps(GOOD_ANSWER))
    deadline = time.monotonic() + 10
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    r = _freeze_cli(base, 999_997)
    fake.kill()
    _assert_one_error(r, "foreign server")
    assert f"uid {OTHER}" in r.stderr


# -- 7. dead sockets ---------------------------------------------------------------------------

def _bound(path: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()  # the name stays behind, as after a SIGKILL


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_sockets_of_dead_runs_are_removed_and_nothing_else(base: Path, make_root) -> None:  # noqa: ANN001
    ctl = base / "ctl"
    ctl.mkdir(mode=0o700)
    root = make_root("compute")
    run = subprocess.Popen([sys.executable, "-m", "vkckpt", "run", "--root", str(root),
                            "./compute", "1000"], cwd=root, env=_vk_env(base),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed = ctl / f"{run.pid}.sock"
    _wait_for(killed, run)
    run.kill()
    run.wait()
    assert killed.exists()  # a SIGKILLed run leaves its socket behind
    dead = _dead_pid()
    _bound(ctl / f"{dead}.sock")
    _bound(ctl / "1.sock")                               # pid 1 lives
    _bound(ctl / "abc.sock")                             # not a pid
    _bound(ctl / f"{dead}.other")                        # not a .sock name
    (ctl / f"{dead + 1}.sock").write_text("a file\n")   # not a socket
    _bound(base / "outside.sock")
    (ctl / f"{dead + 2}.sock").symlink_to(base / "outside.sock")
    with listening(base) as server:
        left = sorted(p.name for p in ctl.iterdir() if str(p) != server.path)
    assert left == sorted(["1.sock", "abc.sock", f"{dead}.other", f"{dead + 1}.sock",
                           f"{dead + 2}.sock"])
    assert (base / "outside.sock").exists()


@pytest.mark.parametrize("args", [["--pid", "0"], ["--pid", "-3"], ["--pid", "7", "--timeout",
                                  "-1"], ["--pid", "7", "--timeout", "nan"]])
def test_freeze_refuses_a_pid_or_timeout_that_is_not_positive(base: Path, args: list[str]
                                                              ) -> None:
    ctl = base / "ctl"
    ctl.mkdir(mode=0o700)
    _bound(ctl / "7.sock")  # something to connect to, so the timeout is used
    r = subprocess.run([sys.executable, "-m", "vkckpt", "freeze", *args, "-o", "x.img"],
                       env=_vk_env(base), cwd=base, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "must be greater than 0" in r.stderr
