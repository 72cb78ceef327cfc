"""Socket options: getsockopt(2) and setsockopt(2) at SOL_SOCKET (sock_getsockopt,
sk_setsockopt), for the options AF_UNIX programs use."""

from __future__ import annotations

import struct

from vkckpt.abi import errno as E
from vkckpt.abi import socket as S
from vkckpt.errors import GuestError
from vkckpt.fs.unix import LISTENING, UnixSocket
from vkckpt.syscalls import sys_inetopt
from vkckpt.syscalls.args import s32
from vkckpt.syscalls.sys_socket import sock_arg

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel
    from vkckpt.threads.thread import Thread

_UNSET_CRED = (0, 0xFFFFFFFF, 0xFFFFFFFF)  # SO_PEERCRED of a socket with no peer

#: Integer options read: option -> the value of a socket.
_INT_GET = {
    S.SO_TYPE: lambda s: s.type, S.SO_DOMAIN: lambda s: S.AF_UNIX,
    S.SO_PROTOCOL: lambda s: 0, S.SO_ERROR: UnixSocket.take_error,
    S.SO_SNDBUF: lambda s: s.sndbuf, S.SO_RCVBUF: lambda s: s.rcvbuf,
    S.SO_PASSCRED: lambda s: int(s.passcred), S.SO_REUSEADDR: lambda s: int(s.reuseaddr),
    S.SO_ACCEPTCONN: lambda s: int(s.state == LISTENING),
}


def sys_getsockopt(k: VKernel, t: Thread, fd: int, level: int, opt: int, val: int,
                   lenp: int) -> int:
    """Implement getsockopt(2): the value truncated to *lenp, which gets its length."""
    sock = sock_arg(t, fd).sock
    level, opt = s32(level), s32(opt)
    inet = sys_inetopt.handles(sock, level, opt)
    if level != S.SOL_SOCKET and not inet:
        raise GuestError(E.EOPNOTSUPP)
    vm = t.process.vm
    room = s32(struct.unpack("<I", vm.read(lenp, 4))[0])
    if room < 0:
        raise GuestError(E.EINVAL)
    if inet:
        raw = sys_inetopt.get(sock, level, opt)
    elif opt == S.SO_PEERCRED:
        raw = S.UCRED.pack(*(sock.peercred or _UNSET_CRED))
    elif opt in _INT_GET:
        raw = struct.pack("<i", _INT_GET[opt](sock))
    else:
        raise GuestError(E.ENOPROTOOPT)
    raw = raw[:room]
    vm.write(val, raw)
    vm.write(lenp, struct.pack("<I", len(raw)))
    return 0


def sys_setsockopt(k: VKernel, t: Thread, fd: int, level: int, opt: int, val: int,
                   vlen: int) -> int:
    """Implement setsockopt(2): buffer sizes (doubled, clamped as Linux), SO_PASSCRED,
    SO_REUSEADDR (kept, with no effect on AF_UNIX)."""
    sock = sock_arg(t, fd).sock
    level, opt = s32(level), s32(opt)
    if sys_inetopt.handles(sock, level, opt):
        sys_inetopt.set(sock, level, opt, t.process.vm.read(val, min(max(s32(vlen), 0), 64)))
        return 0
    if level != S.SOL_SOCKET:
        raise GuestError(E.EOPNOTSUPP)
    if s32(vlen) < 4:
        raise GuestError(E.EINVAL)
    v = struct.unpack("<i", t.process.vm.read(val, 4))[0]
    if opt == S.SO_SNDBUF:
        _budget(sock, "sndbuf", max(min(max(v, 0), S.SK_BUF_MAX) * 2, S.SOCK_MIN_SNDBUF))
        sock.changed(0)
    elif opt == S.SO_RCVBUF:
        _budget(sock, "rcvbuf", max(min(max(v, 0), S.SK_BUF_MAX) * 2, S.SOCK_MIN_RCVBUF))
    elif opt == S.SO_PASSCRED:
        sock.passcred = bool(v)
    elif opt == S.SO_REUSEADDR:
        sock.reuseaddr = bool(v)
    else:
        raise GuestError(E.ENOPROTOOPT)
    return 0


def _budget(sock: UnixSocket, name: str, value: int) -> None:
    """Set SO_SNDBUF or SO_RCVBUF, charging the memory account what a larger budget may
    hold (ENOBUFS, the budget unchanged, when the vkernel's limit has no room)."""
    old = getattr(sock, name)
    setattr(sock, name, value)
    if sock.mem is not None:
        try:
            sock.account(sock.mem)
        except GuestError:
            setattr(sock, name, old)
            raise
