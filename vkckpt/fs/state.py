"""Save and load open file descriptions, pipes and descriptor tables.

Files in the guest root are reopened by guest path at their offset; a fingerprint taken at
freeze lets thaw notice host changes: the size, a SHA-256 of files up to 1 MiB, and for
larger ones a *stamp* -- a BLAKE2b of the host's (st_dev, st_ino, size, mtime) keyed with a
per-user secret -- so images (which guests may read, see checkpoint(2)) never hold a host
mtime or inode number.  Images written before stamps hold "mtime_ns" instead; both work.
"""

from __future__ import annotations

import os
import stat

from vkckpt.abi import fcntl as F
from vkckpt.errors import GuestError, ImageError
from vkckpt.fs import (
    event_state,
    ghost_state,
    inet_state,
    overlay_state,
    proc_state,
    unix_state,
)
from vkckpt.fs.fdtable import FdTable
from vkckpt.fs.fifo import FifoEnd, fifo_of
from vkckpt.fs.files import (
    Console,
    DevNull,
    DevRandom,
    DevZero,
    DirFile,
    FileServices,
    HostFile,
    OpenFile,
)
from vkckpt.fs.overlay_dir import dir_file
from vkckpt.fs.pipe import CAPACITY, Pipe, PipeEnd
from vkckpt.fs.unix_file import SocketFile

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable

    from vkckpt.fs.inodes import InodeTable
    from vkckpt.fs.sandbox import GuestRoot, Resolved
    from vkckpt.fs.unix import UnixSocket
    from vkckpt.fs.unix_ns import UnixNamespace
    from vkckpt.threads.wait import WaitQueue
    from vkckpt.vmspace.account import MemAccount

PIPE_VERSION = 1
FILE_VERSION = 1
#: The type/range tables ckpt/schema.py checks (fingerprints: checked when reopening).
PIPE_SCHEMA = {"id": "u64", "data": "bytes"}
FILE_SCHEMA = {"id": "u64", "kind": "str", "flags": "u32", "stream": "u32", "pipe": "u64",
               "path": "str", "offset": "i64", "ghost": "u64", **event_state.SCHEMA,
               **proc_state.SCHEMA, **unix_state.FILE_FIELDS}
FDTABLE_SCHEMA = [("u32", "u64", "u32")]  # a process record's descriptors
RECORDS = {"pipe": (PIPE_VERSION, PIPE_SCHEMA), **ghost_state.RECORDS,
           "file": (FILE_VERSION, FILE_SCHEMA),
           **unix_state.RECORDS, **inet_state.RECORDS, **overlay_state.RECORDS}

HASH_LIMIT = 1 << 20
_DEVICE_KINDS = {"null": DevNull, "zero": DevZero, "random": DevRandom}
_REOPEN_MASK = F.O_ACCMODE | F.O_APPEND | F.O_NONBLOCK | F.O_DSYNC


_stamp_key: bytes | None = None


def stamp_key() -> bytes:
    """The secret stamps are keyed with: $XDG_CACHE_HOME/vkckpt/stamp.key (created 0600 on
    first use, ignored unless private), or a per-process secret when it cannot be had
    (then a thaw in another process sees large open files as changed)."""
    global _stamp_key
    if _stamp_key is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        path = os.path.join(base, "vkckpt", "stamp.key")
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as f:
                    f.write(os.urandom(32))
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                key = f.read(64)
            if st.st_uid != os.geteuid() or st.st_mode & 0o077 or len(key) != 32:
                raise OSError("stamp key is not private")
            _stamp_key = key
        except OSError:
            _stamp_key = os.urandom(32)
    return _stamp_key


def _stamp(st: os.stat_result) -> bytes:
    import hashlib  # at a freeze, not at every start (it loads OpenSSL)

    data = b"%d %d %d %d" % (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    return hashlib.blake2b(data, key=stamp_key(), digest_size=16).digest()


def fingerprint(host_fd: int) -> dict:
    """What thaw compares to detect a changed file: size, content (up to 1 MiB) or stamp."""
    st = os.fstat(host_fd)
    fp = {"size": st.st_size, "stamp": None, "sha256": None}
    if st.st_size <= HASH_LIMIT and stat.S_ISREG(st.st_mode):
        import hashlib

        rd = os.open(f"/proc/self/fd/{host_fd}", os.O_RDONLY)  # the descriptor may be O_WRONLY
        try:
            h = hashlib.sha256()
            off = 0
            while chunk := os.pread(rd, 1 << 16, off):
                h.update(chunk)
                off += len(chunk)
        finally:
            os.close(rd)
        fp["sha256"] = h.digest()
    else:
        fp["stamp"] = _stamp(st)
    return fp


def _changed(want: dict, fd: int, fp: dict) -> bool:
    """Whether the file at fd (fingerprint fp) differs from fingerprint `want`."""
    if fp["size"] != want["size"] or fp["sha256"] != want["sha256"]:
        return True
    if want["sha256"] is not None:
        return False
    if "stamp" in want:
        return fp["stamp"] != want["stamp"]
    return os.fstat(fd).st_mtime_ns != want.get("mtime_ns")  # an image older than stamps


def _save_host(f: HostFile, d: dict) -> None:
    d["path"] = f.guest_path
    d["offset"] = os.lseek(f.fd, 0, os.SEEK_CUR)
    d["fingerprint"] = fingerprint(f.fd)


def _save_dir(f: DirFile, d: dict) -> None:
    _save_host(f, d)
    d["offset"] = f.pos


def _save_console(f: Console, d: dict) -> None:
    d["stream"] = f.stream


def _save_pipe_end(f: PipeEnd, d: dict) -> None:
    d["pipe"] = f.pipe.id


def _save_fifo_end(f: FifoEnd, d: dict) -> None:
    d["pipe"] = f.pipe.id
    d["path"] = f.guest_path


#: What each kind saves beyond id, kind and flags (a kind not listed saves nothing more).
_SAVE_KIND = {"host": _save_host, "dir": _save_dir, "console": _save_console,
              "pipe": _save_pipe_end, "fifo": _save_fifo_end, "eventfd": event_state.save_eventfd,
              "proc": proc_state.save_proc, "procdir": proc_state.save_procdir,
              "timerfd": event_state.save_timerfd, "signalfd": event_state.save_signalfd,
              "unix": unix_state.save_file}
#: Kinds whose saved form names other files, by their saved ids.
_SAVE_LINKS = {"epoll": event_state.save_epoll}


def save_file(f: OpenFile, fid: int, fids: dict[int, int] | None = None) -> dict:
    """One open file description; fids maps id(description) -> saved id of every saved
    file (an epoll names its items' files by it)."""
    d = {"id": fid, "kind": f.kind, "flags": f.flags}
    links = _SAVE_LINKS.get(f.kind)
    if links is not None:
        links(f, d, fids or {})
    extra = _SAVE_KIND.get(f.kind)
    if extra is not None:
        extra(f, d)
    return d


link_files = event_state.link_files


def save_pipe(p: Pipe) -> dict:
    return {"id": p.id, "data": bytes(p.data)}


def load_pipes(rows: list[dict], mem: MemAccount, poll_q: WaitQueue) -> dict[int, Pipe]:
    """Pipes by id from their records, each holding what it held at the freeze; poll_q is
    the readiness queue every pipe notifies."""
    pipes = {}
    for d in rows:
        if not isinstance(d["data"], bytes) or len(d["data"]) > CAPACITY:
            raise ImageError(f"pipe {d['id']} holds more than a pipe can")
        pipes[d["id"]] = Pipe(d["id"], mem, poll_q)
        pipes[d["id"]].data = bytearray(d["data"])
    return pipes


def save_fdtable(fds: FdTable, ids: dict[int, int]) -> list[list[int]]:
    """[fd, file id, cloexec] rows; ids maps id(description) -> saved file id."""
    return [[fd, ids[id(f)], int(ce)] for fd, (f, ce) in sorted(fds.fds.items())]


class FileChanged(ImageError):
    """A host file a guest had open differs from the one frozen."""


class _Loading:
    """What loading one file description may use: the root, the pipes already loaded, the
    thaw's options and the services the vkernel gives its files."""

    __slots__ = ("root", "pipes", "allow_changed", "inodes", "read_only", "svc", "socks", "ns",
                 "ghosts")

    def __init__(self, root: GuestRoot, pipes: dict[int, Pipe], allow_changed: bool,
                 inodes: InodeTable, read_only: bool, svc: FileServices,
                 socks: dict[int, UnixSocket], ns: UnixNamespace | None,
                 ghosts: dict[int, int]) -> None:
        self.root, self.pipes, self.allow_changed = root, pipes, allow_changed
        self.inodes, self.read_only, self.svc = inodes, read_only, svc
        self.socks, self.ns, self.ghosts = socks, ns, ghosts


def load_file(d: dict, root: GuestRoot, pipes: dict[int, Pipe], allow_changed: bool,
              inodes: InodeTable, read_only: bool = False, *,
              svc: FileServices, socks: dict[int, UnixSocket] | None = None,
              ns: UnixNamespace | None = None, ghosts: dict[int, int] | None = None
              ) -> OpenFile:
    """Recreate an open file description (reopening guest-root files by path, for reading
    only when read_only); svc is what the vkernel gives the files it makes, socks the
    thawed AF_UNIX endpoints by id, ns their name space and ghosts the recreated unlinked
    files' host fds by ghost id."""
    load = _LOAD_KIND.get(d["kind"])
    if load is None:
        raise ImageError(f"unknown open file kind {d['kind']!r}")
    return load(d, _Loading(root, pipes, allow_changed, inodes, read_only, svc, socks or {},
                            ns, ghosts or {}))


def _load_console(d: dict, ctx: _Loading) -> OpenFile:
    return Console(d["flags"], d["stream"], ctx.svc)


def _load_device(d: dict, ctx: _Loading) -> OpenFile:
    return _DEVICE_KINDS[d["kind"]](d["flags"], ctx.svc)


def _load_pipe_end(d: dict, ctx: _Loading) -> OpenFile:
    pipe = ctx.pipes.get(d["pipe"])
    if pipe is None:
        raise ImageError(f"file {d['id']} refers to unknown pipe {d['pipe']}")
    return PipeEnd(pipe, d["flags"])


def _load_fifo_end(d: dict, ctx: _Loading) -> OpenFile:
    """Reopen a named FIFO's placeholder by path (still a regular file marked as a FIFO in
    the thawed inode table) and join the end to its pipe."""
    pipe = ctx.pipes.get(d["pipe"])
    path = d["path"]
    if pipe is None or not isinstance(path, str) or not path.startswith("/"):
        raise ImageError(f"file {d['id']!r}: a FIFO end without its pipe or path")
    try:
        fd = ctx.root.host_open(ctx.root.resolve(path, "/"), os.O_RDONLY | os.O_NONBLOCK)
    except GuestError as exc:
        raise FileChanged(f"{path}: cannot reopen the FIFO inside the guest root "
                          f"({os.strerror(exc.errno)})") from None
    st = os.fstat(fd)
    vino = ctx.inodes.is_fifo(st) if stat.S_ISREG(st.st_mode) else None
    if vino is None:
        os.close(fd)
        raise FileChanged(f"{path}: is no longer the named FIFO frozen")
    fifo = fifo_of(ctx.inodes, vino)
    if fifo.pipe not in (None, pipe):
        os.close(fd)
        raise ImageError(f"{path}: FIFO ends on two pipes")
    fifo.pipe = pipe
    return FifoEnd(fifo, d["flags"], fd, path, ctx.inodes, ctx.svc.host_fds)
def _load_socket(d: dict, ctx: _Loading) -> OpenFile:
    sock = ctx.socks.get(d.get("sock", 0))
    if sock is None or ctx.ns is None or "cred" not in d:
        raise ImageError(f"file {d['id']!r} refers to an unknown socket")
    return SocketFile(sock, d["flags"], ctx.ns, tuple(d["cred"]))


def _reopen(d: dict, ctx: _Loading) -> OpenFile:
    """Reopen a regular file or directory of the root, as recorded; anything else (a FIFO
    or device put in its place, which could block or act on open) is refused unopened or
    before any I/O."""
    path, offset = d["path"], d["offset"]
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        raise ImageError(f"file {d['id']!r}: path {path!r} is not an absolute guest path")
    if not isinstance(offset, int) or offset < 0:
        raise ImageError(f"file {d['id']!r} ({path}): negative offset {offset!r}")
    if "ghost" in d:
        return _reopen_ghost(d, ctx)
    fd, resolved = _open_as_recorded(d, ctx.root, ctx.read_only)
    fp = fingerprint(fd)
    want = d["fingerprint"]
    if not isinstance(want, dict) or not {"size", "sha256"} <= set(want):
        os.close(fd)
        raise ImageError(f"file {d['id']!r} ({path}): malformed fingerprint")
    if not ctx.allow_changed and _changed(want, fd, fp):
        os.close(fd)
        raise FileChanged(f"{path}: changed since the freeze (size {want['size']} -> "
                          f"{fp['size']}); pass --allow-changed-files to thaw anyway")
    if d["kind"] == "dir":
        f: HostFile = dir_file(resolved, fd, d["flags"], ctx.inodes, ctx.svc.host_fds)
        f.pos = offset
    else:
        f = HostFile(fd, d["flags"], path, ctx.inodes, ctx.svc.host_fds)
        os.lseek(fd, offset, os.SEEK_SET)
    return f


def _reopen_ghost(d: dict, ctx: _Loading) -> HostFile:
    """A description of a ghost file: its own open of the recreated unnamed file (its own
    offset and status flags, the inode shared with every description of the ghost)."""
    base = ctx.ghosts.get(d["ghost"])
    if base is None or d["kind"] != "host":
        raise ImageError(f"file {d['id']!r} refers to unknown ghost {d['ghost']!r}")
    flags = os.O_RDONLY if ctx.read_only else d["flags"] & _REOPEN_MASK
    try:
        fd = os.open(f"/proc/self/fd/{base}", flags | os.O_CLOEXEC)
    except OSError as exc:
        raise ImageError(f"file {d['id']!r}: cannot open its ghost ({exc.strerror})") from None
    os.lseek(fd, d["offset"], os.SEEK_SET)
    return HostFile(fd, d["flags"], d["path"], ctx.inodes, ctx.svc.host_fds)


def reopen_mapped(path: str, writable: bool, want: object, root: GuestRoot, read_only: bool,
                  allow_changed: bool) -> int:
    """A host descriptor of the guest-root file a shared file mapping maps (for writing when
    it was open for writing and the thaw may write), refused as FileChanged when it is no
    longer a regular file or differs from fingerprint `want` (the caller closes it)."""
    flags = F.O_RDWR if writable else F.O_RDONLY
    fd, _ = _open_as_recorded({"path": path, "kind": "host", "flags": flags}, root, read_only)
    if not isinstance(want, dict) or not {"size", "sha256"} <= set(want):
        os.close(fd)
        raise ImageError(f"file mapping of {path}: malformed fingerprint")
    fp = fingerprint(fd)
    if not allow_changed and _changed(want, fd, fp):
        os.close(fd)
        raise FileChanged(f"{path}: changed since the freeze (size {want['size']} -> "
                          f"{fp['size']}); pass --allow-changed-files to thaw anyway")
    return fd


#: How each file kind is loaded (the mirror of _SAVE_KIND): a new kind adds one row.
_LOAD_KIND: dict[str, Callable[[dict, _Loading], OpenFile]] = {
    "console": _load_console, "pipe": _load_pipe_end, "host": _reopen, "dir": _reopen,
    "fifo": _load_fifo_end,
    **dict.fromkeys(_DEVICE_KINDS, _load_device),
    "eventfd": lambda d, ctx: event_state.load_eventfd(d, ctx.svc),
    "epoll": lambda d, ctx: event_state.load_epoll(d, ctx.svc),
    "proc": lambda d, ctx: proc_state.load_proc(d),
    "procdir": lambda d, ctx: proc_state.load_procdir(d),
    "timerfd": lambda d, ctx: event_state.load_timerfd(d, ctx.svc),
    "signalfd": lambda d, ctx: event_state.load_signalfd(d, ctx.svc),
    "unix": _load_socket,
}


def _open_as_recorded(d: dict, root: GuestRoot, read_only: bool) -> tuple[int, Resolved]:
    """open(2) the file of record d without blocking or following a last symlink, and check
    it is still the kind of file recorded; (the host fd, with the recorded status flags,
    and its resolved path)."""
    path, is_dir = d["path"], d["kind"] == "dir"
    if is_dir:
        flags = os.O_RDONLY | os.O_DIRECTORY
    else:
        flags = os.O_RDONLY if read_only else d["flags"] & _REOPEN_MASK
    try:
        r = root.resolve(path, "/")
        fd = root.host_open(r, flags | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY)
    except GuestError as exc:
        raise FileChanged(f"{path}: cannot reopen inside the guest root "
                          f"({os.strerror(exc.errno)})") from None
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISDIR(mode) if is_dir else stat.S_ISREG(mode)):
        os.close(fd)
        raise FileChanged(f"{path}: is no longer a {'directory' if is_dir else 'regular file'}"
                          " inside the guest root; refusing to reopen it")
    if not flags & os.O_NONBLOCK:
        os.set_blocking(fd, True)
    return fd, r


