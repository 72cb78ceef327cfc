"""Console output to the host: a queue drained by a helper thread, so no reader stalls us.

Guest writes to stdout/stderr (and the vkernel's own log lines) go, in the order they were
made, to one FIFO of (descriptor, bytes).  A write that finds the queue empty and the host
descriptor ready for PIPE_BUF bytes is made at once (it cannot block); otherwise it is queued
and a helper thread writes it.  The guest's write always succeeds in full, so what a guest
sees never depends on how fast the host reads; the scheduler stops running guests while
more than BACKLOG bytes wait (kernel.py), and keeps serving freeze requests meanwhile.

Output queued when a freeze is taken belongs to the run that made it: that vkckpt process
writes it before it exits; the image does not hold it (the thawed run starts after it).
"""

from __future__ import annotations

import os
import select
from collections import deque

from vkckpt.abi.limits import PIPE_BUF

#: Queued bytes beyond which guests stop running until the host reads.
BACKLOG = 1 << 20
#: Console bytes one time slice may write before it ends early (a guest-determined point),
#: so at most BACKLOG + SLICE_OUT (plus one write) is ever queued.
SLICE_OUT = 1 << 20
#: What the queue may cost the vkernel's memory account (charged once, at start).
COST = BACKLOG + SLICE_OUT


class HostOut:
    """The FIFO of console output to host descriptors and the thread that drains it.

    Invariant: `pending` is the byte count of `chunks`; the drain thread runs while chunks
    is not empty and ends when it is (so an idle vkernel holds no thread and the
    interpreter's exit waits for queued output, as a blocking write did)."""

    def __init__(self) -> None:
        self.cond = None  # a threading.Condition once something is queued (late import:
        self.thread = None  # a run that never queues starts no thread and needs no module)
        self.chunks: deque[tuple[int, bytes]] = deque()
        self.pending = 0
        self.broken: set[int] = set()  # descriptors whose reader went away (EPIPE, EIO)

    def write(self, fd: int, data: bytes) -> None:
        """Queue data for fd (or write it now when that cannot block).

        Only the vkernel's thread calls this; with no drain thread running the queue is
        empty and nobody else touches it, so the direct write needs no lock."""
        if not data or fd in self.broken:
            return
        if self.thread is None and len(data) <= PIPE_BUF and _ready(fd):
            self._write_all(fd, data)
            return
        if self.cond is None:
            import threading
            self.cond = threading.Condition()
        with self.cond:
            self.chunks.append((fd, bytes(data)))
            self.pending += len(data)
            if self.thread is None:
                import threading
                self.thread = threading.Thread(target=self._drain, name="vkckpt-console")
                self.thread.start()

    def backlogged(self) -> bool:
        """More than BACKLOG bytes wait for the host."""
        return self.pending > BACKLOG

    def wait(self, limit: int, timeout: float | None) -> bool:
        """Wait until at most limit bytes are queued (or timeout); True if they are."""
        if self.cond is None:
            return True
        with self.cond:
            return self.cond.wait_for(lambda: self.pending <= limit, timeout)

    def _drain(self) -> None:
        while True:
            with self.cond:
                if not self.chunks:
                    self.thread = None
                    self.cond.notify_all()
                    return
                fd, data = self.chunks[0]
            self._write_all(fd, data)
            with self.cond:
                self.chunks.popleft()
                self.pending -= len(data)
                self.cond.notify_all()

    def _write_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view and fd not in self.broken:
            try:
                n = os.write(fd, view)
            except InterruptedError:
                continue
            except OSError:
                self.broken.add(fd)  # like the host kernel, drop what nobody can read
                return
            view = view[n:]


def _ready(fd: int) -> bool:
    """fd takes PIPE_BUF bytes without blocking (Linux's POLLOUT for pipes and sockets)."""
    try:
        p = select.poll()
        p.register(fd, select.POLLOUT)
        return any(ev & select.POLLOUT for _, ev in p.poll(0))
    except (OSError, ValueError):
        return False
