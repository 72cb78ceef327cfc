"""AF_UNIX sockets in images: frozen mid-transfer, with a non-empty accept queue and with
files in flight, each thaw runs on exactly as the unfrozen run; and the saved form keeps
every endpoint field."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from vkckpt.abi.fcntl import S_IFIFO, S_IFSOCK
from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.ckpt.snapshot import write_image
from vkckpt.errors import ImageError
from vkckpt.fs import unix_state
from vkckpt.fs.unix import UnixSocket
from vkckpt.guests import build
from vkckpt.kernel import VKernel
from vkckpt.testing.hostile_images import SOCKET_FIELD_CASES, load_records, set_field, write_records
from vkckpt.testing.oracle import (
    golden,
    image_at,
    image_records,
    points_where,
    run_until,
    thaw_refreeze_finish,
)
from vkckpt.testing.workload import Workload


def _sockets(k: VKernel) -> list[UnixSocket]:
    files = [f for p in k.procs.values() if not p.zombie for f, _ in p.fds.fds.values()]
    return unix_state.sockets_of(files)


def _in_flight(k: VKernel) -> bool:
    return any(m.data for s in _sockets(k) for m in s.recvq)


def _accept_queued(k: VKernel) -> bool:
    return any(s.acceptq for s in _sockets(k))


def _fds_in_flight(k: VKernel) -> bool:
    return any(m.fds for s in _sockets(k) for m in s.recvq)


def _root(tmp_path: Path, name: str, n: int) -> Path:
    root = tmp_path / f"r{n}"
    (root / "work").mkdir(parents=True)
    shutil.copy2(build.guest_path(name), root / name)
    return root



CASES = [
    ("unixpair", (), _in_flight, "bytes in flight"),
    ("unixserver", ("work",), _accept_queued, "a non-empty accept queue"),
    ("unixpair", (), _fds_in_flight, "files in flight in SCM_RIGHTS messages"),
    ("unixdgram", ("work",), _in_flight, "queued datagrams"),
]


@pytest.mark.parametrize(("name", "args", "cond", "what"), CASES,
                         ids=[c[3] for c in CASES])
def test_frozen_with_socket_state_thaws_identically(tmp_path: Path, name: str, args: tuple,
                                                    cond: Callable, what: str) -> None:
    wl = Workload(name, args)
    gold = golden(wl, _root(tmp_path, name, 0))
    hits = points_where(wl, _root(tmp_path, name, 1), cond)
    assert hits, f"{name} never has {what} at a scheduling point"
    for i, at in enumerate(sorted({hits[0], hits[len(hits) // 2], hits[-1]})):
        root = _root(tmp_path, name, 10 + i)
        k, before, status = run_until(wl, root, at)
        assert status is None and cond(k), f"{what} not there at tick {at}"
        image = root / "x.img"
        write_image(k, str(image))
        k.shutdown()

        def check(k2: VKernel, at: int = at) -> None:
            assert cond(k2), f"the thaw lost {what} (tick {at})"

        thaw_refreeze_finish(image, root, before, gold, check, _KINDS)


_KINDS = ("socket", "unixns", "file")


def _sockets_in_flight(k: VKernel) -> dict[int, int]:
    """The garbage collector's in-flight count of each socket file, by socket id."""
    return {f.sock.id: n for f, n in k.unix.gc.inflight.values()}


def _garbage(k: VKernel) -> list[int]:
    """The sockets the collector would release now (no descriptor reaches them)."""
    return [f.sock.id for f in k.unix.gc.garbage()]


def test_pending_garbage_is_saved_and_collected_after_the_thaw(tmp_path: Path) -> None:
    """unixgc frozen while garbage waits for the next release (its `pending` case): the
    image holds the unreachable sockets and the pipe end they carry, so the thawed run has
    the same garbage and collects it at the same release (output and ticks compared)."""
    wl = Workload("unixgc")
    gold = golden(wl, _root(tmp_path, "unixgc", 0))
    hits = points_where(wl, _root(tmp_path, "unixgc", 1), lambda k: bool(_garbage(k)))
    assert hits, "unixgc never has garbage waiting at a scheduling point"
    root = _root(tmp_path, "unixgc", 2)
    k, before, status = run_until(wl, root, hits[0])
    want = (_garbage(k), _sockets_in_flight(k))
    image = root / "x.img"
    write_image(k, str(image))
    k.shutdown()

    def check(k2: VKernel) -> None:
        assert (_garbage(k2), _sockets_in_flight(k2)) == want

    thaw_refreeze_finish(image, root, before, gold, check, _KINDS)


def test_in_flight_counts_rebuilt_at_thaw_then_collected(tmp_path: Path) -> None:
    """unixgc frozen with sockets in flight (its cycles before they are closed): the thaw
    counts them as the live run did, and collects them so the run ends as the golden one
    (its pipe readers see EOF: output and ticks compared)."""
    wl = Workload("unixgc")
    gold = golden(wl, _root(tmp_path, "unixgc", 0))
    hits = points_where(wl, _root(tmp_path, "unixgc", 1), lambda k: bool(_sockets_in_flight(k)))
    assert len(hits) >= 3, "unixgc never has sockets in flight at a scheduling point"
    for i, at in enumerate(sorted({hits[0], hits[len(hits) // 2], hits[-1]})):
        root = _root(tmp_path, "unixgc", 10 + i)
        k, before, status = run_until(wl, root, at)
        counts = _sockets_in_flight(k)
        assert status is None and counts, f"nothing in flight at tick {at}"
        image = root / "x.img"
        write_image(k, str(image))
        k.shutdown()

        def check(k2: VKernel, counts: dict[int, int] = counts) -> None:
            assert _sockets_in_flight(k2) == counts

        thaw_refreeze_finish(image, root, before, gold, check, _KINDS)


def test_every_socket_field_is_saved_or_transient(tmp_path: Path) -> None:
    root = _root(tmp_path, "unixpair", 0)
    hits = points_where(Workload("unixpair"), root, _in_flight)
    k, _, _ = run_until(Workload("unixpair"), _root(tmp_path, "unixpair", 1), hits[0])
    socks = _sockets(k)
    saved = set(unix_state.save_socket(socks[0], k.unix, {}))
    for f in vars(socks[0]):
        name = {"recvq": "msgs"}.get(f, f)
        assert name in saved or f in unix_state.TRANSIENT, f"UnixSocket.{f} is not saved"
    k.shutdown()


@pytest.fixture(scope="module")
def socket_seed(tmp_path_factory) -> tuple[Path, Path, list]:
    """An image of unixpair frozen with files in flight (sockets, messages, fds)."""
    base = tmp_path_factory.mktemp("sockseed")
    wl = Workload("unixpair")
    at = points_where(wl, _root(base, "unixpair", 0), _fds_in_flight)[0]
    root = _root(base, "unixpair", 1)
    path = image_at(wl, root, at, base / "seed.img")
    return path, root, load_records(path)


@pytest.mark.parametrize(("kind", "field", "value"), SOCKET_FIELD_CASES,
                         ids=[f"{c[0]}.{c[1]}-{i}" for i, c in enumerate(SOCKET_FIELD_CASES)])
def test_malicious_socket_field_is_refused(socket_seed, tmp_path: Path, kind: str,
                                           field: str, value: object) -> None:
    src, root, recs = socket_seed
    i = next(n for n, r in enumerate(recs) if r[0] == kind and
             (kind != "socket" or r[3]["msgs"]))  # a socket with a queue
    bad = write_records(tmp_path / "bad.img", src, set_field(recs, kind, field, value,
                                                             index=sum(r[0] == kind for r in
                                                                       recs[:i])))
    with pytest.raises(ImageError):
        k = thaw(str(bad), ThawOptions(root=str(root), stdout=lambda b: None,
                                       deliver_sigthaw=False))
        k.shutdown()


def test_unmutated_socket_seed_thaws(socket_seed) -> None:
    """The control: the seed itself thaws (so the refusals above are the mutations')."""
    src, root, _ = socket_seed
    k = thaw(str(src), ThawOptions(root=str(root), stdout=lambda b: None,
                                   deliver_sigthaw=False))
    assert _fds_in_flight(k)
    k.shutdown()


def _thaw_refused(src: Path, root: Path, recs: list, tmp_path: Path) -> None:
    bad = write_records(tmp_path / "bad.img", src, recs)
    with pytest.raises(ImageError):
        k = thaw(str(bad), ThawOptions(root=str(root), stdout=lambda b: None,
                                       deliver_sigthaw=False))
        k.shutdown()


def test_socket_file_naming_no_endpoint_is_refused(socket_seed, tmp_path: Path) -> None:
    src, root, recs = socket_seed
    i = next(n for n, r in enumerate(recs) if r[0] == "file" and r[3]["kind"] == "unix")
    bad = set_field(recs, "file", "sock", 999999,
                    index=sum(r[0] == "file" for r in recs[:i]))
    _thaw_refused(src, root, bad, tmp_path)


def test_sockets_without_a_name_space_are_refused(socket_seed, tmp_path: Path) -> None:
    src, root, recs = socket_seed
    _thaw_refused(src, root, [r for r in recs if r[0] != "unixns"], tmp_path)


def test_socket_buffers_are_charged_to_the_memory_account(tmp_path: Path) -> None:
    """Each live endpoint holds cost() of the vkernel's memory account: a socket past the
    limit is ENOBUFS and takes nothing, a released one gives its charge back, a larger
    budget is charged the difference, and a thaw charges what the frozen run had."""
    from vkckpt.abi import errno as E
    from vkckpt.abi import socket as S
    from vkckpt.errors import GuestError
    from vkckpt.threads.wait import WaitQueue
    from vkckpt.vmspace.account import MemAccount

    q = WaitQueue(("test",))
    socks = [UnixSocket(i, S.SOCK_STREAM, q) for i in range(1, 5)]
    cost = socks[0].cost()
    assert cost > socks[0].sndbuf + socks[0].rcvbuf
    mem = MemAccount(3 * cost)
    for s in socks[:3]:
        s.account(mem)
    with pytest.raises(GuestError) as exc:
        socks[3].account(mem)
    assert exc.value.errno == E.ENOBUFS and mem.used == 3 * cost
    socks[0].release()
    assert mem.used == 2 * cost
    socks[3].account(mem)
    socks[3].sndbuf *= 2
    with pytest.raises(GuestError):
        socks[3].account(mem)  # no room for the larger budget
    assert mem.used == 3 * cost
    for s in socks[1:]:
        s.release()
    assert mem.used == 0

    wl = Workload("unixpair")
    at = points_where(wl, _root(tmp_path, "unixpair", 0), _fds_in_flight)[0]
    root = _root(tmp_path, "unixpair", 1)
    k, _, _ = run_until(wl, root, at)
    live = [s for s in _sockets(k) if not s.dead]
    assert live and all(s.mem is k.mem and s.charged == s.cost() for s in live)
    used = k.mem.used
    image = root / "x.img"
    write_image(k, str(image))
    k.shutdown()
    k2 = thaw(str(image), ThawOptions(root=str(root), deliver_sigthaw=False))
    try:
        assert k2.mem.used == used
    finally:
        k2.shutdown()


def _socket_inodes(k: VKernel) -> bool:
    return any(m.kind == S_IFSOCK for m in k.inodes.meta.values()) and _accept_queued(k)


def _as_v1(recs: list) -> list:
    """recs in the v1 layout: socket inodes as the unixns record's paths, an inode_meta
    row's fourth column a FIFO flag (socket rows dropped: v1 had no such row)."""
    out = [list(r) for r in recs]
    kr = next(r for r in out if r[0] == "kernel")
    ns = next(r for r in out if r[0] == "unixns")
    fields = dict(kr[3])
    rows = fields.pop("inode_meta", [])
    socks = {row[0] for row in rows if row[3] == S_IFSOCK}
    ns[3] = {**ns[3], "inodes": sorted(p for p, vino, _ in fields["inodes"] if vino in socks)}
    v1 = [[*row[:3], row[3] == S_IFIFO, row[4]] for row in rows if row[0] not in socks]
    kr[3] = {**fields, **({"inode_meta": v1} if v1 else {})}
    kr[1] = ns[1] = 1
    return out


def test_a_v1_image_with_socket_inodes_thaws(tmp_path: Path) -> None:
    """Socket inodes of a v1 image (paths in unixns, no kind in the kernel record) are
    socket inodes after the thaw: a freeze then writes what a v2 freeze wrote, and the
    run finishes as the unfrozen one."""
    wl = Workload("unixserver", ("work",))
    gold = golden(wl, _root(tmp_path, "unixserver", 0))
    at = points_where(wl, _root(tmp_path, "unixserver", 1), _socket_inodes)[0]
    root = _root(tmp_path, "unixserver", 2)
    k, before, _ = run_until(wl, root, at)
    v2 = root / "v2.img"
    write_image(k, str(v2))
    k.shutdown()
    recs = load_records(v2)
    assert [r[1] for r in recs if r[0] in ("kernel", "unixns")] == [2, 2]
    assert "inodes" not in next(r[3] for r in recs if r[0] == "unixns")
    v1 = write_records(root / "v1.img", v2, _as_v1(recs))
    assert "inodes" in next(r[3] for r in load_records(v1) if r[0] == "unixns")
    after: list[bytes] = []
    k = thaw(str(v1), ThawOptions(root=str(root), stdout=after.append,
                                  stderr=after.append, deliver_sigthaw=False))
    try:
        assert _socket_inodes(k)
        again = root / "again.img"
        write_image(k, str(again))
        kinds = ("kernel", "unixns", "socket", "file")
        assert image_records(again, kinds) == image_records(v2, kinds)
        status = k.run()
        assert b"".join(before + after) == gold.output
        assert (status, k.sched.ticks) == (gold.status, gold.ticks)
    finally:
        k.shutdown()
