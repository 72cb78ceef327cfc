"""Host-side freeze requests to a running vkckpt: a control socket and SIGUSR1.

`vkckpt run` listens on a Unix socket named after its host pid; `vkckpt freeze --pid PID`
connects, asks for a freeze and waits for the answer.  Requests are served at the next
scheduling point, so they never interrupt a guest instruction.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import tempfile
import threading

from vkckpt.ckpt.freeze import freeze
from vkckpt.errors import ImageError, VkError
from vkckpt.record import Record

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel

MAX_REQUEST = 64 << 10


def socket_path(host_pid: int) -> str:
    """Where the vkckpt with host pid host_pid listens."""
    base = os.environ.get("VKCKPT_CONTROL_DIR") or os.path.join(tempfile.gettempdir(),
                                                                f"vkckpt-{os.getuid()}")
    return os.path.join(base, f"{host_pid}.sock")


class _Request(Record):
    """One freeze request: its JSON body and the connection to answer (None for SIGUSR1)."""

    __slots__ = ("body", "conn")

    def __init__(self, body: dict, conn: socket.socket | None) -> None:
        self.body = body
        self.conn = conn


class ControlServer:
    """Accepts freeze requests in a background thread; the run loop serves them."""

    def __init__(self, default_output: str | None, incremental: bool = False,
                 codec: str = "none") -> None:
        self.default_output = default_output or f"vkckpt-{os.getpid()}.img"
        self.incremental = incremental
        self.codec = codec
        self.requests: queue.Queue[_Request] = queue.Queue()
        self.path = socket_path(os.getpid())
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(4)
        threading.Thread(target=self._accept, daemon=True).start()
        self._old_usr1 = signal.signal(signal.SIGUSR1, self._on_usr1)

    def _on_usr1(self, signum: int, frame: object) -> None:
        self.requests.put(_Request({"op": "freeze"}, None))

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                conn.settimeout(5)
                data = b""
                while not data.endswith(b"\n") and len(data) < MAX_REQUEST:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                body = json.loads(data)
                if not isinstance(body, dict):
                    raise ValueError("request must be a JSON object")
            except (OSError, ValueError) as exc:
                _reply(conn, {"ok": False, "error": f"bad request: {exc}"})
                conn.close()
                continue
            self.requests.put(_Request(body, conn))

    def pending(self) -> bool:
        return not self.requests.empty()

    def serve(self, k: VKernel) -> bool:
        """Serve one request; False when it asked the run to stop."""
        req = self.requests.get_nowait()
        body = req.body
        stop = bool(body.get("stop"))
        try:
            if body.get("op") != "freeze":
                raise VkError(f"unknown operation {body.get('op')!r}")
            out = body.get("output") or self.default_output
            res = freeze(k, str(out), incremental=bool(body.get("incremental",
                                                                  self.incremental)),
                         codec=str(body.get("codec", self.codec)))
            answer = {"ok": True, "image": res.path, "ticks": k.sched.ticks,
                      "image_id": res.header.image_id.hex(), "pages": res.pages}
        except (VkError, ImageError, OSError) as exc:
            answer, stop = {"ok": False, "error": str(exc)}, False
        if req.conn is not None:
            _reply(req.conn, answer)
            req.conn.close()
        return not stop

    def close(self) -> None:
        signal.signal(signal.SIGUSR1, self._old_usr1)
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def _reply(conn: socket.socket, body: dict) -> None:
    try:
        conn.sendall(json.dumps(body).encode() + b"\n")
    except OSError:
        pass


def request_freeze(host_pid: int, output: str, stop: bool, incremental: bool,
                   timeout: float) -> dict:
    """Client side of `vkckpt freeze`: ask the vkckpt with host_pid to freeze."""
    path = socket_path(host_pid)
    if not os.path.exists(path):
        raise VkError(f"no vkckpt with host pid {host_pid} is listening ({path} missing)")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(json.dumps({"op": "freeze", "output": os.path.abspath(output), "stop": stop,
                              "incremental": incremental}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except (OSError, TimeoutError) as exc:
        raise VkError(f"vkckpt {host_pid} did not answer: {exc}") from None
    finally:
        s.close()
    try:
        return json.loads(data)
    except ValueError:
        raise VkError(f"vkckpt {host_pid} sent a malformed answer") from None
