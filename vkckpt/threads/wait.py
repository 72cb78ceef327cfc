"""Sleeping: wait queues and the Block request a syscall handler raises to sleep."""

from __future__ import annotations

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.threads.thread import Thread


class WaitQueue:
    """Threads asleep on one event, woken in FIFO order."""

    def __init__(self, key: tuple) -> None:
        self.key = key  # stable identity, saved in images: ("futex", ...), ("pipe-read", id) ...
        self.waiters: list[Thread] = []

    @property
    def name(self) -> str:
        return " ".join(str(k) for k in self.key)

    def __len__(self) -> int:
        return len(self.waiters)

    def wake_all(self) -> None:
        """Wake every sleeper, in FIFO order, so each re-checks its condition."""
        for t in list(self.waiters):
            t.wake()

    notify = wake_all  # the event a file signals to its queue (gVisor's Queue.Notify)


class Block(Exception):  # noqa: N818 - a control-flow request, not an error
    """Raised by a syscall handler: put the calling thread to sleep on `queue`.

    When woken with a result the syscall returns it; woken without one, the handler runs again
    with the same arguments (so it re-checks its condition). `deadline` is in virtual ns;
    reaching it returns `timeout_result`. `interruptible` lets signals end the sleep with EINTR
    (or restart the call under SA_RESTART when `restartable`).
    """

    def __init__(self, queue: WaitQueue | None, deadline: int | None = None,
                 timeout_result: int = 0, restartable: bool = True) -> None:
        super().__init__()
        self.queue = queue
        self.deadline = deadline
        self.timeout_result = timeout_result
        self.restartable = restartable
