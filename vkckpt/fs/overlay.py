"""The overlay guest root (`--fs overlay`): a read-only lower layer and a private upper layer.

The guest root given to the vkernel becomes the *lower* layer and is never changed on the
host.  Every change a guest makes lands in the *upper* layer, a private host directory the
vkernel creates (mode 0700 under $TMPDIR) and removes at exit: a host directory rather than
memory because every file kind above (shared mappings, locks, AF_UNIX placeholders, ghost
files) works on real host descriptors, and the host kernel keeps their rules exactly.

A guest name is looked up upper first, then lower (`lookup`, called per component by
GuestRoot.resolve).  A *marker* (``.vkckpt-tmp.wh.<hash of the name>``, a reserved name,
holding the name itself) beside a name in an upper directory is a whiteout when the upper
has no such entry, and makes the upper directory of that name opaque when it has one (the
lower directory of that name then shows nothing through it), like overlayfs's whiteouts
and opaque directories.  The first change of a lower entry copies it up (`copy_up`, its
directories first); descriptors opened on the lower copy before are moved to the upper one
(dup2 over the same host fd number, offset kept), so every reader sees one file, as
overlayfs's stacked files do.

Change tracking for incremental images is exact and not by time: every upper entry or
marker the vkernel changes records the generation (`gen`, one per image) it changed in, every
write through a descriptor names its inode (`wrote`), and only files mapped shared and
writable count as changed in every generation while they are mapped (their stores are not
seen).
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import weakref

from vkckpt.host import fs as hostfs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

MARKER = hostfs.TEMP_PREFIX + "wh."
_DIR = os.O_PATH | os.O_DIRECTORY


def marker_name(name: str) -> str:
    """The reserved name of name's marker (fixed length, so any name can have one)."""
    import hashlib

    return MARKER + hashlib.blake2b(os.fsencode(name), digest_size=16).hexdigest()


def _parent(rel: str) -> tuple[str, str]:
    head, _, name = rel.rpartition("/")
    return head, name


def new_private_dir(kind: str) -> str:
    """A fresh private (0700) host directory for a layer, under $TMPDIR or /tmp."""
    base = os.environ.get("TMPDIR") or "/tmp"
    while True:
        path = os.path.join(os.path.realpath(base), f"vkckpt-{kind}.{os.getpid()}."
                            f"{os.urandom(6).hex()}")
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue


class Overlay:
    """The two layers of an overlay root and what changed in the upper one."""

    def __init__(self, lower: str, lower_fd: int, digest: str, upper: str | None = None
                 ) -> None:
        self.lower = lower  # host path of the lower layer (the given root), never written
        self.lower_fd = lower_fd
        self.digest = digest  # treedigest.tree_digest(lower), what images record
        self.upper = upper or new_private_dir("upper")
        self.upper_fd = hostfs.open_dir(self.upper)
        self.gen = 1  # the generation changes are recorded in (one per image written)
        self.pending = 0  # the generation of the image being written
        self.changed: dict[str, int] = {}  # upper-relative path -> generation of its change
        self.image_gen: dict[bytes, int] = {}  # image id -> the generation it holds
        self.written: set[tuple[int, int]] = set()  # upper inodes written since the image
        self.lower_fds: dict[int, tuple[int, int]] = {}  # host fd -> lower inode it opened
        self.copied: Callable[[os.stat_result, os.stat_result], None] | None = None
        self.embedded: str | None = None  # a lower layer a thaw recreated (removed at close)
        weakref.finalize(self, _remove, self.upper)

    def close(self) -> None:
        """Remove the upper layer (and a recreated lower one); idempotent."""
        if self.upper_fd >= 0:
            os.close(self.upper_fd)
            self.upper_fd = -1
        for path in (self.upper, self.embedded):
            if path:
                shutil.rmtree(path, ignore_errors=True)
        self.upper = self.embedded = ""

    # -- lookup ---------------------------------------------------------------------------

    def up(self, rel: str) -> str:
        return os.path.join(self.upper, rel) if rel else self.upper

    def low(self, rel: str) -> str:
        return os.path.join(self.lower, rel) if rel else self.lower

    def marked(self, rel: str) -> bool:
        """Whether rel has a marker (a whiteout, or an opaque upper directory)."""
        head, name = _parent(rel)
        return os.path.lexists(os.path.join(self.up(head), marker_name(name)))

    def lookup(self, rel: str, below: bool) -> tuple[str, os.stat_result, bool, bool]:
        """(host path, lstat, in the lower layer, lower entries show inside it) of the
        merged entry rel, whose parent is a directory where lower entries show if below;
        FileNotFoundError if the merged view has no such entry."""
        up = self.up(rel)
        try:
            st = os.lstat(up)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if st is not None:
            return up, st, False, (below and stat.S_ISDIR(st.st_mode)
                                   and not self.marked(rel) and self._lower_dir(rel))
        if not below or self.marked(rel):
            raise FileNotFoundError(errno.ENOENT, "no such entry", rel)
        low = self.low(rel)
        st = os.lstat(low)
        return low, st, True, stat.S_ISDIR(st.st_mode)

    def _lower_dir(self, rel: str) -> bool:
        try:
            return stat.S_ISDIR(os.lstat(self.low(rel)).st_mode)
        except OSError:
            return False

    def trail(self, names: list[str]) -> list[tuple[str, bool, bool]]:
        """lookup's (host, lower, below) for each prefix of names (existing directories)."""
        out: list[tuple[str, bool, bool]] = []
        below = True
        for i in range(len(names)):
            host, _, lower, below = self.lookup("/".join(names[: i + 1]), below)
            out.append((host, lower, below))
        return out

    def below(self, rel: str) -> bool:
        """Whether lower entries show inside merged directory rel ("" for the root)."""
        names = [n for n in rel.split("/") if n]
        try:
            return self.trail(names)[-1][2] if names else True
        except OSError:
            return False

    def lower_shows(self, rel: str) -> bool:
        """Whether the lower layer has an entry at rel that the merged view would show were
        the upper one gone (then removing rel needs a whiteout)."""
        return self.below(_parent(rel)[0]) and os.path.lexists(self.low(rel))

    # -- changes --------------------------------------------------------------------------

    def next_gen(self) -> None:
        """An image now holds every change so far (saved() names it once written)."""
        self.pending, self.gen = self.gen, self.gen + 1

    def saved(self, image_id: bytes) -> None:
        """The image being written is image_id: later incremental ones may hang on it."""
        self.image_gen[image_id] = self.pending

    def touch(self, rel: str) -> None:
        """rel's upper entry or marker changed now."""
        self.changed[rel] = self.gen

    def touch_tree(self, rel: str) -> None:
        """rel and everything the upper layer holds below it changed now."""
        self.touch(rel)
        top = self.up(rel)
        if os.path.isdir(top) and not os.path.islink(top):
            for dirpath, dirs, files in os.walk(top):
                base = os.path.relpath(dirpath, self.upper)
                for n in dirs + files:
                    if not hostfs.is_reserved(n):
                        self.touch(os.path.normpath(os.path.join(base, n)))
                    elif n.startswith(MARKER):
                        self.touch(os.path.normpath(os.path.join(base, _marker_target(
                            os.path.join(dirpath, n)))))

    def set_marker(self, rel: str) -> None:
        head, name = _parent(rel)
        d = _CachedDir(self.upper_fd, head)
        try:
            hostfs.write_atomic(d.fd, marker_name(name), os.fsencode(name), 0o600)
        finally:
            d.close()
        self.touch(rel)

    def drop_marker(self, rel: str) -> None:
        head, name = _parent(rel)
        try:
            os.unlink(os.path.join(self.up(head), marker_name(name)))
            self.touch(rel)
        except FileNotFoundError:
            pass

    # -- copy-up --------------------------------------------------------------------------

    def copy_up(self, rel: str, whole: bool = False) -> str:
        """Make the upper layer hold merged entry rel as the guest sees it, its parent
        directories first; with whole, a directory's lower contents too (all of them, so it
        can move).  Returns rel's upper host path."""
        names = rel.split("/")
        for i in range(1, len(names) + 1):
            sub = "/".join(names[:i])
            if not os.path.lexists(self.up(sub)):
                self._copy_entry(sub)
        if whole and os.path.isdir(self.up(rel)) and not os.path.islink(self.up(rel)):
            self._copy_tree(rel)
        return self.up(rel)

    def _copy_tree(self, rel: str) -> None:
        below = self.below(rel)
        upper = set(os.listdir(self.up(rel)))
        if below:
            for name in sorted(os.listdir(self.low(rel))):
                child = f"{rel}/{name}"
                if name not in upper and not hostfs.is_reserved(name) and not self.marked(child):
                    self._copy_entry(child)
        for name in sorted(os.listdir(self.up(rel))):
            child = self.up(f"{rel}/{name}")
            if not hostfs.is_reserved(name) and os.path.isdir(child) \
                    and not os.path.islink(child):
                self._copy_tree(f"{rel}/{name}")

    def _copy_entry(self, rel: str) -> None:
        """Copy lower entry rel (its upper parent exists) into the upper layer."""
        low, up = self.low(rel), self.up(rel)
        st = os.lstat(low)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(up, 0o700)
            os.chmod(up, stat.S_IMODE(mode))
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(low), up)
        elif stat.S_ISREG(mode):
            self._copy_file(rel, st)
        else:
            raise OSError(errno.EPERM, "only directories, files and symlinks copy up", rel)
        self.touch(rel)
        new = os.lstat(up)
        if self.copied is not None:
            self.copied(st, new)
        if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
            self._move_readers(st, rel)

    def _copy_file(self, rel: str, st: os.stat_result) -> None:
        head, name = _parent(rel)
        src = hostfs.open_beneath(self.lower_fd, rel, os.O_RDONLY | os.O_NOFOLLOW)
        d = _CachedDir(self.upper_fd, head)
        try:
            out = hostfs.AtomicFile(d.fd, name, 0o600)
            try:
                left = st.st_size
                while left > 0:
                    n = os.copy_file_range(src, out.fd, left)
                    if n == 0:
                        break
                    left -= n
                os.fchmod(out.fd, stat.S_IMODE(st.st_mode))
                out.publish()
            except BaseException:
                out.discard()
                raise
            out.close()
        finally:
            os.close(src)
            d.close()

    def _move_readers(self, st: os.stat_result, rel: str) -> None:
        """Point every descriptor still open on the lower file (or directory) st at its
        upper copy, with its status flags and offset."""
        key = (st.st_dev, st.st_ino)
        for fd, k in list(self.lower_fds.items()):
            try:
                now = os.fstat(fd)
            except OSError:
                now = None
            if now is None or (now.st_dev, now.st_ino) != k:
                del self.lower_fds[fd]  # closed (or the number reused) since
                continue
            if k != key:
                continue
            flags = fcntl.fcntl(fd, fcntl.F_GETFL) & (os.O_ACCMODE | os.O_APPEND | os.O_NONBLOCK)
            if stat.S_ISDIR(st.st_mode):
                flags |= os.O_DIRECTORY
            off = os.lseek(fd, 0, os.SEEK_CUR)
            new = hostfs.open_beneath(self.upper_fd, rel, flags | os.O_NOFOLLOW)
            os.dup2(new, fd, inheritable=False)
            os.close(new)
            if not stat.S_ISDIR(st.st_mode):  # a DirFile keeps its own position
                os.lseek(fd, off, os.SEEK_SET)
            del self.lower_fds[fd]

    def opened(self, fd: int, lower: bool) -> None:
        """A guest open of a merged file gave host fd (on the lower copy if lower)."""
        if lower:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
                self.lower_fds[fd] = (st.st_dev, st.st_ino)

    def wrote(self, st: os.stat_result) -> None:
        """A guest changed the upper file st through a descriptor (InodeTable.on_touch)."""
        self.written.add((st.st_dev, st.st_ino))

    # -- removal --------------------------------------------------------------------------

    def merged_names(self, rel: str) -> list[tuple[str, str]]:
        """(name, host path) of every entry of merged directory rel, by name."""
        out: dict[str, str] = {}
        up = self.up(rel)
        if os.path.isdir(up) and not os.path.islink(up):
            for n in os.listdir(up):
                if not hostfs.is_reserved(n):
                    out[n] = os.path.join(up, n)
        if self.below(rel) and not (os.path.lexists(up) and self.marked(rel)):
            try:
                lows = os.listdir(self.low(rel))
            except OSError:
                lows = []
            for n in lows:
                if n not in out and not hostfs.is_reserved(n) and \
                        not self.marked(f"{rel}/{n}" if rel else n):
                    out[n] = os.path.join(self.low(rel), n)
        return sorted(out.items())

    def before_rmdir(self, rel: str) -> None:
        """ENOTEMPTY (as OSError) unless merged directory rel is empty; then its markers
        go, so that the host rmdir of its upper copy can succeed."""
        if self.merged_names(rel):
            raise OSError(errno.ENOTEMPTY, os.strerror(errno.ENOTEMPTY), rel)
        up = self.up(rel)
        for n in os.listdir(up):
            if n.startswith(MARKER):
                os.unlink(os.path.join(up, n))

    def removed(self, rel: str) -> None:
        """rel's upper entry is gone: a whiteout keeps the lower one hidden."""
        if self.lower_shows(rel):
            self.set_marker(rel)
        else:
            self.touch(rel)


def _remove(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _marker_target(path: str) -> str:
    """The name a marker file stands for (its contents)."""
    with open(path, "rb") as f:
        return os.fsdecode(f.read(4096))


class _CachedDir:
    """An O_PATH fd of an upper directory, opened beneath the upper layer's fd."""

    __slots__ = ("fd",)

    def __init__(self, upper_fd: int, rel: str) -> None:
        self.fd = hostfs.open_beneath(upper_fd, rel, _DIR) if rel else os.dup(upper_fd)

    def close(self) -> None:
        os.close(self.fd)
