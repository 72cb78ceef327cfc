"""The virtual loopback network's port space: which endpoint a TCP or UDP port reaches
(Linux's bind buckets and socket lookup, for 127.0.0.0/8 and ::1 only).

Ports are per protocol (SOCK_STREAM or SOCK_DGRAM).  A closed endpoint keeps its entry
until the next look at that port drops it (TIME_WAIT does not exist here).  Ephemeral
ports count up from the start of ip_local_port_range, skipping used ones, so two runs of
a vkernel number alike (Linux picks them at random).
"""

from __future__ import annotations

from vkckpt.abi import errno as E
from vkckpt.abi import inet as I
from vkckpt.errors import GuestError
from vkckpt.fs.unix import LISTENING

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.unix import UnixSocket


def _overlap(a: UnixSocket, b: UnixSocket) -> bool:
    """Do the bound addresses of a and b share some address (wildcards included)?"""
    ia, ib = I.ip_of(a.addr), I.ip_of(b.addr)
    return ia == ib or _covers(a, ib) or _covers(b, ia)


def _covers(s: UnixSocket, ip16: bytes) -> bool:
    """Does s, bound to a wildcard, receive for ip16?"""
    own = I.ip_of(s.addr)
    if own == I.ANY4:
        return I.is_v4(ip16)
    if own == I.ANY6:
        return not (I.is_v4(ip16) and s.inet.v6only)
    return False


def matches(s: UnixSocket, ip16: bytes) -> bool:
    """Does a packet for ip16 reach s (its address, or a wildcard covering it)?"""
    return I.ip_of(s.addr) == ip16 or _covers(s, ip16)


class InetNamespace:
    """(socket type, port) -> the endpoints bound there, oldest first."""

    def __init__(self) -> None:
        self.ports: dict[tuple[int, int], list[UnixSocket]] = {}
        self.next_port = I.EPHEMERAL_LOW
        # the sockets whose connect waits in SYN_SENT, by id (rebuilt at thaw from `syn`)
        self.syn_sent: dict[int, UnixSocket] = {}

    def users(self, stype: int, port: int) -> list[UnixSocket]:
        """The live endpoints on a port (closed ones are dropped here)."""
        key = (stype, port)
        live = [s for s in self.ports.get(key, []) if not s.dead]
        if live:
            self.ports[key] = live
        else:
            self.ports.pop(key, None)
        return live

    def _conflict(self, sock: UnixSocket, other: UnixSocket) -> bool:
        """inet_csk_bind_conflict: SO_REUSEPORT on both shares a port; SO_REUSEADDR on
        both unless one listens (TCP), or on both (UDP)."""
        if not _overlap(sock, other):
            return False
        if sock.inet.reuseport and other.inet.reuseport:
            return False
        if sock.reuseaddr and other.reuseaddr:
            return sock.type == 1 and other.state == LISTENING
        return True

    def bind(self, sock: UnixSocket, n: I.Name) -> None:
        """Bind sock to n (port 0: the next free ephemeral port)."""
        sock.addr = n
        try:
            if I.port_of(n) == 0:
                sock.addr = I.name(I.ip_of(n), self._free_port(sock))
            elif any(self._conflict(sock, o) for o in self.users(sock.type, I.port_of(n))):
                raise GuestError(E.EADDRINUSE)
        except GuestError:
            sock.addr = None
            raise
        self.ports.setdefault((sock.type, I.port_of(sock.addr)), []).append(sock)

    def _free_port(self, sock: UnixSocket) -> int:
        span = I.EPHEMERAL_HIGH - I.EPHEMERAL_LOW + 1
        for _ in range(span):
            port = self.next_port
            self.next_port = I.EPHEMERAL_LOW + (port + 1 - I.EPHEMERAL_LOW) % span
            if not self.users(sock.type, port):
                return port
        raise GuestError(E.EADDRINUSE)

    def add(self, sock: UnixSocket) -> None:
        """sock (an accepted connection) uses its bound port too."""
        self.ports.setdefault((sock.type, I.port_of(sock.addr)), []).append(sock)

    def forget(self, sock: UnixSocket) -> None:
        """sock was released: it no longer holds its port (a long-lived server's closed
        connections must not pile up on the port lists)."""
        if sock.addr is None:
            return
        key = (sock.type, I.port_of(sock.addr))
        users = self.ports.get(key)
        if users is not None and sock in users:
            users.remove(sock)
            if not users:
                del self.ports[key]
        self.syn_sent.pop(sock.id, None)

    def waiting(self) -> list[UnixSocket]:
        """The sockets in SYN_SENT, oldest first."""
        live = {i: s for i, s in self.syn_sent.items() if not s.dead and s.inet.syn}
        self.syn_sent = live
        return [live[i] for i in sorted(live)]

    def lookup(self, stype: int, n: I.Name, listening: bool) -> UnixSocket | None:
        """The endpoint a packet for n reaches: the exact address before a wildcard; for
        TCP only listeners (connections are found through their peers)."""
        found = [s for s in self.users(stype, I.port_of(n)) if matches(s, I.ip_of(n))
                 and (not listening or s.state == LISTENING)]
        found.sort(key=lambda s: I.is_any(I.ip_of(s.addr)))
        return found[0] if found else None
