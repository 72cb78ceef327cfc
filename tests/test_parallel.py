"""Deterministic parallelism (vkckpt/rounds.py): a run gives the same output, ticks, statuses,
scheduling points and images whatever the number of host threads, freezes and thaws across
modes finish like the run never frozen, and splitting a slice at its first syscall is exact.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vkckpt import rounds
from vkckpt.ckpt.snapshot import write_image
from vkckpt.runner import boot
from vkckpt.testing.digest import state_digest
from vkckpt.testing.oracle import run_noting, thaw_in_process
from vkckpt.testing.workload import Workload, make_root

#: Multi-process workloads whose run queue often holds two memory groups or more.
MULTI = {
    "compute_fork": Workload("compute_fork", ("3", "1"), quantum=20_000),
    "compute_fork_sig": Workload("compute_fork", ("2", "1", "sig"), quantum=20_000),
    "compute_fork_shm": Workload("compute_fork", ("2", "1", "shm"), quantum=20_000),
    "forkpipe": Workload("forkpipe"),
    "spawner": Workload("spawner", ("6", "3", "4"), quantum=5_000),
    "mutex_bench": Workload("mutex_bench", ("4", "300")),
    "pthreads": Workload("pthreads"),
}


def _run(wl: Workload, root: Path, cpus: int, always: bool = False) -> tuple:
    """(output, status, ticks, statuses, scheduling points, rounds run) of one whole run."""
    out: list[bytes] = []
    cfg = wl.config(root, out)
    cfg.cpus = cpus
    k = boot(cfg)
    k.always_round = always
    count = [0]
    real = rounds.run_round

    def counting(k_, pool):  # noqa: ANN001, ANN202
        count[0] += 1
        real(k_, pool)

    rounds.run_round = counting
    try:
        status, points = run_noting(k)
    finally:
        rounds.run_round = real
    result = (b"".join(out), status, k.sched.ticks, dict(k.statuses), points)
    k.shutdown()
    return result, count[0]


@pytest.mark.parametrize("name", sorted(MULTI))
def test_serial_and_parallel_runs_are_identical(name: str, tmp_path: Path) -> None:
    wl = MULTI[name]
    root = make_root(tmp_path, [wl.name])
    serial, n = _run(wl, root, 1)
    for cpus in (2, 4):
        assert _run(wl, root, cpus)[0] == serial, f"{name}: cpus={cpus} differs from serial"
    if name not in ("pthreads", "mutex_bench", "compute_fork_shm"):  # one memory group each
        assert n > 0, f"{name} ran no parallel round"
    else:
        assert n == 0, f"{name}: threads of one memory group must run plain slices"


@pytest.mark.parametrize("name", ["pthreads", "mutex_bench", "signals", "forkpipe", "itimers",
                                  "ptimers", "signalfds"])
def test_rounds_of_one_group_are_identical_too(name: str, tmp_path: Path) -> None:
    """Forcing every step to be a round (even of one process) is still mode-independent."""
    wl = MULTI.get(name, Workload(name))
    root = make_root(tmp_path, [wl.name])
    assert _run(wl, root, 1, always=True)[0] == _run(wl, root, 2, always=True)[0]


@pytest.mark.parametrize("name,args", [("getppid_loop", ("3000",)), ("compute", ()),
                                       ("signals", ()), ("hello", ())])
def test_a_round_of_one_thread_is_a_plain_slice(name: str, args: tuple, tmp_path: Path) -> None:
    """Parking at the first syscall and resuming there counts and runs exactly what one
    slice does: single-threaded runs keep their ticks and scheduling points."""
    wl = Workload(name, args, quantum=997 if name != "compute" else 20_000)
    root = make_root(tmp_path, [name])
    assert _run(wl, root, 1, always=True)[0] == _run(wl, root, 1)[0]


def test_shared_memory_puts_processes_in_one_group(tmp_path: Path) -> None:
    wl = MULTI["compute_fork_shm"]
    root = make_root(tmp_path, [wl.name])
    out: list[bytes] = []
    k = boot(wl.config(root, out))
    k.run(until_ticks=2_000_000)
    live = [t for t in k.threads.values() if t.alive]
    assert len({t.process.pid for t in live}) == 3
    assert len(rounds.memory_groups(live)) == 1
    k.shutdown()


@pytest.mark.parametrize("name", ["compute_fork_sig", "spawner", "forkpipe"])
def test_images_at_round_boundaries_are_identical(name: str, tmp_path: Path) -> None:
    wl = MULTI[name]
    root = make_root(tmp_path, [wl.name])
    (_, _, ticks, _, points), _ = _run(wl, root, 1)
    inside = [p for p in points if 0 < p < ticks]
    picks = [inside[len(inside) * i // 4] for i in (1, 2, 3)]
    for at in picks:
        digests = set()
        for cpus in (1, 2):
            cfg = wl.config(root, [])
            cfg.cpus = cpus
            k = boot(cfg)
            assert k.run(until_ticks=at) is None
            digests.add(state_digest(k, tmp_path))
            k.shutdown()
        assert len(digests) == 1, f"{name}: images at tick {at} differ between modes"


@pytest.mark.parametrize("freeze_cpus,thaw_cpus", [(2, 1), (1, 2)])
def test_thaw_across_modes_finishes_like_the_never_frozen_run(freeze_cpus: int, thaw_cpus: int,
                                                              tmp_path: Path) -> None:
    wl = MULTI["compute_fork_sig"]
    root = make_root(tmp_path, [wl.name])
    (want_out, want_status, want_ticks, want_statuses, _), _ = _run(wl, root, 1)
    for at in (want_ticks // 3, want_ticks * 2 // 3):
        before: list[bytes] = []
        cfg = wl.config(root, before)
        cfg.cpus = freeze_cpus
        k = boot(cfg)
        assert k.run(until_ticks=at) is None
        image = root / "x.img"
        write_image(k, str(image))
        k.shutdown()
        after: list[bytes] = []
        t = thaw_in_process(image, after, root)
        t.cpu_pool = rounds.CpuPool(thaw_cpus)
        status = t.run()
        assert (b"".join(before + after), status, t.sched.ticks, dict(t.statuses)) == \
            (want_out, want_status, want_ticks, want_statuses)
        t.shutdown()


def test_many_parallel_runs_agree(tmp_path: Path) -> None:
    """A stress run: four compute processes on four host threads, small slices, five runs."""
    wl = Workload("compute_fork", ("4", "1", "sig"), quantum=3_000)
    root = make_root(tmp_path, [wl.name])
    first, n = _run(wl, root, 4)
    assert n > 1000
    for _ in range(4):
        assert _run(wl, root, 4)[0] == first
    assert _run(wl, root, 1)[0] == first


def test_rounds_of_single_thread_groups_run_as_one_c_batch(tmp_path: Path, monkeypatch) -> None:
    """compute_fork's workers are one thread each: their phase 2 is a batch for the C crew
    (no Python on the host threads), and that run equals the thread-pool one and serial."""
    wl = MULTI["compute_fork"]
    root = make_root(tmp_path, [wl.name])
    batches = [0]
    real = rounds._batch

    def counting(*a):  # noqa: ANN002, ANN202
        batches[0] += 1
        return real(*a)

    monkeypatch.setattr(rounds, "_batch", counting)
    crew, _ = _run(wl, root, 2)
    assert batches[0] > 0, "the crew never ran a batch"
    monkeypatch.setattr(rounds.CpuPool, "crew", lambda self: None)
    pooled, _ = _run(wl, root, 2)
    assert crew == pooled == _run(wl, root, 1)[0]


_CREWS = """
from vkckpt.engine.preempt import native_library
from vkckpt.rounds import _Crew, _Job
lib = native_library()
assert lib is not None and hasattr(lib, "vk_crew_new"), "the C extension is not built"
for _ in range(2000):
    crew = _Crew(lib, 1)
    for _ in range(3):
        crew.run((_Job * 0)())
    crew.close()
print("stopped 2000 crews")
"""


def test_crews_started_and_stopped_one_after_another_never_hang() -> None:
    """Each thawed or shut-down vkernel stops its crew, and the next one's struct is often
    the freed one's memory: a worker must not read the crew once it has reported its last
    batch done (it did, saw the new crew's quit flag clear and took over a worker's slot,
    and vk_crew_free then waited for ever; 5 cycles were enough)."""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", _CREWS], capture_output=True, timeout=120)
    assert p.stdout == b"stopped 2000 crews\n", p.stderr.decode()[-2000:]
