"""A guest path after resolution (fs/sandbox.py), and the one rule for changing it.

`Resolved.writable` checks a modifying call against the mounts (EROFS, EXDEV, EBUSY) and,
in an overlay root (fs/overlay.py), copies the name up to the upper layer first.
"""
from __future__ import annotations

import errno as _host_errno

from vkckpt.abi import errno as E
from vkckpt.errors import GuestError
from vkckpt.record import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vkckpt.fs.overlay import Overlay


class Resolved(Value):
    """A guest path after resolution.  Treated as a value, except that copy_up (in an
    overlay root) moves host to the upper copy: a modifying call then acts on that."""

    __slots__ = ("guest", "host", "mount", "ro", "top", "lower", "ov")

    def __init__(self, guest: str, host: str, mount: int = 0, ro: bool = False,
                 top: bool = False, lower: bool = False, ov: Overlay | None = None) -> None:
        self.guest = guest  # normalized absolute guest path, symlinks followed ("/a/b")
        self.host = host  # absolute host path inside the guest root or a bind
        self.mount = mount  # 0: the guest root; n: GuestRoot.mounts[n - 1]
        self.ro = ro  # on a read-only bind
        self.top = top  # a bind's top directory itself (the mount point)
        self.lower = lower  # host is in an overlay's lower layer (read-only)
        self.ov = ov  # the overlay of the root when mount is 0 and the root is one

    @property
    def rel(self) -> str:
        """The guest path relative to the root ("" for the root itself)."""
        return self.guest.strip("/")

    def writable(self, *others: Resolved, moves: bool = False) -> Resolved:
        """Check that a modifying call may change this path (and others, the other names
        of a rename or link): EROFS on a read-only bind, EXDEV across mounts; moves (unlink,
        rmdir, rename) of a mount's top are EBUSY.  Returns self."""
        every = (self, *others)
        if moves and any(r.top for r in every):  # a mount point's entry is its parent's
            raise GuestError(E.EBUSY, self.guest)
        for r in others:  # Linux's order: the mounts first, then whether they are writable
            if r.mount != self.mount:
                raise GuestError(E.EXDEV, f"{self.guest} and {r.guest} are on different mounts")
        for r in every:
            if r.ro:
                raise GuestError(E.EROFS, r.guest)
        for r in every:
            if r.ov is not None:
                r.copy_up(whole=moves and bool(others) and r is self)
        return self

    def copy_up(self, whole: bool = False) -> None:
        """In an overlay: give the name an upper copy (its parents, and itself when it
        exists); host then names the upper one.  whole: a directory's contents too."""
        ov, rel = self.ov, self.rel
        if ov is None or not rel:
            return
        try:
            if self.lower or whole:
                ov.copy_up(rel, whole)
            elif "/" in rel:
                ov.copy_up(rel.rpartition("/")[0])
        except OSError as exc:
            raise GuestError(guest_errno(exc), self.guest) from None
        ov.touch(rel)
        self.host, self.lower = ov.up(rel), False


def guest_errno(exc: OSError) -> int:
    """The Linux errno for a host ``OSError`` (by name via the ABI table, else the raw number)."""
    if exc.errno is None:
        return E.EIO
    name = _host_errno.errorcode.get(exc.errno)
    value = getattr(E, name, None) if name else None
    return value if isinstance(value, int) else exc.errno
