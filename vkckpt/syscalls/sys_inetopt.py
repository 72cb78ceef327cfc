"""Internet socket options (sk_setsockopt's SO_REUSEPORT, SO_KEEPALIVE, SO_LINGER;
do_tcp_setsockopt; do_ipv6_setsockopt's IPV6_V6ONLY), read and written as Linux keeps
them.  TCP_INFO and the rest are ENOPROTOOPT."""

from __future__ import annotations

import struct

from vkckpt.abi import errno as E
from vkckpt.abi import inet as I
from vkckpt.abi import socket as S
from vkckpt.errors import GuestError

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.unix import UnixSocket

_SOCK_OPTS = (I.SO_REUSEPORT, I.SO_KEEPALIVE, I.SO_LINGER, S.SO_DOMAIN, S.SO_PROTOCOL)
_TCP_FIELDS = {I.TCP_NODELAY: "nodelay", I.TCP_KEEPIDLE: "keepidle",
               I.TCP_KEEPINTVL: "keepintvl", I.TCP_KEEPCNT: "keepcnt"}
_TCP_MAX = {I.TCP_KEEPIDLE: 32767, I.TCP_KEEPINTVL: 32767, I.TCP_KEEPCNT: 127}


def handles(sock: UnixSocket, level: int, opt: int) -> bool:
    """Is (level, opt) an internet option of sock (others go to the SOL_SOCKET code)?"""
    return sock.inet is not None and (level != S.SOL_SOCKET or opt in _SOCK_OPTS)


def _level(sock: UnixSocket, level: int) -> None:
    if level == I.IPPROTO_TCP and sock.type != S.SOCK_STREAM:
        raise GuestError(E.EOPNOTSUPP)
    if level == I.IPPROTO_IPV6 and sock.inet.family != I.AF_INET6:
        raise GuestError(E.ENOPROTOOPT)
    if level not in (S.SOL_SOCKET, I.IPPROTO_TCP, I.IPPROTO_IPV6, I.IPPROTO_IP):
        raise GuestError(E.ENOPROTOOPT)


def get(sock: UnixSocket, level: int, opt: int) -> bytes:
    """The value of an internet option."""
    _level(sock, level)
    o = sock.inet
    if level == S.SOL_SOCKET:
        if opt == I.SO_LINGER:
            return I.LINGER.pack(*o.linger)
        v = {I.SO_REUSEPORT: o.reuseport, I.SO_KEEPALIVE: o.keepalive,
             S.SO_DOMAIN: o.family,
             S.SO_PROTOCOL: I.IPPROTO_TCP if sock.type == S.SOCK_STREAM else I.IPPROTO_UDP}
        return struct.pack("<i", int(v[opt]))
    if level == I.IPPROTO_TCP and opt in _TCP_FIELDS:
        return struct.pack("<i", int(getattr(o, _TCP_FIELDS[opt])))
    if level == I.IPPROTO_IPV6 and opt == I.IPV6_V6ONLY:
        return struct.pack("<i", int(o.v6only))
    raise GuestError(E.ENOPROTOOPT)


def set(sock: UnixSocket, level: int, opt: int, raw: bytes) -> None:  # noqa: A001
    """Change an internet option (EINVAL for a short value or one out of range)."""
    _level(sock, level)
    o = sock.inet
    if level == S.SOL_SOCKET and opt == I.SO_LINGER:
        if len(raw) < I.LINGER.size:
            raise GuestError(E.EINVAL)
        on, secs = I.LINGER.unpack_from(raw)
        o.linger = (int(bool(on)), max(secs, 0) if on else 0)
        return
    if len(raw) < 4:
        raise GuestError(E.EINVAL)
    v = struct.unpack_from("<i", raw)[0]
    if level == S.SOL_SOCKET and opt in (I.SO_REUSEPORT, I.SO_KEEPALIVE):
        setattr(o, "reuseport" if opt == I.SO_REUSEPORT else "keepalive", bool(v))
    elif level == I.IPPROTO_TCP and opt in _TCP_FIELDS:
        if opt in _TCP_MAX and not 1 <= v <= _TCP_MAX[opt]:
            raise GuestError(E.EINVAL)
        setattr(o, _TCP_FIELDS[opt], bool(v) if opt == I.TCP_NODELAY else v)
    elif level == I.IPPROTO_IPV6 and opt == I.IPV6_V6ONLY:
        if sock.addr is not None:
            raise GuestError(E.EINVAL)
        o.v6only = bool(v)
    else:
        raise GuestError(E.ENOPROTOOPT)
