"""Kernel timer events, timerfd, signalfd and interval timers: the scheduler's heap, exact
expiration counts on the virtual clock, and freezes with timers armed and readers asleep."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest

from vkckpt.abi.syscalls import NUMBERS
from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.ckpt.snapshot import write_image
from vkckpt.errors import ImageError
from vkckpt.fs.signalfd import SignalFd
from vkckpt.fs.timerfd import TimerFd
from vkckpt.kernel import VKernel
from vkckpt.runner import boot
from vkckpt.sched import Scheduler
from vkckpt.testing.hostile_images import load_records, write_records
from vkckpt.testing.oracle import Workload, golden, thaw_in_new_process, thaw_in_process
from vkckpt.testing.workload import make_root
from vkckpt.threads.ktimer import KTimer
from vkckpt.threads.wait import Block, WaitQueue

READ = NUMBERS["read"]


# -- the scheduler's kernel timers --------------------------------------------------------------
def test_kernel_timers_fire_in_deadline_then_arming_order() -> None:
    s = Scheduler()
    fired: list[str] = []
    a, b, c = (KTimer(lambda n=n: fired.append(n)) for n in "abc")
    s.arm(a, 500)
    s.arm(b, 300)
    s.arm(c, 300)
    s.ticks = 40  # 400 ns
    s.fire_events()
    assert fired == ["b", "c"] and not b.armed and a.armed
    s.arm(a, 450)  # re-armed earlier: the 500 entry is stale
    s.ticks = 60
    s.fire_events()
    assert fired == ["b", "c", "a"]


def test_idle_skips_to_the_earliest_kernel_timer() -> None:
    s = Scheduler()
    kt = KTimer(lambda: None)
    s.arm(kt, 12_345)
    assert s.skip_idle() and s.now_ns() == 12_345
    kt.disarm()
    assert not s.skip_idle()  # a disarmed timer is no reason to wait


def _svc(clock: list[int], s: Scheduler) -> object:
    class Svc:
        poll_q = WaitQueue(("poll",))
        now = staticmethod(lambda: clock[0])
        arm = staticmethod(s.arm)
    return Svc()


def test_timerfd_counts_every_missed_period_exactly() -> None:
    clock = [1_000]
    s = Scheduler()
    f = TimerFd(0o4000, 1, _svc(clock, s))
    f.settime(100, 30, absolute=False)  # first expiry at 1100, then every 30
    assert f.timer.armed and f.timer.deadline == 1_100
    clock[0] = 1_099
    with pytest.raises(Exception) as exc:  # EAGAIN: O_NONBLOCK
        f.read(8)
    assert getattr(exc.value, "errno", None) == 11
    clock[0] = 1_100 + 30 * 7 + 29
    assert int.from_bytes(f.read(8), "little") == 8
    assert f.gettime() == (1, 30)  # still on the period grid: 1100 + 30k
    assert f.timer.armed and f.timer.deadline == 1_100 + 30 * 8


def test_a_blocking_timerfd_read_sleeps_on_the_readiness_queue() -> None:
    clock = [0]
    s = Scheduler()
    svc = _svc(clock, s)
    f = TimerFd(0, 1, svc)
    f.settime(50, 0, absolute=False)
    with pytest.raises(Block) as blk:
        f.read(8)
    assert blk.value.queue is svc.poll_q
    clock[0] = 50
    woke: list[int] = []
    svc.poll_q.watch(woke.append)
    f.timer.expire()
    assert woke and f.poll(1) == 1 and not f.timer.armed  # readable until read


# -- freezes with timers armed and readers asleep -------------------------------------------
def _run_to(wl: Workload, root: Path, cond: Callable[[VKernel], bool]
            ) -> tuple[VKernel, list[bytes]]:
    out: list[bytes] = []
    k = boot(wl.config(root, out))
    assert k.run(on_schedule_point=cond) is None, f"{wl.name} never reached the point"
    return k, out


def _thread_reading(kind: type) -> Callable[[VKernel], bool]:
    """A point where a thread sleeps in read(2) on a file of kind."""
    def cond(k: VKernel) -> bool:
        for t in k.threads.values():
            s = t.sleep
            if t.alive and s is not None and s.nr == READ:
                f = t.process.fds.fds.get(s.args[0] & 0xFFFFFFFF)
                if f is not None and isinstance(f[0], kind):
                    return True
        return False
    return cond


def _freeze_thaw_checks(base: Path, wl: Workload, cond: Callable[[VKernel], bool]) -> None:
    gold = golden(wl, make_root(base, [wl.name]))
    root = make_root(base, [wl.name])
    k, before = _run_to(wl, root, cond)
    a, b = root / "a.img", root / "b.img"
    write_image(k, str(a))
    k2 = thaw_in_process(a, [], root)
    write_image(k2, str(b))
    assert a.read_bytes() == b.read_bytes(), "re-frozen image differs"
    k2.shutdown()
    out = thaw_in_new_process(a, root)
    assert b"".join(before) + out.output == gold.output
    assert (out.status, out.ticks, out.statuses) == (gold.status, gold.ticks, gold.statuses)


def test_freeze_with_a_thread_blocked_reading_an_armed_timerfd(tmp_path: Path) -> None:
    def cond(k: VKernel) -> bool:
        # the reader thread (not the group leader) asleep in read on its armed timerfd
        return _thread_reading(TimerFd)(k) and any(
            t.tid != t.process.pid and t.sleep is not None and t.sleep.nr == READ
            for t in k.threads.values())
    _freeze_thaw_checks(tmp_path, Workload("timerfds"), cond)


def test_freeze_with_an_interval_timer_armed(tmp_path: Path) -> None:
    def cond(k: VKernel) -> bool:
        p = k.procs.get(1)
        return p is not None and p.itimers.real.armed and p.itimers.real_interval > 0
    _freeze_thaw_checks(tmp_path, Workload("itimers"), cond)


def test_freeze_with_cpu_timers_counting(tmp_path: Path) -> None:
    def cond(k: VKernel) -> bool:
        p = k.procs.get(1)
        return p is not None and p.itimers.cpu_armed
    _freeze_thaw_checks(tmp_path, Workload("itimers"), cond)


def test_freeze_with_posix_timers_armed(tmp_path: Path) -> None:
    def cond(k: VKernel) -> bool:
        p = k.procs.get(1)
        return p is not None and any(tm.timer.armed and tm.interval
                                     for tm in p.ptimers.timers.values())
    _freeze_thaw_checks(tmp_path, Workload("ptimers"), cond)


def test_freeze_with_a_timer_signal_pending_and_overrunning(tmp_path: Path) -> None:
    def cond(k: VKernel) -> bool:
        p = k.procs.get(1)
        return p is not None and any(i.code == -2 and i.uid >= 2 for i in p.pending.queue)
    _freeze_thaw_checks(tmp_path, Workload("ptimers"), cond)


def test_freeze_with_a_reader_asleep_on_a_signalfd(tmp_path: Path) -> None:
    _freeze_thaw_checks(tmp_path, Workload("signalfds"), _thread_reading(SignalFd))


# -- hostile images -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def armed_image(tmp_path_factory) -> tuple[Path, Path]:
    """An image of timerfds with a timerfd armed and an interval timer set."""
    base = tmp_path_factory.mktemp("armed")
    wl = Workload("timerfds")
    root = make_root(base, [wl.name])
    k, _ = _run_to(wl, root, _thread_reading(TimerFd))
    k.procs[1].itimers.set(0, 10**9, 10**6)
    path = base / "armed.img"
    write_image(k, str(path))
    k.shutdown()
    return path, root


def _mutated(armed_image: tuple[Path, Path], tmp_path: Path, kind: str,
             edit: Callable[[dict], None]) -> Path:
    src, _ = armed_image
    recs = copy.deepcopy(load_records(src))
    hits = [r for r in recs if r[0] == kind and edit(r[3]) is not False]
    assert hits, f"no {kind} record to edit"
    return write_records(tmp_path / "bad.img", src, recs)


def _thaws(path: Path, root: Path) -> None:
    k = thaw(str(path), ThawOptions(root=str(root), stdout=lambda b: None,
                                    deliver_sigthaw=False))
    k.shutdown()


def test_the_armed_image_thaws(armed_image) -> None:
    src, root = armed_image
    kinds = {r[3].get("kind") for r in load_records(src) if r[0] == "file"}
    assert "timerfd" in kinds
    assert any("itimers" in r[3] for r in load_records(src) if r[0] == "process")
    _thaws(src, root)


def _timerfd_edit(change: dict) -> Callable[[dict], bool]:
    def edit(d: dict) -> bool:
        if d.get("kind") != "timerfd" or not d["armed"][1]:
            return False
        d.update(change)
        return True
    return edit


@pytest.mark.parametrize("change", [
    {"armed": [5, 1 << 40]},      # a sequence the scheduler never handed out
    {"clock": 99},                # no such clock
    {"next": None},               # armed without an expiry
    {"count": 3},                 # armed while expirations wait to be read
], ids=["seq", "clock", "next", "count"])
def test_a_timerfd_no_live_timer_could_have_is_refused(armed_image, tmp_path, change) -> None:
    bad = _mutated(armed_image, tmp_path, "file", _timerfd_edit(change))
    with pytest.raises(ImageError):
        _thaws(bad, armed_image[1])


@pytest.mark.parametrize("rows", [
    [[0, 5, 0, 1 << 40]],            # ITIMER_REAL armed with a sequence never handed out
    [[7, 5, 0, 0]],                  # no such timer
    [[1, 0, 5, 0]],                  # a CPU timer with a period but no value
    [[1, 5, 0, 0], [1, 6, 0, 0]],    # one timer twice
], ids=["seq", "which", "period-only", "twice"])
def test_interval_timers_setitimer_could_not_set_are_refused(armed_image, tmp_path,
                                                             rows) -> None:
    def edit(d: dict) -> bool:
        if d.get("pid") != 1:
            return False
        d["itimers"] = rows
        return True
    bad = _mutated(armed_image, tmp_path, "process", edit)
    with pytest.raises(ImageError):
        _thaws(bad, armed_image[1])


def test_timer_values_saturate_at_ktime_max() -> None:
    """A setting past ktime's range saturates (and saves within i64), as Linux's does."""
    clock = [5]
    s = Scheduler()
    f = TimerFd(0, 1, _svc(clock, s))
    f.settime(1 << 70, 1 << 70, absolute=False)
    assert f.next == (1 << 63) - 1 and f.interval == (1 << 63) - 1
    assert not s.skip_idle()  # a timer at KTIME_MAX never fires: nothing to wait for
