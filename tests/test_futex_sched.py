"""The scheduler's run queue and virtual timers, futex queue bookkeeping, and determinism of
whole runs of the bundled pthreads and forkpipe guests."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

import vkckpt
from vkckpt.config import KernelConfig, ProcessSpec
from vkckpt.guests.build import guest_path
from vkckpt.sched import NS_PER_TICK, Scheduler
from vkckpt.threads.futex import FutexTable
from vkckpt.threads.thread import Sleep, Thread, ThreadState
from vkckpt.threads.wait import WaitQueue


def thread(tid: int) -> Thread:
    return Thread(tid, SimpleNamespace(pid=1))  # type: ignore[arg-type]


def put_to_sleep(s: Scheduler, t: Thread, deadline: int | None, seq: int = 0) -> None:
    """What VKernel.sleep does to the scheduler side of a thread."""
    t.sleep = Sleep(None, deadline, -110, True, 0, (), seq)
    t.state = ThreadState.BLOCKED
    if deadline is not None:
        s.add_timer(deadline, t)
    s.remove(t)


def wake(s: Scheduler, t: Thread) -> None:
    """What VKernel.wake does: forget the sleep (its timer entry goes stale)."""
    t.sleep = None
    s.enqueue(t)


# -- run queue -------------------------------------------------------------------------------


def test_round_robin_order():
    s = Scheduler(quantum=10)
    a, b, c = thread(1), thread(2), thread(3)
    for t in (a, b, c):
        s.enqueue(t)
    order = []
    for _ in range(7):
        t = s.next()
        order.append(t.tid)
        s.enqueue(t)  # used its slice, back to the tail
    assert order == [1, 2, 3, 1, 2, 3, 1]


def test_enqueue_is_idempotent_and_sets_runnable():
    s = Scheduler()
    a, b = thread(1), thread(2)
    a.state = ThreadState.BLOCKED
    s.enqueue(a)
    assert a.state is ThreadState.RUNNABLE
    s.enqueue(b)
    s.enqueue(a)  # already queued: keeps its place
    s.enqueue(a)
    assert list(s.runq) == [a, b]
    assert s.next() is a and s.next() is b and s.next() is None


def test_next_skips_threads_that_stopped_being_runnable():
    s = Scheduler()
    a, b, c = thread(1), thread(2), thread(3)
    for t in (a, b, c):
        s.enqueue(t)
    a.state = ThreadState.DEAD
    b.state = ThreadState.STOPPED
    assert s.next() is c
    assert s.next() is None and not s.runq


def test_remove():
    s = Scheduler()
    a, b = thread(1), thread(2)
    s.enqueue(a)
    s.enqueue(b)
    s.remove(a)
    s.remove(a)  # not queued any more: no error
    assert list(s.runq) == [b]


def test_now_ns():
    s = Scheduler()
    assert s.now_ns() == 0
    s.ticks = 1000
    s.idle_ns = 55
    assert s.now_ns() == 1000 * NS_PER_TICK + 55
    assert s.now_ns(running=10) == 1010 * NS_PER_TICK + 55


# -- timers ----------------------------------------------------------------------------------


def test_expired_pops_due_timers_in_deadline_order():
    s = Scheduler()
    a, b, c = thread(1), thread(2), thread(3)
    put_to_sleep(s, a, 3000)
    put_to_sleep(s, b, 1000)
    put_to_sleep(s, c, 5000)
    assert s.expired() == []
    s.ticks = 300  # now = 3000 ns: a deadline equal to now has passed
    assert s.expired() == [b, a]
    assert s.expired() == []
    assert len(s.timers) == 1
    s.ticks = 10_000
    assert s.expired() == [c]
    assert s.timers == []


def test_stale_timers_are_ignored():
    s = Scheduler()
    a, b = thread(1), thread(2)
    put_to_sleep(s, a, 1000)
    wake(s, a)                    # woken early: its timer is stale
    put_to_sleep(s, b, 2000)
    put_to_sleep(s, a, 3000)      # sleeps again with another deadline
    s.ticks = 250                 # 2500 ns
    assert s.expired() == [b]     # a's stale 1000 entry is dropped, not reported
    assert [d for d, _, _ in s.timers] == [3000]
    s.ticks = 300
    assert s.expired() == [a]


def test_skip_idle_advances_to_earliest_live_deadline():
    s = Scheduler()
    a, b = thread(1), thread(2)
    s.ticks = 10                  # now = 100 ns
    put_to_sleep(s, a, 500)
    put_to_sleep(s, b, 900)
    wake(s, a)
    s.next()                      # a ran and went to sleep again, without a deadline
    put_to_sleep(s, a, None)
    assert s.skip_idle()
    assert s.now_ns() == 900      # jumped over a's stale 500
    assert s.idle_ns == 800
    assert [d for d, _, _ in s.timers] == [900]  # the stale entry is gone, the live one kept
    assert s.expired() == [b]
    assert not s.skip_idle()      # nothing left to wait for: a deadlock for the kernel
    assert s.idle_ns == 800


def test_skip_idle_never_moves_time_backwards():
    s = Scheduler()
    a = thread(1)
    put_to_sleep(s, a, 50)
    s.ticks = 100                 # now = 1000 ns, past the deadline already
    assert s.skip_idle()
    assert s.idle_ns == 0 and s.now_ns() == 1000
    assert s.expired() == [a]


def test_expired_reports_a_thread_once_after_resleeping_with_the_same_deadline():
    s = Scheduler()
    a = thread(1)
    put_to_sleep(s, a, 1000, seq=1)   # e.g. futex wait with an absolute timeout
    wake(s, a)                        # woken early (spurious wake-up, condition not met)
    s.next()
    put_to_sleep(s, a, 1000, seq=2)   # waits again with the same absolute deadline
    s.ticks = 100
    assert s.expired() == [a]


# -- futex table -----------------------------------------------------------------------------


def test_futex_queue_created_once_per_key():
    ft = FutexTable()
    k1, k2 = ("mm", 7, 0x1000), ("buf", 3, 0x40)
    assert ft.peek(k1) is None
    q = ft.queue(k1)
    assert isinstance(q, WaitQueue)
    assert ft.queue(k1) is q and ft.peek(k1) is q
    assert q.key == ("futex", *k1)
    assert q.name == "futex mm 7 4096"
    assert ft.queue(k2) is not q
    assert set(ft.queues) == {k1, k2}


def test_futex_prune_only_drops_empty_queues():
    ft = FutexTable()
    key = ("mm", 1, 0x2000)
    q = ft.queue(key)
    t = thread(5)
    q.waiters.append(t)
    ft.prune(key)
    assert ft.peek(key) is q and len(q) == 1  # somebody still waits
    q.waiters.remove(t)
    ft.prune(key)
    assert ft.peek(key) is None and key not in ft.queues
    ft.prune(key)                            # unknown key: harmless
    assert ft.queue(key) is not q            # a fresh queue next time


# -- determinism of whole runs ---------------------------------------------------------------


@pytest.fixture(scope="module")
def guest_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("detroot")
    for name in ("pthreads", "forkpipe"):
        shutil.copy2(guest_path(name), root / name)
    return root


def run_guest(root: Path, name: str, **kw) -> tuple[bytes, vkckpt.RunResult]:
    out: list[bytes] = []
    cfg = KernelConfig(root=str(root), processes=[ProcessSpec(f"/{name}", [name])],
                       stdout=out.append, stderr=out.append, stdin=b"", **kw)
    result = vkckpt.run(cfg)
    return b"".join(out), result


@pytest.mark.parametrize("name, last_line", [
    ("pthreads", b"pthreads OK\n"), ("forkpipe", b"forkpipe OK\n")])
def test_runs_are_deterministic(guest_root: Path, name: str, last_line: bytes):
    out1, r1 = run_guest(guest_root, name)
    out2, r2 = run_guest(guest_root, name)
    assert out1.endswith(last_line)
    assert r1.status == 0 and r1.exit_code == 0
    assert out1 == out2
    assert r1.ticks == r2.ticks and r1.ticks > 0
    assert r1.statuses == r2.statuses
    assert r1 == r2


def test_forkpipe_child_statuses(guest_root: Path):
    out, r = run_guest(guest_root, "forkpipe")
    assert b"child1: exited=1 status=7" in out
    assert b"chain result=33" in out
    waits = sorted(r.statuses.values())
    assert 7 << 8 in waits           # child1 exited 7
    assert 15 in waits and 9 in waits  # SIGTERM and SIGKILL children
    assert r.statuses[1] == 0


@pytest.mark.parametrize("quantum", [997, 20_000])
def test_pthreads_output_does_not_depend_on_the_quantum(guest_root: Path, quantum: int):
    base_out, base = run_guest(guest_root, "pthreads")
    out, r = run_guest(guest_root, "pthreads", quantum=quantum)
    assert out == base_out
    assert r.status == 0 and b"counter=80000 (expected 80000)\n" in out
    # the same quantum again reproduces the run exactly
    out2, r2 = run_guest(guest_root, "pthreads", quantum=quantum)
    assert (out2, r2.ticks) == (out, r.ticks)
