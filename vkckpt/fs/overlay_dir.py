"""Directories of an overlay root as guests list them: the upper and lower entries merged."""

from __future__ import annotations

import os

from vkckpt.abi import fcntl as F
from vkckpt.errors import GuestError
from vkckpt.fs.files import DirFile, _dtype, host_call

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vkckpt.fs.inodes import InodeTable
    from vkckpt.fs.overlay import Overlay
    from vkckpt.fs.sandbox import Resolved
    from vkckpt.host.fds import HostFds


class OverlayDir(DirFile):
    """A directory of an overlay root opened for getdents64: its merged entries (upper
    ones, then the lower ones no whiteout hides unless the directory is opaque), sorted,
    found afresh at each listing by its guest path (it may have been copied up since)."""

    def __init__(self, ov: Overlay, fd: int, flags: int, guest_path: str, host_path: str,
                 inodes: InodeTable, host_fds: HostFds) -> None:
        super().__init__(fd, flags, guest_path, host_path, inodes, host_fds)
        self.ov = ov

    def _entries(self) -> list[tuple[bytes, int, int]]:
        st = host_call(os.fstat, self.fd)
        me = self.inodes.vino(st, self.guest_path)
        ents = [(b".", me, F.DT_DIR), (b"..", me, F.DT_DIR)]
        base = self.guest_path.rstrip("/")
        try:
            found = self.ov.merged_names(self.guest_path.strip("/"))
        except OSError as exc:
            raise GuestError(exc.errno or 5, str(exc)) from None
        for name, host in found:
            try:
                st_e = os.lstat(host)
            except OSError:  # gone since the directory was read
                continue
            ino = self.inodes.vino(st_e, f"{base}/{name}")
            ents.append((os.fsencode(name), ino, _dtype(self.inodes.mode(st_e))))
        return ents


def dir_file(r: Resolved, fd: int, flags: int, inodes: InodeTable, host_fds: HostFds
             ) -> DirFile:
    """The open directory for host fd of resolved directory r: merged in an overlay root."""
    if r.ov is not None and r.mount == 0:
        return OverlayDir(r.ov, fd, flags, r.guest, r.host, inodes, host_fds)
    return DirFile(fd, flags, r.guest, r.host, inodes, host_fds)
