"""The client side of the control socket (`vkckpt freeze --pid`): ask, and check the answer.

The server must run as the caller's effective uid or as root (SO_PEERCRED), and its
answer must be one line of at most MAX_LINE bytes, received within the timeout, holding
exactly the fields of an answer (control_wire.py).  Anything else is a VkError.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
import time

from vkckpt.ckpt import control_wire as W
from vkckpt.ckpt.control_dir import socket_path
from vkckpt.errors import VkError


def request_freeze(host_pid: int, output: str, stop: bool, incremental: bool,
                   timeout: float) -> dict:
    """Ask the vkckpt with host_pid to freeze into output; its checked answer."""
    path = socket_path(host_pid)
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise VkError(f"{path} is not a socket: no vkckpt with host pid {host_pid} listens")
    except OSError:
        raise VkError(f"no vkckpt with host pid {host_pid} is listening ({path} "
                      f"missing)") from None
    out = os.path.abspath(output)
    try:
        out.encode("utf-8")
    except UnicodeEncodeError:
        raise VkError(f"{output!r}: the image path must be valid UTF-8") from None
    request = W.encode({"op": "freeze", "output": out, "stop": stop,
                        "incremental": incremental})
    deadline = time.monotonic() + timeout
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(path)
        _check_server(s, path)
        try:
            s.sendall(request)
        except BrokenPipeError:
            pass  # a server that refused us at once has left its answer to read
        line = _read_line(s, deadline)
    except TimeoutError:
        raise VkError(f"vkckpt {host_pid} did not answer within {timeout:g} s") from None
    except OSError as exc:
        raise VkError(f"vkckpt {host_pid} did not answer: {exc.strerror or exc}") from None
    finally:
        s.close()
    try:
        return W.check_answer(W.decode(line))
    except W.WireError as exc:
        raise VkError(f"vkckpt {host_pid} sent a malformed answer ({exc})") from None


def _check_server(s: socket.socket, path: str) -> None:
    ucred = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", ucred)
    if uid not in (os.geteuid(), 0):
        raise VkError(f"{path} is served by uid {uid}, neither you (uid {os.geteuid()}) "
                      f"nor root: not trusting it (check VKCKPT_CONTROL_DIR)")


def _read_line(s: socket.socket, deadline: float) -> bytes:
    """The one answer line, without its newline; VkError if too long, late or not alone."""
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        s.settimeout(left)
        chunk = s.recv(4096)
        if not chunk:
            raise VkError("the vkckpt closed the connection without a complete answer")
        data += chunk
        if len(data) > W.MAX_LINE + 1:
            raise VkError(f"the vkckpt sent an over-long answer (more than {W.MAX_LINE} "
                          f"bytes)")
    line, _, rest = data.partition(b"\n")
    if rest:
        raise VkError("the vkckpt sent more than one answer")
    return line


def shown(text: str, limit: int = 300) -> str:
    """A string from the server made safe for one terminal line (control characters
    escaped, at most limit characters)."""
    safe = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)
    return safe if len(safe) <= limit else safe[:limit] + "..."
