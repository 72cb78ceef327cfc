"""Connecting AF_UNIX endpoints: listen, connect and accept (unix_listen,
unix_stream_connect, unix_accept) and connecting a datagram socket (unix_dgram_connect).

A stream or seqpacket connect makes the server's endpoint at once, connected to the
client, and queues it on the listener; accept hands it out.  The client sees the
listener's credentials from the time it listened, the server's endpoint the client's.
"""

from __future__ import annotations

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.abi import socket as S
from vkckpt.abi.epoll import POLLRDNORM
from vkckpt.errors import GuestError
from vkckpt.fs.unix import CONNECTED, LISTENING, UNCONNECTED, Cred, UnixSocket
from vkckpt.threads.wait import Block

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.unix_ns import UnixNamespace


def listen(sock: UnixSocket, backlog: int, cred: Cred) -> None:
    """Implement listen(2): a bound stream or seqpacket socket starts accepting (again,
    with a new backlog); EINVAL unbound or connected, EOPNOTSUPP for datagrams."""
    if not sock.connection:
        raise GuestError(E.EOPNOTSUPP)
    if sock.addr is None or sock.state == CONNECTED:
        raise GuestError(E.EINVAL)
    sock.backlog = min(max(backlog, 0), S.SOMAXCONN)
    if sock.state != LISTENING:
        sock.own_cred = cred
        sock.state = LISTENING
        sock.changed(F.POLLOUT)


def connect(ns: UnixNamespace, client: UnixSocket, server: UnixSocket, cred: Cred,
            nonblock: bool) -> None:
    """Connect stream or seqpacket client to listening server: EAGAIN (or sleep) while the
    accept queue is over its backlog."""
    if client.state == CONNECTED:
        raise GuestError(E.EISCONN)
    if client.state == LISTENING:
        raise GuestError(E.EINVAL)
    if server.type != client.type:
        raise GuestError(E.EPROTOTYPE)
    if server.state != LISTENING or server.shutdown & S.RCV_SHUTDOWN:
        raise GuestError(E.ECONNREFUSED)
    if len(server.acceptq) > server.backlog:
        if nonblock:
            raise GuestError(E.EAGAIN)
        raise Block(server.poll_q)
    if client.passcred and client.addr is None:
        ns.autobind(client)
    embryo = UnixSocket(ns.new_id(), client.type, client.poll_q)
    if client.mem is not None:
        embryo.account(client.mem)  # ENOBUFS: no room for the server's end
    embryo.addr, embryo.path = server.addr, server.path
    embryo.passcred = server.passcred
    embryo.pair(client, server.own_cred or cred, cred)
    server.acceptq.append(embryo)
    server.changed(F.POLLIN | POLLRDNORM)
    client.changed(F.POLLOUT)


def accept(server: UnixSocket, nonblock: bool) -> UnixSocket:
    """The oldest queued connection (EINVAL unless listening; EAGAIN or sleep while
    none is queued)."""
    if server.state != LISTENING:
        raise GuestError(E.EINVAL)
    if not server.acceptq:
        if nonblock:
            raise GuestError(E.EAGAIN)
        raise Block(server.poll_q)
    embryo = server.acceptq.pop(0)
    server.changed(F.POLLOUT)
    return embryo


def dgram_connect(ns: UnixNamespace, sock: UnixSocket, other: UnixSocket | None) -> None:
    """Set (or, with AF_UNSPEC: other None, clear) a datagram socket's default peer."""
    if other is None:
        sock.peer, sock.state = None, UNCONNECTED
        return
    if other.type != sock.type:
        raise GuestError(E.EPROTOTYPE)
    if sock.passcred and sock.addr is None:
        ns.autobind(sock)
    sock.peer, sock.state = other, CONNECTED
    sock.changed(F.POLLOUT)
