"""Guest-root sandbox: resolve guest paths inside one host directory with chroot semantics.

A guest sees only ``GuestRoot.host_root``, presented as ``/``.  Guest paths are never handed to
the host OS unresolved: :meth:`GuestRoot.resolve` walks them one component at a time, like Linux
``path_lookupat`` inside a chroot.  ``..`` at the guest root stays there, symlinks are read with
``os.readlink`` and re-walked by us (absolute targets start again at the guest root), and every
host path that is ``lstat``-ed is the host root joined with already-verified plain names, so it
is lexically inside the root.  Names starting with ``hostfs.TEMP_PREFIX`` (the vkernel's own
temporary files) do not exist for guests: every lookup of one gives ENOENT.

Opens cannot be redirected (no TOCTOU): the walk's result is opened by
:meth:`GuestRoot.host_open` beneath a directory fd of the root held since start-up, with
openat2(2) ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`` (``vkckpt.host.fs``).  A host process
that swaps a verified directory for a symlink between the walk and the open gets the open
refused (EXDEV) before anything outside the root is touched; a symlink at the final name is
never followed (ELOOP), as the walk already resolved it.  Other path operations (stat,
rename, unlink, ...) still name host paths and are only as safe as the walk.
"""
from __future__ import annotations

import errno as _host_errno
import os
import stat

from vkckpt.abi import errno as E
from vkckpt.errors import ConfigError, GuestError
from vkckpt.host import fs as hostfs
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
        self.root_fd: int = hostfs.open_dir(root)  # every open is beneath this directory

    def close(self) -> None:
        """Release the root directory fd (idempotent)."""
        fd, self.root_fd = getattr(self, "root_fd", -1), -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        self.close()

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
            if hostfs.is_reserved(name):
                raise GuestError(E.ENOENT, p)
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

    def holds(self, host_path: str | os.PathLike[str]) -> bool:
        """Whether an absolute host path lies (lexically) inside the root."""
        hp = os.path.normpath(os.fsdecode(host_path))
        return os.path.isabs(hp) and os.path.commonpath([self.host_root, hp]) == self.host_root

    def guest_path_of(self, host_path: str | os.PathLike[str]) -> str:
        """The guest path of a host path inside the root (lexically); ValueError otherwise."""
        hp = os.path.normpath(os.fsdecode(host_path))
        if not self.holds(hp):
            raise ValueError(f"{hp!r} is not inside guest root {self.host_root!r}")
        rel = os.path.relpath(hp, self.host_root)
        return "/" if rel == "." else "/" + rel

    def _relative(self, resolved: Resolved) -> str:
        """The resolved host path relative to the root ("." for the root); EXDEV if it is
        not lexically inside."""
        host = os.path.normpath(resolved.host)
        if host == self.host_root:
            return "."
        prefix = self.host_root.rstrip("/") + "/"
        if not host.startswith(prefix) or host.startswith("//"):
            raise GuestError(E.EXDEV, "resolved path outside the guest root")
        return host[len(prefix):]

    def open_parent(self, resolved: Resolved, rel: str | None = None) -> tuple[int, str]:
        """(O_PATH fd of the directory holding a resolved path, its final name), opened
        beneath the root now; a directory the walk saw that is now a symlink gives EXDEV."""
        head, _, name = (rel or self._relative(resolved)).rpartition("/")
        if name in ("", ".", ".."):
            raise GuestError(E.EISDIR, resolved.guest)  # the root itself
        try:
            fd = hostfs.open_beneath(self.root_fd, head, os.O_PATH | os.O_DIRECTORY)
        except OSError as exc:
            if exc.errno == _host_errno.ELOOP:
                raise GuestError(E.EXDEV, f"{resolved.guest!r} escaped the guest root") from None
            raise GuestError(guest_errno(exc), resolved.guest) from None
        return fd, name

    def host_open(self, resolved: Resolved, flags: int, mode: int = 0o666) -> int:
        """Open a resolved path on the host beneath the root fd; return the host fd.

        No symlink is followed: one at the final name (left by ``follow=False``) gives
        ELOOP, one swapped in for a directory by a host process gives EXDEV.  Host errors
        become ``GuestError`` with the matching Linux errno.
        """
        rel = self._relative(resolved)
        if "/" not in rel:  # the root itself or a name in it
            dir_fd, name = self.root_fd, rel
        else:
            dir_fd, name = self.open_parent(resolved, rel)
        try:
            return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
        except OSError as exc:
            raise GuestError(guest_errno(exc), resolved.guest) from None
        finally:
            if dir_fd != self.root_fd:
                os.close(dir_fd)
