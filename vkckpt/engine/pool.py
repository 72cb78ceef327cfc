"""Idle Unicorn engines kept for the next process (issue 13: fork and exec speed).

A new engine costs 0.6-4 ms on this kind of host, nearly all of it Unicorn's lazy machine
set-up at the first call that needs it (engine/tlb.py's TLB mode), plus the hooks vkckpt
registers; a fork or exec needs one.  An engine whose process exited or exec'ed is instead
*scrubbed* and kept here, and the next process takes it.

Scrubbing makes the engine indistinguishable from a new one to any guest: every region is
unmapped (Unicorn then drops that range's translated blocks), every other translated block
dropped too (so no stale code can run at a reused address), the TLB flushed, and the CPU
loaded from the context saved when the engine was built (registers, FPU and SSE control
words, segment bases, CPL 3).  Hooks stay registered, in the
same order and state as on a new engine; what they count is reset by the engine's owner
(engine.py).  tests/test_engine_pool.py checks that runs are the same, tick for tick and
byte for byte, with and without the pool.

The pool is per host process and safe across host threads.  It holds at most `capacity`
idle engines (each keeps its translation buffer, several MiB); ``VKCKPT_ENGINE_POOL=N``
sets that bound, 0 turns reuse off.  Only host time depends on it, never a guest.
"""

from __future__ import annotations

import _thread  # not threading: thaw-and-run stays lean (tests/test_startup.py)
import os

from vkckpt.engine import libuc

DEFAULT_CAPACITY = 4


def _capacity_from_env() -> int:
    raw = os.environ.get("VKCKPT_ENGINE_POOL", "")
    return int(raw) if raw.isdigit() else DEFAULT_CAPACITY


class EnginePool:
    """A bounded free list of idle engines of each kind (an engine's kind is its hook set)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._free: dict[object, list[object]] = {}
        self._lock = _thread.allocate_lock()
        self.taken = 0  # engines handed out again (tests and benchmarks read these)
        self.given = 0

    def take(self, kind: object) -> object | None:
        """An idle engine of this kind, or None (build a new one)."""
        with self._lock:
            free = self._free.get(kind)
            if not free:
                return None
            self.taken += 1
            return free.pop()

    def give(self, kind: object, engine: object) -> bool:
        """Keep a scrubbed engine; False when the pool is full (close it instead)."""
        with self._lock:
            free = self._free.setdefault(kind, [])
            if len(free) >= self.capacity:
                return False
            free.append(engine)
            self.given += 1
            return True

    def drain(self) -> list[object]:
        """Remove and return every idle engine (the caller closes them)."""
        with self._lock:
            out = [e for free in self._free.values() for e in free]
            self._free.clear()
            return out

    def idle(self) -> int:
        with self._lock:
            return sum(len(free) for free in self._free.values())


POOL = EnginePool(_capacity_from_env())


def scrub(uch: int, pristine: libuc.Context) -> None:
    """Bring an engine back to the state it was built in: no region mapped, no translated
    block, an empty TLB and the CPU of `pristine` (saved right after it was built).

    Precondition: the engine is not running (no emu_start in progress)."""
    for begin, end, _ in libuc.mem_regions(uch):
        libuc.check(libuc.lib.uc_mem_unmap(uch, begin, end - begin + 1))
    libuc.flush_tb(uch)
    libuc.flush_tlb(uch)
    pristine.restore(uch)
