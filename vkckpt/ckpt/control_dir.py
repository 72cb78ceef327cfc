"""The control sockets' private directory: where it is, whether to trust it, dead sockets.

The directory must be a real directory (not a symbolic link), owned by the effective uid,
with no group or other permission bits; it is created so when missing.  Every check is made
on a descriptor opened with O_NOFOLLOW|O_DIRECTORY, and the socket is bound through that
descriptor (/proc/self/fd/N/NAME), so a directory swapped after the check is never used.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import tempfile

from vkckpt.errors import VkError
from vkckpt.host.fs import pid_alive

SUFFIX = ".sock"


class ControlDirError(VkError):
    """The control directory cannot be trusted; the message says what to do."""


def control_dir() -> str:
    """$VKCKPT_CONTROL_DIR, or $TMPDIR/vkckpt-EUID."""
    return os.environ.get("VKCKPT_CONTROL_DIR") or os.path.join(tempfile.gettempdir(),
                                                                f"vkckpt-{os.geteuid()}")


def socket_path(host_pid: int) -> str:
    """Where the vkckpt with host pid host_pid listens."""
    return os.path.join(control_dir(), f"{host_pid}{SUFFIX}")


def open_private_dir(path: str) -> int:
    """A descriptor of the private directory path, created 0700 when missing.
    Raises ControlDirError for a symbolic link, a non-directory, another owner or a mode
    other than 0700."""
    fix = "remove it or set VKCKPT_CONTROL_DIR to a directory of yours with mode 0700"
    try:
        os.mkdir(path, 0o700)  # the umask can only remove bits; the mode is checked below
    except FileExistsError:
        pass
    except OSError as exc:
        raise ControlDirError(f"cannot create {path}: {exc.strerror} "
                              f"(set VKCKPT_CONTROL_DIR to a directory of yours)") from None
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            raise ControlDirError(f"{path} is a symbolic link ({fix})")
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        what = {errno.ELOOP: "is a symbolic link", errno.ENOTDIR: "is not a directory"}.get(
            exc.errno, f"cannot be opened: {exc.strerror}")
        raise ControlDirError(f"{path} {what} ({fix})") from None
    try:
        _check(path, os.fstat(fd), fix)
    except ControlDirError:
        os.close(fd)
        raise
    return fd


def _check(path: str, st: os.stat_result, fix: str) -> None:
    if not stat.S_ISDIR(st.st_mode):
        raise ControlDirError(f"{path} is not a directory ({fix})")
    if st.st_uid != os.geteuid():
        raise ControlDirError(f"{path} is owned by uid {st.st_uid}, not by you "
                              f"(uid {os.geteuid()}): {fix}")
    if st.st_mode & 0o7777 != 0o700:
        raise ControlDirError(f"{path} has mode {st.st_mode & 0o7777:04o}, not 0700 "
                              f"(chmod 700 {path}, or set VKCKPT_CONTROL_DIR)")


def bind_private(dir_fd: int, path: str, name: str) -> socket.socket:
    """A listening-ready socket bound as name in the directory dir_fd, mode 0600 whatever
    the umask.  A stale socket of the same name (a dead run with this pid) is replaced."""
    try:
        if stat.S_ISSOCK(os.lstat(name, dir_fd=dir_fd).st_mode):
            os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    via = f"/proc/self/fd/{dir_fd}/{name}"
    if not os.path.isdir(f"/proc/self/fd/{dir_fd}"):
        via = os.path.join(path, name)  # no /proc: the path, checked below
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        s.bind(via)
    except OSError:
        s.close()
        raise
    finally:
        os.umask(old)
    try:
        st = os.lstat(name, dir_fd=dir_fd)
        if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
            raise ControlDirError(f"{path}/{name} is not the socket just bound")
        os.chmod(name, 0o600, dir_fd=dir_fd)
    except (OSError, ControlDirError):
        s.close()
        raise
    return s


def remove_dead_sockets(dir_fd: int) -> list[str]:
    """Unlink the sockets PID.sock in dir_fd whose pid is dead (kill(pid, 0) fails with
    ESRCH); nothing else is touched.  Returns the names removed."""
    removed = []
    for name in os.listdir(dir_fd):
        stem = name[:-len(SUFFIX)] if name.endswith(SUFFIX) else ""
        if not (stem.isascii() and stem.isdigit()) or stem.startswith("0"):
            continue
        pid = int(stem)
        if pid == os.getpid() or pid_alive(pid):
            continue
        try:
            if stat.S_ISSOCK(os.lstat(name, dir_fd=dir_fd).st_mode):
                os.unlink(name, dir_fd=dir_fd)
                removed.append(name)
        except OSError:
            continue
    return removed
