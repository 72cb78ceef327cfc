"""The host process's wake-up pipe: how a host thread or a signal handler ends an idle
vkernel's wait on host sockets.

An idle vkernel with published ports sleeps in select(2) until a host socket is ready.  A
freeze request (the control socket's threads, SIGUSR1) must end that sleep too, so whoever
queues one calls `wake()`, which writes a byte to a non-blocking pipe the wait also
selects on.  A byte written before the wait began ends the wait at once, so a request
queued between the run loop's last look and its select is never missed.  One pipe serves
the whole host process (its descriptors are made on first use, close-on-exec, by the main
thread: the control server makes them before its threads start or SIGUSR1 is caught).
"""

from __future__ import annotations

import os

_fds: tuple[int, int] | None = None


def _pipe() -> tuple[int, int]:
    global _fds
    if _fds is None:
        _fds = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    return _fds


def fileno() -> int:
    """The read end, for select(2): readable once wake() was called since the last clear()."""
    return _pipe()[0]


def wake() -> None:
    """End the current or next idle wait (safe from any thread and from signal handlers)."""
    try:
        os.write(_pipe()[1], b"w")
    except BlockingIOError:  # the pipe is full: a wake-up is pending already
        pass


def clear() -> None:
    """Forget the wake-ups so far (the waiter calls it before it looks at what woke it)."""
    r = _pipe()[0]
    try:
        while os.read(r, 4096):
            pass
    except BlockingIOError:
        pass
