"""Path calls that name /proc: found before the guest root is looked at (fs/procfs.py).

Each helper gets what sys_fs.py's handlers decoded and answers for a /proc path, or says
(None) that the path lies outside /proc.  A Redirect (a followed link out of /proc, like
/proc/self/cwd) is answered by the handler again with the path it names.
"""

from __future__ import annotations

import os
import posixpath

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.errors import GuestError
from vkckpt.fs.procfs import Node, Redirect, is_proc, lookup, node_stat, open_node

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel
    from vkckpt.threads.thread import Thread

PROC_SUPER_MAGIC = 0x9FA0


def proc_path(base: str, path: bytes) -> str | None:
    """The normalized /proc path that path (relative to guest directory base) names,
    keeping a final "/", or None outside /proc."""
    guest = os.fsdecode(path)
    if not guest.startswith("/"):
        guest = posixpath.join(base, guest)
    if "/proc" not in guest:
        return None
    norm = "/" + posixpath.normpath(guest).lstrip("/")
    if not is_proc(norm):
        return None
    return norm + "/" if guest.endswith("/") and norm != "/proc" else norm


def find(k: VKernel, t: Thread, base: str, path: bytes, follow: bool = True
         ) -> Node | Redirect | None:
    """The /proc node (or redirect) path names for t, or None outside /proc."""
    p = proc_path(base, path) if path else None
    if p is None:
        return None
    return lookup(k.proc_view(), t.process, t.tid, p, follow)


def open_proc(t: Thread, node: Node, flags: int) -> int:
    """openat(2) of a /proc node: a snapshot of a file or directory, or the open file
    behind a /proc/PID/fd/N link that names no path (a pipe: the same description)."""
    cloexec = bool(flags & F.O_CLOEXEC)
    if node.is_link:
        if node.file is None or flags & F.O_NOFOLLOW:
            raise GuestError(E.ELOOP, node.path)  # O_NOFOLLOW on a link
        return t.process.fds.install(node.file, cloexec)
    return t.process.fds.install(open_node(node, flags), cloexec)


def stat_proc(node: Node, follow: bool) -> bytes:
    """struct stat of a node: of the open file behind an fd link when following it."""
    return node.file.stat() if follow and node.file is not None else node_stat(node)


def access_proc(node: Node, mode: int) -> int:
    """faccessat(2): root may read everything and write only writable entries."""
    perm = node.mode & 0o777
    if mode & 2 and not perm & 0o200 or mode & 1 and not perm & 0o111:
        raise GuestError(E.EACCES, node.path)
    return 0


def readlink_proc(node: Node) -> bytes:
    if not node.is_link:
        raise GuestError(E.EINVAL, node.path)
    return os.fsencode(node.target)
