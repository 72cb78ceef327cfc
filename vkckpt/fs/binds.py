"""Bind mounts: host directories presented inside the guest namespace (`--bind HOST:GUEST`).

A bind is one more host directory whose subtree the sandbox (sandbox.py) walks with the
guest root's own rules: a lookup that reaches the bind's guest path continues beneath the
bind's directory fd, ``..`` at its top goes back to the directory that holds the mount point,
symlinks inside it are read and re-walked in the guest namespace (an absolute target starts
at the guest root), so nothing outside the bind's host directory is ever reached through it.
A read-only bind refuses every modifying call with EROFS (Resolved.writable), whatever the
host permissions are.

Images record each bind as its guest path, read-only flag and an identity of its host
directory: a keyed hash of the directory's device and inode (fs/state.py's stamp key), which
tells a thaw whether it was given the same directory again and leaks no host fact into the
image or the guests.
"""

from __future__ import annotations

import os

from vkckpt.errors import ConfigError
from vkckpt.host import fs as hostfs
from vkckpt.record import Comparable

#: The most binds one vkernel takes (a bound on what an image may ask for).
MAX_BINDS = 64


class BindSpec(Comparable):
    """A bind as configured: host directory, guest path, read-only."""

    __slots__ = ("host", "guest", "ro")

    def __init__(self, host: str, guest: str, ro: bool = False) -> None:
        self.host = host
        self.guest = guest
        self.ro = ro

    def __str__(self) -> str:
        return f"{self.host}:{self.guest}{':ro' if self.ro else ''}"


def parse_bind(text: str, what: str = "--bind") -> BindSpec:
    """Parse HOST:GUEST[:ro] (GUEST absolute; ':rw' is accepted and is the default)."""
    parts = text.split(":")
    ro = False
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        ro = parts.pop() == "ro"
    if len(parts) != 2 or not parts[0] or not parts[1].startswith("/"):
        raise ConfigError(f"{what}: expected HOST:GUEST or HOST:GUEST:ro with an absolute "
                          f"guest path, got {text!r}")
    return BindSpec(parts[0], parts[1], ro)


class Mount(Comparable):
    """A bind in use: its resolved guest path (as components), host directory and fd."""

    __slots__ = ("guest", "names", "host", "fd", "ro")

    def __init__(self, guest: str, host: str, ro: bool) -> None:
        self.guest = guest  # normalized absolute guest path of the mount point
        self.names = tuple(n for n in guest.split("/") if n)
        self.host = host  # realpath of the host directory
        self.ro = ro
        try:
            self.fd = hostfs.open_dir(host)  # every open inside the bind is beneath this fd
        except OSError as exc:
            raise ConfigError(f"bind {host}: {exc.strerror}") from None

    def close(self) -> None:
        """Release the directory fd (idempotent)."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def identity(self, key: bytes) -> bytes:
        """The identity of the host directory keyed with key (see the module docstring)."""
        import hashlib  # at a freeze or thaw only (it loads OpenSSL)

        st = os.fstat(self.fd)
        data = b"bind %d %d" % (st.st_dev, st.st_ino)
        return hashlib.blake2b(data, key=key, digest_size=16).digest()


def host_dir(spec: BindSpec) -> str:
    """The bind's host directory, made absolute with host symlinks followed (the host side
    of a bind is the user's to name); ConfigError if it is not a directory."""
    host = os.path.realpath(spec.host)
    if not os.path.isdir(host):
        raise ConfigError(f"bind {spec}: {spec.host} is not a directory")
    return host
