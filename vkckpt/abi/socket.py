"""Sockets: families, types, flags, options and struct layouts (x86-64 Linux, AF_UNIX part)."""

from __future__ import annotations

import struct

from vkckpt.abi.fcntl import O_CLOEXEC, O_NONBLOCK

# -- families and types (linux/socket.h, linux/net.h) ----------------------------------------------
AF_UNSPEC, AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 0, 1, 2, 10, 16
SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_SEQPACKET = 1, 2, 3, 5
SOCK_TYPE_MASK = 0xF
SOCK_MAX = 11  # SOCK_PACKET + 1: higher types are EINVAL
SOCK_NONBLOCK, SOCK_CLOEXEC = O_NONBLOCK, O_CLOEXEC

# -- shutdown(2) and the socket's own shutdown bits (net/sock.h) ---------------------------------
SHUT_RD, SHUT_WR, SHUT_RDWR = 0, 1, 2
RCV_SHUTDOWN, SEND_SHUTDOWN = 1, 2
SHUTDOWN_MASK = RCV_SHUTDOWN | SEND_SHUTDOWN

# -- message flags (linux/socket.h) ---------------------------------------------------------------
MSG_OOB, MSG_PEEK, MSG_DONTROUTE, MSG_CTRUNC = 0x1, 0x2, 0x4, 0x8
MSG_TRUNC, MSG_DONTWAIT, MSG_EOR, MSG_WAITALL = 0x20, 0x40, 0x80, 0x100
MSG_NOSIGNAL, MSG_MORE, MSG_WAITFORONE, MSG_CMSG_CLOEXEC = 0x4000, 0x8000, 0x10000, 0x40000000

# -- socket options (asm-generic/socket.h) --------------------------------------------------------
SOL_SOCKET = 1
SO_REUSEADDR, SO_TYPE, SO_ERROR, SO_SNDBUF, SO_RCVBUF = 2, 3, 4, 7, 8
SO_KEEPALIVE, SO_PASSCRED, SO_PEERCRED, SO_RCVLOWAT, SO_SNDLOWAT = 9, 16, 17, 18, 19
SO_ACCEPTCONN, SO_SNDBUFFORCE, SO_RCVBUFFORCE, SO_DOMAIN, SO_PROTOCOL = 30, 32, 33, 39, 38
#: net.core.wmem_default / rmem_default: what SO_SNDBUF and SO_RCVBUF read at first.
SK_BUF_DEFAULT = 212992
SK_BUF_MAX = 212992           # net.core.wmem_max: setsockopt clamps to it (then doubles)
SOCK_MIN_SNDBUF, SOCK_MIN_RCVBUF = 4608, 2304
SOMAXCONN = 4096              # net.core.somaxconn: listen's backlog is clamped to it
MAX_DGRAM_QLEN = 10           # net.unix.max_dgram_qlen: a datagram queue is full past it

# -- control messages (linux/socket.h) ------------------------------------------------------------
SCM_RIGHTS, SCM_CREDENTIALS = 1, 2
#: SOL_SOCKET control messages an internet socket's sendmsg accepts (__sock_cmsg_send:
#: SCM_RIGHTS and SCM_CREDENTIALS, ignored as AF_UNIX's; SO_PRIORITY, SO_MARK,
#: SO_TIMESTAMPING_OLD, SCM_TXTIME); vkckpt ignores them all.
INET_SOL_CMSGS = frozenset((SCM_RIGHTS, SCM_CREDENTIALS, 12, 36, 37, 61))
SCM_MAX_FD = 253              # descriptors one SCM_RIGHTS message may carry
CMSG_HDR = struct.Struct("<QiI")  # cmsg_len (size_t), cmsg_level, cmsg_type
UCRED = struct.Struct("<iII")     # pid, uid, gid
#: struct msghdr: name, namelen (+pad), iov, iovlen, control, controllen, flags (+pad).
MSGHDR = struct.Struct("<QI4xQQQQi4x")
MMSGHDR_SIZE = MSGHDR.size + 8    # struct mmsghdr: msghdr, msg_len (+pad)
UIO_MAXIOV_MMSG = 1024            # UIO_MAXIOV: sendmmsg/recvmmsg take at most this many

# -- sockaddr_un (linux/un.h) ---------------------------------------------------------------------
UNIX_PATH_MAX = 108
SUN_FAMILY = struct.Struct("<H")
SOCKADDR_UN_SIZE = 2 + UNIX_PATH_MAX


def cmsg_align(n: int) -> int:
    return (n + 7) & ~7


def cmsg_space(n: int) -> int:
    return CMSG_HDR.size + cmsg_align(n)


def cmsg_len(n: int) -> int:
    return CMSG_HDR.size + n


def pack_sockaddr_un(name: bytes | None) -> bytes:
    """struct sockaddr_un of a bound name (as getsockname returns it): the family alone
    for an unbound socket, else the path bytes with their terminating NUL (a path) or
    exactly the abstract name (leading NUL)."""
    if not name:
        return SUN_FAMILY.pack(AF_UNIX)
    return SUN_FAMILY.pack(AF_UNIX) + name + (b"" if name[0] == 0 else b"\0")
