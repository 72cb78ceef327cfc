"""The vkernel's identifiers: its own (in image headers), and the allocator of pids and
tids, pipe ids, host-buffer ids.

Ids are never reused within a vkernel's life, so two runs of the same vkernel name every
object alike; the counters are saved in the kernel record (kernel_state.py).
"""

from __future__ import annotations

try:  # CPython's own SHA-256: hashlib loads OpenSSL (2-4 ms of a run's start) for two
    from _sha2 import sha256  # tiny hashes (3.12+)
except ImportError:
    try:
        from _sha256 import sha256  # 3.11
    except ImportError:
        from hashlib import sha256

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.config import KernelConfig


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

def vkernel_id(config: KernelConfig) -> bytes:
    """A vkernel's identity: derived from what it runs, so identical runs write identical images."""
    desc = repr((config.seed, [(p.program, p.argv, sorted(p.env.items()), p.cwd)
                               for p in config.processes]))
    return sha256(desc.encode()).digest()[:16]
