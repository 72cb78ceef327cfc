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

Bind mounts (binds.py) join more host directories to the namespace: the host path of a guest
path is taken from the deepest mount holding it, and opens inside a bind go beneath the
bind's own directory fd.  A Resolved knows its mount; `Resolved.writable` is the one rule
for read-only binds (EROFS) and for calls that would cross or remove a mount.

With an overlay (fs/overlay.py, `--fs overlay`) the root is a read-only lower layer under a
private upper one: each name is looked up upper first, and a Resolved knows the layer its
host path is in.  `writable` and `host_open` for writing copy the name up first (they then
change the Resolved's host path to the upper copy: the one place a Resolved changes), and
removals go through `unlink`, `rmdir` and `rename`, which keep whiteouts.
"""
from __future__ import annotations

import errno as _host_errno
import os
import stat

from vkckpt.abi import errno as E
from vkckpt.errors import ConfigError, GuestError
from vkckpt.fs.binds import MAX_BINDS, BindSpec, Mount, host_dir
from vkckpt.fs.overlay import Overlay
from vkckpt.fs.resolved import Resolved, guest_errno
from vkckpt.fs.treedigest import tree_digest
from vkckpt.host import fs as hostfs

PATH_MAX = 4096  # including the terminating NUL
NAME_MAX = 255
MAXSYMLINKS = 40

_Component = tuple[str, bool]  # (name, must be a directory)


def _read_only_open(r: Resolved, flags: int) -> int:
    """The flags to open r on a read-only bind with, as Linux's: EROFS for write access,
    O_TRUNC, or O_CREAT of a missing file (O_CREAT of an existing one is dropped)."""
    if flags & (os.O_ACCMODE | os.O_TRUNC):
        raise GuestError(E.EROFS, r.guest)
    if flags & os.O_CREAT:
        if not os.path.lexists(r.host):
            raise GuestError(E.EROFS, r.guest)
        if flags & os.O_EXCL:
            raise GuestError(E.EEXIST, r.guest)
        flags &= ~(os.O_CREAT | os.O_EXCL)
    return flags


def _is_dir(host: str) -> bool:
    return os.path.isdir(host) and not os.path.islink(host)


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

    def __init__(self, host_root: str | os.PathLike[str], overlay: bool = False) -> None:
        """overlay: make the root an overlay's lower layer (named by its tree digest)."""
        root = os.path.realpath(os.fspath(host_root))
        if not os.path.isdir(root):
            raise ConfigError(f"guest root {os.fspath(host_root)!r} is not a directory")
        self.host_root: str = root
        self.root_fd: int = hostfs.open_dir(root)  # every open is beneath this directory
        self.mounts: list[Mount] = []  # binds, in the order given
        self.overlay = Overlay(root, self.root_fd, tree_digest(root)) if overlay else None

    def bind(self, spec: BindSpec) -> Mount:
        """Mount spec's host directory on its guest path, which must be a directory of the
        namespace so far (symlinks followed in it, as mount(8) does); ConfigError if not."""
        if len(self.mounts) >= MAX_BINDS:
            raise ConfigError(f"bind {spec}: at most {MAX_BINDS} binds")
        host = host_dir(spec)
        try:
            r = self.resolve(spec.guest)
        except GuestError as exc:
            raise ConfigError(f"bind {spec}: {spec.guest} does not exist in the guest "
                              f"namespace ({E.NAMES.get(exc.errno, exc.errno)}); create the "
                              "mount point in the root") from None
        if not os.path.isdir(r.host):
            raise ConfigError(f"bind {spec}: {spec.guest} is not a directory in the guest")
        if r.guest == "/" or any(m.guest == r.guest for m in self.mounts):
            raise ConfigError(f"bind {spec}: {r.guest} is already a mount point")
        m = Mount(r.guest, host, spec.ro)
        self.mounts.append(m)
        return m

    def close(self) -> None:
        """Release the root and bind directory fds (idempotent)."""
        fd, self.root_fd = getattr(self, "root_fd", -1), -1
        if fd >= 0:
            os.close(fd)
        ov = getattr(self, "overlay", None)
        if ov is not None:
            ov.close()
        for m in getattr(self, "mounts", []):
            m.close()

    def __del__(self) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GuestRoot({self.host_root!r})"

    def _mount_of(self, parts: list[str]) -> int:
        """The mount holding guest components parts: the deepest bind whose mount point
        they start with (n for mounts[n - 1]), else 0 for the guest root."""
        best, depth = 0, -1
        for i, m in enumerate(self.mounts):
            n = len(m.names)
            if n > depth and tuple(parts[:n]) == m.names:
                best, depth = i + 1, n
        return best

    def _host(self, parts: list[str]) -> str:
        n = self._mount_of(parts)
        if n == 0:
            return os.path.join(self.host_root, *parts)
        m = self.mounts[n - 1]
        return os.path.join(m.host, *parts[len(m.names):])

    def _resolved(self, parts: list[str]) -> Resolved:
        n = self._mount_of(parts)
        m = self.mounts[n - 1] if n else None
        top = m is not None and len(parts) == len(m.names)
        return Resolved("/" + "/".join(parts), self._host(parts), n, bool(m and m.ro), top)

    def resolve(
        self,
        path: str | bytes,
        cwd: str | bytes = "/",
        *,
        follow: bool = True,
        must_exist: bool = True,
        top: str = "/",
    ) -> Resolved:
        """Resolve guest ``path`` (relative to guest ``cwd``) inside the root; raise GuestError.

        Intermediate symlinks are always followed, the last one only if ``follow``.  With
        ``must_exist=False`` the last component may be missing (its parent must exist).
        ``top`` is the caller's root (chroot(2)): a resolved guest directory where absolute
        paths and symlinks start and ``..`` stops, as Linux's at the process root; a cwd
        outside it walks up to the guest root, never beyond.
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

        top_parts = [n for n in top.split("/") if n]
        # resolved guest components of the current directory
        parts: list[str] = list(top_parts) if p.startswith("/") else []
        links = 0
        ov = self.overlay
        trail = ov.trail(parts) if ov is not None else []  # (host, lower, below) per part
        while todo:
            name, must_dir = todo.pop()
            last = not todo
            if name == ".":
                continue
            if name == "..":
                if parts and parts != top_parts:
                    parts.pop()
                    if ov is not None:
                        trail.pop()
                continue
            _check_name(name, p)  # lazily, like the kernel: only names actually looked up
            if hostfs.is_reserved(name):
                raise GuestError(E.ENOENT, p)
            host = self._host([*parts, name])
            entry = (host, False, False)
            try:
                if ov is not None and self._mount_of([*parts, name]) == 0:
                    host, st, low, below = ov.lookup("/".join([*parts, name]),
                                                     trail[-1][2] if trail else True)
                    entry = (host, low, below)
                else:
                    st = os.lstat(host)
            except FileNotFoundError:
                if last and not must_exist:
                    parts.append(name)
                    trail.append((self._host(parts) if ov is None else ov.up("/".join(parts)),
                                  False, False))
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
                    parts[:] = top_parts
                    trail = ov.trail(parts) if ov is not None else []
                continue
            if must_dir and not stat.S_ISDIR(mode):
                raise GuestError(E.ENOTDIR, p)
            parts.append(name)
            trail.append(entry)
        r = self._resolved(parts)
        if ov is not None and r.mount == 0:
            r.host, r.lower, r.ov = (trail[-1][0], trail[-1][1], ov) if parts else \
                (ov.upper, False, ov)
        return r

    def writable_path(self, guest: str) -> str | None:
        """EROFS when the file at a guest path (an open file's) lies on a read-only bind
        (for calls through a descriptor: fchmod, futimens).  In an overlay, the file is
        copied up and its upper host path returned (change that, never the descriptor's
        file, which may be the lower one); else None."""
        n = self._mount_of([x for x in guest.split("/") if x])
        if n and self.mounts[n - 1].ro:
            raise GuestError(E.EROFS, guest)
        if self.overlay is None or n:
            return None
        r = self.resolve(guest, "/", follow=False)
        r.copy_up()
        return r.host

    def unlink(self, r: Resolved) -> None:
        """Remove non-directory r (after r.writable): os.unlink, and in an overlay a
        whiteout when the lower layer has the name.  OSError as os.unlink."""
        os.unlink(r.host)
        if r.ov is not None:
            r.ov.removed(r.rel)

    def rmdir(self, r: Resolved) -> None:
        """Remove directory r (after r.writable): ENOTEMPTY while the merged view has
        entries in it; os.rmdir; a whiteout in an overlay.  OSError as os.rmdir."""
        if r.ov is not None and _is_dir(r.host):
            r.ov.before_rmdir(r.rel)
        os.rmdir(r.host)
        if r.ov is not None:
            r.ov.removed(r.rel)

    def rename(self, a: Resolved, b: Resolved) -> None:
        """Rename a onto b (after a.writable(b, moves=True)); in an overlay a whiteout
        hides a lower a, and a moved directory hides a lower b.  OSError as os.rename."""
        ov = a.ov
        if ov is not None and b.ov is not None and _is_dir(a.host) and _is_dir(b.host):
            ov.before_rmdir(b.rel)  # ENOTEMPTY while the merged b holds anything
        os.rename(a.host, b.host)
        if ov is not None and b.ov is not None:
            ov.removed(a.rel)
            if _is_dir(b.host) and ov.lower_shows(b.rel):
                ov.set_marker(b.rel)
            ov.touch_tree(b.rel)

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

    def _top(self, resolved: Resolved) -> tuple[str, int]:
        """(host directory, directory fd) of the mount a resolved path lies on."""
        if not 0 <= resolved.mount <= len(self.mounts):
            raise GuestError(E.EXDEV, "resolved path on no mount")
        if resolved.mount == 0 and resolved.ov is not None and not resolved.lower:
            return resolved.ov.upper, resolved.ov.upper_fd
        if resolved.mount == 0:
            return self.host_root, self.root_fd
        m = self.mounts[resolved.mount - 1]
        return m.host, m.fd

    def _relative(self, resolved: Resolved) -> str:
        """The resolved host path relative to its mount's directory ("." for the top);
        EXDEV if it is not lexically inside."""
        top, _ = self._top(resolved)
        host = os.path.normpath(resolved.host)
        if host == top:
            return "."
        prefix = top.rstrip("/") + "/"
        if not host.startswith(prefix) or host.startswith("//"):
            raise GuestError(E.EXDEV, "resolved path outside the guest root")
        return host[len(prefix):]

    def open_parent(self, resolved: Resolved, rel: str | None = None) -> tuple[int, str]:
        """(O_PATH fd of the directory holding a resolved path, its final name), opened
        beneath its mount's directory now; a directory the walk saw that is now a symlink
        gives EXDEV."""
        head, _, name = (rel or self._relative(resolved)).rpartition("/")
        if name in ("", ".", ".."):
            raise GuestError(E.EISDIR, resolved.guest)  # the root itself
        try:
            fd = hostfs.open_beneath(self._top(resolved)[1], head, os.O_PATH | os.O_DIRECTORY)
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
        writes = flags & os.O_ACCMODE != os.O_RDONLY or flags & (os.O_TRUNC | os.O_CREAT)
        if resolved.ov is not None and writes:
            resolved.copy_up()
        rel = self._relative(resolved)
        top_fd = self._top(resolved)[1]
        if resolved.ro:
            flags = _read_only_open(resolved, flags)
        if "/" not in rel:  # the mount's top itself or a name in it
            dir_fd, name = top_fd, rel
        else:
            dir_fd, name = self.open_parent(resolved, rel)
        try:
            fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
            if resolved.ov is not None:
                resolved.ov.opened(fd, resolved.lower)
            return fd
        except OSError as exc:
            raise GuestError(guest_errno(exc), resolved.guest) from None
        finally:
            if dir_fd != top_fd:
                os.close(dir_fd)
