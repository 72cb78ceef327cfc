"""Sleeping: wait queues and the Block request a syscall handler raises to sleep.

A queue also holds *watchers*: callbacks run with the event mask at each notify, instead of
a thread being woken (Linux's wait-queue entries with a wake function, as epoll's
ep_poll_callback).  Watchers are transient: their owners (epoll items) re-register them
when thawed.
"""

from __future__ import annotations

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable

    from vkckpt.threads.thread import Thread


class WaitQueue:
    """Threads asleep on one event, woken in FIFO order."""

    def __init__(self, key: tuple) -> None:
        self.key = key  # stable identity, saved in images: ("futex", ...), ("pipe-read", id) ...
        self.waiters: list[Thread] = []
        self.watchers: list[Callable[[int], None]] = []  # newest first, as add_wait_queue

    @property
    def name(self) -> str:
        return " ".join(str(k) for k in self.key)

    def __len__(self) -> int:
        return len(self.waiters)

    def wake_all(self) -> None:
        """Wake every sleeper, in FIFO order, so each re-checks its condition."""
        for t in list(self.waiters):
            t.wake()

    def notify(self, mask: int = 0) -> None:
        """The event a file signals to its queue (gVisor's Queue.Notify): wake the sleepers,
        then run each watcher with the event mask (0: any event)."""
        self.wake_all()
        for cb in list(self.watchers):
            cb(mask)

    def watch(self, cb: Callable[[int], None]) -> None:
        """Run cb(mask) at each notify; the newest watcher runs first (Linux's
        add_wait_queue puts an entry at the head)."""
        self.watchers.insert(0, cb)

    def unwatch(self, cb: Callable[[int], None]) -> None:
        """Stop running cb (a no-op when it is not watching)."""
        if cb in self.watchers:
            self.watchers.remove(cb)


class Block(Exception):  # noqa: N818 - a control-flow request, not an error
    """Raised by a syscall handler: put the calling thread to sleep on `queue`.

    When woken with a result the syscall returns it; woken without one, the handler runs again
    with the same arguments (so it re-checks its condition). `deadline` is in virtual ns;
    reaching it returns `timeout_result`, or re-runs the handler when that is None (a call
    that has results to write at its timeout: poll's revents, select's sets). Signals end
    the sleep with EINTR (or restart the call under SA_RESTART when `restartable`).
    """

    def __init__(self, queue: WaitQueue | None, deadline: int | None = None,
                 timeout_result: int | None = 0, restartable: bool = True) -> None:
        super().__init__()
        self.queue = queue
        self.deadline = deadline
        self.timeout_result = timeout_result
        self.restartable = restartable
