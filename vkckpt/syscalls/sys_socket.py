"""Sockets: creating, naming, connecting (data: sys_sockmsg.py; options: sys_sockopt.py).

AF_UNIX here, AF_INET and AF_INET6 through sys_inet.py; every other family is
EAFNOSUPPORT."""

from __future__ import annotations

import os
import struct

from vkckpt.abi import errno as E
from vkckpt.abi import socket as S
from vkckpt.abi.mman import PROT_WRITE
from vkckpt.errors import GuestError
from vkckpt.fs import inet, unix_conn
from vkckpt.fs.unix import LISTENING, UNCONNECTED, UnixSocket
from vkckpt.fs.unix_file import SocketFile
from vkckpt.syscalls import sys_inet
from vkckpt.syscalls.args import s32

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.unix import Cred
    from vkckpt.kernel import VKernel
    from vkckpt.threads.thread import Thread

_TYPES = (S.SOCK_STREAM, S.SOCK_DGRAM, S.SOCK_SEQPACKET)


def cred_of(t: Thread) -> Cred:
    """The caller's credentials as sockets carry them: its pid, uid and gid 0."""
    return (t.process.pid, 0, 0)


def sock_arg(t: Thread, fd: int) -> SocketFile:
    """The socket behind fd: EBADF when closed, ENOTSOCK when it is another file."""
    f = t.process.fds.get(s32(fd))
    if not isinstance(f, SocketFile):
        raise GuestError(E.ENOTSOCK)
    return f


def _kind(domain: int, stype: int, proto: int) -> tuple[int, int]:
    """(socket type, file flags) of a socket(2) request, checked as __sock_create."""
    kind = s32(stype) & S.SOCK_TYPE_MASK
    if s32(domain) in (S.AF_INET, S.AF_INET6) and not s32(stype) & ~(
            S.SOCK_TYPE_MASK | S.SOCK_NONBLOCK | S.SOCK_CLOEXEC) and kind < S.SOCK_MAX:
        sys_inet.check_kind(kind, s32(proto))
        return kind, s32(stype) & (S.SOCK_NONBLOCK | S.SOCK_CLOEXEC)
    domain, stype, proto = s32(domain), s32(stype), s32(proto)
    if stype & ~(S.SOCK_TYPE_MASK | S.SOCK_NONBLOCK | S.SOCK_CLOEXEC):
        raise GuestError(E.EINVAL)
    if not 0 <= domain < 46:
        raise GuestError(E.EAFNOSUPPORT)
    if domain != S.AF_UNIX:
        raise GuestError(E.EAFNOSUPPORT, "only AF_UNIX, AF_INET, AF_INET6 sockets")
    kind = stype & S.SOCK_TYPE_MASK
    if kind >= S.SOCK_MAX:
        raise GuestError(E.EINVAL)
    if proto not in (0, S.AF_UNIX):
        raise GuestError(E.EPROTONOSUPPORT)
    if kind == S.SOCK_RAW:
        kind = S.SOCK_DGRAM  # as unix_create
    if kind not in _TYPES:
        raise GuestError(E.ESOCKTNOSUPPORT)
    return kind, stype & (S.SOCK_NONBLOCK | S.SOCK_CLOEXEC)


def new_file(k: VKernel, t: Thread, sock: UnixSocket, flags: int) -> int:
    """Install a file for sock (flags: SOCK_NONBLOCK | SOCK_CLOEXEC)."""
    f = SocketFile(sock, flags, k.unix, cred_of(t))
    try:
        return t.process.fds.install(f, bool(flags & S.SOCK_CLOEXEC))
    except GuestError:
        f.release()
        raise


def sys_socket(k: VKernel, t: Thread, domain: int, stype: int, proto: int) -> int:
    """Implement socket(2) for AF_UNIX, AF_INET and AF_INET6."""
    kind, flags = _kind(domain, stype, proto)
    sock = UnixSocket(k.unix.new_id(), kind, k.poll_q)
    if s32(domain) != S.AF_UNIX:
        sock.inet = inet.InetOpts(s32(domain))
    sock.account(k.mem)
    return new_file(k, t, sock, flags)


def sys_socketpair(k: VKernel, t: Thread, domain: int, stype: int, proto: int,
                   sv: int) -> int:
    """Implement socketpair(2): two connected endpoints, both with the caller's creds."""
    kind, flags = _kind(domain, stype, proto)
    if s32(domain) != S.AF_UNIX:
        raise GuestError(E.EOPNOTSUPP)
    if t.process.vm.user_span(sv, 8, PROT_WRITE) < 8:
        raise GuestError(E.EFAULT)
    a, b = (UnixSocket(k.unix.new_id(), kind, k.poll_q) for _ in range(2))
    a.account(k.mem)
    try:
        b.account(k.mem)
    except GuestError:
        a.release()
        raise
    a.pair(b, cred_of(t), cred_of(t))
    fa = new_file(k, t, a, flags)
    try:
        fb = new_file(k, t, b, flags)
    except GuestError:
        t.process.fds.close(fa)
        raise
    t.process.vm.write(sv, struct.pack("<ii", fa, fb))
    return 0


def sockaddr(t: Thread, addr: int, alen: int) -> tuple[bool, bytes]:
    """A struct sockaddr_un as (abstract, name): the abstract name with its leading NUL,
    or the path up to its first NUL; an empty name is autobind (bind only)."""
    alen = s32(alen)
    if not 2 <= alen <= S.SOCKADDR_UN_SIZE:
        raise GuestError(E.EINVAL)
    raw = t.process.vm.read(addr, alen)
    if S.SUN_FAMILY.unpack_from(raw)[0] != S.AF_UNIX:
        raise GuestError(E.EINVAL)
    path = raw[2:]
    if path[:1] == b"\0":
        return True, path
    return False, path.split(b"\0", 1)[0]


def find(k: VKernel, t: Thread, addr: int, alen: int) -> UnixSocket:
    """The endpoint an address names (ENOENT, ECONNREFUSED as Linux's unix_find_other)."""
    abstract, name = sockaddr(t, addr, alen)
    if abstract:
        return k.unix.lookup_abstract(name)
    if not name:
        raise GuestError(E.EINVAL)
    return k.unix.lookup_path(k.root.resolve(os.fsdecode(name), t.process.cwd))


def sys_bind(k: VKernel, t: Thread, fd: int, addr: int, alen: int) -> int:
    """Implement bind(2): a path (a socket inode, fs/unix_ns.py), an abstract name, or
    with the family alone the next autobind name; EINVAL when already bound."""
    f = sock_arg(t, fd)
    if f.sock.inet is not None:
        sys_inet.bind(k, t, f, addr, alen)
        return 0
    sock = f.sock
    abstract, name = sockaddr(t, addr, alen)
    if sock.addr is not None:
        raise GuestError(E.EINVAL)
    if s32(alen) == 2:
        k.unix.autobind(sock)
    elif abstract:
        k.unix.bind_abstract(sock, name)
    else:
        r = k.root.resolve(os.fsdecode(name), t.process.cwd, follow=False, must_exist=False)
        k.unix.bind_path(sock, r, name, t.process.umask)
    return 0


def sys_listen(k: VKernel, t: Thread, fd: int, backlog: int) -> int:
    sock = sock_arg(t, fd).sock
    if sock.inet is not None:
        inet.listen(k.inet, sock, s32(backlog), cred_of(t))
        return 0
    unix_conn.listen(sock, s32(backlog), cred_of(t))
    return 0


def sys_connect(k: VKernel, t: Thread, fd: int, addr: int, alen: int) -> int:
    """Implement connect(2): a stream or seqpacket connection, or a datagram socket's
    default peer (AF_UNSPEC clears it)."""
    f = sock_arg(t, fd)
    sock = f.sock
    if sock.inet is not None:
        sys_inet.connect(k, t, f, addr, alen, cred_of(t))
        return 0
    if not sock.connection:
        if s32(alen) >= 2 and S.SUN_FAMILY.unpack(t.process.vm.read(addr, 2))[0] == \
                S.AF_UNSPEC:
            unix_conn.dgram_connect(k.unix, sock, None)
            return 0
        unix_conn.dgram_connect(k.unix, sock, find(k, t, addr, alen))
        return 0
    unix_conn.connect(k.unix, sock, find(k, t, addr, alen), cred_of(t), f.nonblock())
    return 0


def sys_accept4(k: VKernel, t: Thread, fd: int, addr: int, alen: int, flags: int) -> int:
    """Implement accept4(2): the next queued connection, its peer's name in addr."""
    if flags & ~(S.SOCK_NONBLOCK | S.SOCK_CLOEXEC):
        raise GuestError(E.EINVAL)
    f = sock_arg(t, fd)
    if not f.sock.connection:
        raise GuestError(E.EOPNOTSUPP)
    if addr and f.sock.state == LISTENING:
        room = s32(struct.unpack("<I", t.process.vm.read(alen, 4))[0])
        if room < 0:
            raise GuestError(E.EINVAL)
    sock = unix_conn.accept(f.sock, f.nonblock())
    if f.sock.inet is not None:
        inet.accepted(k.inet, k.unix, f.sock)
    new = new_file(k, t, sock, flags)
    if addr:
        put_name(t, addr, alen, f.sockaddr(sock.peer.addr if sock.peer else None))
    return new


def sys_accept(k: VKernel, t: Thread, fd: int, addr: int, alen: int) -> int:
    return sys_accept4(k, t, fd, addr, alen, 0)


def put_name(t: Thread, addr: int, alen: int, raw: bytes) -> None:
    """Copy a socket address out as Linux's move_addr_to_user: truncated to *alen, whose
    new value is the full length."""
    vm = t.process.vm
    room = s32(struct.unpack("<I", vm.read(alen, 4))[0])
    if room < 0:
        raise GuestError(E.EINVAL)
    vm.write(addr, raw[:room])
    vm.write(alen, struct.pack("<I", len(raw)))


def sys_getsockname(k: VKernel, t: Thread, fd: int, addr: int, alen: int) -> int:
    f = sock_arg(t, fd)
    put_name(t, addr, alen, f.sockaddr(f.sock.addr))
    return 0


def sys_getpeername(k: VKernel, t: Thread, fd: int, addr: int, alen: int) -> int:
    f = sock_arg(t, fd)
    name = sys_inet.peer_name(f) if f.sock.inet is not None else \
        f.sock.peer.addr if f.sock.peer is not None else None
    if name is None and (f.sock.inet is not None or f.sock.peer is None):
        raise GuestError(E.ENOTCONN)
    put_name(t, addr, alen, f.sockaddr(name))
    return 0


def sys_shutdown(k: VKernel, t: Thread, fd: int, how: int) -> int:
    """Implement shutdown(2); an internet socket not connected is shut all the same but
    the call says ENOTCONN (inet_shutdown)."""
    sock = sock_arg(t, fd).sock
    sock.shut(s32(how))
    if sock.inet is not None and sock.state == UNCONNECTED:
        raise GuestError(E.ENOTCONN)
    return 0

