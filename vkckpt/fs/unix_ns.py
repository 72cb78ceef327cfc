"""The AF_UNIX name space: which endpoint a bound name reaches.

Abstract names (sun_path[0] == 0) live only here.  A path name is a *socket inode* in the
guest root: the host gets an empty regular file as its placeholder (never a real host
socket, which host processes could reach), whose file type in the inode table is S_IFSOCK
(so stat(2) and getdents report a socket, open is ENXIO), and this table maps the
placeholder's host identity to the bound endpoint.  So
stat, ls, rename and unlink act on the placeholder as on Linux's socket inode; bind on an
existing name is EADDRINUSE; connect through a name whose endpoint is gone (or that is no
socket) is ECONNREFUSED.  Autobind names are five hex digits, counted from 0 (Linux starts
at a random number), so two runs of a vkernel name alike.
"""

from __future__ import annotations

import os

from vkckpt.abi import errno as E
from vkckpt.errors import GuestError
from vkckpt.fs.inet_ns import InetNamespace
from vkckpt.fs.unix_gc import UnixGc

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.inodes import InodeTable
    from vkckpt.fs.sandbox import GuestRoot, Resolved
    from vkckpt.fs.unix import UnixSocket

AUTOBIND_SPACE = 1 << 20  # 5 hex digits


class UnixNamespace:
    """Bound names -> endpoints, and the counters of endpoint ids and autobind names."""

    def __init__(self, root: GuestRoot, inodes: InodeTable) -> None:
        self.root = root
        self.inodes = inodes
        self.abstract: dict[bytes, UnixSocket] = {}
        self.paths: dict[tuple[int, int], UnixSocket] = {}  # placeholder (st_dev, st_ino)
        self.next_id = 1
        self.next_auto = 0
        #: The same vkernel's port space: an internet socket's file reaches it through here.
        self.inet = InetNamespace()
        #: The socket files in flight in SCM_RIGHTS messages, and their collector.
        self.gc = UnixGc()

    def new_id(self) -> int:
        n = self.next_id
        self.next_id += 1
        return n

    def bind_abstract(self, sock: UnixSocket, name: bytes) -> None:
        """Bind sock to "\\0" + name (EADDRINUSE when taken)."""
        if name in self.abstract:
            raise GuestError(E.EADDRINUSE)
        self.abstract[name] = sock
        sock.addr = name

    def autobind(self, sock: UnixSocket) -> None:
        """Bind sock to the next free abstract name of five hex digits (ENOSPC once every
        one is taken)."""
        for _ in range(AUTOBIND_SPACE):
            name = b"\0%05x" % self.next_auto
            self.next_auto = (self.next_auto + 1) % AUTOBIND_SPACE
            if name not in self.abstract:
                self.bind_abstract(sock, name)
                return
        raise GuestError(E.ENOSPC)

    def bind_path(self, sock: UnixSocket, r: Resolved, name: bytes, umask: int) -> None:
        """Create the socket inode at r (mode 0777 less the umask) and bind sock to it."""
        r.writable()
        try:
            fd = self.root.host_open(r, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except GuestError as exc:
            raise GuestError(E.EADDRINUSE if exc.errno == E.EEXIST else exc.errno) from None
        try:
            os.fchmod(fd, 0o777 & ~umask)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        self.inodes.mark_socket(st, r.guest)
        self.paths[(st.st_dev, st.st_ino)] = sock
        sock.addr, sock.path = name, r.guest

    def _lstat(self, guest: str) -> os.stat_result | None:
        try:
            return os.lstat(self.root.resolve(guest, "/", follow=False).host)
        except (OSError, GuestError):
            return None

    def mark_inode(self, guest: str) -> None:
        """A socket inode of a v1 image (whose unixns record listed them): the file at
        guest path stats as a socket again."""
        st = self._lstat(guest)
        if st is not None:
            self.inodes.mark_socket(st, guest)

    def adopt_path(self, sock: UnixSocket, guest: str) -> None:
        """A thawed endpoint bound at guest path: reachable again if its inode is there."""
        st = self._lstat(guest)
        if st is not None and self.inodes.is_socket(st):
            self.paths[(st.st_dev, st.st_ino)] = sock

    def lookup_path(self, r: Resolved) -> UnixSocket:
        """The live endpoint bound at resolved path r (ECONNREFUSED when none is)."""
        try:
            st = os.stat(r.host)
        except OSError as exc:
            raise GuestError(E.ENOENT if exc.errno == E.ENOENT else E.ECONNREFUSED) from None
        sock = self.paths.get((st.st_dev, st.st_ino)) if self.inodes.is_socket(st) else None
        if sock is None or sock.dead:  # a file the host gave a gone placeholder's inode too
            raise GuestError(E.ECONNREFUSED)
        return sock

    def lookup_abstract(self, name: bytes) -> UnixSocket:
        sock = self.abstract.get(name)
        if sock is None or sock.dead:
            raise GuestError(E.ECONNREFUSED)
        return sock

    def unbind(self, sock: UnixSocket) -> None:
        """sock is gone: its name reaches nothing now (a path's inode stays, as on Linux)."""
        if sock.addr is None:
            return
        if sock.path is None:
            if self.abstract.get(sock.addr) is sock:
                del self.abstract[sock.addr]
            return
        for key, s in list(self.paths.items()):
            if s is sock:
                del self.paths[key]
