"""Guest-root sandbox: resolve guest paths inside one host directory with chroot semantics.

A guest sees only ``GuestRoot.host_root``, presented as ``/``.  Guest paths are never handed to
the host OS unresolved: :meth:`GuestRoot.resolve` walks them one component at a time, like Linux
``path_lookupat`` inside a chroot.  ``..`` at the guest root stays there, symlinks are read with
``os.readlink`` and re-walked by us (absolute targets start again at the guest root), and every
host path that is ``lstat``-ed is the host root joined with already-verified plain names, so it
is lexically inside the root.

Remaining race (TOCTOU): the walk checks each directory with ``lstat`` and a later ``open``
walks the same host path again in the host kernel.  A *host* process (the guest cannot create
host symlinks outside its own walk) that swaps a verified directory for a symlink between the
two can redirect the open outside the root.  :meth:`GuestRoot.host_open` mitigates this cheaply:
it always adds ``O_NOFOLLOW`` (the final component was already resolved, so a symlink there is
either deliberate, with ``follow=False``, or a swap) and afterwards checks
``/proc/self/fd/N`` and refuses (``EXDEV``) an fd whose file lies outside the root.  The open
itself (e.g. of a FIFO or device) has already happened by then; a full fix needs
``openat2(RESOLVE_IN_ROOT)`` or a per-component ``openat`` walk.
"""

from __future__ import annotations

import errno as _host_errno
import os
import stat

from vkckpt.abi import errno as E
from vkckpt.errors import ConfigError, GuestError
from vkckpt.record import Value

PATH_MAX = 4096  # including the terminating NUL
NAME_MAX = 255
MAXSYMLINKS = 40

_Component = tuple[str, bool]  # (name, must be a directory)


class Resolved(Value):
    """A guest path after resolution."""

    __slots__ = ("guest", "host")

    def __init__(self, guest: str, host: str) -> None:
        self.guest = guest  # normalized absolute guest path, symlinks followed ("/a/b")
        self.host = host  # absolute host path inside the guest root


def guest_errno(exc: OSError) -> int:
    """The Linux errno for a host ``OSError`` (by name via the ABI table, else the raw number)."""
    if exc.errno is None:
        return E.EIO
    name = _host_errno.errorcode.get(exc.errno)
    value = getattr(E, name, None) if name else None
    return value if isinstance(value, int) else exc.errno


def _as_str(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    return os.fsdecode(path)


def _split(path: str, *, must_dir_last: bool) -> list[_Component]:
    """Split into components; all but the last must be directories, the last if asked."""
    names = [n for n in path.split("/") if n]
    return [(n, i < len(names) - 1 or must_dir_last) for i, n in enumerate(names)]


def _check_name(name: str, path: str) -> None:
    if len(os.fsencode(name)) > NAME_MAX:
        raise GuestError(E.ENAMETOOLONG, f"component too long in {path!r}")


class GuestRoot:
    """A host directory presented to guests as "/"."""

    def __init__(self, host_root: str | os.PathLike[str]) -> None:
        root = os.path.realpath(os.fspath(host_root))
        if not os.path.isdir(root):
            raise ConfigError(f"guest root {os.fspath(host_root)!r} is not a directory")
        self.host_root: str = root

    def __repr__(self) -> str:
        return f"GuestRoot({self.host_root!r})"

    def _host(self, parts: list[str]) -> str:
        return os.path.join(self.host_root, *parts)

    def resolve(
        self,
        path: str | bytes,
        cwd: str | bytes = "/",
        *,
        follow: bool = True,
        must_exist: bool = True,
    ) -> Resolved:
        """Resolve guest ``path`` (relative to guest ``cwd``) inside the root; raise GuestError.

        Intermediate symlinks are always followed, the last one only if ``follow``.  With
        ``must_exist=False`` the last component may be missing (its parent must exist).
        """
        p = _as_str(path)
        if "\0" in p:
            raise GuestError(E.EINVAL, "NUL byte in path")
        if not p:
            raise GuestError(E.ENOENT, "empty path")
        if len(os.fsencode(p)) >= PATH_MAX:
            raise GuestError(E.ENAMETOOLONG, "path too long")
        c = _as_str(cwd)
        if not c.startswith("/") or "\0" in c:
            raise ValueError(f"cwd must be an absolute guest path: {c!r}")

        # Pending components, reversed so pop() yields the next one.  A relative path starts
        # from cwd, whose components are re-walked too (verifying each is a real directory).
        todo = _split(p, must_dir_last=p.endswith("/"))
        if not p.startswith("/"):
            todo = _split(c, must_dir_last=True) + todo
        todo.reverse()

        parts: list[str] = []  # resolved guest components of the current directory
        links = 0
        while todo:
            name, must_dir = todo.pop()
            last = not todo
            if name == ".":
                continue
            if name == "..":
                if parts:
                    parts.pop()
                continue
            _check_name(name, p)  # lazily, like the kernel: only names actually looked up
            host = self._host([*parts, name])
            try:
                st = os.lstat(host)
            except FileNotFoundError:
                if last and not must_exist:
                    parts.append(name)
                    break
                raise GuestError(E.ENOENT, p) from None
            except OSError as exc:
                raise GuestError(guest_errno(exc), p) from None
            mode = st.st_mode
            if stat.S_ISLNK(mode) and (follow or must_dir or not last):
                links += 1
                if links > MAXSYMLINKS:
                    raise GuestError(E.ELOOP, p)
                try:
                    target = os.readlink(host)
                except OSError as exc:
                    raise GuestError(guest_errno(exc), p) from None
                if not target:
                    raise GuestError(E.ENOENT, f"empty symlink in {p!r}")
                expansion = _split(target, must_dir_last=target.endswith("/") or must_dir)
                todo.extend(reversed(expansion))
                if target.startswith("/"):
                    parts.clear()
                continue
            if must_dir and not stat.S_ISDIR(mode):
                raise GuestError(E.ENOTDIR, p)
            parts.append(name)
        return Resolved("/" + "/".join(parts), self._host(parts))

    def guest_path_of(self, host_path: str | os.PathLike[str]) -> str:
        """The guest path of a host path inside the root (lexically); ValueError otherwise."""
        hp = os.path.normpath(os.fsdecode(host_path))
        if not os.path.isabs(hp) or os.path.commonpath([self.host_root, hp]) != self.host_root:
            raise ValueError(f"{hp!r} is not inside guest root {self.host_root!r}")
        rel = os.path.relpath(hp, self.host_root)
        return "/" if rel == "." else "/" + rel

    def host_open(self, resolved: Resolved, flags: int, mode: int = 0o666) -> int:
        """Open a resolved path on the host (always ``O_NOFOLLOW``); return the host fd.

        Host errors become ``GuestError`` with the matching Linux errno; an fd that turns out
        to lie outside the root (a host-side race, see module docstring) gives ``EXDEV``.
        """
        host = os.path.normpath(resolved.host)
        if not os.path.isabs(host) or os.path.commonpath([self.host_root, host]) != self.host_root:
            raise GuestError(E.EXDEV, "resolved path outside the guest root")
        try:
            fd = os.open(host, flags | os.O_NOFOLLOW, mode)
        except OSError as exc:
            raise GuestError(guest_errno(exc), resolved.guest) from None
        if not self._fd_inside(fd):
            os.close(fd)
            raise GuestError(E.EXDEV, f"{resolved.guest!r} escaped the guest root")
        return fd

    def _fd_inside(self, fd: int) -> bool:
        """Whether host fd's path (per /proc) is inside the root; True if /proc is unavailable."""
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return True
        if not real.startswith("/"):  # pipe:[..], anon_inode:..: not a path
            return True
        if real.endswith(" (deleted)"):
            real = real[: -len(" (deleted)")]
        return os.path.commonpath([self.host_root, real]) == self.host_root
