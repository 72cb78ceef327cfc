"""`vkckpt check`: what this host gives vkckpt, each fact with what it changes for the user.

A check is *needed* when run, freeze or thaw cannot work without it; the others make vkckpt
faster or add a feature, and their absence has a fallback that gives the same results.
"""

from __future__ import annotations

import os
import resource
import sys
from dataclasses import dataclass

from vkckpt.ckpt.wp import Tracker
from vkckpt.engine import libuc
from vkckpt.engine.preempt import native_available
from vkckpt.host import fs as hostfs
from vkckpt.host import lazypages
from vkckpt.host.fds import RESERVE
from vkckpt.vmspace.account import DEFAULT_LIMIT

#: The fewest host descriptors worth running with: the vkernel's reserve and a few guests'.
MIN_NOFILE = 4 * RESERVE


@dataclass(frozen=True)
class Check:
    """One fact: whether it holds, whether run/freeze/thaw need it, its value, what it gives
    the user when it holds and what happens without it."""

    name: str
    ok: bool
    needed: bool
    value: str
    gives: str
    without: str


def _zstd() -> bool:
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return False
    return True


def _mem_available() -> int | None:
    """Bytes the host can give: MemAvailable, capped by this process's cgroup memory.max."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except OSError:
        return None
    try:
        with open("/proc/self/cgroup") as f:
            rel = f.read().strip().rpartition("::")[2]
        with open(f"/sys/fs/cgroup{rel}/memory.max") as f:
            cap = f.read().strip()
        if cap != "max" and avail is not None:
            avail = min(avail, int(cap))
    except (OSError, ValueError):
        pass
    return avail


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"


def checks() -> list[Check]:
    """Every check, in the order `vkckpt check` prints them."""
    major, minor = libuc.version()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    mem = _mem_available()
    tracking, lazy, o2, zstd = (Tracker.get() is not None, lazypages.available(),
                                hostfs.openat2_available(), _zstd())
    u = os.uname()
    out = [
        Check("platform", sys.platform == "linux", True, f"{u.sysname} {u.release} {u.machine}",
              "Linux's system calls for guest paths, images and dirty tracking",
              "vkckpt runs on Linux only"),
        Check("unicorn", major >= 2, True, f"{major}.{minor}", "the CPU emulator guests run on",
              "vkckpt needs Unicorn 2 (pip install 'unicorn>=2')"),
        Check("host descriptors", soft >= MIN_NOFILE, True, f"soft {soft}, hard {hard}",
              "room for guests' open files, each backed by a host descriptor",
              f"below {MIN_NOFILE} guests get EMFILE early: raise it with ulimit -n"),
        Check("native block hook", native_available(), False,
              "loaded" if native_available() else "missing",
              "time slices and rdtsc counted in C",
              "a Python callback counts blocks: identical runs, several times slower "
              "(reinstall vkckpt to build its C extension)"),
        Check("exact dirty tracking", tracking, False,
              "userfaultfd write-protect, PAGEMAP_SCAN" if tracking else
              "off (VKCKPT_DIRTY=compare)" if os.environ.get("VKCKPT_DIRTY") == "compare"
              else "missing",
              "incremental images and live freezes find written pages in the page tables",
              "written pages are found by comparing them: same images, slower freezes "
              "(needs Linux 6.7 or later)"),
        Check("lazy thaw", lazy, False, "available" if lazy else "missing",
              "a large image's pages are loaded when first touched, so its thaw starts at once",
              "a thaw loads every page before the guests run again"),
        Check("openat2", o2, False, "RESOLVE_BENEATH" if o2 else "missing",
              "a guest path is opened beneath its root in one call",
              "each component is opened O_NOFOLLOW in turn: as safe, slower"),
        Check("zstd", zstd, False, "zstandard" if zstd else "missing",
              "zstd-compressed images can be written and read",
              "zstd images cannot be read (pip install zstandard); zlib ones can"),
        Check("memory", mem is None or mem >= DEFAULT_LIMIT, False,
              "unknown" if mem is None else f"{_gib(mem)} available",
              f"the default --memory-limit ({_gib(DEFAULT_LIMIT)}) fits in it",
              f"the default --memory-limit ({_gib(DEFAULT_LIMIT)}) is more than the host has: "
              "give a smaller one, so the vkernel refuses guests before the host does"),
    ]
    return out


def report(results: list[Check]) -> tuple[list[str], int]:
    """The lines `vkckpt check` prints and its exit status (0: all needed checks hold)."""
    width = max(len(c.name) for c in results)
    lines = []
    for c in results:
        mark = "ok" if c.ok else ("FAIL" if c.needed else "warn")
        lines.append(f"{mark:<4}  {c.name:<{width}}  {c.value}: "
                     f"{c.gives if c.ok else c.without}")
    return lines, 0 if all(c.ok for c in results if c.needed) else 1
