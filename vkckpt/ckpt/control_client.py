"""The client side of the control socket (`vkckpt freeze --pid`): ask, and check the answer.

The server must run as the caller's effective uid or as root (SO_PEERCRED), and its
answer must be one line of at most MAX_LINE bytes, received within the timeout, holding
exactly the fields of an answer (control_wire.py).  Anything else is a VkError.
"""

from __future__ import annotations

import os
import socket
import stat
import time

from vkckpt.ckpt import control_wire as W
from vkckpt.ckpt.control_dir import socket_path
from vkckpt.errors import VkError


def request_freeze(host_pid: int, output: str | None, stop: bool, incremental: bool,
                   timeout: float, to: str | None = None) -> dict:
    """Ask the vkckpt with host_pid to freeze into output (or migrate to `to`, HOST:PORT);
    its checked answer."""
    path = socket_path(host_pid)
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise VkError(f"{path} is not a socket: no vkckpt with host pid {host_pid} listens")
    except OSError:
        raise VkError(f"no vkckpt with host pid {host_pid} is listening ({path} "
                      f"missing)") from None
    body = {"op": "freeze", "stop": stop, "incremental": incremental}
    if to is not None:
        body["to"] = to
    else:
        body["output"] = os.path.abspath(output)
    try:
        (to if to is not None else body["output"]).encode("utf-8")
        W.check_request(body)
    except UnicodeEncodeError:
        raise VkError(f"{output or to!r}: must be valid UTF-8") from None
    except W.WireError as exc:
        raise VkError(f"{output or to!r}: not a valid request ({exc})") from None
    request = W.encode(body)
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
        line = W.read_line(s, deadline, "answer")
    except W.WireError as exc:
        raise VkError(f"vkckpt {host_pid} sent a malformed answer ({exc})") from None
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
    _, uid = W.peer_uid(s)
    if uid not in (os.geteuid(), 0):
        raise VkError(f"{path} is served by uid {uid}, neither you (uid {os.geteuid()}) "
                      f"nor root: not trusting it (check VKCKPT_CONTROL_DIR)")


def shown(text: str) -> str:
    """A string from the server made safe for one terminal line (at most 300 characters)."""
    return W.printable(text, 300)
