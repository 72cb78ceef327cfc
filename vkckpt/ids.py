"""The vkernel's identifier allocator: pids and tids, pipe ids, host-buffer ids.

Ids are never reused within a vkernel's life, so two runs of the same vkernel name every
object alike; the counters are saved in the kernel record (kernel_state.py).
"""

from __future__ import annotations


class Ids:
    """Next free id of each kind; only its own methods advance a counter."""

    __slots__ = ("next_pid", "next_pipe", "next_bid")

    def __init__(self, next_pid: int = 1, next_pipe: int = 1, next_bid: int = 1) -> None:
        self.next_pid = next_pid    # pids and tids share one space, as in Linux
        self.next_pipe = next_pipe
        self.next_bid = next_bid

    def load(self, next_pid: int, next_pipe: int, next_bid: int) -> None:
        """Continue from a thawed vkernel's counters (kernel_state.py checked them)."""
        self.next_pid, self.next_pipe, self.next_bid = next_pid, next_pipe, next_bid

    def pid(self) -> int:
        """Next pid/tid."""
        n = self.next_pid
        self.next_pid += 1
        return n

    def pipe(self) -> int:
        """Next pipe id."""
        n = self.next_pipe
        self.next_pipe += 1
        return n

    def bid(self) -> int:
        """Next host-buffer id (stable across freeze and thaw)."""
        n = self.next_bid
        self.next_bid += 1
        return n
