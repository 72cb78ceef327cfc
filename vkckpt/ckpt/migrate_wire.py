"""The live-migration stream: a sequence of images carried over one TCP connection.

The sender opens with GREETING, then sends frames: FRAME_HEAD (magic, kind, byte count)
followed by one whole image file.  Image n of the stream is named ``image_name(n)`` on both
sides, so an incremental image finds its parent (the previous frame) by the name its meta
record gives.  KIND_ROUND frames are pre-copy rounds: the receiver checks and applies each
one (migrate_stage.py) and answers ACK_APPLIED before the sender takes the next round, so
at the final stop the receiver is never behind.  The one KIND_FINAL frame is the frozen
state, after which the sender waits for ACK_RESUMED.  ACK_REFUSED answers any frame the
receiver refuses.  A KIND_ENDED frame (no bytes) says the sender's run ended before it
could move: the stream ends with nothing to resume.  Every count is bounded before
anything is read.
"""

from __future__ import annotations

import os
import socket
import struct

from vkckpt.errors import ImageError

GREETING = b"VKCKPT-MIGRATE 2\n"
GREETING_PREFIX = b"VKCKPT-MIGRATE "
FRAME_HEAD = struct.Struct("<4sBxxxQ")
FRAME_MAGIC = b"VKMF"
KIND_ROUND, KIND_FINAL, KIND_ENDED = 1, 2, 3
ACK_RESUMED, ACK_REFUSED, ACK_APPLIED = b"RESUMED\n", b"REFUSED\n", b"APPLIED\n"
ACK_SIZE = 8                # every answer line is this long
MAX_IMAGES = 64             # frames in one stream (the sender sends at most MAX_ROUNDS + 1)
MAX_IMAGE_BYTES = 1 << 40   # one image
CHUNK = 1 << 20             # bytes a receive call asks for
IDLE_TIMEOUT = 120.0        # default seconds without a byte before the receiver gives up


def image_name(n: int) -> str:
    """The file name of the n-th image of a stream (1-based)."""
    return f"migrate.{n:04d}.img"


def parse_target(text: str) -> tuple[str, int]:
    """HOST:PORT (an IPv6 host in brackets) as (host, port); ValueError when malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def no_delay(sock: socket.socket) -> None:
    """Send small writes (frame heads, answers, an image's last segment) at once: with
    Nagle's algorithm each waits for the peer's delayed ACK (~40 ms, all of it downtime)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass  # not TCP (a socketpair in tests)


def send_image(sock: socket.socket, path: str, kind: int) -> int:
    """Send one frame holding the image file at path; its size in bytes."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        sock.sendall(FRAME_HEAD.pack(FRAME_MAGIC, kind, size))
        if size and sock.sendfile(f, 0, size) != size:  # waits out the socket's timeout
            raise OSError("the connection closed during the image")
    return size


def send_ack(sock: socket.socket, line: bytes) -> None:
    """Answer the sender with one ACK_* line."""
    try:
        sock.sendall(line)
    except OSError as exc:
        raise ImageError(f"migration stream: cannot answer the sender: "
                         f"{exc.strerror or exc}") from None


def send_ended(sock: socket.socket) -> None:
    """Say the run ended before it moved (the stream then ends)."""
    sock.sendall(FRAME_HEAD.pack(FRAME_MAGIC, KIND_ENDED, 0))


def recv_exact(sock: socket.socket, n: int, what: str) -> bytes:
    """Exactly n bytes; ImageError when the stream ends or stalls first."""
    buf = bytearray()
    while len(buf) < n:
        chunk = _recv(sock, min(CHUNK, n - len(buf)), what)
        buf += chunk
    return bytes(buf)


def _recv(sock: socket.socket, n: int, what: str) -> bytes:
    try:
        chunk = sock.recv(n)
    except TimeoutError:
        raise ImageError(f"migration stream: nothing received for {sock.gettimeout():g} s "
                         f"inside {what}") from None
    except OSError as exc:
        raise ImageError(f"migration stream: {what}: {exc.strerror or exc}") from None
    if not chunk:
        raise ImageError(f"migration stream: the sender closed the connection inside {what}")
    return chunk


def recv_head(sock: socket.socket, n: int) -> tuple[int, int]:
    """(kind, size) of the n-th frame, checked."""
    magic, kind, size = FRAME_HEAD.unpack(recv_exact(sock, FRAME_HEAD.size,
                                                     f"the head of image {n}"))
    if magic != FRAME_MAGIC or kind not in (KIND_ROUND, KIND_FINAL, KIND_ENDED) or \
            (kind == KIND_ENDED and size):
        raise ImageError(f"migration stream: image {n} has a malformed frame head")
    if n > MAX_IMAGES:
        raise ImageError(f"migration stream: more than {MAX_IMAGES} images")
    if size > MAX_IMAGE_BYTES:
        raise ImageError(f"migration stream: image {n} claims {size} bytes (at most "
                         f"{MAX_IMAGE_BYTES})")
    return kind, size


def recv_file(sock: socket.socket, dir_fd: int, name: str, size: int, what: str) -> None:
    """Receive size bytes into a new file name beneath dir_fd."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600,
                 dir_fd=dir_fd)
    try:
        left = size
        while left:
            chunk = _recv(sock, min(CHUNK, left), what)
            os.write(fd, chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
