"""Implement live migration's receiving side: accept one stream and check every image.

Images land in a private temporary directory under the names the stream gives them
(migrate_wire.image_name); each is checked as it arrives (digests, the seal when a key is
given, and that it extends the previous one), so a forged or broken stream is refused
before anything is used.  Each pre-copy round, once checked, is laid into the memory kept
in `Received.staged` while the sender's guests run on (migrate_stage.py) and acknowledged;
thawing the final image over it is the caller's (restore.thaw with staged=).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile

from vkckpt.ckpt import migrate_wire as W
from vkckpt.ckpt.migrate_stage import Staged
from vkckpt.errors import ImageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vkckpt.image import Header


class SenderEnded(ImageError):
    """The sender's run ended before it could move: the stream carries nothing to resume."""


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
        self.staged = Staged()

    def drop_newest(self) -> None:
        """The newest round is laid: close and remove its file (the next round and the
        final thaw need only its header and path), so the stream costs the host one
        round's bytes at a time, not the sum of every round's."""
        r = self.staged.images[-1]
        r.close()
        os.unlink(os.path.basename(r.path), dir_fd=self.dir_fd)

    def close(self) -> None:
        """Unmap the memory nothing adopted, close and remove the images."""
        self.staged.close()
        os.close(self.dir_fd)
        shutil.rmtree(self.dir, ignore_errors=True)


def receive(conn: socket.socket, key: bytes | None,
            timeout: float | None = W.IDLE_TIMEOUT, stage: bool = True) -> Received:
    """Read a whole stream from conn into a Received, applying each round as it lands;
    ImageError if any part is wrong (SenderEnded: the sender's run ended first).  timeout:
    seconds without a byte before giving up (None: wait as long as it takes).  stage=False
    only checks the rounds (then thaw the chain without staged=; bench/migrate.py compares
    the two)."""
    conn.settimeout(timeout)
    W.no_delay(conn)
    got = Received()
    try:
        greeting = W.recv_exact(conn, len(W.GREETING), "the greeting")
        if greeting != W.GREETING:
            other = greeting.startswith(W.GREETING_PREFIX)
            raise ImageError("migration stream: " + (
                f"the sender speaks {greeting.strip().decode(errors='replace')!r}, this "
                f"vkckpt {W.GREETING.strip().decode()!r}; use the same vkckpt on both hosts"
                if other else "not a vkckpt migration stream"))
        prev: Header | None = None
        while got.final is None:
            n = got.images + 1
            kind, size = W.recv_head(conn, n)
            if kind == W.KIND_ENDED:
                raise SenderEnded("the sender's run ended before it could move; nothing "
                                  "to resume")
            prev = _one_image(conn, got, n, size, key, prev)
            if kind == W.KIND_FINAL:
                got.final = got.staged.images[-1].path
            else:
                if stage:
                    _apply(got.staged)
                    got.drop_newest()
                W.send_ack(conn, W.ACK_APPLIED)
    except BaseException:
        got.close()
        raise
    return got


def _one_image(conn: socket.socket, got: Received, n: int, size: int, key: bytes | None,
               prev: Header | None) -> Header:
    """Receive image n into got and check it (digests, seal, link to prev, the previous
    image's header); returns its header."""
    from vkckpt.image import ImageReader

    name = W.image_name(n)
    W.recv_file(conn, got.dir_fd, name, size, f"image {n}")
    got.images = n
    r = ImageReader(os.path.join(got.dir, name))
    try:
        r.check_digests(key)
        h = r.header
        if prev is None and h.incremental:
            raise ImageError(f"migration stream: image {n} is incremental but has "
                             f"no parent in the stream")
        if prev is not None and (not h.incremental or h.parent_id != prev.image_id
                                 or h.vkernel_id != prev.vkernel_id):
            raise ImageError(f"migration stream: image {n} does not extend image {n - 1}")
    except BaseException:
        r.close()
        raise
    got.staged.add(r)
    return h


def _apply(staged: Staged) -> None:
    """Lay the newest (checked) round into the staged memory; ImageError if malformed."""
    r = staged.images[-1]
    try:
        staged.apply(r)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError,
            MemoryError, OSError) as exc:
        raise ImageError(f"{r.path}: malformed image ({type(exc).__name__}: {exc})") from None


def answer(conn: socket.socket, ok: bool) -> None:
    """Tell the sender whether the vkernel resumed here (it ignores a closed socket)."""
    try:
        conn.sendall(W.ACK_RESUMED if ok else W.ACK_REFUSED)
    except OSError:
        pass
