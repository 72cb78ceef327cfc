"""Published ports (fs/publish.py): host connections forwarded to the pubserver guest, a
freeze with an external connection open, and its thaw (the guest sees ECONNRESET, the port
is published again)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vkckpt.config import load_config
from vkckpt.errors import ConfigError
from vkckpt.fs.publish import parse_publish
from vkckpt.testing.hostile_images import load_records, set_field, write_records
from vkckpt.testing.workload import make_root

GUEST_PORT = "8080"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vkckpt", *args], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _serving(p: subprocess.Popen) -> subprocess.Popen:
    """p once its guest listens (a connection before would find no listener: closed)."""
    assert p.stdout.readline() == "listening on 8080\n"
    return p


def _connect(port: int, deadline: float = 60) -> socket.socket:
    """A connection to the published port once the vkernel listens on it."""
    end = time.monotonic() + deadline
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=30)
        except ConnectionRefusedError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


def _echo(s: socket.socket, data: bytes) -> bytes:
    """Send data, end the stream, and read until the guest closes."""
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    got = b""
    while chunk := s.recv(4096):
        got += chunk
    return got


def test_published_port_reaches_the_guest_server(tmp_path: Path) -> None:
    root = make_root(tmp_path, ["pubserver"])
    port = _free_port()
    p = _serving(_start(root, "run", "--root", str(root), "--publish",
                        f"{port}:{GUEST_PORT}", "./pubserver", GUEST_PORT, "2"))
    with _connect(port) as a:
        assert _echo(a, b"hello, world") == b"HELLO, WORLD"
    big = bytes(range(97, 123)) * 20000  # 520 kB: more than one send budget each way
    with _connect(port) as b:
        assert _echo(b, big) == big.upper()
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert out.splitlines() == ["conn 0: 12 bytes echoed",
                                f"conn 1: {len(big)} bytes echoed",
                                "served 2 connections, 0 thaws"]
    assert err.count("this run is not deterministic") == 1


def test_connection_while_no_guest_listens_is_closed(tmp_path: Path) -> None:
    root = make_root(tmp_path, ["pubserver"])
    dead, live = _free_port(), _free_port()
    p = _serving(_start(root, "run", "--root", str(root), "--publish", f"{dead}:9090",
                        "--publish", f"{live}:{GUEST_PORT}", "./pubserver", GUEST_PORT, "1"))
    with _connect(live) as a:  # the guest listens on 8080 only
        a.sendall(b"x")
        with _connect(dead) as d:
            try:
                assert d.recv(10) == b""
            except ConnectionResetError:
                pass
        assert _echo(a, b"y") == b"XY"
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert "conn 0: 2 bytes echoed" in out


def _frozen_with_a_connection(tmp_path: Path) -> tuple[Path, int, Path]:
    """(root, host port, image): pubserver frozen (--stop) with one host connection open,
    3 bytes echoed on it, while its guest waits in recv (no timer pending: the idle run
    sleeps on its host sockets until the freeze request wakes it)."""
    root = make_root(tmp_path, ["pubserver"])
    port = _free_port()
    img = tmp_path / "pub.img"
    p = _serving(_start(root, "run", "--root", str(root), "--publish", f"{port}:{GUEST_PORT}",
                        "./pubserver", GUEST_PORT, "2"))
    a = _connect(port)
    a.sendall(b"abc")
    assert a.recv(10) == b"ABC"
    f = subprocess.run([sys.executable, "-m", "vkckpt", "freeze", "--pid", str(p.pid),
                        "--stop", "-o", str(img)], capture_output=True, text=True, timeout=120)
    assert f.returncode == 0, f.stderr
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert a.recv(10) == b""  # the host side ends with the run
    a.close()
    return root, port, img


def _thaw_and_serve_one(root: Path, port: int, img: Path) -> list[str]:
    """What the thawed pubserver prints after serving one more host connection."""
    t = _start(root, "thaw", "--root", str(root), "--publish", f"{port}:{GUEST_PORT}", str(img))
    with _connect(port) as b:
        assert _echo(b, b"after thaw") == b"AFTER THAW"
    out, err = t.communicate(timeout=120)
    assert t.returncode == 0, err
    assert "not deterministic" in err
    return out.splitlines()


THAWED = ["conn 0: recv: ECONNRESET after 3 bytes", "conn 1: 10 bytes echoed",
          "served 2 connections, 1 thaws"]


def test_freeze_resets_external_connections_on_thaw(tmp_path: Path) -> None:
    root, port, img = _frozen_with_a_connection(tmp_path)
    pub = ["--publish", f"{port}:{GUEST_PORT}"]
    checked = subprocess.run([sys.executable, "-m", "vkckpt", "verify", "--root", str(root),
                              str(img)], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr  # read-only: publishes nothing
    refused = subprocess.run([sys.executable, "-m", "vkckpt", "thaw", "--root", str(root),
                              str(img)], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 125
    assert f"--publish {port}:{GUEST_PORT}" in refused.stderr
    recs = load_records(img)
    kr = next(r[3] for r in recs if r[0] == "kernel")
    assert kr["publish"] == [[port, 8080]] and len(kr["external"]) == 1
    own = next(r[3]["sock"] for r in recs if r[0] == "file" and "sock" in r[3])
    bad = write_records(tmp_path / "bad.img", img, set_field(recs, "kernel", "external", [own]))
    hostile = subprocess.run([sys.executable, "-m", "vkckpt", "thaw", "--root", str(root), *pub,
                              str(bad)], capture_output=True, text=True, timeout=120)
    assert hostile.returncode == 125 and "a guest's own socket" in hostile.stderr
    assert _thaw_and_serve_one(root, port, img) == THAWED


def test_merge_keeps_published_ports_and_external_connections(tmp_path: Path) -> None:
    """merge folds an image with published ports: the merged image records the same ports
    and external connections (none bound or reset by the merge itself), holds the same
    state, and thaws exactly like the original."""
    root, port, img = _frozen_with_a_connection(tmp_path)
    merged = tmp_path / "merged.img"
    m = subprocess.run([sys.executable, "-m", "vkckpt", "merge", "--root", str(root), str(img),
                        "-o", str(merged)], capture_output=True, text=True, timeout=120)
    assert m.returncode == 0, m.stderr
    kernel = [next(r[3] for r in load_records(i) if r[0] == "kernel") for i in (img, merged)]
    assert kernel[1]["publish"] == kernel[0]["publish"] == [[port, 8080]]
    assert kernel[1]["external"] == kernel[0]["external"] and len(kernel[0]["external"]) == 1
    d = subprocess.run([sys.executable, "-m", "vkckpt", "diff", str(img), str(merged)],
                       capture_output=True, text=True, timeout=120)
    assert d.returncode == 0, d.stdout + d.stderr
    refused = subprocess.run([sys.executable, "-m", "vkckpt", "thaw", "--root", str(root),
                              str(merged)], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 125 and f"--publish {port}:{GUEST_PORT}" in refused.stderr
    assert _thaw_and_serve_one(root, port, merged) == THAWED


def test_idle_wait_ends_on_a_host_wake_up() -> None:
    """An idle run with published ports waits on its host sockets with no time limit when
    no timer is pending; a freeze request (host/wake.py) ends the wait at once, even one
    made before the wait began, and a wait with nothing to do times out."""
    import threading

    from vkckpt.fs.publish import Publisher
    from vkckpt.host import wake

    pub = Publisher([])
    wake.clear()
    assert pub.wait(0.05) is False
    wake.wake()
    assert pub.wait(None) is True  # made before the wait: not missed
    threading.Timer(0.2, wake.wake).start()
    t0 = time.monotonic()
    assert pub.wait(None) is True
    assert 0.1 < time.monotonic() - t0 < 30
    assert pub.wait(0) is False  # the wake-up was consumed


@pytest.mark.parametrize("text", ["80", "0:80", "80:70000", "a:b", "1:2:3"])
def test_malformed_publish_is_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_publish(text)


def test_yaml_publish(tmp_path: Path) -> None:
    cfg = tmp_path / "vkckpt.yaml"
    cfg.write_text("publish: ['8000:80', '8443:443']\nprocesses:\n  - program: /x\n")
    assert load_config(cfg).publish == [(8000, 80), (8443, 443)]
    cfg.write_text("publish: 8000\nprocesses:\n  - program: /x\n")
    with pytest.raises(ConfigError):
        load_config(cfg)


def _pair(tmp_path: Path, limit: int = 1 << 30):
    """A publisher of a free port to guest port 8080 where a virtual listener waits, and
    the memory account (of limit bytes) the listener is charged to."""
    from vkckpt.abi import inet as I
    from vkckpt.fs import inet
    from vkckpt.fs.inodes import InodeTable
    from vkckpt.fs.publish import Publisher
    from vkckpt.fs.sandbox import GuestRoot
    from vkckpt.fs.unix import UnixSocket
    from vkckpt.fs.unix_ns import UnixNamespace
    from vkckpt.threads.wait import WaitQueue
    from vkckpt.vmspace.account import MemAccount

    mem = MemAccount(limit)
    uns = UnixNamespace(GuestRoot(str(tmp_path)), InodeTable(lambda: 0))
    q = WaitQueue(("poll",))
    ls = UnixSocket(uns.new_id(), 1, q)
    ls.inet = inet.InetOpts(I.AF_INET)
    ls.account(mem)
    uns.inet.bind(ls, I.name(I.V4MAPPED + bytes((127, 0, 0, 1)), 8080))
    inet.listen(uns.inet, ls, 4, (1, 0, 0))
    port = _free_port()
    pub = Publisher([(port, 8080)])
    pub.open()
    return uns, q, ls, pub, port, mem


def _pump_until(pub, uns, q, mem, cond) -> None:
    end = time.monotonic() + 10
    while not cond():
        assert time.monotonic() < end
        pub.wait(0.01)
        pub.pump(uns, q, mem)


def test_a_guest_reset_resets_the_host_connection(tmp_path: Path) -> None:
    from vkckpt.fs import unix_conn

    uns, q, ls, pub, port, mem = _pair(tmp_path)
    try:
        h = socket.create_connection(("127.0.0.1", port), timeout=10)
        h.sendall(b"unread")
        _pump_until(pub, uns, q, mem, lambda: ls.acceptq and ls.acceptq[0].recvq)
        g = unix_conn.accept(ls, True)
        g.release()  # closed with bytes unread: the peer gets a reset
        _pump_until(pub, uns, q, mem, lambda: not pub.conns)
        with pytest.raises(ConnectionResetError):
            h.recv(10)
        h.close()
    finally:
        pub.close()


def test_a_host_reset_reaches_the_guest_as_econnreset(tmp_path: Path) -> None:
    import struct

    from vkckpt.abi import errno as E
    from vkckpt.fs import unix_conn

    uns, q, ls, pub, port, mem = _pair(tmp_path)
    try:
        h = socket.create_connection(("127.0.0.1", port), timeout=10)
        _pump_until(pub, uns, q, mem, lambda: bool(ls.acceptq))
        g = unix_conn.accept(ls, True)
        h.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.close()
        _pump_until(pub, uns, q, mem, lambda: not pub.conns)
        assert g.err == E.ECONNRESET
    finally:
        pub.close()


def test_a_host_connection_to_a_full_backlog_is_closed(tmp_path: Path) -> None:
    uns, q, ls, pub, port, mem = _pair(tmp_path)
    ls.backlog = 0  # one queued connection fills it
    try:
        first = socket.create_connection(("127.0.0.1", port), timeout=10)
        _pump_until(pub, uns, q, mem, lambda: len(ls.acceptq) == 1)
        second = socket.create_connection(("127.0.0.1", port), timeout=10)
        time.sleep(0.2)  # the host has queued it on the listener
        pub.pump(uns, q, mem)
        assert second.recv(1) == b""
        assert len(ls.acceptq) == 1 and len(pub.conns) == 1
        assert not any(s.inet.syn for users in uns.inet.ports.values() for s in users)
        first.close()
        second.close()
    finally:
        pub.close()


def _cost() -> int:
    """What one fresh TCP endpoint costs the memory account (UnixSocket.cost)."""
    from vkckpt.fs.unix import UnixSocket
    from vkckpt.threads.wait import WaitQueue

    return UnixSocket(1, 1, WaitQueue(("poll",))).cost()


def test_published_connections_are_charged_until_they_close(tmp_path: Path) -> None:
    """Each host connection charges its virtual client endpoint and the guest's accepted
    end, as a guest's connect would; both are uncharged once the connection is over."""
    from vkckpt.fs import unix_conn

    uns, q, ls, pub, port, mem = _pair(tmp_path)
    idle = mem.used
    try:
        hosts = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        _pump_until(pub, uns, q, mem, lambda: len(ls.acceptq) == 2)
        assert mem.used == idle + 4 * _cost()
        assert all(c.vsock.charged == _cost() for c in pub.conns)
        g = unix_conn.accept(ls, True)
        hosts[0].close()  # the host ends one connection; the guest then closes its end
        _pump_until(pub, uns, q, mem, lambda: g.shutdown & 1)
        g.release()
        _pump_until(pub, uns, q, mem, lambda: len(pub.conns) == 1)
        assert mem.used == idle + 2 * _cost()
        pub.close()  # what is still open is released with the host sockets
        assert mem.used == idle + _cost()  # the accepted end still queued at the listener
        hosts[1].close()
    finally:
        pub.close()


def test_a_host_connection_without_memory_is_closed(tmp_path: Path) -> None:
    """At the memory limit a host connection is refused as a full backlog refuses it: the
    host side is closed, nothing is queued at the listener, nothing stays charged."""
    uns, q, ls, pub, port, mem = _pair(tmp_path, limit=3 * _cost())
    try:
        first = socket.create_connection(("127.0.0.1", port), timeout=10)
        _pump_until(pub, uns, q, mem, lambda: len(ls.acceptq) == 1)
        assert mem.used == 3 * _cost()
        second = socket.create_connection(("127.0.0.1", port), timeout=10)
        time.sleep(0.2)  # the host has queued it on the listener
        pub.pump(uns, q, mem)
        assert second.recv(1) == b""
        assert len(ls.acceptq) == 1 and len(pub.conns) == 1
        assert mem.used == 3 * _cost()
        first.close()
        second.close()
    finally:
        pub.close()


def _echoed(h: socket.socket) -> bool:
    """The host has the guest's echo of b"abc" (non-blocking h: looked at, not taken)."""
    try:
        return h.recv(3, socket.MSG_PEEK) == b"ABC"
    except BlockingIOError:
        return False


def test_thaws_keep_the_account_of_external_connections(tmp_path: Path) -> None:
    """A run with a host connection open holds both of its endpoints' costs; a merge's
    thaw (refreeze: the external endpoint adopted) holds exactly what the run held, and a
    thaw that resets the external endpoint holds that much less its cost."""
    from vkckpt.ckpt.restore import ThawOptions, thaw
    from vkckpt.ckpt.snapshot import write_image
    from vkckpt.runner import boot
    from vkckpt.testing.workload import Workload

    root = make_root(tmp_path, ["pubserver"])
    port = _free_port()
    out: list[bytes] = []
    cfg = Workload("pubserver", (GUEST_PORT, "2")).config(root, out)
    cfg.publish = [(port, 8080)]
    k = boot(cfg)
    try:
        assert k.run(on_schedule_point=lambda k: b"listening" in b"".join(out)) is None
        h = socket.create_connection(("127.0.0.1", port), timeout=10)
        h.sendall(b"abc")
        h.setblocking(False)
        assert k.run(on_schedule_point=lambda k: _echoed(h)) is None  # the guest is in recv
        vs = k.publish.conns[0].vsock
        assert vs.mem is k.mem and vs.charged == vs.cost() and vs.peer.charged == vs.cost()
        used, cost = k.mem.used, vs.cost()
        image = root / "pub.img"
        write_image(k, str(image))
    finally:
        k.shutdown()
    h.close()
    for refreeze, want in ((True, used), (False, used - cost)):
        k2 = thaw(str(image), ThawOptions(root=str(root), stdout=lambda b: None,
                                          deliver_sigthaw=False, publish=[(port, 8080)],
                                          refreeze=refreeze))
        try:
            assert k2.mem.used == want
        finally:
            k2.shutdown()
