"""Sending and receiving on AF_UNIX endpoints: the stream path (unix_stream_sendmsg,
unix_stream_read_generic) and the datagram/seqpacket path (unix_dgram_sendmsg,
unix_dgram_recvmsg).

A call that must wait raises Block on the readiness queue before changing anything, so the
re-run after a wake-up starts afresh; a stream write that finds some room queues what fits
and returns that short count, which a blocking write(2) or send(2) takes as room to go on
later (syscalls/progress.py: it waits until all is sent).
"""

from __future__ import annotations

from vkckpt.abi import errno as E
from vkckpt.abi import socket as S
from vkckpt.errors import GuestError
from vkckpt.fs.unix import CONNECTED, LISTENING, MSG_OVERHEAD, UNCONNECTED, Cred, Message
from vkckpt.threads.wait import Block

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable

    from vkckpt.fs.ops import OpenFile
    from vkckpt.fs.unix import UnixSocket

NOBODY = 65534  # overflowuid: the credentials of a message sent without any
DGRAM_SLACK = 32  # a datagram longer than SO_SNDBUF minus this is EMSGSIZE


class Received:
    """What one receive got: the bytes, the files and credentials with them, the sender's
    name (datagrams), MSG_* flags for msg_flags and the call's result."""

    __slots__ = ("data", "fds", "cred", "addr", "flags", "result")

    def __init__(self, data: bytes, fds: list[OpenFile], cred: Cred | None,
                 addr: bytes | None, flags: int, result: int) -> None:
        self.data, self.fds, self.cred, self.addr = data, fds, cred, addr
        self.flags, self.result = flags, result


class Outgoing:
    """What one send carries beside its bytes: files (SCM_RIGHTS), the sender's
    credentials, whether it may wait, and whom to tell once the files are queued (the
    in-flight count of the garbage collector, fs/unix_gc.py)."""

    __slots__ = ("fds", "cred", "nonblock", "on_queued")

    def __init__(self, fds: list[OpenFile], cred: Cred, nonblock: bool,
                 on_queued: Callable[[list[OpenFile]], None] | None = None) -> None:
        self.fds, self.cred, self.nonblock = fds, cred, nonblock
        self.on_queued = on_queued


def _wait(sock: UnixSocket, nonblock: bool) -> Block:
    if nonblock:
        raise GuestError(E.EAGAIN)
    return Block(sock.poll_q)


def _message(sock: UnixSocket, other: UnixSocket, data: bytes, out: Outgoing) -> Message:
    """A message from sock to other, holding a reference to each file it carries."""
    for f in out.fds:
        f.refs += 1
    if out.fds and out.on_queued is not None:
        out.on_queued(out.fds)
    cred = out.cred if sock.passcred or other.passcred else None
    return Message(data, sock.addr, sock, list(out.fds), cred, len(data) + MSG_OVERHEAD)


# -- streams --------------------------------------------------------------------------------------
def stream_send(sock: UnixSocket, data: bytes, out: Outgoing) -> int:
    """Queue data for the peer; EPIPE (the caller decides about SIGPIPE) once either side
    shut the direction down or the peer is gone."""
    if sock.state != CONNECTED:
        raise GuestError(E.ENOTCONN)
    other = sock.peer
    if sock.shutdown & S.SEND_SHUTDOWN or other is None or other.dead or \
            other.shutdown & S.RCV_SHUTDOWN:
        raise GuestError(E.EPIPE)
    if not data:
        return 0
    room = sock.room()
    if room <= 0:
        raise _wait(sock, out.nonblock)
    n = min(room, len(data))
    other.enqueue(_message(sock, other, data[:n], out))
    return n


def stream_recv(sock: UnixSocket, n: int, flags: int, nonblock: bool) -> Received:
    """Read up to n bytes across messages (at least n with MSG_WAITALL, unless the stream
    ends, or the writer's budget is full: then what is queued, short, rather than wait on
    each other); stops after a message carrying files, and between messages of different
    credentials when SO_PASSCRED is on."""
    if sock.state != CONNECTED:
        raise GuestError(E.EINVAL)
    if not sock.recvq:
        return _nothing_queued(sock, nonblock)
    short = sum(len(m.data) for m in sock.recvq) < n
    writer = sock.peer
    can_grow = writer is not None and not writer.dead and writer.room() > 0
    if flags & S.MSG_WAITALL and short and can_grow and not (
            nonblock or sock.err or sock.shutdown & S.RCV_SHUTDOWN):
        raise Block(sock.poll_q)  # nothing taken yet: the re-run reads it all at once
    peek = bool(flags & S.MSG_PEEK)
    chunks: list[bytes] = []
    fds: list[OpenFile] = []
    cred: Cred | None = None
    got = 0
    addr = sock.recvq[0].addr
    for msg in list(sock.recvq):
        if got >= n and n:
            break
        if sock.passcred:
            if chunks and msg.cred != cred:
                break
            cred = msg.cred or (0, NOBODY, NOBODY)
        part = msg.data[:n - got]
        chunks.append(part)
        got += len(part)
        if msg.fds:
            fds = list(msg.fds)
            if not peek:
                msg.fds = []
        if not peek:
            msg.data = msg.data[len(part):]
            if msg.data:
                break
            sock.consume(msg)
        if fds or n == 0:
            break
    return Received(b"".join(chunks), fds, cred, addr, 0, got)


# -- datagrams and seqpackets ---------------------------------------------------------------------
def dgram_send(sock: UnixSocket, data: bytes, dest: UnixSocket | None, out: Outgoing) -> int:
    """Send one datagram to dest (or the connected peer); a seqpacket socket sends to its
    peer only.  A dead connected dgram peer disconnects sock (ECONNREFUSED)."""
    if sock.type == S.SOCK_SEQPACKET:
        err = sock.take_error()
        if err:
            raise GuestError(err)
        if sock.state != CONNECTED:
            raise GuestError(E.ENOTCONN)
        dest = None
    if len(data) > sock.sndbuf - DGRAM_SLACK:
        raise GuestError(E.EMSGSIZE)
    other = dest if dest is not None else sock.peer
    if other is None:
        raise GuestError(E.ENOTCONN)
    if sock.shutdown & S.SEND_SHUTDOWN:
        raise GuestError(E.EPIPE)
    if other.dead:
        if sock.type == S.SOCK_SEQPACKET:
            raise GuestError(E.EPIPE)
        if sock.peer is other:
            sock.peer, sock.state = None, UNCONNECTED
        raise GuestError(E.ECONNREFUSED)
    if other.peer is not None and other.peer is not sock:
        raise GuestError(E.EPERM)
    if other.shutdown & S.RCV_SHUTDOWN:
        raise GuestError(E.EPIPE)
    if other.peer is not sock and other.dgram_full() or sock.wmem >= sock.sndbuf:
        raise _wait(sock, out.nonblock)
    other.enqueue(_message(sock, other, data, out))
    return len(data)


def _nothing_queued(sock: UnixSocket, nonblock: bool) -> Received:
    """A receive finding the queue empty: the pending error, end of file after SHUT_RD or
    the peer's close, or a wait (EAGAIN when non-blocking)."""
    err = sock.take_error()
    if err:
        raise GuestError(err)
    if sock.shutdown & S.RCV_SHUTDOWN:
        return Received(b"", [], None, None, 0, 0)
    raise _wait(sock, nonblock)


def dgram_recv(sock: UnixSocket, n: int, flags: int, nonblock: bool) -> Received:
    """Take (or peek at) the next message whole: bytes past n are lost (MSG_TRUNC in
    msg_flags; the call returns the full length when MSG_TRUNC was asked)."""
    if sock.type == S.SOCK_SEQPACKET and sock.state != CONNECTED:
        raise GuestError(E.ENOTCONN if sock.state != LISTENING else E.EINVAL)
    if not sock.recvq:
        return _nothing_queued(sock, nonblock)
    msg = sock.recvq[0]
    data = msg.data[:n]
    out_flags = S.MSG_TRUNC if len(msg.data) > n else 0
    result = len(msg.data) if flags & S.MSG_TRUNC else len(data)
    fds = list(msg.fds)
    cred = (msg.cred or (0, NOBODY, NOBODY)) if sock.passcred else None
    if not flags & S.MSG_PEEK:
        msg.fds = []
        sock.consume(msg)
    return Received(data, fds, cred, msg.addr, out_flags, result)
