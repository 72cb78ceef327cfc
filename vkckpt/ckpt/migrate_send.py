"""Implement live migration's sending side: pre-copy rounds, the final stop, the handover.

Round 1 is a full image, each further round an incremental image on the previous one (the
exact dirty tracking of pages.py), written at a scheduling point into a private temporary
directory and sent by a helper thread while the guests run on; a round changes nothing the
guests see (it is a freeze without SIGCKPT, and stopping at a scheduling point never
changes the schedule).  The receiver lays each round into memory as it lands and answers
it (migrate_wire.ACK_APPLIED); the guests run on for at most ROUND_TICKS blocks while a
round is sent and applied, then wait for it: a bound on how far they can run ahead of the
stream, and at the final stop the receiver has applied every round.  Pre-copy ends when a
round holds at most SMALL_ROUND pages or after MAX_ROUNDS rounds; then the normal freeze
protocol makes the final image (only the pages written since the last round, and the
kernel state), which is sent, and the run may end once the receiver says it resumed.

A checkpoint(2) a guest calls during pre-copy is served here, as in a run never moved
(`serve`: its image is written where the guest asked and the call returns 0), and
pre-copy goes on; without `serve` (freeze --to), or when one is asked during the final
stop, the migration fails (MigrationError) and the run goes on here, where the run loop
serves it: a moved caller would sleep forever.  A run that ends during pre-copy (or
before --migrate-at, see `mover`) tells the receiver so (migrate_wire.KIND_ENDED):
nothing is moved.
"""

from __future__ import annotations

import os
import queue
import shutil
import socket
import tempfile
import threading
import time

from vkckpt.ckpt import migrate_wire as W
from vkckpt.ckpt.chain import ImageChain
from vkckpt.ckpt.freeze import freeze, serve_guest_request
from vkckpt.errors import ImageError, VkError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from vkckpt.ckpt.freeze import FreezePlan
    from vkckpt.ckpt.snapshot import FreezeResult
    from vkckpt.kernel import VKernel

MAX_ROUNDS = 8       # pre-copy rounds before the final stop, at most
SMALL_ROUND = 256    # pages: a round this small ends pre-copy
ROUND_TICKS = 500_000  # blocks the guests run on, at most, while one round is sent
ACK_TIMEOUT = 300.0  # seconds the receiver may take to check the stream and resume


class MigrationError(VkError):
    """The migration failed; the vkernel is intact and may run on here."""


class RunEnded(MigrationError):
    """The run ended before it could move; the receiver was told (when it could be)."""


class Sender:
    """One connection to a receiver and the helper thread that sends images in order."""

    def __init__(self, target: str, key: bytes | None, connect_timeout: float = 30.0) -> None:
        try:
            host, port = W.parse_target(target)
        except ValueError as exc:
            raise MigrationError(str(exc)) from None
        self.target = target
        try:
            self.sock = socket.create_connection((host, port), timeout=connect_timeout)
        except OSError as exc:
            raise MigrationError(f"cannot connect to {target}: {exc.strerror or exc}") from None
        self.sock.settimeout(ACK_TIMEOUT)
        W.no_delay(self.sock)
        self.dir = tempfile.mkdtemp(prefix="vkckpt-migrate-")
        self.dir_fd = os.open(self.dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.chain = ImageChain(key)
        self.n = 0
        self.error: BaseException | None = None
        self.bytes_sent = 0
        self.q: queue.Queue = queue.Queue()
        self.idle = threading.Event()
        self.idle.set()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.sock.sendall(W.GREETING)
        self.thread.start()

    def next_path(self) -> str:
        self.n += 1
        return os.path.join(self.dir, W.image_name(self.n))

    def post(self, res: FreezeResult, kind: int) -> None:
        """Send res's image once it is durable (on the helper thread)."""
        self.idle.clear()
        self.q.put((res, kind))

    def _pump(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                return
            res, kind = item
            try:
                if self.error is None:
                    res.wait()
                    self.bytes_sent += W.send_image(self.sock, res.path, kind)
                    if kind == W.KIND_ROUND:
                        self._applied()
                os.unlink(res.path)  # the next image needs only the chain's page bases
            except (OSError, ImageError) as exc:
                self.error = exc
            finally:
                if self.q.empty():
                    self.idle.set()

    def _applied(self) -> None:
        """Wait for the receiver to have applied the round just sent."""
        line = W.recv_exact(self.sock, W.ACK_SIZE, "the receiver's answer")
        if line != W.ACK_APPLIED:
            raise ImageError(f"{self.target} refused the stream (see its error)")

    def end(self) -> None:
        """Tell the receiver the run ended before it moved (after drain)."""
        try:
            W.send_ended(self.sock)
        except OSError:
            pass  # it is gone: it resumes nothing either way

    def drain(self) -> None:
        """Wait until every posted image is sent; MigrationError if one could not be."""
        self.idle.wait()
        if self.error is not None:
            raise MigrationError(f"sending to {self.target} failed: {self.error}")

    def await_ack(self) -> None:
        try:
            line = W.recv_exact(self.sock, W.ACK_SIZE, "the receiver's answer")
        except ImageError as exc:
            raise MigrationError(f"{self.target} did not acknowledge: {exc}") from None
        if line != W.ACK_RESUMED:
            raise MigrationError(f"{self.target} refused the stream (see its error)")

    def close(self) -> None:
        self.q.put(None)
        self.thread.join(timeout=ACK_TIMEOUT)
        self.sock.close()
        os.close(self.dir_fd)
        shutil.rmtree(self.dir, ignore_errors=True)


class MigrationStats:
    """What a migration did: pages per round, total time and downtime (seconds)."""

    def __init__(self) -> None:
        self.rounds: list[int] = []
        self.total = 0.0
        self.downtime = 0.0
        self.bytes = 0
        self.ticks = 0
        self.image_id = ""  # the final image's, in hex

    def as_dict(self) -> dict:
        return {"rounds": len(self.rounds), "pages_per_round": list(self.rounds),
                "bytes": self.bytes, "total_ms": round(self.total * 1e3, 3),
                "downtime_ms": round(self.downtime * 1e3, 3), "ticks": self.ticks}

    def line(self, target: str) -> str:
        return (f"vkckpt: migrated to {target} at tick {self.ticks}: {len(self.rounds)} "
                f"rounds (pages {', '.join(map(str, self.rounds))}), {self.bytes} bytes, "
                f"total {self.total * 1e3:.1f} ms, downtime {self.downtime * 1e3:.1f} ms")


def migrate(k: VKernel, target: str, key: bytes | None, codec: str = "none",
            round_ticks: int = ROUND_TICKS,
            serve: Callable[[VKernel], None] | None = None) -> MigrationStats:
    """Move k (at a scheduling point) to the receiver at target; on return the receiver has
    resumed it and k must not run on (round_ticks: see ROUND_TICKS; serve: serves a guest's
    checkpoint(2) during pre-copy, see the module docstring).  MigrationError when it
    failed: k may run on (the guests are at a scheduling point, as after a freeze that
    continues); RunEnded when the run ended first."""
    from vkckpt.ckpt.snapshot import write_image

    st = MigrationStats()
    t0 = time.monotonic()
    s = Sender(target, key)
    try:
        incremental = False
        while len(st.rounds) < MAX_ROUNDS:
            res = write_image(k, s.next_path(), chain=s.chain, incremental=incremental,
                              codec=codec, background=True, dir_fd=s.dir_fd, durable=False)
            st.rounds.append(res.pages)
            s.post(res, W.KIND_ROUND)
            incremental = True
            if len(st.rounds) > 1 and res.pages <= SMALL_ROUND:
                break
            end = k.sched.ticks + round_ticks
            while k.run(until_ticks=end, on_schedule_point=lambda _k: s.idle.is_set()) \
                    is None and k.host_request is not None and serve is not None:
                serve(k)  # checkpoint(2): served here, the round goes on
            if k.exit_status is not None or k.host_request is not None:
                break  # the run ended (or asked for a checkpoint no one serves): stop now
            s.drain()
        s.drain()
        if k.exit_status is not None:
            s.end()
            raise RunEnded(f"the run finished at tick {k.sched.ticks} during pre-copy; "
                           f"nothing was moved to {target}")
        _no_request(k)
        stop = time.monotonic()
        res = freeze(k, s.next_path(), chain=s.chain, incremental=True, codec=codec,
                     background=True, dir_fd=s.dir_fd, durable=False)  # sent, then removed
        if k.host_request is not None:  # asked during the SIGCKPT handlers of the stop
            res.wait()
            _no_request(k)
        st.rounds.append(res.pages)
        st.image_id = res.header.image_id.hex()
        s.post(res, W.KIND_FINAL)
        s.drain()
        s.await_ack()
        end = time.monotonic()
        st.downtime, st.total = end - stop, end - t0
        st.bytes, st.ticks = s.bytes_sent, k.sched.ticks
    finally:
        s.close()
    k.log(st.line(target))
    return st


def _no_request(k: VKernel) -> None:
    """MigrationError while a guest's checkpoint(2) waits: moved, its caller would sleep
    forever (nothing serves it over there); the run goes on here and serves it."""
    if k.host_request is not None:
        raise MigrationError("a guest's checkpoint(2) is waiting to be served; it is "
                             "served here and the run goes on here")


def mover(plan: FreezePlan, target: str) -> Callable[[VKernel], bool]:
    """plan.mover for --migrate-at: move the run to target, its statistics into
    plan.migrated; False when that failed and the run goes on here (the error is logged)."""

    def move(k: VKernel) -> bool:
        if k.exit_status is not None:
            told = tell_ended(target)
            k.log(f"vkckpt: the run finished at tick {k.sched.ticks} before --migrate-at; "
                  f"nothing was moved to {target} ({told})")
            return False
        try:
            plan.migrated = migrate(k, target, plan.chain.key, plan.codec,
                                    serve=lambda k: serve_guest_request(k, plan)).as_dict()
        except RunEnded as exc:
            k.log(f"vkckpt: {exc}")
            return False
        except (MigrationError, ImageError, OSError) as exc:
            k.log(f"vkckpt: migration to {target} failed, the run goes on here: {exc}")
            return False
        return True
    return move


def tell_ended(target: str, timeout: float = 10.0) -> str:
    """Connect to target only to say the run ended before it moved; what happened, for the
    log ("told it" or why not)."""
    try:
        host, port = W.parse_target(target)
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(W.GREETING)
            W.send_ended(sock)
    except (OSError, ValueError) as exc:
        return f"could not tell it: {getattr(exc, 'strerror', None) or exc}"
    return "told it"
