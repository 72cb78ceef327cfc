"""Engine reuse (engine/pool.py): a reused engine behaves exactly like a new one.

A scrubbed engine has no region, no translated block, the CPU a new engine starts with and
its hooks' counters at zero; runs of fork- and exec-heavy guests are the same (output,
ticks, wait statuses, state digests) with and without the pool."""

from __future__ import annotations

import ctypes
import mmap
from collections.abc import Iterator
from pathlib import Path

import pytest

from vkckpt.engine import pool
from vkckpt.engine.engine import Engine, Stop
from vkckpt.engine.preempt import UNLIMITED
from vkckpt.testing.digest import state_digest
from vkckpt.testing.oracle import Workload, golden, run_until
from vkckpt.testing.workload import make_root

CODE = 0x40_0000


@pytest.fixture
def fresh_pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[pool.EnginePool]:
    """A private, empty pool of capacity 4 for the test."""
    p = pool.EnginePool(4)
    monkeypatch.setattr(pool, "POOL", p)
    yield p
    for core in p.drain():
        core.destroy()  # type: ignore[attr-defined]


class _Calls:
    """A syscall entry recording RAX and stopping the engine at each call."""

    def __init__(self) -> None:
        self.nrs: list[int] = []

    def __call__(self, nr: int, args: tuple[int, ...]) -> tuple[int | None, bool]:
        self.nrs.append(nr)
        return 0, True


def _page(code: bytes) -> tuple[mmap.mmap, int]:
    page = mmap.mmap(-1, 0x1000)
    page.write(code)
    return page, ctypes.addressof(ctypes.c_char.from_buffer(page))


def _mov_eax_syscall(value: int) -> bytes:
    return b"\xb8" + value.to_bytes(4, "little") + b"\x0f\x05"  # mov eax, value; syscall


def _dirty(eng: Engine, calls: _Calls) -> mmap.mmap:
    """Run code that leaves registers, control words, a segment base and ticks changed."""
    page, host = _page(_mov_eax_syscall(0x11))
    eng.map_host(CODE, 0x1000, 5, host)
    eng.set_state({"rbx": 7, "r15": 9, "fs_base": 0x1234000, "fpcw": 0x27F, "mxcsr": 0x1FA0,
                   "xmm3": 5 << 64})
    assert eng.run(CODE, 100) is Stop.SYSCALL
    assert calls.nrs == [0x11] and eng.counter.total > 0
    return page


def test_reused_engine_is_a_new_one(fresh_pool: pool.EnginePool) -> None:
    calls = _Calls()
    new = Engine(calls)
    want, want_regions = new.get_state(), new.regions()
    new.close()  # the first engine goes into the pool
    eng = Engine(calls)
    assert fresh_pool.taken == 1
    page = _dirty(eng, calls)
    uch = eng.uch
    eng.close()
    assert fresh_pool.idle() == 1 and eng.uch == 0  # the old object is unusable
    again = Engine(_Calls())
    try:
        assert again.uch == uch and fresh_pool.taken == 2
        assert again.regions() == want_regions == []
        assert again.tlb.ranges() == [] and again.tlb.state.fills == 0  # the fill's table too
        assert again.get_state() == want
        assert again.counter.total == 0 and again.counter.remaining == UNLIMITED
        assert not again.counter.expired and again.sys.error is None
        assert again.fault is None and again.intno is None
    finally:
        again.close()
        page.close()


def test_stale_translated_code_never_runs(fresh_pool: pool.EnginePool) -> None:
    """Another program at the same address in a reused engine runs its own code."""
    first = _Calls()
    eng = Engine(first)
    old = _dirty(eng, first)
    eng.close()
    second = _Calls()
    again = Engine(second)
    new, host = _page(_mov_eax_syscall(0x22))
    try:
        again.map_host(CODE, 0x1000, 5, host)
        assert again.run(CODE, 100) is Stop.SYSCALL
        assert second.nrs == [0x22] and first.nrs == [0x11]
    finally:
        again.close()
        old.close()
        new.close()


def test_full_pool_closes_engines(fresh_pool: pool.EnginePool) -> None:
    engines = [Engine(_Calls()) for _ in range(6)]
    for e in engines:
        e.close()
    assert fresh_pool.idle() == 4 and all(e.uch == 0 for e in engines)


WORKLOADS = [Workload("forkwait", ("40",)), Workload("spawn", ("/hello",)),
             Workload("execer"), Workload("forkpipe")]


@pytest.mark.parametrize("wl", WORKLOADS, ids=lambda w: w.name)
def test_runs_are_the_same_with_and_without_the_pool(wl: Workload, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Output, ticks, statuses and the state digest mid-run, pool off vs on (reused)."""
    root = make_root(tmp_path, [wl.name, "hello"])
    results = []
    for capacity in (0, 4, 4):  # the second pooled run starts with a pool already full
        p = pool.EnginePool(capacity)
        monkeypatch.setattr(pool, "POOL", p)
        gold = golden(wl, root)
        k, _, status = run_until(wl, root, gold.ticks // 2)
        assert status is None
        digest = state_digest(k, tmp_path)
        k.shutdown()
        results.append((gold.stdout, gold.status, gold.ticks, gold.statuses, gold.points,
                        digest))
        if capacity:
            assert p.taken > 0, "no engine was reused"
        for core in p.drain():
            core.destroy()  # type: ignore[attr-defined]
    assert results[0] == results[1] == results[2]
