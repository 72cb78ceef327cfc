"""File locks (fs/locks.py): the lock table's rules, its saved form, and a run frozen while a
process waits for a lock (the reclocks guest) thawing to the same end as the unfrozen run."""

from __future__ import annotations

from pathlib import Path

import pytest

from vkckpt.abi import errno as E
from vkckpt.abi.fcntl import F_RDLCK, F_UNLCK, F_WRLCK, OFFSET_MAX
from vkckpt.abi.stat import pack_stat
from vkckpt.ckpt.snapshot import write_image
from vkckpt.errors import GuestError, ImageError
from vkckpt.fs import lock_state
from vkckpt.fs.locks import Blocked, FileLock, InodeLocks, LockTable
from vkckpt.fs.ops import OpenFile
from vkckpt.record import field_names
from vkckpt.runner import boot
from vkckpt.testing.hostile_images import load_records
from vkckpt.testing.oracle import Workload, golden, thaw_in_new_process, thaw_in_process
from vkckpt.testing.workload import make_root
from vkckpt.threads.thread import Sleep
from vkckpt.threads.wait import Block

KEY = (0x801, 7)


class _File(OpenFile):
    """A description of inode 7."""

    def stat(self) -> bytes:
        return pack_stat(0x801, 7, 0o100644, 1, 0, 0, 0, 100, 4096, 8, 0, 0, 0)


class _Proc:
    def __init__(self, pid: int) -> None:
        self.pid = pid


class _Thread:
    """What the lock table knows of a thread: tid, process and sleep."""

    def __init__(self, tid: int) -> None:
        self.tid = tid
        self.process = _Proc(tid)
        self.sleep: Sleep | None = None

    def sleep_on(self, block: Block) -> None:
        self.sleep = Sleep(block.queue, None, 0, True, 72, (0,) * 6, 1)
        block.queue.waiters.append(self)


def _posix(table: LockTable, pid: int, typ: int, start: int, end: int,
           waiter: _Thread | None = None) -> None:
    table.set_posix(KEY, FileLock(pid, pid, typ, start, end), waiter)


def _ranges(table: LockTable) -> list[tuple]:
    return [(lk.owner if isinstance(lk.owner, int) else "f", lk.type, lk.start, lk.end)
            for lk in table.inodes[KEY].posix]


def test_unlocking_the_middle_splits_and_relocking_merges() -> None:
    t = LockTable()
    _posix(t, 1, F_WRLCK, 0, 9)
    _posix(t, 1, F_UNLCK, 3, 4)
    assert _ranges(t) == [(1, F_WRLCK, 0, 2), (1, F_WRLCK, 5, 9)]
    _posix(t, 1, F_WRLCK, 3, 4)
    _posix(t, 1, F_WRLCK, 10, 19)  # adjacent: one lock
    assert _ranges(t) == [(1, F_WRLCK, 0, 19)]
    _posix(t, 1, F_RDLCK, 5, 9)  # a downgrade in the middle: three locks
    assert _ranges(t) == [(1, F_WRLCK, 0, 4), (1, F_RDLCK, 5, 9), (1, F_WRLCK, 10, 19)]
    _posix(t, 1, F_UNLCK, 0, OFFSET_MAX)
    assert KEY not in t.inodes  # nothing held, nobody waiting: the inode is forgotten


def test_conflicts_and_the_first_lock_in_linux_order() -> None:
    t = LockTable()
    _posix(t, 2, F_RDLCK, 50, 59)
    _posix(t, 1, F_WRLCK, 0, 9)  # a new owner's locks go to the tail
    _posix(t, 2, F_RDLCK, 20, 29)  # grouped with owner 2's, by start
    assert _ranges(t) == [(2, F_RDLCK, 20, 29), (2, F_RDLCK, 50, 59), (1, F_WRLCK, 0, 9)]
    first = t.test(KEY, FileLock(3, 3, F_WRLCK, 0, OFFSET_MAX))
    assert (first.owner, first.start) == (2, 20)
    assert t.test(KEY, FileLock(3, 3, F_RDLCK, 20, 59)) is None  # readers share
    assert t.test(KEY, FileLock(1, 1, F_WRLCK, 0, 9)) is None  # one's own locks never block
    with pytest.raises(GuestError) as exc:
        _posix(t, 3, F_WRLCK, 5, 5)
    assert exc.value.errno == E.EAGAIN


def test_setlkw_sleeps_and_a_wait_for_cycle_is_edeadlk() -> None:
    t = LockTable()
    a, b = _Thread(1), _Thread(2)
    _posix(t, 1, F_WRLCK, 0, 0)
    _posix(t, 2, F_WRLCK, 1, 1)
    with pytest.raises(Block) as blk:
        _posix(t, 2, F_WRLCK, 0, 0, waiter=b)
    b.sleep_on(blk.value)
    with pytest.raises(GuestError) as exc:
        _posix(t, 1, F_WRLCK, 1, 1, waiter=a)
    assert exc.value.errno == E.EDEADLK
    b.sleep = None  # woken (an EINTR, say): the chain is broken, so 1 may wait
    blk.value.queue.waiters.clear()
    with pytest.raises(Block):
        _posix(t, 1, F_WRLCK, 1, 1, waiter=a)


def test_flock_conversion_drops_the_old_lock_first() -> None:
    t = LockTable()
    f, g = _File(0), _File(0)
    t.flock(KEY, f, F_RDLCK, True)
    t.flock(KEY, g, F_RDLCK, True)
    with pytest.raises(GuestError) as exc:
        t.flock(KEY, g, F_WRLCK, True)
    assert exc.value.errno == E.EWOULDBLOCK
    assert [lk.owner for lk in t.inodes[KEY].flock] == [f]  # g's shared lock is gone
    t.flock(KEY, f, F_WRLCK, True)  # now alone: the upgrade succeeds
    with pytest.raises(Block):
        t.flock(KEY, g, F_RDLCK, False)


def test_close_releases_posix_on_any_close_and_ofd_flock_at_the_last() -> None:
    t = LockTable()
    f, other = _File(0), _File(0)
    _posix(t, 1, F_WRLCK, 0, 9)
    t.set_posix(KEY, FileLock(f, -1, F_RDLCK, 20, 29), None)
    t.flock(KEY, f, F_WRLCK, True)
    t.closed(2, other, True)  # another process's close changes nothing
    assert len(t.inodes[KEY].posix) == 2
    t.closed(1, other, False)  # any descriptor of the inode, not the one locked through
    assert _ranges(t) == [("f", F_RDLCK, 20, 29)]
    t.closed(1, f, False)  # f still has descriptors: its OFD and flock locks stay
    assert len(t.inodes[KEY].flock) == 1
    t.closed(1, f, True)
    assert KEY not in t.inodes


def _saved(t: LockTable, f: OpenFile) -> dict:
    return lock_state.save(t, {id(f): 5}, {1, 2}, {1, 2})


def test_saved_form_round_trips_and_is_absent_without_locks() -> None:
    t = LockTable()
    f = _File(0)
    assert _saved(t, f) is None
    _posix(t, 2, F_RDLCK, 50, 59)
    _posix(t, 1, F_WRLCK, 0, 9)
    t.set_posix(KEY, FileLock(f, -1, F_RDLCK, 20, 29), None)
    t.flock(KEY, f, F_WRLCK, True)
    waiter = _Thread(2)
    with pytest.raises(Block) as blk:
        _posix(t, 2, F_WRLCK, 0, 0, waiter=waiter)
    waiter.sleep_on(blk.value)
    d = _saved(t, f)
    assert d["blocked"] == [[2, 2, 1]]
    t2 = LockTable()
    q = blk.value.queue
    lock_state.load(d, t2, {1, 2}, {5: f}, {2: waiter}, {q.key: q})
    assert _saved(t2, f) == d
    assert _ranges(t2) == _ranges(t)
    assert t2.inodes[KEY].queue is q  # the queue the thawed sleeper sleeps on


def test_every_lock_field_is_saved_or_transient() -> None:
    saved = {"type", "start", "end", "pid", "blocker"}  # the record's columns by name
    for cls in (FileLock, Blocked):
        for name in field_names(cls):
            assert name in saved or name in lock_state.TRANSIENT, f"{cls.__name__}.{name}"
    for obj in (LockTable(), InodeLocks(KEY)):
        for name in vars(obj):
            assert name in saved | {"blocked"} or name in lock_state.TRANSIENT, name


@pytest.mark.parametrize("row, why", [
    ([0x801, 7, "posix", 9, 9, F_WRLCK, 0, 1], "not in the image"),
    ([0x801, 7, "ofd", 5, 3, F_WRLCK, 0, 1], "not in the image"),
    ([0x801, 7, "posix", 1, 1, F_UNLCK, 0, 1], "invalid"),
    ([0x801, 7, "posix", 1, 1, F_WRLCK, 5, 1], "invalid"),
    ([0x801, 7, "posix", 2, 2, F_RDLCK, 0, 3], "overlaps another owner's write"),
])
def test_hostile_lock_rows_are_refused(row: list, why: str) -> None:
    d = {"posix": [[0x801, 7, "posix", 1, 1, F_WRLCK, 0, 9], row], "flock": [], "blocked": []}
    with pytest.raises(ImageError, match=why):
        lock_state.load(d, LockTable(), {1, 2}, {5: _File(0)}, {}, {})


def test_hostile_lock_counts_and_sleepers_are_refused() -> None:
    many = [[0x801, i, "posix", 1, 1, F_WRLCK, 0, 1] for i in range(2 * lock_state.MAX_LOCKS + 1)]
    with pytest.raises(ImageError, match="more than"):
        lock_state.load({"posix": many}, LockTable(), {1}, {}, {}, {})
    d = {"posix": [[0x801, 7, "posix", 1, 1, F_WRLCK, 0, 9]], "blocked": [[1, 1, -1]]}
    with pytest.raises(ImageError, match="does not sleep on a lock"):
        lock_state.load(d, LockTable(), {1}, {}, {1: _Thread(1)}, {})


# -- a run frozen while a process waits for a lock -------------------------------------------
WL = Workload("reclocks", ("work",))


def _lock_waits(root: Path) -> list[int]:
    """Scheduling points of the golden run where some thread sleeps on a lock queue."""
    k = boot(WL.config(root, []))
    points: list[int] = []

    def note(k) -> bool:  # noqa: ANN001
        if any(t.sleep is not None and t.sleep.queue is not None and
               t.sleep.queue.key[0] == "lock" for t in k.threads.values() if t.alive):
            if not points or points[-1] != k.sched.ticks:
                points.append(k.sched.ticks)
        return False

    k.run(on_schedule_point=note)
    return points


def test_frozen_with_a_lock_waiter_thaws_identically(tmp_path: Path) -> None:
    gold = golden(WL, make_root(tmp_path, [WL.name]))
    waits = _lock_waits(make_root(tmp_path, [WL.name]))
    assert len(waits) >= 3, "the guest never waited for a lock"
    for at in [waits[0], waits[len(waits) // 2], waits[-1]]:
        root = make_root(tmp_path, [WL.name])
        out: list[bytes] = []
        k = boot(WL.config(root, out))
        assert k.run(until_ticks=at) is None
        assert any(t.sleep is not None and t.sleep.queue is not None and
                   t.sleep.queue.key[0] == "lock" for t in k.threads.values() if t.alive)
        a, b = root / "a.img", root / "b.img"
        write_image(k, str(a))
        k.shutdown()
        after: list[bytes] = []
        k2 = thaw_in_process(a, after, root)
        assert k2.locks.inodes, "the locks held at the freeze were not thawed"
        write_image(k2, str(b))
        assert a.read_bytes() == b.read_bytes(), f"re-frozen image differs at {at}"
        status = k2.run()
        assert b"".join(out + after) == gold.output, f"output differs at {at}"
        assert (status, k2.sched.ticks, k2.statuses) == (gold.status, gold.ticks,
                                                         gold.statuses)


def test_a_deadlock_waiter_thaws_in_a_fresh_host_process(tmp_path: Path) -> None:
    """At the last lock wait (the deadlock phase: a child asleep in F_SETLKW) the image holds
    the sleeper's wait-for entry, and `vkckpt thaw` in a new process finishes the run."""
    gold = golden(WL, make_root(tmp_path, [WL.name]))
    at = _lock_waits(make_root(tmp_path, [WL.name]))[-1]
    root = make_root(tmp_path, [WL.name])
    out: list[bytes] = []
    k = boot(WL.config(root, out))
    assert k.run(until_ticks=at) is None
    image = root / "x.img"
    write_image(k, str(image))
    recs = {r[0]: r[3] for r in load_records(image)}
    assert recs["locks"]["blocked"], "no F_SETLKW sleeper recorded for the deadlock check"
    k.shutdown()
    thawed = thaw_in_new_process(image, root)
    assert b"".join(out) + thawed.output == gold.output
    assert (thawed.status, thawed.ticks, thawed.statuses) == (gold.status, gold.ticks,
                                                             gold.statuses)
