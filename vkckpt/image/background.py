"""The writer's helper threads: an in-order hasher and a call run in the background.

threading and queue are imported only when one starts: thawing never writes an image, and
importing them costs milliseconds of its start-up (tests/test_startup.py)."""

from __future__ import annotations

from collections.abc import Callable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class _Hasher:
    """Feeds a hash on a helper thread, in order; `drain` waits until it has caught up."""

    def __init__(self, h: Any) -> None:
        import queue  # late, like threading: thawing never writes an image
        import threading

        self.h = h
        self.q: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="vkckpt-image-hash", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            parts = self.q.get()
            try:
                if parts is None:
                    return
                if self.error is None:
                    for p in parts:
                        self.h.update(p)
            except BaseException as e:  # surfaced by drain()
                self.error = e
            finally:
                self.q.task_done()

    def put(self, parts: tuple) -> None:
        self.q.put(parts)

    def drain(self) -> None:
        self.q.join()
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.q.put(None)


def _in_background(name: str, fn: Callable[..., object], *args: object,
                   daemon: bool = False) -> Callable[[], BaseException | None]:
    """Start fn(*args) on a helper thread; the returned join waits for it and gives back
    what it raised (None when it returned)."""
    import threading  # late: thawing never writes an image

    failed: list[BaseException] = []

    def run() -> None:
        try:
            fn(*args)
        except BaseException as e:  # handed to the joiner
            failed.append(e)

    thread = threading.Thread(target=run, name=name, daemon=daemon)
    thread.start()

    def join() -> BaseException | None:
        thread.join()
        return failed[0] if failed else None
    return join
