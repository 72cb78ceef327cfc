"""Implement live migration's receiving side: accept one stream and check every image.

Images land in a private temporary directory under the names the stream gives them
(migrate_wire.image_name); each is checked as it arrives (digests, the seal when a key is
given, and that it extends the previous one), so a forged or broken stream is refused
before anything is thawed.  Thawing the final image is the caller's (restore.thaw, which
checks the whole chain again like any thaw).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile

from vkckpt.ckpt import migrate_wire as W
from vkckpt.errors import ImageError


def listen(target: str) -> socket.socket:
    """A TCP socket listening on HOST:PORT (port 0: any free port); says where on stderr."""
    host, port = W.parse_target(target)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1)
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0]
    print(f"vkckpt receive: listening on {shown}:{bound[1]}", file=sys.stderr, flush=True)
    return sock


class Received:
    """The images of one stream in a private directory; `final` is the one to thaw."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="vkckpt-receive-")
        self.dir_fd = os.open(self.dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.final: str | None = None
        self.images = 0

    def close(self) -> None:
        os.close(self.dir_fd)
        shutil.rmtree(self.dir, ignore_errors=True)


def receive(conn: socket.socket, key: bytes | None) -> Received:
    """Read a whole stream from conn into a Received; ImageError if any part is wrong."""
    from vkckpt.image import ImageReader

    conn.settimeout(W.IDLE_TIMEOUT)
    got = Received()
    try:
        if W.recv_exact(conn, len(W.GREETING), "the greeting") != W.GREETING:
            raise ImageError("migration stream: not a vkckpt migration stream")
        prev = None
        while got.final is None:
            n = got.images + 1
            kind, size = W.recv_head(conn, n)
            name = W.image_name(n)
            W.recv_file(conn, got.dir_fd, name, size, f"image {n}")
            got.images = n
            path = os.path.join(got.dir, name)
            r = ImageReader(path)
            try:
                r.check_digests(key)
                h = r.header
                if prev is None and h.incremental:
                    raise ImageError(f"migration stream: image {n} is incremental but has "
                                     f"no parent in the stream")
                if prev is not None and (not h.incremental or h.parent_id != prev.image_id
                                         or h.vkernel_id != prev.vkernel_id):
                    raise ImageError(f"migration stream: image {n} does not extend image "
                                     f"{n - 1}")
                prev = h
            finally:
                r.close()
            if kind == W.KIND_FINAL:
                got.final = path
    except BaseException:
        got.close()
        raise
    return got


def answer(conn: socket.socket, ok: bool) -> None:
    """Tell the sender whether the vkernel resumed here (it ignores a closed socket)."""
    try:
        conn.sendall(W.ACK_RESUMED if ok else W.ACK_REFUSED)
    except OSError:
        pass
