"""Internet sockets in images: tcploop and udploop frozen mid-transfer and with a non-empty
accept queue thaw to run on exactly as the unfrozen run; the port space and every internet
option are saved; hostile inetsock/inetns fields are refused; the virtual network never
leaves loopback (ENETUNREACH)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from vkckpt.abi import errno as E
from vkckpt.abi import inet as I
from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.ckpt.snapshot import write_image
from vkckpt.errors import GuestError, ImageError
from vkckpt.fs import inet, inet_state, unix_state
from vkckpt.fs.inet_ns import InetNamespace
from vkckpt.fs.unix import UnixSocket
from vkckpt.guests import build
from vkckpt.kernel import VKernel
from vkckpt.testing.hostile_images import INET_FIELD_CASES, load_records, set_field, write_records
from vkckpt.testing.oracle import (
    golden,
    image_at,
    points_where,
    run_until,
    thaw_refreeze_finish,
)
from vkckpt.testing.workload import Workload
from vkckpt.threads.wait import WaitQueue


def _inet(k: VKernel) -> list[UnixSocket]:
    files = [f for p in k.procs.values() if not p.zombie for f, _ in p.fds.fds.values()]
    return [s for s in unix_state.sockets_of(files) if s.inet is not None]


def _in_flight(k: VKernel) -> bool:
    return any(m.data for s in _inet(k) for m in s.recvq)


def _accept_queued(k: VKernel) -> bool:
    return any(s.acceptq for s in _inet(k))


def _syn_sent(k: VKernel) -> bool:
    return any(s.inet.syn is not None for s in _inet(k))


def _root(tmp_path: Path, name: str, n: int) -> Path:
    root = tmp_path / f"r{n}"
    root.mkdir(parents=True)
    shutil.copy2(build.guest_path(name), root / name)
    return root



_KINDS = ("socket", "unixns", "file", "inetsock", "inetns")


CASES = [
    ("tcploop", _in_flight, "TCP bytes in flight"),
    ("tcploop", _accept_queued, "a non-empty accept queue"),
    ("udploop", _in_flight, "queued datagrams with their sources"),
    ("netbench", _syn_sent, "a connect waiting in SYN_SENT on a full backlog"),
]


@pytest.mark.parametrize(("name", "cond", "what"), CASES, ids=[c[2] for c in CASES])
def test_frozen_inet_state_thaws_identically(tmp_path: Path, name: str, cond: Callable,
                                             what: str) -> None:
    wl = Workload(name)
    gold = golden(wl, _root(tmp_path, name, 0))
    hits = points_where(wl, _root(tmp_path, name, 1), cond)
    assert hits, f"{name} never has {what} at a scheduling point"
    for i, at in enumerate(sorted({hits[0], hits[len(hits) // 2], hits[-1]})):
        root = _root(tmp_path, name, 10 + i)
        k, before, status = run_until(wl, root, at)
        assert status is None and cond(k), f"{what} not there at tick {at}"
        ports = {key: [s.id for s in v] for key, v in k.inet.ports.items()
                 if any(not s.dead for s in v)}
        image = root / "x.img"
        write_image(k, str(image))
        k.shutdown()

        def check(k2: VKernel, at: int = at, ports: dict = ports) -> None:
            assert cond(k2), f"the thaw lost {what} (tick {at})"
            assert {key: [s.id for s in v] for key, v in k2.inet.ports.items()} == ports

        thaw_refreeze_finish(image, root, before, gold, check, _KINDS)


def test_every_inet_option_is_saved() -> None:
    s = UnixSocket(1, 1, WaitQueue("q"))
    s.inet = inet.InetOpts(I.AF_INET6)
    s.inet.syn = I.name(I.LOOP6, 80)  # written only while a connect waits
    saved = set(inet_state.save_socket(s))
    assert set(inet.InetOpts.__slots__) <= saved


@pytest.fixture(scope="module")
def inet_seed(tmp_path_factory) -> tuple[Path, Path, list]:
    """An image of tcploop frozen with bytes in flight."""
    base = tmp_path_factory.mktemp("inetseed")
    wl = Workload("tcploop")
    at = points_where(wl, _root(base, "tcploop", 0), _in_flight)[0]
    root = _root(base, "tcploop", 1)
    path = image_at(wl, root, at, base / "seed.img")
    return path, root, load_records(path)


def _thaws(src: Path, root: Path) -> VKernel:
    return thaw(str(src), ThawOptions(root=str(root), stdout=lambda b: None,
                                      deliver_sigthaw=False))


@pytest.mark.parametrize(("kind", "field", "value"), INET_FIELD_CASES,
                         ids=[f"{c[0]}.{c[1]}-{i}" for i, c in enumerate(INET_FIELD_CASES)])
def test_malicious_inet_field_is_refused(inet_seed, tmp_path: Path, kind: str, field: str,
                                         value: object) -> None:
    src, root, recs = inet_seed
    bad = write_records(tmp_path / "bad.img", src, set_field(recs, kind, field, value))
    with pytest.raises(ImageError):
        _thaws(bad, root).shutdown()


def test_inet_sockets_without_the_port_space_are_refused(inet_seed, tmp_path: Path) -> None:
    src, root, recs = inet_seed
    bad = write_records(tmp_path / "bad.img", src, [r for r in recs if r[0] != "inetns"])
    with pytest.raises(ImageError):
        _thaws(bad, root).shutdown()


def test_unmutated_inet_seed_thaws(inet_seed) -> None:
    src, root, _ = inet_seed
    k = _thaws(src, root)
    assert _in_flight(k) and k.inet.ports
    k.shutdown()


def _sock(family: int, stype: int = 1) -> UnixSocket:
    s = UnixSocket(1, stype, WaitQueue("q"))
    s.inet = inet.InetOpts(family)
    return s


@pytest.mark.parametrize("dest", [b"\2\0\0\x50\x0a\1\2\3" + b"\0" * 8,   # 10.1.2.3:80
                                  b"\2\0\0\x50\x08\x08\x08\x08" + b"\0" * 8])
def test_beyond_loopback_is_unreachable(dest: bytes) -> None:
    with pytest.raises(GuestError) as exc:
        inet.dest_of(_sock(I.AF_INET), dest)
    assert exc.value.errno == E.ENETUNREACH


def test_ephemeral_ports_count_from_32768_skipping_used_ones() -> None:
    ns = InetNamespace()
    taken = _sock(I.AF_INET)
    ns.bind(taken, I.name(I.ANY4, 32769))
    got = []
    for _ in range(3):
        s = _sock(I.AF_INET)
        ns.bind(s, I.name(I.ANY4, 0))
        got.append(I.port_of(s.addr))
    assert got == [32768, 32770, 32771]


def test_reuseport_shares_a_listening_port_and_reuseaddr_does_not() -> None:
    ns = InetNamespace()
    a, b = _sock(I.AF_INET), _sock(I.AF_INET)
    a.reuseaddr = b.reuseaddr = True
    ns.bind(a, I.name(I.V4MAPPED + bytes((127, 0, 0, 1)), 5000))
    inet.listen(ns, a, 4, (1, 0, 0))
    with pytest.raises(GuestError) as exc:
        ns.bind(b, I.name(I.ANY4, 5000))
    assert exc.value.errno == E.EADDRINUSE
    a.inet.reuseport = b.inet.reuseport = True
    ns.bind(b, I.name(I.ANY4, 5000))
    assert b.addr is not None


def test_closed_connections_leave_the_port_space(tmp_path: Path) -> None:
    """300 connections made and closed leave no endpoint on the port lists (a long-lived
    server's closed connections used to pile up there, and each accept scanned them)."""
    wl = Workload("netbench", ("conn", "300"))
    k, _, status = run_until(wl, _root(tmp_path, "netbench", 0), 1 << 62)
    assert status == 0
    assert sum(len(users) for users in k.inet.ports.values()) <= 1  # at most the listener
    assert not k.inet.syn_sent


def test_inspect_lists_the_network(tmp_path: Path) -> None:
    """`vkckpt inspect` shows each endpoint: a listener with its accept queue, the queued
    connections by name, and bytes waiting to be read."""
    from vkckpt.ckpt.inspect import describe

    wl = Workload("tcploop")
    root = _root(tmp_path, "tcploop", 0)
    at = points_where(wl, root, lambda k: _accept_queued(k) and _in_flight(k))[0]
    socks = describe(str(image_at(wl, root, at, tmp_path / "x.img")), False)["sockets"]
    listener = next(s for s in socks if s["state"] == "listening")
    assert listener["family"] == "inet" and listener["type"] == "stream"
    assert listener["local"].startswith("127.0.0.1:")
    assert listener["accept_queue"] >= 1
    queued = [s for s in socks if "queued" in s]
    assert queued and all(s["queued"]["bytes"] > 0 for s in queued)
    conns = [s for s in socks if s["state"] == "connected"]
    assert all(s["peer"].startswith("127.0.0.1:") for s in conns)
    by_id = {s["id"]: s for s in socks}
    assert all(by_id[s["peer_socket"]]["peer"] == s["local"] for s in conns)
