"""Internet sockets: protocols, options and sockaddr_in/sockaddr_in6 layouts (x86-64 Linux)."""

from __future__ import annotations

import struct

AF_INET, AF_INET6 = 2, 10
IPPROTO_IP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_IPV6 = 0, 6, 17, 41
# -- options (asm-generic/socket.h, linux/tcp.h, linux/in6.h) ------------------------------------
SO_KEEPALIVE, SO_LINGER, SO_REUSEPORT = 9, 13, 15
TCP_NODELAY, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_INFO = 1, 4, 5, 6, 11
IPV6_V6ONLY = 26
LINGER = struct.Struct("<ii")   # struct linger: l_onoff, l_linger
# -- ports and sizes ------------------------------------------------------------------------------
EPHEMERAL_LOW, EPHEMERAL_HIGH = 32768, 60999  # net.ipv4.ip_local_port_range
UDP_MAX_PAYLOAD = 65507         # 65535 less the IPv4 and UDP headers
SIN = struct.Struct("<H2s4s8x")          # family, port (big-endian), address, sin_zero
SIN6 = struct.Struct("<H2sI16sI")        # family, port, flowinfo, address, scope id
SIN6_LEN_RFC2133 = 24                    # the shortest sockaddr_in6 Linux accepts
V4MAPPED = b"\0" * 10 + b"\xff\xff"
ANY6, LOOP6 = b"\0" * 16, b"\0" * 15 + b"\1"
ANY4 = V4MAPPED + b"\0" * 4

#: An endpoint's address as the vkernel keeps it: 16 address bytes (IPv4 as v4-mapped) and
#: the port, big-endian: 18 bytes.
Name = bytes


def name(ip16: bytes, port: int) -> Name:
    return ip16 + port.to_bytes(2, "big")


def ip_of(n: Name) -> bytes:
    return n[:16]


def port_of(n: Name) -> int:
    return int.from_bytes(n[16:18], "big")


def is_v4(ip16: bytes) -> bool:
    return ip16[:12] == V4MAPPED


def is_any(ip16: bytes) -> bool:
    return ip16 in (ANY6, ANY4)


def is_loopback(ip16: bytes) -> bool:
    """127.0.0.0/8 (also v4-mapped) or ::1."""
    return ip16 == LOOP6 or (is_v4(ip16) and ip16[12] == 127)


def pack(n: Name | None, family: int) -> bytes:
    """The sockaddr_in or sockaddr_in6 of name n as getsockname fills it (zero sin_zero,
    flowinfo and scope id); None is the unbound address."""
    n = n if n is not None else name(ANY4 if family == AF_INET else ANY6, 0)
    if family == AF_INET:
        return SIN.pack(AF_INET, n[16:18], n[12:16])
    return SIN6.pack(AF_INET6, n[16:18], 0, n[:16], 0)
