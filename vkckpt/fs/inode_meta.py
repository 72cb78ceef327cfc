"""What the vkernel keeps of an inode beyond the host's: owner, file type, extended attributes.

Owners are virtual (the host never chowns): a guest runs as root and may give any file any
owner, which stat reports.  A named FIFO (mknod S_IFIFO) and a bound AF_UNIX socket's inode
are empty regular files on the host whose virtual file type (`kind`) is kept here: stat and
getdents report it, open gives pipe semantics (fifo.py) or ENXIO (unix_ns.py).  Extended
attributes of the user, trusted and security namespaces are kept here per inode, in the order
they were first set (as ext4 lists them); system.* (POSIX ACLs) is not supported.
"""

from __future__ import annotations

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.errors import GuestError, ImageError

NAMESPACES = (b"user.", b"trusted.", b"security.")
#: The virtual file types a placeholder may have (0: the host file's own type).
KINDS = (0, F.S_IFIFO, F.S_IFSOCK)
#: The most attributes and attribute bytes one inode holds (ext4 holds about a block's).
MAX_XATTRS, MAX_XATTR_BYTES = 64, 1 << 16


class InodeMeta:
    """The virtual metadata of one inode."""

    __slots__ = ("uid", "gid", "kind", "xattrs")

    def __init__(self, uid: int = 0, gid: int = 0, kind: int = 0,
                 xattrs: dict[bytes, bytes] | None = None) -> None:
        self.uid = uid
        self.gid = gid
        self.kind = kind  # one of KINDS: S_IFIFO, S_IFSOCK over an empty regular host file
        self.xattrs = {} if xattrs is None else xattrs  # name -> value, in setting order

    def is_default(self) -> bool:
        return not (self.uid or self.gid or self.kind or self.xattrs)

    def chown(self, uid: int, gid: int) -> None:
        """chown(2) by root: -1 (0xffffffff) keeps a field."""
        if uid != 0xFFFFFFFF:
            self.uid = uid
        if gid != 0xFFFFFFFF:
            self.gid = gid

    # -- extended attributes ------------------------------------------------------------------
    def getxattr(self, name: bytes, mode: int) -> bytes:
        """getxattr(2): the value (ENODATA when absent)."""
        check_name(name, mode, write=False)
        if name not in self.xattrs:
            raise GuestError(E.ENODATA)
        return self.xattrs[name]

    def setxattr(self, name: bytes, value: bytes, flags: int, mode: int) -> None:
        """setxattr(2) with XATTR_CREATE/XATTR_REPLACE."""
        if flags & ~(F.XATTR_CREATE | F.XATTR_REPLACE):
            raise GuestError(E.EINVAL)
        if len(value) > F.XATTR_SIZE_MAX:
            raise GuestError(E.E2BIG)
        check_name(name, mode, write=True)
        if flags & F.XATTR_CREATE and name in self.xattrs:
            raise GuestError(E.EEXIST)
        if flags & F.XATTR_REPLACE and name not in self.xattrs:
            raise GuestError(E.ENODATA)
        used = sum(len(k) + len(v) for k, v in self.xattrs.items() if k != name)
        if used + len(name) + len(value) > MAX_XATTR_BYTES or \
                name not in self.xattrs and len(self.xattrs) >= MAX_XATTRS:
            raise GuestError(E.ENOSPC)
        self.xattrs[name] = value

    def removexattr(self, name: bytes, mode: int) -> None:
        check_name(name, mode, write=True)
        if self.xattrs.pop(name, None) is None:
            raise GuestError(E.ENODATA)

    def listxattr(self, mode: int) -> bytes:
        """listxattr(2): the names, each NUL-terminated."""
        return b"".join(n + b"\0" for n in self.xattrs)

    # -- saved form ---------------------------------------------------------------------------
    def save(self, vino: int) -> list:
        return [vino, self.uid, self.gid, self.kind, [[k, v] for k, v in self.xattrs.items()]]

    @classmethod
    def load(cls, row: list) -> tuple[int, InodeMeta]:
        """(inode, metadata) of a saved row: its kind one of KINDS, its attributes bounded
        as setxattr bounds them."""
        vino, uid, gid, kind, xattrs = row
        if kind not in KINDS or isinstance(kind, bool):
            raise ImageError(f"inode {vino}: file type {kind!r} is no placeholder's")
        if len(xattrs) > MAX_XATTRS or any(
                not k.startswith(NAMESPACES) or len(k) > F.XATTR_NAME_MAX for k, _ in xattrs) \
                or sum(len(k) + len(v) for k, v in xattrs) > MAX_XATTR_BYTES:
            raise ImageError(f"inode {vino}: extended attributes out of bounds")
        return vino, cls(uid, gid, kind, {bytes(k): bytes(v) for k, v in xattrs})


def check_name(name: bytes, mode: int, write: bool) -> None:
    """Linux's xattr name and permission checks: ERANGE for an empty or too long name,
    EINVAL for a bare prefix, EOPNOTSUPP outside the kept namespaces; user.* only on
    regular files and directories (EPERM to change, ENODATA to read, elsewhere)."""
    if not name or len(name) > F.XATTR_NAME_MAX:
        raise GuestError(E.ERANGE)
    if name in NAMESPACES:
        raise GuestError(E.EINVAL)
    if not name.startswith(NAMESPACES):
        raise GuestError(E.EOPNOTSUPP)
    if name.startswith(b"user.") and mode & F.S_IFMT not in (F.S_IFREG, F.S_IFDIR):
        raise GuestError(E.EPERM if write else E.ENODATA)
