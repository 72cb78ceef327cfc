"""Writes that wait until all is written.

A blocking write(2) or send(2) to a stream socket, a pipe or a FIFO queues what fits, sleeps
until there is room, and goes on where it stopped, as Linux's unix_stream_sendmsg,
tcp_sendmsg and pipe_write loop.  It returns short only when it was non-blocking, met an
error (EPIPE, a reset) or was interrupted by a signal after some bytes went; then it
returns the count so far, with no SIGPIPE and no EINTR (Linux's `sent ? : err`).

While the call sleeps its count is kept on the thread (Thread.progress, saved in images);
the re-run after a wake-up writes what is left, and sigsend.interrupt returns the count.
"""

from __future__ import annotations

from vkckpt.errors import GuestError
from vkckpt.threads.wait import Block

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable

    from vkckpt.threads.thread import Thread


def skip(segs: list[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    """The (base, length) segments left after their first n bytes."""
    out = []
    for base, size in segs:
        if n >= size:
            n -= size
            continue
        out.append((base + n, size - n))
        n = 0
    return out


def write_all(t: Thread, write: Callable[[bytes, int], int], rest: bytes) -> int:
    """Write rest, what t's call has left after the t.progress bytes its earlier runs
    wrote, by write(chunk, offset of chunk in the call's bytes) until all is written, a
    wait (Block: t.progress keeps the count while t sleeps), or an error (the count, when
    some bytes went).  Returns the call's result."""
    done, at = t.progress, 0
    while True:
        try:
            n = write(rest[at:], done + at)
        except Block:
            t.progress = done + at
            raise
        except GuestError:
            t.progress = 0
            if done + at:
                return done + at
            raise
        at += n
        if at >= len(rest) or n <= 0:
            t.progress = 0
            return done + at
