"""The vkernel-wide memory budget: what every mapping, pipe, engine and console buffer costs.

One `MemAccount` per vkernel.  Charges are computed from guest-determined quantities only
(sizes, counts), never from host measurements, so whether a call fails with ENOMEM is the
same on every run and after a thaw.  As with Linux's strict overcommit, memory the host may
have to provide is charged when it is promised (mmap, brk, fork), not when it is touched.
"""

from __future__ import annotations

from vkckpt.abi import errno as E
from vkckpt.abi.mman import PAGE
from vkckpt.errors import GuestError

#: Host page-table and bookkeeping bytes per mapped guest page (one 8-byte PTE per page).
PTE_COST = 8
#: Host bookkeeping per VMA: the Vma record, the engine's memory region and its TLB entries.
VMA_COST = 1024
#: Host memory of one Unicorn engine (translation buffer, softmmu TLB, CPU state), measured
#: as the RSS an idle process adds (bench/scale.py's rss_per_process_MB).
ENGINE_COST = 2 << 20
#: Linux's vm.max_map_count: mappings per address space beyond which mmap fails with ENOMEM.
MAX_MAP_COUNT = 65530
#: The default budget of a whole vkernel (`--memory-limit`, `memory_limit:`): a fixed number
#: (never derived from the host, so runs repeat everywhere) that holds bench/scale.py's 200
#: processes x 5 threads, whose 8 MiB thread stacks commit 8.4 GiB.
DEFAULT_LIMIT = 16 << 30


class MemAccount:
    """Bytes charged against a vkernel's limit.

    Invariant: 0 <= used, and used <= limit except after `force` (restoring an image, whose
    total is checked once it is rebuilt).  `peak` is the high-water mark (reports, tests).
    """

    __slots__ = ("limit", "used", "peak")

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0

    def room(self) -> int:
        """Bytes that can still be charged."""
        return max(self.limit - self.used, 0)

    def fits(self, n: int) -> bool:
        return self.used + n <= self.limit

    def charge(self, n: int, errno: int = E.ENOMEM) -> None:
        """Take n bytes, or fail with errno (ENOMEM, or ENFILE for pipes) and take nothing."""
        if n > 0 and self.used + n > self.limit:
            raise GuestError(errno, "vkernel memory limit")
        self.force(n)

    def force(self, n: int) -> None:
        """Take n bytes (or give back -n) whatever the limit."""
        self.used += n
        if self.used > self.peak:
            self.peak = self.used

    def uncharge(self, n: int) -> None:
        """Give back n bytes taken earlier."""
        self.used -= n
        assert self.used >= 0, "memory account went negative"


def space_cost(nbytes: int, nvmas: int) -> int:
    """What an address space of nvmas VMAs over nbytes costs, its engine included."""
    return ENGINE_COST + nbytes + nbytes // PAGE * PTE_COST + nvmas * VMA_COST


def vma_cost(size: int) -> int:
    """What one VMA of size bytes costs: its pages, their page tables, and bookkeeping.

    Every page counts, whatever its protection: unlike Linux, which charges only writable
    private and shared mappings, the vkernel keeps a page's host memory when mprotect takes
    write access away, and private file mappings are copies; so a PROT_NONE reservation
    costs what it could later hold."""
    return size + size // PAGE * PTE_COST + VMA_COST
