"""The AF_UNIX garbage collector (fs/unix_gc.py) on the file objects themselves: cycles of
sockets reachable only through in-flight SCM_RIGHTS messages are released with what they
carry and their memory charge; a socket an open descriptor still reaches is kept."""

from __future__ import annotations

from vkckpt.abi import fcntl as F
from vkckpt.abi import socket as S
from vkckpt.fs.fdtable import FdTable
from vkckpt.fs.pipe import Pipe, PipeEnd
from vkckpt.fs.unix import LISTENING, UnixSocket
from vkckpt.fs.unix_conn import connect
from vkckpt.fs.unix_file import SocketFile
from vkckpt.fs.unix_ns import UnixNamespace
from vkckpt.threads.wait import WaitQueue
from vkckpt.vmspace.account import MemAccount

CRED = (1, 0, 0)


class World:
    """One vkernel's worth of socket state: an account, a name space, one fd table."""

    def __init__(self) -> None:
        self.mem = MemAccount()
        self.ns = UnixNamespace(None, None)  # type: ignore[arg-type]  # no names bound here
        self.q = WaitQueue("test")
        self.fds = FdTable()

    def pair(self, stype: int = S.SOCK_STREAM) -> tuple[int, int]:
        """socketpair(2): two descriptors."""
        a, b = (UnixSocket(self.ns.new_id(), stype, self.q) for _ in range(2))
        a.account(self.mem)
        b.account(self.mem)
        a.pair(b, CRED, CRED)
        return tuple(self.fds.install(SocketFile(s, 0, self.ns, CRED)) for s in (a, b))

    def listener_with_client(self) -> tuple[int, int]:
        """A listening socket and a client connected to it, not yet accepted."""
        lsock, csock = (UnixSocket(self.ns.new_id(), S.SOCK_STREAM, self.q) for _ in range(2))
        lsock.account(self.mem)
        csock.account(self.mem)
        lsock.state, lsock.backlog, lsock.addr = LISTENING, 4, b"\0gc"
        connect(self.ns, csock, lsock, CRED, True)
        return tuple(self.fds.install(SocketFile(s, 0, self.ns, CRED)) for s in (lsock, csock))

    def pipe(self) -> tuple[int, int]:
        p = Pipe(1, self.mem, self.q)
        return (self.fds.install(PipeEnd(p, F.O_RDONLY)),
                self.fds.install(PipeEnd(p, F.O_WRONLY)))

    def send(self, via: int, carried: list[int]) -> None:
        f = self.fds.get(via)
        assert f.send(b"x", None, [self.fds.get(n) for n in carried], CRED, 0) == 1

    def close(self, *fds: int) -> None:
        for fd in fds:
            self.fds.close(fd)


def _eof(w: World, rd: int) -> bool:
    """Whether the pipe's reader sees its writers gone (POLLHUP, read returns b"")."""
    f = w.fds.get(rd)
    return bool(f.poll(F.POLLIN) & F.POLLHUP) and f.read(1) == b""


def test_self_cycle_is_collected_with_what_it_carries() -> None:
    w = World()
    base = w.mem.used
    rd, wr = w.pipe()
    with_pipe = w.mem.used
    s0, s1 = w.pair()
    w.send(s1, [s0, wr])  # queued on s0: s0 holds itself
    assert w.ns.gc.total == 1
    w.close(wr, s0, s1)
    assert w.ns.gc.total == 0 and not w.ns.gc.inflight
    assert _eof(w, rd)
    assert w.mem.used == with_pipe
    w.close(rd)
    assert w.mem.used == base


def test_two_socket_ring_is_collected() -> None:
    w = World()
    base = w.mem.used
    rd, wr = w.pipe()
    a0, a1 = w.pair()
    b0, b1 = w.pair(S.SOCK_DGRAM)
    w.send(b1, [a0])      # a0 queued on b0
    w.send(a1, [b0, wr])  # b0 and the pipe's writer queued on a0
    w.close(wr, a0, b0)
    assert not _eof(w, rd), "a1 and b1 still reach the ring through their peers"
    w.close(a1, b1)
    assert _eof(w, rd)
    w.close(rd)
    assert w.mem.used == base and not w.ns.gc.inflight


def test_socket_reachable_from_a_descriptor_is_kept() -> None:
    w = World()
    rd, wr = w.pipe()
    c0, c1 = w.pair()
    d0, d1 = w.pair()
    w.send(c1, [wr])   # the writer queued on c0
    w.send(d1, [c0])   # c0 queued on d0, which a descriptor names
    w.close(wr, c0)
    e0, e1 = w.pair()
    w.close(e0, e1)    # a release while sockets are in flight: the collector runs
    assert not _eof(w, rd)
    got = w.fds.get(d0).recv(1, 0)
    assert [f.sock.id for f in got.fds] == [w.ns.next_id - 6]  # c0, the first of its pair
    assert not w.ns.gc.inflight  # received: c0 no longer counts as in flight
    c0f = got.fds[0]
    assert c0f.recv(1, 0).fds[0].pipe.writers == 1


def test_message_sent_twice_counts_twice() -> None:
    w = World()
    s0, s1 = w.pair()
    t0, t1 = w.pair()
    w.send(t1, [s0, s0])  # one message, two references to s0 queued on t0
    f = w.fds.get(s0)
    assert w.ns.gc.inflight[id(f)] == (f, 2) and f.refs == 3
    w.close(s0, s1)
    assert w.ns.gc.inflight[id(f)] == (f, 2), "t0 still reaches s0: not garbage"
    w.close(t0)
    assert not w.ns.gc.inflight and f.sock.dead
    w.close(t1)


def test_listener_held_by_its_own_embryo_is_collected() -> None:
    """The listener's fd sent by the client before accept queues on the embryo: only the
    listener's accept queue reaches it (Linux's scan_children)."""
    w = World()
    base = w.mem.used
    rd, wr = w.pipe()
    lfd, cfd = w.listener_with_client()
    w.send(cfd, [lfd, wr])  # queued on the embryo in lfd's accept queue
    w.close(wr, lfd)
    assert not _eof(w, rd), "no socket was released since: the collector has not run"
    w.close(cfd)
    assert _eof(w, rd)
    w.close(rd)
    assert w.mem.used == base and not w.ns.gc.inflight


def test_cycle_becomes_garbage_by_closes_alone() -> None:
    """A ring that was reachable when the collector last ran becomes garbage by closes that
    release nothing (no file queued or received since): the next release still collects it,
    while a graph without a cycle is not searched at all."""
    w = World()
    rd, wr = w.pipe()
    a0, a1 = w.pair()
    b0, b1 = w.pair()
    w.send(b1, [a0])
    w.send(a1, [b0, wr])
    w.close(wr, a1, b1)       # releases: the collector runs, a0 and b0 still have fds
    assert w.ns.gc.cyclic and not _eof(w, rd)
    w.close(a0, b0)           # refs drop to the in-flight ones; nothing released
    assert not _eof(w, rd)
    e0, e1 = w.pair()
    w.close(e0, e1)
    assert _eof(w, rd) and not w.ns.gc.inflight


def test_acyclic_in_flight_graph_is_not_searched(monkeypatch) -> None:
    w = World()
    d0, d1 = w.pair()
    c0, c1 = w.pair()
    w.send(d1, [c0])
    w.close(c0)

    def no_search(self) -> list:
        raise AssertionError("searched an acyclic graph")
    monkeypatch.setattr(type(w.ns.gc), "garbage", no_search)
    e0, e1 = w.pair()
    w.close(e0, e1)
    assert not w.ns.gc.cyclic and len(w.ns.gc.inflight) == 1
