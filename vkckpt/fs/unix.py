"""AF_UNIX socket endpoints: state, queued messages, readiness (Linux's net/unix/af_unix.c).

An endpoint (Linux's struct unix_sock) exists apart from the file that names it: a server's
half of a connection waits in the listener's accept queue before any descriptor refers to
it.  Data moves as messages on the receiver's queue; each charges its sender's write budget
(`wmem`, against SO_SNDBUF) until it is consumed, and keeps the files an SCM_RIGHTS message
carries open.  While it lives an endpoint holds cost() of the vkernel's memory account,
the most its budgets let it make the host hold, so no guest grows host memory past the
limit through socket buffers (socket, socketpair and connect fail with ENOBUFS instead).
Streams read across message boundaries, datagram and seqpacket sockets one
message at a time (unix_io.py holds both read/write paths).
Threads sleep on the readiness queue `poll_q`, which every change notifies, after the
endpoint's own `event_q` (epoll's watchers).
"""

from __future__ import annotations

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.abi import socket as S
from vkckpt.abi.epoll import POLLRDHUP, POLLRDNORM, POLLWRBAND, POLLWRNORM
from vkckpt.errors import GuestError
from vkckpt.threads.wait import WaitQueue

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.inet import InetOpts
    from vkckpt.fs.ops import OpenFile
    from vkckpt.vmspace.account import MemAccount

#: What a queued message costs its sender's budget beyond its bytes (an skb's overhead).
MSG_OVERHEAD = 512
#: What an endpoint costs the memory account beyond its budgets: its bookkeeping.
SOCK_COST = 2048
UNCONNECTED, LISTENING, CONNECTED = "unconnected", "listening", "connected"
STATES = (UNCONNECTED, LISTENING, CONNECTED)
Cred = tuple[int, int, int]  # pid, uid, gid as the vkernel gives them


class Message:
    """One queued skb: bytes, the sender's name, the files and credentials it carries."""

    __slots__ = ("data", "addr", "sender", "fds", "cred", "charge")

    def __init__(self, data: bytes, addr: bytes | None, sender: UnixSocket | None,
                 fds: list[OpenFile], cred: Cred | None, charge: int) -> None:
        self.data = data          # what is left unread of it (streams read it in parts)
        self.addr = addr          # the sender's bound name then (recvfrom's address)
        self.sender = sender      # whose wmem it is charged to
        self.fds = fds            # in flight: each holds one reference until received
        self.cred = cred          # SCM_CREDENTIALS, when either side asked for them
        self.charge = charge


class UnixSocket:
    """One endpoint.  Invariants: `peer` is set in CONNECTED (and a dgram socket may have
    one while UNCONNECTED, after connect); `acceptq` is non-empty only while LISTENING;
    `dead` once its last file was released (a peer may still name it)."""

    def __init__(self, sock_id: int, stype: int, poll_q: WaitQueue) -> None:
        self.id = sock_id
        self.type = stype
        self.poll_q = poll_q
        self.event_q = WaitQueue(("unix-event", sock_id))  # watchers only (epoll items)
        self.state = UNCONNECTED
        self.addr: bytes | None = None   # bound name: path bytes, or "\0" + abstract name
        self.path: str | None = None     # the guest path a path name was bound at
        self.peer: UnixSocket | None = None
        self.recvq: list[Message] = []
        self.acceptq: list[UnixSocket] = []
        self.backlog = 0
        self.shutdown = 0                # RCV_SHUTDOWN | SEND_SHUTDOWN bits
        self.err = 0                     # SO_ERROR, taken by the next call that reports it
        self.passcred = False
        self.reuseaddr = False           # SO_REUSEADDR: kept, no effect on AF_UNIX
        self.sndbuf = S.SK_BUF_DEFAULT
        self.rcvbuf = S.SK_BUF_DEFAULT
        self.peercred: Cred | None = None  # SO_PEERCRED
        self.own_cred: Cred | None = None  # the listener's, given to connecting clients
        self.wmem = 0                    # charges of this socket's messages still queued
        self.dead = False
        self.inet: InetOpts | None = None  # AF_INET, AF_INET6: family and options
        self.mem: MemAccount | None = None  # the account charged `charged` for its buffers
        self.charged = 0

    @property
    def connection(self) -> bool:
        return self.type in (S.SOCK_STREAM, S.SOCK_SEQPACKET)

    # -- notification -----------------------------------------------------------------------
    def changed(self, mask: int) -> None:
        """Tell watchers which events changed, then wake every sleeper and poller."""
        self.event_q.notify(mask)
        self.poll_q.notify()

    def take_error(self) -> int:
        """sock_error: the pending error, cleared."""
        err, self.err = self.err, 0
        return err

    # -- memory -----------------------------------------------------------------------------
    def cost(self) -> int:
        """What this endpoint may make the host hold, charged while it lives: what it may
        have queued at its peers (its send budget, and one datagram beyond it) and at
        itself from senders that charge nobody (UDP: its receive budget)."""
        return 2 * self.sndbuf + self.rcvbuf + SOCK_COST

    def account(self, mem: MemAccount, force: bool = False) -> None:
        """Charge cost() to mem (ENOBUFS when the vkernel's memory limit has no room; force:
        a thaw, whose total is checked once it is rebuilt) and again after a budget changed
        (then only the difference)."""
        n = self.cost() - self.charged
        if force or n <= 0:
            mem.force(n)
        else:
            mem.charge(n, E.ENOBUFS)
        self.mem, self.charged = mem, self.charged + n

    # -- queues -----------------------------------------------------------------------------
    def enqueue(self, msg: Message) -> None:
        """Queue msg for reading here, charging its sender."""
        if msg.sender is not None:
            msg.sender.wmem += msg.charge
        self.recvq.append(msg)
        self.changed(F.POLLIN | POLLRDNORM)

    def consume(self, msg: Message) -> None:
        """msg was read whole: drop it and give its sender the room back."""
        self.recvq.remove(msg)
        s = msg.sender
        if s is not None:
            s.wmem -= msg.charge
            s.changed(F.POLLOUT | POLLWRNORM)

    def unread(self) -> int:
        """FIONREAD: bytes waiting (a datagram socket: the next message's size)."""
        if self.state == LISTENING:
            raise GuestError(E.EINVAL)
        if self.type == S.SOCK_STREAM:
            return sum(len(m.data) for m in self.recvq)
        return len(self.recvq[0].data) if self.recvq else 0

    def writable(self) -> bool:
        """unix_writable: not listening, and at most a quarter of the send budget in use."""
        return self.state != LISTENING and self.wmem * 4 <= self.sndbuf

    def room(self) -> int:
        """Bytes a stream write may still queue before it must wait."""
        return self.sndbuf - self.wmem

    # -- readiness --------------------------------------------------------------------------
    def poll(self, events: int) -> int:
        """revents as unix_poll (streams) or unix_dgram_poll (datagram, seqpacket) compute
        them; POLLERR and POLLHUP are reported unrequested."""
        mask = F.POLLERR if self.err else 0
        if self.inet is not None and self.inet.syn is not None:
            return mask  # TCP's SYN_SENT: nothing to report until the connection is made
        if self.shutdown == S.SHUTDOWN_MASK:
            mask |= F.POLLHUP
        if self.shutdown & S.RCV_SHUTDOWN:
            mask |= POLLRDHUP | F.POLLIN | POLLRDNORM
        if self.recvq or self.acceptq:
            mask |= F.POLLIN | POLLRDNORM
        if self.connection and self.state == UNCONNECTED:
            mask |= F.POLLHUP
        if self._poll_writable():
            mask |= F.POLLOUT | POLLWRNORM | POLLWRBAND
        return mask & (events | F.POLLHUP | F.POLLERR)

    def _poll_writable(self) -> bool:
        if not self.writable():
            return False
        if self.type == S.SOCK_STREAM:
            return True
        other = self.peer
        return not (other is not None and other.peer is not self and other.dgram_full())

    def dgram_full(self) -> bool:
        """unix_recvq_full: more datagrams queued than net.unix.max_dgram_qlen."""
        return len(self.recvq) > S.MAX_DGRAM_QLEN

    # -- connection state -------------------------------------------------------------------
    def pair(self, other: UnixSocket, cred: Cred, other_cred: Cred) -> None:
        """Connect self and other to each other (socketpair, or a connection accepted):
        each sees the other's credentials as SO_PEERCRED."""
        self.peer, other.peer = other, self
        self.state = other.state = CONNECTED
        self.peercred, other.peercred = other_cred, cred

    def shut(self, how: int) -> None:
        """Implement shutdown(2): this side stops as asked; a connected stream or seqpacket
        peer learns that it may no longer write (or read) accordingly."""
        if how not in (S.SHUT_RD, S.SHUT_WR, S.SHUT_RDWR):
            raise GuestError(E.EINVAL)
        mode = how + 1
        self.shutdown |= mode
        self.changed(F.POLLIN | F.POLLOUT | F.POLLHUP | POLLRDHUP)
        other = self.peer
        if other is not None and self.connection:
            theirs = (S.SEND_SHUTDOWN if mode & S.RCV_SHUTDOWN else 0) | \
                (S.RCV_SHUTDOWN if mode & S.SEND_SHUTDOWN else 0)
            other.shutdown |= theirs
            other.changed(F.POLLIN | F.POLLOUT | F.POLLHUP | POLLRDHUP)

    def release(self, embryo: bool = False) -> list[OpenFile]:
        """The last reference is gone (unix_release_sock): a connected stream or seqpacket
        peer is shut down both ways (ECONNRESET when data went unread here, or this was
        never accepted); queued connections are released too.  Returns the in-flight
        files whose reference this socket's queue held (the caller drops them)."""
        self.dead = True
        self.shutdown = S.SHUTDOWN_MASK
        if self.mem is not None:
            self.mem.uncharge(self.charged)
            self.mem, self.charged = None, 0
        state, self.state = self.state, UNCONNECTED
        other = self.peer
        if other is not None and self.connection:
            if self.inet is not None and not (self.recvq or embryo):
                other.shutdown |= S.RCV_SHUTDOWN  # TCP's FIN: the peer may still send (inet.send)
            else:
                other.shutdown = S.SHUTDOWN_MASK
                if self.recvq or embryo:
                    other.err = E.ECONNRESET
            other.changed(F.POLLIN | F.POLLOUT | F.POLLHUP | F.POLLERR | POLLRDHUP)
        self.peer = None
        dropped: list[OpenFile] = []
        for msg in list(self.recvq):
            dropped += msg.fds
            self.consume(msg)
        if state == LISTENING:
            for e in self.acceptq:
                dropped += e.release(embryo=True)
        self.acceptq = []
        self.changed(F.POLLHUP)
        return dropped
