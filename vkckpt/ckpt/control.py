"""Host-side freeze requests to a running vkckpt: a control socket and SIGUSR1.

`vkckpt run` listens on a Unix socket named after its host pid in a private directory
(control_dir.py); `vkckpt freeze --pid PID` connects, asks for a freeze and waits for the
answer (control_client.py).  Requests are served at the next scheduling point, so they
never interrupt a guest instruction.

Threads: one accept thread, which checks each peer's credentials, and one short-lived
thread per accepted connection that reads its request within REQUEST_TIMEOUT.  Valid
requests wait in `requests` (a deque: append and popleft are atomic, so the SIGUSR1
handler may append without a lock) until the run loop serves them.  No error of a peer
reaches the run.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable

from vkckpt.ckpt import control_dir as D
from vkckpt.ckpt import control_wire as W
from vkckpt.ckpt.chain import ImageChain
from vkckpt.ckpt.freeze import freeze
from vkckpt.errors import VkError
from vkckpt.host import wake
from vkckpt.record import Record

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel

socket_path = D.socket_path  # re-exported: where the vkckpt with a host pid listens

REQUEST_TIMEOUT = 2.0   # seconds a connection has to send its whole request
REPLY_TIMEOUT = 1.0     # seconds an answer may wait for the peer's buffer
MAX_CONNECTIONS = 32    # connections being read at once; more get a busy answer
MAX_PENDING = 16        # valid requests waiting for a scheduling point
_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class _Request(Record):
    """One valid freeze request and the connection to answer (None for SIGUSR1)."""

    __slots__ = ("body", "conn")

    def __init__(self, body: dict, conn: socket.socket | None) -> None:
        self.body = body
        self.conn = conn


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class ControlServer:
    """Accepts freeze requests in background threads; the run loop serves them.

    When the control directory cannot be trusted the server logs one line and does not
    listen (`path` is None); SIGUSR1 still works.  `failed_signal_freezes` counts SIGUSR1
    freezes that failed (each logged), for the run's exit status."""

    def __init__(self, default_output: str | None, incremental: bool = False,
                 codec: str = "none", log: Callable[[str], None] = _stderr,
                 chain: ImageChain | None = None) -> None:
        self.default_output = default_output or f"vkckpt-{os.getpid()}.img"
        self.chain = ImageChain() if chain is None else chain  # the run's images (and key)
        self.incremental = incremental
        self.codec = codec
        self.log = log
        self.requests: deque[_Request] = deque()
        self.failed_signal_freezes = 0
        self.migrated: dict | None = None  # statistics of a `freeze --to` that moved the run
        self.path: str | None = None
        self.sock: socket.socket | None = None
        self._dir_fd, self._name = -1, ""  # the verified directory and our name in it
        self._closing = False
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._refused_uids: set[int] = set()
        wake.fileno()  # made now: the SIGUSR1 handler only writes to it
        self._old_usr1 = signal.signal(signal.SIGUSR1, self._on_usr1)
        try:
            self._listen()
        except (OSError, VkError) as exc:
            msg = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.log(f"vkckpt: control socket disabled: {msg}; `vkckpt freeze --pid` will "
                     f"not reach this run (SIGUSR1 still freezes it)")
            return
        threading.Thread(target=self._accept, name="vkckpt-control", daemon=True).start()

    def _listen(self) -> None:
        where = D.control_dir()
        fd = D.open_private_dir(where)
        try:
            D.remove_dead_sockets(fd)  # silently: they are ours, and their runs are gone
            name = f"{os.getpid()}{D.SUFFIX}"
            sock = D.bind_private(fd, where, name)
        except BaseException:
            os.close(fd)
            raise
        try:
            sock.settimeout(1.0)  # so the loop sees _closing even if shutdown is missed
            sock.listen(16)
        except OSError:
            sock.close()
            os.unlink(name, dir_fd=fd)
            os.close(fd)
            raise
        self.sock, self._dir_fd, self._name = sock, fd, name
        self.path = os.path.join(where, name)

    def _on_usr1(self, signum: int, frame: object) -> None:
        self.requests.append(_Request({"op": "freeze"}, None))
        wake.wake()  # an idle run waiting on published ports looks at once

    # -- the accept thread and the connection threads ------------------------------------------
    def _accept(self) -> None:
        """Accept until close(); every error is survived (resource errors with a back-off)."""
        backoff, starved = 0.01, False
        while not self._closing:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if self._closing:
                    return
                if exc.errno in _RESOURCE_ERRNOS:
                    if not starved:
                        self.log(f"vkckpt: control socket: out of file descriptors or memory "
                                 f"({exc.strerror}); retrying")
                    starved = True
                time.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            except Exception:  # noqa: BLE001 - the accept thread must never end early
                time.sleep(backoff)
                continue
            backoff, starved = 0.01, False
            try:
                self._start_connection(conn)
            except Exception:  # noqa: BLE001 - drop that connection, keep accepting
                conn.close()

    def _start_connection(self, conn: socket.socket) -> None:
        try:
            self._check_peer(conn)
        except (OSError, W.WireError) as exc:
            _answer(conn, {"ok": False, "error": f"bad request: {W.printable(exc)}"})
            return
        if not self._slots.acquire(blocking=False):
            _answer(conn, {"ok": False, "error": "busy: too many connections, try again"})
            return
        try:
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()
        except Exception:  # noqa: BLE001 - e.g. "can't start new thread"
            self._slots.release()
            _answer(conn, {"ok": False, "error": "busy: cannot start a thread, try again"})

    def _connection(self, conn: socket.socket) -> None:
        """Read one request line within REQUEST_TIMEOUT and queue it."""
        try:
            body = self._read_request(conn)
        except (OSError, W.WireError) as exc:
            _answer(conn, {"ok": False, "error": f"bad request: {W.printable(exc)}"})
            return
        except Exception as exc:  # noqa: BLE001 - a peer never ends this thread with a trace
            _answer(conn, {"ok": False, "error": f"bad request: {type(exc).__name__}"})
            return
        finally:
            self._slots.release()
        if len(self.requests) >= MAX_PENDING:
            _answer(conn, {"ok": False, "error": "busy: too many pending requests, try again"})
            return
        self.requests.append(_Request(body, conn))
        wake.wake()

    def _check_peer(self, conn: socket.socket) -> None:
        """WireError unless the peer runs as our effective uid or as root (SO_PEERCRED);
        checked before the peer gets a thread, so other users cannot take the slots."""
        pid, uid = W.peer_uid(conn)
        if uid not in (os.geteuid(), 0):
            if uid not in self._refused_uids and len(self._refused_uids) < 64:
                self._refused_uids.add(uid)
                self.log(f"vkckpt: control socket: refused a request from uid {uid} "
                         f"(pid {pid}); only uid {os.geteuid()} and root may ask")
            raise W.WireError(f"uid {uid} may not control this run (only uid "
                              f"{os.geteuid()} and root)")

    def _read_request(self, conn: socket.socket) -> dict:
        try:
            line = W.read_line(conn, time.monotonic() + REQUEST_TIMEOUT, "request")
        except TimeoutError:
            raise W.WireError(f"no complete request within {REQUEST_TIMEOUT:g} s") from None
        return W.check_request(W.decode(line))

    # -- the run loop's side ------------------------------------------------------------------
    def pending(self) -> bool:
        return bool(self.requests)

    def serve(self, k: VKernel) -> bool:
        """Serve one request at a scheduling point; False when it asked the run to stop."""
        req = self.requests.popleft()
        body = req.body
        if body.get("to"):
            return self._migrate(k, req)
        out = body.get("output") or self.default_output
        try:
            res = freeze(k, out, chain=self.chain,
                         incremental=body.get("incremental", self.incremental), codec=self.codec)
            answer = {"ok": True, "image": os.path.abspath(res.path), "ticks": k.sched.ticks,
                      "image_id": res.header.image_id.hex(), "pages": res.pages}
            stop = body.get("stop", False)
        except (VkError, OSError, ValueError) as exc:
            answer, stop = {"ok": False, "error": W.printable(exc)}, False
            if req.conn is None:
                self.failed_signal_freezes += 1
                self.log(f"vkckpt: freeze requested by SIGUSR1 into {W.printable(out)} "
                         f"failed: {answer['error']}")
        if req.conn is not None:
            _answer(req.conn, answer)
        return not stop

    def _migrate(self, k: VKernel, req: _Request) -> bool:
        """Serve `vkckpt freeze --to`: move the run (False: it moved and must stop here)."""
        from vkckpt.ckpt.migrate_send import MigrationError, migrate

        try:
            st = migrate(k, req.body["to"], self.chain.key, self.codec)
            self.migrated = st.as_dict()
            answer = {"ok": True, "image": f"tcp:{req.body['to']}", "ticks": st.ticks,
                      "image_id": st.image_id, "pages": sum(st.rounds)}
        except (MigrationError, VkError, OSError) as exc:
            self.log(f"vkckpt: migration to {W.printable(req.body['to'])} failed, the run "
                     f"goes on here: {W.printable(exc)}")
            answer, st = {"ok": False, "error": W.printable(exc)}, None
        if req.conn is not None:
            _answer(req.conn, answer)
        return st is None

    def close(self) -> None:
        signal.signal(signal.SIGUSR1, self._old_usr1)
        self._closing = True
        while self.requests:
            req = self.requests.popleft()
            if req.conn is not None:
                _answer(req.conn, {"ok": False, "error": "the run ended before the freeze"})
        if self.sock is None:
            return
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept thread
        except OSError:
            pass
        self.sock.close()
        self.sock = None
        try:
            os.unlink(self._name, dir_fd=self._dir_fd)
        except OSError:
            pass
        os.close(self._dir_fd)


def _answer(conn: socket.socket, body: dict) -> None:
    """Send one answer line and close; a peer that does not read it is dropped."""
    try:
        conn.settimeout(REPLY_TIMEOUT)
        conn.sendall(W.encode(body))
    except OSError:
        pass
    finally:
        conn.close()
