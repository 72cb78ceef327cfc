"""The AF_INET and AF_INET6 branches of the socket calls (fs/inet.py does the work): the
addresses they read and write are sockaddr_in and sockaddr_in6."""

from __future__ import annotations

from vkckpt.abi import errno as E
from vkckpt.abi import inet as I
from vkckpt.abi import socket as S
from vkckpt.errors import GuestError
from vkckpt.fs import inet
from vkckpt.fs.unix import CONNECTED
from vkckpt.syscalls.args import s32

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.unix import Cred
    from vkckpt.fs.unix_file import SocketFile
    from vkckpt.kernel import VKernel
    from vkckpt.threads.thread import Thread

_PROTOS = {S.SOCK_STREAM: I.IPPROTO_TCP, S.SOCK_DGRAM: I.IPPROTO_UDP}


def check_kind(kind: int, proto: int) -> None:
    """inet_create: TCP streams and UDP datagrams only (protocol 0 or the type's own)."""
    if kind not in _PROTOS:
        raise GuestError(E.ESOCKTNOSUPPORT if kind != S.SOCK_RAW else E.EPERM)
    if proto not in (0, _PROTOS[kind]):
        raise GuestError(E.EPROTONOSUPPORT)


def protocol(kind: int) -> int:
    return _PROTOS[kind]


def _raw(t: Thread, addr: int, alen: int) -> bytes:
    alen = s32(alen)
    if not 0 <= alen <= 128:
        raise GuestError(E.EINVAL)
    return t.process.vm.read(addr, alen) if alen else b""


def bind(k: VKernel, t: Thread, f: SocketFile, addr: int, alen: int) -> None:
    """Implement bind(2): a loopback or wildcard address, port 0 the next ephemeral one."""
    sock = f.sock
    n = inet.parse(_raw(t, addr, alen), sock.inet.family)
    inet.check_local(sock, n)
    if sock.addr is not None:
        raise GuestError(E.EINVAL)
    k.inet.bind(sock, n)
    sock.inet.bound = True


def connect(k: VKernel, t: Thread, f: SocketFile, addr: int, alen: int, cred: Cred) -> None:
    """Implement connect(2): TCP connects at once (EINPROGRESS when non-blocking); UDP
    sets its peer address (AF_UNSPEC clears it)."""
    sock = f.sock
    raw = _raw(t, addr, alen)
    if len(raw) >= 2 and S.SUN_FAMILY.unpack_from(raw)[0] == S.AF_UNSPEC:
        if sock.type == S.SOCK_DGRAM:
            inet.udp_connect(k.inet, sock, None)
            return
        raise GuestError(E.EISCONN if sock.state == CONNECTED else E.EINVAL)
    dest = inet.dest_of(sock, raw)
    if sock.type == S.SOCK_DGRAM:
        inet.udp_connect(k.inet, sock, dest)
        return
    inet.connect(k.inet, k.unix, sock, dest, cred, f.nonblock())


def dest(t: Thread, f: SocketFile, name: int, nlen: int) -> bytes | None:
    """A sendto's destination: UDP's, or None (TCP ignores one, as Linux)."""
    if f.sock.type != S.SOCK_DGRAM:
        return None
    return inet.dest_of(f.sock, _raw(t, name, nlen))


def peer_name(f: SocketFile) -> bytes | None:
    """getpeername's name: a TCP peer's address, a UDP socket's connected address."""
    sock = f.sock
    if sock.type == S.SOCK_DGRAM:
        return sock.inet.peer
    return sock.peer.addr if sock.peer is not None and sock.state == CONNECTED else None
