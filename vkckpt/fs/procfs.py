"""/proc: a file system generated from vkernel state, looked up before the guest root.

Like fs/fdlinks.py's names, a path under /proc never reaches the host: `lookup` walks it
over the vkernel's processes (vkernel pids only) and gives a Node -- a directory, a
generated file or a symbolic link -- or a Redirect to the guest path a followed link names
(/proc/self/cwd/x, /proc/1/exe).  `self` and `thread-self` are links within /proc; fd/N
links hold the open file, whose reopening is fd link semantics (sys_fs.py).  Opening a
node makes a read-only snapshot (fs/procfiles.py).  The generators are fs/procpid.py
(per process and thread), fs/procmaps.py (memory) and fs/procsys.py (the system files).
"""

from __future__ import annotations

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.errors import GuestError
from vkckpt.fs import procmaps, procpid, procsys
from vkckpt.fs.procfiles import ProcDir, ProcFile, proc_stat
from vkckpt.record import Record, Value

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable

    from vkckpt.fs.ops import OpenFile
    from vkckpt.process import Process
    from vkckpt.threads.thread import Thread

MAXSYMLINKS = 40
DIR, FILE, LINK = F.S_IFDIR | 0o555, F.S_IFREG | 0o444, F.S_IFLNK | 0o777


class ProcView(Record):
    """What /proc reads of the vkernel, handed over by it (files never take the kernel)."""

    __slots__ = ("procs", "now_ns", "idle_ns", "last_pid", "mem_limit", "cpuid",
                 "cpu_features", "random_bytes", "mounts", "file_ino")

    def __init__(self, procs: dict[int, Process], now_ns: Callable[[], int],
                 idle_ns: Callable[[], int], last_pid: Callable[[], int], mem_limit: int,
                 cpuid: Callable[[int, int], tuple[int, int, int, int]],
                 cpu_features: dict, random_bytes: Callable[[int], bytes],
                 mounts: list[tuple[str, bool]], file_ino: Callable[[str], int]) -> None:
        self.procs = procs                # pid -> Process, zombies included
        self.now_ns, self.idle_ns = now_ns, idle_ns  # the virtual clock and its idle part
        self.last_pid = last_pid          # the pid handed out last
        self.mem_limit = mem_limit        # --memory-limit: the RAM guests are told of
        self.cpuid, self.cpu_features = cpuid, cpu_features  # engine/cpumodel.py's facts
        self.random_bytes = random_bytes  # the guest random stream
        self.mounts = mounts              # (guest path, read-only) of every bind
        self.file_ino = file_ino          # guest path -> st_ino guests were shown (0: none)


class Node(Record):
    """A /proc entry: `mode` says which kind; a file has `make`, a directory `names`
    ((name, mode) pairs), a link `target` (and `file` for /proc/PID/fd/N)."""

    __slots__ = ("path", "mode", "make", "names", "target", "file")

    def __init__(self, path: str, mode: int, make: Callable[[], bytes] | None = None,
                 names: Callable[[], list[tuple[str, int]]] | None = None,
                 target: str = "", file: OpenFile | None = None) -> None:
        self.path, self.mode, self.make, self.names = path, mode, make, names
        self.target, self.file = target, file

    @property
    def is_dir(self) -> bool:
        return self.mode & F.S_IFMT == F.S_IFDIR

    @property
    def is_link(self) -> bool:
        return self.mode & F.S_IFMT == F.S_IFLNK


class Redirect(Value):
    """The guest path outside /proc a followed link leads to."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


def is_proc(path: str) -> bool:
    """Whether a normalized absolute guest path lies in /proc."""
    return path == "/proc" or path.startswith("/proc/")


def lookup(view: ProcView, me: Process, tid: int, path: str,
           follow: bool = True) -> Node | Redirect:
    """Resolve a normalized absolute /proc path for thread tid of process me: links inside
    /proc are followed, the last one only if `follow` (or the path ends in "/")."""
    todo = [x for x in path.split("/")[2:] if x and x != "."]
    must_dir = path.endswith("/")
    done: list[str] = []
    hops = 0
    while True:
        node = _node(view, me, tid, done)
        if node is None:
            raise GuestError(E.ENOENT, path)
        if node.is_link and (todo or follow or must_dir):
            hops += 1
            if hops > MAXSYMLINKS:
                raise GuestError(E.ELOOP, path)
            if node.target.startswith("/"):
                return Redirect("/".join([node.target.rstrip("/"), *todo]) or "/")
            if node.file is not None:
                if todo:
                    raise GuestError(E.ENOTDIR, path)
                return node  # pipe:[N] and the like: the open file itself
            done.pop()
            todo = node.target.split("/") + todo
            continue
        if not todo:
            if must_dir and not node.is_dir:
                raise GuestError(E.ENOTDIR, path)
            return node
        if not node.is_dir:
            raise GuestError(E.ENOTDIR, path)
        name = todo.pop(0)
        if name == "..":
            if not done:
                return Redirect("/" + "/".join(todo))
            done.pop()
        else:
            done.append(name)


def open_node(node: Node, flags: int) -> OpenFile:
    """open(2) of a /proc directory or file: a snapshot made now.  Guests may not write
    /proc (EACCES for write access, O_CREAT or O_TRUNC; EISDIR for a directory)."""
    writes = flags & F.O_ACCMODE != F.O_RDONLY or flags & (F.O_CREAT | F.O_TRUNC)
    keep = flags & (F.O_ACCMODE | F.O_NONBLOCK | F.O_DIRECTORY | F.O_APPEND)
    if node.is_dir:
        if writes:
            raise GuestError(E.EISDIR, node.path)
        return ProcDir(keep, node.path, node.names(), lister=node.names)
    if flags & F.O_DIRECTORY:
        raise GuestError(E.ENOTDIR, node.path)
    if writes:
        raise GuestError(E.EACCES, node.path)
    return ProcFile(keep, node.path, node.make(), node.mode)


def node_stat(node: Node) -> bytes:
    """struct stat of a node itself (a link not followed)."""
    return proc_stat(node.path, node.mode, nlink=2 if node.is_dir else 1)


# -- the tree ----------------------------------------------------------------------------------
def _file(path: str, make: Callable[[], bytes], mode: int = FILE) -> Node:
    return Node(path, mode, make=make)


def _dir(path: str, names: Callable[[], list[tuple[str, int]]], mode: int = DIR) -> Node:
    return Node(path, mode, names=names)


def _root_names(view: ProcView) -> list[tuple[str, int]]:
    fixed = sorted([*procsys.SYSTEM_FILES, "self", "thread-self", "sys"])
    names = [(n, LINK if n in ("self", "thread-self") else DIR if n == "sys" else FILE)
             for n in fixed]
    return names + [(str(pid), DIR) for pid in sorted(view.procs)]


def _node(view: ProcView, me: Process, tid: int, parts: list[str]) -> Node | None:
    """The node at /proc/<parts> (no link in parts but possibly the last), or None."""
    path = "/".join(["/proc", *parts])
    if not parts:
        return _dir(path, lambda: _root_names(view))
    head, rest = parts[0], parts[1:]
    if head == "self" and not rest:
        return Node(path, LINK, target=str(me.pid))
    if head == "thread-self" and not rest:
        return Node(path, LINK, target=f"{me.pid}/task/{tid}")
    if head.isdigit() and head.isascii() and len(head) <= 10:
        p = view.procs.get(int(head))
        if p is None or str(p.pid) != head:
            return None
        return _pid_node(view, p, _leader(p), f"/proc/{head}", rest, False)
    if head == "sys":
        return _sys_node(view, me, path, rest)
    gen = procsys.SYSTEM_FILES.get(head)
    if gen is not None and not rest:
        return _file(path, lambda: gen(view, me))
    return None


def _sys_node(view: ProcView, me: Process, path: str, rest: list[str]) -> Node | None:
    at: object = procsys.SYS_TREE
    for name in rest:
        if not isinstance(at, dict) or name not in at:
            return None
        at = at[name]
    if isinstance(at, dict):
        tree = at
        return _dir(path, lambda: [(n, DIR if isinstance(v, dict) else F.S_IFREG | 0o644)
                                   for n, v in sorted(tree.items())])
    gen = at
    return _file(path, lambda: gen(view, me), F.S_IFREG | 0o644)


def _leader(p: Process) -> Thread | None:
    live = p.live_threads
    return next((t for t in live if t.tid == p.pid), live[0] if live else None)


#: /proc/PID/<name> and /proc/PID/task/TID/<name> files: name -> (mode, generator).
PID_FILES: dict[str, tuple[int, Callable]] = {
    "status": (FILE, procpid.status), "stat": (FILE, procpid.stat),
    "statm": (FILE, procpid.statm), "cmdline": (FILE, procpid.cmdline),
    "environ": (F.S_IFREG | 0o400, procpid.environ), "comm": (F.S_IFREG | 0o644,
                                                              procpid.comm_file),
    "limits": (FILE, procpid.limits), "oom_score": (FILE, procpid.oom_score),
    "oom_score_adj": (F.S_IFREG | 0o644, procpid.oom_score_adj),
    "maps": (FILE, lambda view, p, t: procmaps.maps(p, view.file_ino)),
    "smaps_rollup": (FILE, lambda view, p, t: procmaps.smaps_rollup(p)),
    "mounts": (FILE, lambda view, p, t: procsys.mounts(view, p)),
    "mountinfo": (FILE, lambda view, p, t: procsys.mountinfo(view, p)),
}
PID_LINKS = {"exe": lambda p: p.exe, "cwd": lambda p: p.cwd, "root": lambda p: "/"}
_FD_DIR = F.S_IFDIR | 0o500


def _pid_names(p: Process, task: bool) -> list[tuple[str, int]]:
    names = [(n, m) for n, (m, _) in PID_FILES.items()] + [(n, LINK) for n in PID_LINKS]
    names += [("fd", _FD_DIR), ("fdinfo", _FD_DIR)] + ([] if task else [("task", DIR)])
    return sorted(names)


def _pid_node(view: ProcView, p: Process, t: Thread | None, base: str, rest: list[str],
              task: bool) -> Node | None:
    """A node in /proc/PID (or, task set, /proc/PID/task/TID for thread t)."""
    path = "/".join([base, *rest])
    if not rest:
        return _dir(path, lambda: _pid_names(p, task))
    head, more = rest[0], rest[1:]
    if head in PID_FILES and not more:
        mode, gen = PID_FILES[head]
        return _file(path, lambda: gen(view, p, t), mode)
    if head in PID_LINKS and not more:
        target = PID_LINKS[head](p)
        return None if p.zombie or not target else Node(path, LINK, target=target)
    if head in ("fd", "fdinfo"):
        return _fd_node(view, p, path, head, more)
    if head == "task" and not task:
        if not more:
            return _dir(path, lambda: [(str(x.tid), DIR) for x in p.live_threads])
        th = next((x for x in p.live_threads if str(x.tid) == more[0]), None)
        if th is None:
            return None
        return _pid_node(view, p, th, f"{base}/task/{more[0]}", more[1:], True)
    return None


def _fd_node(view: ProcView, p: Process, path: str, which: str,
             more: list[str]) -> Node | None:
    fds = {} if p.zombie else p.fds.fds
    if not more:
        mode = LINK & ~0o077 if which == "fd" else FILE
        return _dir(path, lambda: [(str(n), mode) for n in sorted(fds)], _FD_DIR)
    if len(more) > 1 or not more[0].isdigit() or not more[0].isascii():
        return None
    ent = fds.get(int(more[0]))
    if ent is None or str(int(more[0])) != more[0]:
        return None
    f, cloexec = ent
    if which == "fd":
        return Node(path, F.S_IFLNK | 0o700, target=f.proc_link(), file=f)
    return _file(path, lambda: _fdinfo(f, cloexec))


def _fdinfo(f: OpenFile, cloexec: bool) -> bytes:
    """Implement /proc/PID/fdinfo/N: the offset, status flags and mount of a descriptor."""
    try:
        pos = f.seek(0, F.SEEK_CUR) if f.seekable else 0
    except GuestError:
        pos = getattr(f, "pos", 0)
    flags = f.flags | (F.O_LARGEFILE if f.seekable else 0) | (F.O_CLOEXEC if cloexec else 0)
    link = f.proc_link()
    mnt = procsys.PROC_MNT_ID if is_proc(link) else \
        procsys.ROOT_MNT_ID if link.startswith("/") else procsys.ANON_MNT_ID
    return f"pos:\t{pos}\nflags:\t0{flags:o}\nmnt_id:\t{mnt}\n".encode()
