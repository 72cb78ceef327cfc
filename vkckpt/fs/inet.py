"""AF_INET and AF_INET6 endpoints on the virtual loopback network: what an internet socket
adds to the AF_UNIX endpoint it is built on (fs/unix.py holds queues, readiness and
shutdown; this the family, options and the TCP and UDP paths that differ).

A TCP connection is a connected stream pair, made at once by connect (the loopback
handshake never waits) unless the listener's accept queue is full: a non-blocking connect
then waits in SYN_SENT (`syn`) until an accept makes room, as Linux's retransmitted SYN
finds it; UDP datagrams go to whichever endpoint the port space finds,
dropped when none is there or its receive budget is full.
"""

from __future__ import annotations

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.abi import inet as I
from vkckpt.abi import socket as S
from vkckpt.errors import GuestError
from vkckpt.fs import unix_conn
from vkckpt.fs.unix import CONNECTED, LISTENING, MSG_OVERHEAD, UNCONNECTED, Cred, Message
from vkckpt.fs.unix_io import Outgoing, stream_send

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.inet_ns import InetNamespace
    from vkckpt.fs.unix import UnixSocket
    from vkckpt.fs.unix_ns import UnixNamespace

SOURCE4 = I.V4MAPPED + bytes((127, 0, 0, 1))  # lo's address: the source of 127/8 traffic


class InetOpts:
    """The internet part of an endpoint: family and the options Linux keeps for it."""

    __slots__ = ("family", "reuseport", "v6only", "nodelay", "keepalive", "keepidle",
                 "keepintvl", "keepcnt", "linger", "peer", "bound", "syn")

    def __init__(self, family: int) -> None:
        self.family = family
        self.reuseport = False
        self.v6only = False
        self.nodelay = False
        self.keepalive = False
        self.keepidle, self.keepintvl, self.keepcnt = 7200, 75, 9  # tcp_keepalive_* defaults
        self.linger: tuple[int, int] = (0, 0)
        self.peer: I.Name | None = None  # a connected UDP socket's peer address
        self.bound = False     # holds a port in the port space
        self.syn: I.Name | None = None  # SYN_SENT: where a connect to a full backlog waits

    def copy(self) -> InetOpts:
        o = InetOpts(self.family)
        for k in self.__slots__:
            setattr(o, k, getattr(self, k))
        return o


def parse(raw: bytes, family: int) -> I.Name:
    """The name a sockaddr_in (I.AF_INET socket) or sockaddr_in6 (I.AF_INET6) gives: EINVAL
    when too short, EAFNOSUPPORT for another family (as inet_bind, inet6_bind)."""
    if family == I.AF_INET:
        if len(raw) < I.SIN.size:
            raise GuestError(E.EINVAL)
        fam, port, addr = I.SIN.unpack_from(raw)
        if fam != I.AF_INET:
            raise GuestError(E.EAFNOSUPPORT)
        return I.V4MAPPED + addr + port
    if len(raw) < I.SIN6_LEN_RFC2133:
        raise GuestError(E.EINVAL)
    fam, port, _, addr, _ = I.SIN6.unpack_from(raw.ljust(I.SIN6.size, b"\0"))
    if fam != I.AF_INET6:
        raise GuestError(E.EAFNOSUPPORT)
    return addr + port


def dest_of(sock: UnixSocket, raw: bytes) -> I.Name:
    """The destination a connect or sendto names, in the socket's family: ENETUNREACH
    beyond loopback (a v4-mapped one on a v6-only socket too)."""
    n = parse(raw, sock.inet.family)
    ip = I.ip_of(n)
    if I.is_any(ip):  # connecting to the wildcard reaches the local host
        ip = SOURCE4 if I.is_v4(ip) or sock.inet.family == I.AF_INET else I.LOOP6
        n = I.name(ip, I.port_of(n))
    if not I.is_loopback(ip) or (I.is_v4(ip) and sock.inet.v6only):
        raise GuestError(E.ENETUNREACH)
    return n


def check_local(sock: UnixSocket, n: I.Name) -> None:
    """A bind address must be the wildcard or loopback (EADDRNOTAVAIL otherwise)."""
    ip = I.ip_of(n)
    if not (I.is_any(ip) or I.is_loopback(ip)) or (I.is_v4(ip) and sock.inet.v6only):
        raise GuestError(E.EADDRNOTAVAIL)


def autobind(ns: InetNamespace, sock: UnixSocket, dest: I.Name | None) -> None:
    """Give an unbound socket an ephemeral port (connect, sendto, listen); a socket bound
    to a wildcard connects from the loopback address."""
    if sock.addr is None:
        wild = I.ANY4 if sock.inet.family == I.AF_INET else I.ANY6
        ns.bind(sock, I.name(wild, 0))
        sock.inet.bound = True
    if dest is not None and I.is_any(I.ip_of(sock.addr)):
        src = SOURCE4 if I.is_v4(I.ip_of(dest)) else I.LOOP6
        sock.addr = I.name(src, I.port_of(sock.addr))


def listen(ns: InetNamespace, sock: UnixSocket, backlog: int, cred: Cred) -> None:
    """Implement listen(2) for TCP: autobind, then as AF_UNIX (EOPNOTSUPP for UDP)."""
    if sock.type != S.SOCK_STREAM:
        raise GuestError(E.EOPNOTSUPP)
    if sock.state == CONNECTED:
        raise GuestError(E.EINVAL)
    if sock.addr is None:
        autobind(ns, sock, None)
    if sock.state != LISTENING:
        for o in ns.users(sock.type, I.port_of(sock.addr)):
            if o is not sock and o.state == LISTENING and not (
                    sock.inet.reuseport and o.inet.reuseport):
                raise GuestError(E.EADDRINUSE)
    unix_conn.listen(sock, backlog, cred)


def connect(ns: InetNamespace, uns: UnixNamespace, sock: UnixSocket, dest: I.Name,
            cred: Cred, nonblock: bool) -> None:
    """Implement a TCP connect(2): ECONNREFUSED when no listener has the port (non-blocking:
    EINPROGRESS, then POLLERR|POLLHUP and SO_ERROR ECONNREFUSED, as the RST arrives after
    the call); the accepted side's name is the address connected to.  Non-blocking:
    EINPROGRESS (the connection is made all the same, POLLOUT and SO_ERROR 0 follow; to a
    full backlog it waits for an accept, EALREADY meanwhile)."""
    if sock.state == CONNECTED:
        raise GuestError(E.EISCONN)
    if sock.inet.syn is not None:
        raise GuestError(E.EALREADY)
    server = ns.lookup(sock.type, dest, True)
    if sock.state == LISTENING:
        raise GuestError(E.EINVAL)
    sock.shutdown = 0  # a socket a refused connect closed may connect again
    if server is None:
        if nonblock:  # the RST to its SYN comes back after connect returned
            sock.shutdown, sock.err = S.SHUTDOWN_MASK, E.ECONNREFUSED
            sock.changed(F.POLLIN | F.POLLOUT | F.POLLHUP | F.POLLERR)
            raise GuestError(E.EINPROGRESS)
        raise GuestError(E.ECONNREFUSED)
    autobind(ns, sock, dest)
    if nonblock and len(server.acceptq) > server.backlog and not \
            server.shutdown & S.RCV_SHUTDOWN:
        sock.inet.syn = dest
        ns.syn_sent[sock.id] = sock
        raise GuestError(E.EINPROGRESS)
    _establish(ns, uns, sock, server, dest, cred, nonblock)
    if nonblock:
        raise GuestError(E.EINPROGRESS)


def _establish(ns: InetNamespace, uns: UnixNamespace, sock: UnixSocket, server: UnixSocket,
               dest: I.Name, cred: Cred, nonblock: bool) -> None:
    """Queue sock's connection on server; the embryo takes the listener's options."""
    unix_conn.connect(uns, sock, server, cred, nonblock)
    embryo = server.acceptq[-1]
    embryo.addr, embryo.inet = dest, server.inet.copy()
    embryo.inet.bound = True
    embryo.sndbuf, embryo.rcvbuf = server.sndbuf, server.rcvbuf
    if embryo.mem is not None:
        embryo.account(embryo.mem, force=True)  # the listener's budgets, already promised
    ns.add(embryo)


def listener_closed(ns: InetNamespace) -> None:
    """A listener closed: a connect waiting in SYN_SENT that no listener takes any more is
    refused (its next SYN meets a closed port: RST), so POLLERR|POLLHUP and SO_ERROR
    ECONNREFUSED follow."""
    for s in ns.waiting():
        if ns.lookup(S.SOCK_STREAM, s.inet.syn, True) is None:
            s.inet.syn = None
            s.shutdown, s.err = S.SHUTDOWN_MASK, E.ECONNREFUSED
            s.changed(F.POLLIN | F.POLLOUT | F.POLLHUP | F.POLLERR)


def accepted(ns: InetNamespace, uns: UnixNamespace, server: UnixSocket) -> None:
    """An accept made room on server's queue: connects waiting in SYN_SENT for it
    complete, oldest socket first, while the backlog allows."""
    for s in ns.waiting():
        if len(server.acceptq) > server.backlog:
            return
        if ns.lookup(S.SOCK_STREAM, s.inet.syn, True) is server:
            dest, s.inet.syn = s.inet.syn, None
            _establish(ns, uns, s, server, dest, server.own_cred or (0, 0, 0), True)


def udp_connect(ns: InetNamespace, sock: UnixSocket, dest: I.Name | None) -> None:
    """Set (None: clear, AF_UNSPEC) a UDP socket's peer address: it then receives from
    that address only and sends there."""
    if dest is None:
        sock.inet.peer, sock.state = None, UNCONNECTED
        return
    autobind(ns, sock, dest)
    sock.inet.peer, sock.state = dest, CONNECTED
    sock.changed(F.POLLOUT)


def udp_send(ns: InetNamespace, sock: UnixSocket, data: bytes, dest: I.Name | None) -> int:
    """Send one datagram: EMSGSIZE past 65507 bytes, EDESTADDRREQ with no address; a
    connected socket whose last datagram found no port gets ECONNREFUSED now
    (SO_ERROR, which its next receive reports too)."""
    if dest is None:
        if sock.inet.peer is None:
            raise GuestError(E.EDESTADDRREQ)
        err = sock.take_error()
        if err:
            raise GuestError(err)
        dest = sock.inet.peer
    if len(data) > I.UDP_MAX_PAYLOAD:
        raise GuestError(E.EMSGSIZE)
    if sock.shutdown & S.SEND_SHUTDOWN:
        raise GuestError(E.EPIPE)
    autobind(ns, sock, dest)
    src = sock.addr
    if I.is_any(I.ip_of(src)):
        src = I.name(SOURCE4 if I.is_v4(I.ip_of(dest)) else I.LOOP6, I.port_of(src))
    other = ns.lookup(sock.type, dest, False)
    if other is not None and other.inet.peer not in (None, src):
        other = None  # a connected socket takes datagrams from its peer only
    if other is None:
        if sock.inet.peer is not None:  # the ICMP port unreachable comes back at once
            sock.err = E.ECONNREFUSED
            sock.changed(F.POLLERR)
        return len(data)
    queued = sum(m.charge for m in other.recvq)
    if queued + len(data) + MSG_OVERHEAD <= other.rcvbuf and not \
            other.shutdown & S.RCV_SHUTDOWN:
        other.enqueue(Message(data, src, None, [], None, len(data) + MSG_OVERHEAD))
    return len(data)



def send(ns: InetNamespace, sock: UnixSocket, data: bytes, to: I.Name | None,
         out: Outgoing) -> int:
    """One send: a UDP datagram, or TCP stream bytes after any pending error (a reset:
    ECONNRESET once, EPIPE after)."""
    if sock.type == S.SOCK_DGRAM:
        return udp_send(ns, sock, data, to)
    err = sock.take_error()
    if err:
        raise GuestError(err)
    if sock.state != CONNECTED:
        raise GuestError(E.EPIPE if sock.shutdown else E.ENOTCONN)
    other = sock.peer
    if data and other is not None and other.dead and not sock.shutdown & S.SEND_SHUTDOWN:
        # The peer closed (its FIN came): this segment meets a closed socket, whose RST
        # comes back at once on loopback.  Linux accepts the send, and the reset of a
        # CLOSE_WAIT socket is EPIPE: the next send reports it (SO_ERROR), as the send
        # after that EPIPE for the shut-down direction.
        sock.shutdown, sock.err = S.SHUTDOWN_MASK, E.EPIPE
        sock.changed(F.POLLIN | F.POLLOUT | F.POLLHUP | F.POLLERR)
        return len(data)
    return stream_send(sock, data, out)
