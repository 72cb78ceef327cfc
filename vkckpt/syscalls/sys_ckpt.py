"""checkpoint(2): a guest asks the vkernel to freeze itself or another process."""

from __future__ import annotations

import os
import stat

from vkckpt.abi import errno as E
from vkckpt.errors import GuestError
from vkckpt.fs.sandbox import guest_errno
from vkckpt.record import Comparable
from vkckpt.syscalls.args import s32, s64
from vkckpt.threads.wait import Block, WaitQueue

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel
    from vkckpt.threads.thread import Thread

CKPT_FREEZE = 0


class CkptRequest(Comparable):
    """A checkpoint(2) call waiting for the host (VKernel.post_request; ckpt/freeze.py serves
    it at the next scheduling point).  `dir_fd` is the directory of `path`, opened beneath
    the guest root when the call was made: the image goes there whatever the SIGCKPT
    handlers rename meanwhile (closed once served).  The caller sleeps on `queue` and
    signals do not interrupt it (sigsend.py)."""

    __slots__ = ("tid", "scope", "path", "retval", "dir_fd", "queue")

    def __init__(self, tid: int, scope: list[int] | None, path: str | None, retval: int,
                 dir_fd: int | None = None) -> None:
        self.tid = tid
        self.scope = scope
        self.path = path
        self.retval = retval
        self.dir_fd = dir_fd
        self.queue = WaitQueue(("checkpoint",))

    def close(self) -> None:
        fd, self.dir_fd = self.dir_fd, None
        if fd is not None:
            os.close(fd)


def _pin_target(k: VKernel, t: Thread, path: int) -> tuple[str, int]:
    """Resolve the image path now: (its host path, an fd of its directory opened beneath
    the root).  EISDIR if it names a directory."""
    guest = os.fsdecode(t.process.vm.read_cstr(path))
    r = k.root.resolve(guest, t.process.cwd, must_exist=False, top=t.process.root)
    r.writable()
    dir_fd, name = k.root.open_parent(r)  # the image goes here, whatever happens next
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        mode = 0
    except OSError as exc:
        os.close(dir_fd)
        raise GuestError(guest_errno(exc)) from None
    if stat.S_ISDIR(mode):
        os.close(dir_fd)
        raise GuestError(E.EISDIR)
    return r.host, dir_fd


def sys_checkpoint(k: VKernel, t: Thread, kind: int, path: int, pid: int, retval: int) -> int:
    """checkpoint(CKPT_FREEZE, path, pid, retval): write an image of process pid (0 or -1:
    the caller's) to path in the guest root (NULL: the vkernel's -o image).  Returns 0 once
    written; the thawed image resumes the caller with retval.  The directory of path is
    opened now, beneath the root; the image is created in it after the SIGCKPT handlers
    ran, replacing (never following) whatever the handlers put at the final name."""
    if s32(kind) != CKPT_FREEZE:
        raise GuestError(E.EINVAL)
    pid = s32(pid)
    target = t.process if pid in (0, -1) else k.procs.get(pid)
    if target is None or target.zombie:
        raise GuestError(E.ESRCH)
    host_path, dir_fd = _pin_target(k, t, path) if path else (None, None)
    req = CkptRequest(t.tid, [target.pid], host_path, s64(retval), dir_fd)
    if not k.post_request(req):
        req.close()
        raise GuestError(E.EBUSY)
    raise Block(req.queue, restartable=False)
