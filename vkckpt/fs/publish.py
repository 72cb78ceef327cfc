"""Published ports (`--publish HOSTPORT:GUESTPORT`): TCP connections from the host's
loopback forwarded to guest listeners on the virtual loopback network.

The vkernel owns one non-blocking host listening socket per published port.  At each
scheduling point `pump` accepts what the host queued (each becomes a virtual client
endpoint connected to the guest listener on 127.0.0.1:GUESTPORT, or is closed at once
when none listens, its accept queue is full or the vkernel's memory account has no room
for the two endpoints, charged as a guest's socket and its accepted end are) and moves
bytes both ways between each
host connection and its virtual endpoint, never blocking and never holding more than one
send budget per direction.  Such a run depends on the outside world: it is not
deterministic.
"""

from __future__ import annotations

import select
import socket
import struct
import time

from vkckpt.abi import errno as E
from vkckpt.abi import inet as I
from vkckpt.abi import socket as S
from vkckpt.errors import ConfigError, GuestError, ImageError
from vkckpt.fs import inet
from vkckpt.fs.inet import SOURCE4, InetOpts
from vkckpt.fs.unix import CONNECTED, UnixSocket
from vkckpt.fs.unix_io import Outgoing, stream_recv, stream_send
from vkckpt.host import wake

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.unix_ns import UnixNamespace
    from vkckpt.threads.wait import WaitQueue
    from vkckpt.vmspace.account import MemAccount

Port = tuple[int, int]  # host port, guest port
CHUNK = 1 << 16
HOST_CRED = (0, 0, 0)  # the credentials a virtual client endpoint carries
MAX_PUBLISH = 64
LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close sends an RST
DRAIN_S = 10.0  # seconds an ended run keeps passing queued bytes to the host


def parse_publish(text: str, what: str = "--publish") -> Port:
    """HOSTPORT:GUESTPORT, both in 1..65535."""
    parts = text.split(":")
    try:
        host, guest = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"{what} {text!r}: expected HOSTPORT:GUESTPORT") from None
    if not (0 < host < 65536 and 0 < guest < 65536):
        raise ConfigError(f"{what} {text!r}: ports are 1..65535")
    return host, guest


class External:
    """One forwarded connection: the host socket and the virtual client endpoint."""

    __slots__ = ("host", "vsock", "to_host", "host_eof", "shut_host")

    def __init__(self, host: socket.socket, vsock: UnixSocket) -> None:
        self.host, self.vsock = host, vsock
        self.to_host = b""      # read from the guest, not yet taken by the host
        self.host_eof = False   # the host shut its sending side
        self.shut_host = False  # the guest's end of stream was passed on


class Publisher:
    """The published ports of one vkernel and their live external connections."""

    def __init__(self, ports: list[Port]) -> None:
        self.ports = list(ports)
        self.listeners: list[tuple[socket.socket, int]] = []
        self.conns: list[External] = []
        self.kept: list[int] = []  # external connections adopted from an image (adopt)

    @property
    def active(self) -> bool:
        return bool(self.ports)

    def open(self) -> None:
        """Bind each host port on 127.0.0.1 (ConfigError when the host refuses)."""
        for host, guest in self.ports:
            ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                ls.bind(("127.0.0.1", host))
            except OSError as exc:
                ls.close()
                self.close()
                raise ConfigError(f"--publish {host}:{guest}: {exc.strerror}") from None
            ls.listen(S.SOMAXCONN)
            ls.setblocking(False)
            self.listeners.append((ls, guest))

    def adopt(self, ports: list[Port], external: list[int]) -> None:
        """Take the image's ports and external connections without binding anything (a
        thaw frozen again at once): the next image records them as this one did."""
        self.ports, self.kept = list(ports), list(external)

    def close(self) -> None:
        """Close the host sockets; each connection's endpoint is released (uncharged)."""
        for ls, _ in self.listeners:
            ls.close()
        for c in self.conns:
            if not c.vsock.dead:
                c.vsock.release()
            c.host.close()
        self.listeners, self.conns = [], []

    # -- the scheduling-point work --------------------------------------------------------
    def pump(self, uns: UnixNamespace, poll_q: WaitQueue, mem: MemAccount) -> None:
        """Accept queued host connections (their endpoints charged to mem), then move what
        can move without waiting."""
        for ls, guest in self.listeners:
            while True:
                try:
                    hs, _ = ls.accept()
                except (BlockingIOError, InterruptedError):
                    break
                hs.setblocking(False)
                self._attach(uns, poll_q, mem, hs, guest)
        self.conns = [c for c in self.conns if self._move(c)]

    def _attach(self, uns: UnixNamespace, poll_q: WaitQueue, mem: MemAccount,
                hs: socket.socket, guest: int) -> None:
        """Connect a virtual client to the guest listener on guest, both endpoints charged
        to mem as socket(2) and connect(2) charge them (close hs: no listener, a full
        backlog, or ENOBUFS)."""
        vs = UnixSocket(uns.new_id(), S.SOCK_STREAM, poll_q)
        vs.inet = InetOpts(I.AF_INET)
        try:
            vs.account(mem)  # the accepted end is charged to vs.mem by the connect
            inet.connect(uns.inet, uns, vs, I.name(SOURCE4, guest), HOST_CRED, True)
        except GuestError as exc:
            if exc.errno != E.EINPROGRESS or vs.inet.syn is not None:  # refused, a full
                vs.inet.syn = None  # backlog or no room: closed now, not held in SYN_SENT
                vs.release()
                hs.close()
                return
        self.conns.append(External(hs, vs))

    def _move(self, c: External) -> bool:
        """One round of copying for c; False once it is over (both sockets closed)."""
        vs = c.vsock
        if vs.err == E.ECONNRESET:  # the guest closed with bytes unread: reset the host too
            c.host.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            vs.release()
            c.host.close()
            return False
        try:
            self._to_guest(c)
            self._to_host(c)
        except (ConnectionError, OSError):
            vs.release(embryo=True)  # the host reset it: the guest sees ECONNRESET
            c.host.close()
            return False
        gone = vs.peer is None or vs.peer.dead
        if c.shut_host and (c.host_eof or gone) or vs.state != CONNECTED and not c.to_host:
            vs.release()
            c.host.close()
            return False
        return True

    def _to_guest(self, c: External) -> None:
        vs = c.vsock
        if c.host_eof or vs.state != CONNECTED:
            return
        room = vs.room()
        if room <= 0:
            return
        try:
            data = c.host.recv(min(room, CHUNK))
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            c.host_eof = True
            vs.shut(S.SHUT_WR)
            return
        try:
            stream_send(vs, data, Outgoing([], HOST_CRED, True))
        except GuestError:  # the guest closed its side: drop what it will never read
            c.host_eof = True

    def _to_host(self, c: External) -> None:
        vs = c.vsock
        if not c.to_host and vs.recvq:
            c.to_host = stream_recv(vs, CHUNK, 0, True).data
        if c.to_host:
            try:
                sent = c.host.send(c.to_host)
            except (BlockingIOError, InterruptedError):
                return
            c.to_host = c.to_host[sent:]
        if not c.to_host and not vs.recvq and vs.shutdown & S.RCV_SHUTDOWN \
                and not c.shut_host:
            c.shut_host = True
            c.host.shutdown(socket.SHUT_WR)

    def drain(self, limit: float = DRAIN_S) -> None:
        """The run is over: pass on what the guests wrote before they exited (as Linux
        delivers a closed socket's queue), for up to limit seconds, then close."""
        end = time.monotonic() + limit
        while self.conns and time.monotonic() < end:
            self.conns = [c for c in self.conns if self._move(c)]
            if self.conns:
                self.wait(0.05)
        self.close()

    def wait(self, timeout: float | None) -> bool:
        """Sleep until a host socket has work for the pump or the host wake-up pipe was
        written (host/wake.py), for at most timeout seconds (None: no limit); True unless
        it timed out.  A connection is waited on only for what the pump can then move, so a
        guest that reads nothing does not turn the sleep into a busy loop."""
        rd = [ls for ls, _ in self.listeners]
        rd += [c.host for c in self.conns if not c.host_eof and c.vsock.state == CONNECTED
               and c.vsock.room() > 0]
        wr = [c.host for c in self.conns if c.to_host or c.vsock.recvq]
        ready = select.select([wake.fileno(), *rd], wr, [], timeout)
        wake.clear()
        return any(ready)

    # -- images ---------------------------------------------------------------------------
    def external_ids(self) -> list[int]:
        """The virtual endpoints of the connections a thaw resets."""
        live = {c.vsock.id for c in self.conns if c.vsock.peer is not None
                and not c.vsock.peer.dead}
        return sorted(live.union(self.kept))


def reset_external(socks: dict[int, UnixSocket], ids: list[int], held: set[int],
                   reset: bool = True) -> None:
    """On thaw: each virtual client endpoint of an external connection is closed with a
    reset (its guest peer gets ECONNRESET), as the host side is gone (reset False: only
    checked).  held: the ids of endpoints a file names, which no external connection's is
    (ImageError)."""
    for sid in ids:
        s = socks.get(sid)
        if s is None or s.dead:
            continue
        if sid in held or s.inet is None or s.type != S.SOCK_STREAM:
            raise ImageError(f"external connection {sid!r} names a guest's own socket")
        if reset:
            s.release(embryo=True)
