"""An AF_UNIX socket as an open file description: read/write, readiness, fstat, release."""

from __future__ import annotations

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.abi import inet as I
from vkckpt.abi import socket as S
from vkckpt.abi.stat import pack_stat
from vkckpt.errors import GuestError
from vkckpt.fs import inet
from vkckpt.fs.ops import OpenFile
from vkckpt.fs.unix import CONNECTED, LISTENING, UnixSocket
from vkckpt.fs.unix_gc import drop_files
from vkckpt.fs.unix_io import Outgoing, Received, dgram_recv, dgram_send, stream_recv, stream_send

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.unix import Cred
    from vkckpt.fs.unix_ns import UnixNamespace
    from vkckpt.threads.wait import WaitQueue

#: Inode numbers of sockets (sockfs): away from pipes', anonymous inodes' and the console's.
SOCK_INO = 3 << 32


class SocketFile(OpenFile):
    """The file of one endpoint; closing its last descriptor releases the endpoint."""

    kind = "unix"
    pollable = True

    def __init__(self, sock: UnixSocket, flags: int, ns: UnixNamespace, cred: Cred) -> None:
        super().__init__(F.O_RDWR | (flags & F.O_NONBLOCK))
        self.sock = sock
        self.ns = ns
        self.cred = cred  # its creator's: what write(2), which names no sender, sends

    @property
    def sigpipe(self) -> bool:  # type: ignore[override]
        """Only streams raise SIGPIPE with EPIPE (datagram and seqpacket sends do not)."""
        return self.sock.type == S.SOCK_STREAM

    @property
    def waits_for_all(self) -> bool:  # type: ignore[override]
        """A blocking stream send waits until all is sent; datagrams go whole or not."""
        return self.sock.type == S.SOCK_STREAM

    def nonblock(self, flags: int = 0) -> bool:
        return bool(self.flags & F.O_NONBLOCK or flags & S.MSG_DONTWAIT)

    def send(self, data: bytes, dest: UnixSocket | bytes | None, fds: list[OpenFile], cred: Cred,
             flags: int) -> int:
        """One sendmsg's data to dest (None: the peer); EPIPE left to the caller."""
        out = Outgoing(fds, cred, self.nonblock(flags), self._board)
        if self.sock.inet is not None:
            return inet.send(self.ns.inet, self.sock, data, dest, out)
        if self.sock.type == S.SOCK_STREAM:
            if dest is not None:
                raise GuestError(E.EISCONN if self.sock.state == CONNECTED else E.EOPNOTSUPP)
            return stream_send(self.sock, data, out)
        if dest is None and self.sock.type == S.SOCK_DGRAM and self.sock.peer is None:
            raise GuestError(E.ENOTCONN)
        return dgram_send(self.sock, data, dest, out)

    def sockaddr(self, name: bytes | None) -> bytes:
        """The struct sockaddr of a name of this socket's family."""
        if self.sock.inet is not None:
            return I.pack(name, self.sock.inet.family)
        return S.pack_sockaddr_un(name)

    def _board(self, fds: list[OpenFile]) -> None:
        """The AF_UNIX socket files among fds are in flight now (the collector counts them)."""
        self.ns.gc.board(unix_files(fds))

    def recv(self, n: int, flags: int) -> Received:
        """One receive; the files it takes (not merely peeks at) are no longer in flight."""
        if self.sock.type == S.SOCK_STREAM:
            got = stream_recv(self.sock, n, flags, self.nonblock(flags))
        else:
            got = dgram_recv(self.sock, n, flags, self.nonblock(flags))
        if not flags & S.MSG_PEEK:
            self.ns.gc.land(got.fds)
        return got

    def read(self, n: int) -> bytes:
        """read(2) as recv with no flags; files sent with the data are closed unreceived."""
        got = self.recv(n, 0)
        drop_files(got.fds)
        return got.data

    def write(self, data: bytes) -> int:
        return self.send(data, None, [], self.cred, 0)

    def read_fit(self, room: int, want: int, off: int | None) -> int:
        return want  # the copy-out faults after the data is taken, as skb_copy_datagram_msg

    def stat(self) -> bytes:
        return pack_stat(8, SOCK_INO + self.sock.id, F.S_IFSOCK | 0o777, 1, 0, 0, 0, 0,
                         4096, 0, 0, 0, 0)

    def fionread(self) -> int:
        return self.sock.unread()

    def poll(self, events: int) -> int:
        return self.sock.poll(events)

    def poll_queue(self) -> WaitQueue:
        return self.sock.event_q

    def release(self) -> None:
        """The last reference is gone (unix_release_sock): the endpoint goes, the files its
        queue held are dropped, and while sockets are in flight the collector runs."""
        self.ns.unbind(self.sock)
        opts = self.sock.inet
        listening = self.sock.state == LISTENING
        self.ns.gc.drop(self.sock.release(embryo=opts is not None and opts.linger == (1, 0)))
        if opts is not None:
            self.ns.inet.forget(self.sock)
            if listening:
                inet.listener_closed(self.ns.inet)
        self.ns.gc.collect()


def unix_files(files: list[OpenFile]) -> list[SocketFile]:
    """unix_get_socket: the files that are AF_UNIX sockets' (internet sockets carry no
    files, so the collector never counts them)."""
    return [f for f in files if isinstance(f, SocketFile) and f.sock.inet is None]
