"""Freeze/thaw against the central oracle: frozen anywhere and thawed, a run finishes exactly
as the run that was never frozen (output, statuses, ticks, and full-state digests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vkckpt.ckpt.snapshot import write_image
from vkckpt.testing.digest import state_digest
from vkckpt.testing.oracle import (
    Workload,
    freeze_points,
    frozen_and_thawed_here,
    golden,
    run_until,
    thaw_in_new_process,
    thaw_in_process,
)
from vkckpt.testing.workload import make_root

WORKLOADS = [
    Workload("pthreads"),            # mutex, condvar, TLS, futex waits at many points
    Workload("signals"),             # handlers, masks, sigaltstack, sigsuspend, FP state
    Workload("forkpipe"),            # fork, pipe reads, wait4 sleeps, a killed child
    Workload("execer"),              # fork + execve + wait
    Workload("files", ("work",)),    # descriptors, offsets, directories in the guest root
    Workload("mmaps", ("work",)),    # VMAs split and protected, SIGSEGV handled, brk
    Workload("segfault", quantum=37),  # dies of SIGSEGV after the thaw
    Workload("hello", ("a", "b c"), quantum=101, env=(("HELLO_GREETING", "hi"),)),
    Workload("pollpipes"),           # poll over several pipes, ppoll's temporary mask
    Workload("sigwait"),             # sigwait/sigtimedwait, a signal thread
    Workload("dynelf", ("work",)),   # auxv and execve of itself (tests/test_dynelf.py: dynamic)
    Workload("epolls", ("work",)),   # epoll interest and ready lists, waits asleep
    Workload("eventfds"),            # eventfd counters, blocked reads/writes, select
    Workload("reclocks", ("work",)),  # locks held across the freeze, waiters asleep on them
    Workload("metacalls", ("work",)),  # owners, xattrs, named FIFOs (open, asleep), chroot
    Workload("procread", ("work",)),  # /proc files and directories open, read, listed
    Workload("timerfds"),            # armed timerfds, reads/polls/epoll waits asleep on them
    Workload("signalfds"),           # signalfd masks, reads asleep until a signal arrives
    Workload("itimers"),             # ITIMER_REAL armed, CPU timers counting, alarm + pause
    Workload("ptimers"),             # POSIX timers armed, overruns counted while pending
    Workload("shmfile", ("work",)),  # MAP_SHARED file pages shared by two processes, SIGBUS
    Workload("unixpair"),            # socketpairs across fork, SCM_RIGHTS, shutdown, EPIPE
    Workload("unixserver", ("work",)),  # listeners, accept queues, an epoll accept loop
    Workload("unixdgram", ("work",)),   # datagram queues with sender names, seqpacket
    Workload("unixgc"),              # sockets in flight in cycles, collected once closed
    Workload("tcploop"),             # TCP listeners, accept queues, bytes in flight, resets
    Workload("udploop"),             # UDP datagrams queued with source addresses, v6
    Workload("sockedge", ("work",)),  # a reset pending as SO_ERROR, refused connects
    Workload("netbench"),            # a non-blocking connect waiting on a full backlog
    Workload("bigwrite"),            # writes asleep with part of their bytes written
    Workload("rlimits", quantum=97),  # changed limits kept by fork, execve and the image
    Workload("ghosts", ("work",)),   # open unlinked files: tmpfile, shared descriptions, fork
]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ft")


def _combined(before: list[bytes], after: bytes) -> bytes:
    return b"".join(before) + after


@pytest.mark.parametrize("wl", WORKLOADS, ids=lambda w: w.name)
def test_frozen_anywhere_thaws_identically_in_process(base: Path, wl: Workload) -> None:
    """Many freeze points per workload, thawed in this process (fast, dense coverage)."""
    gold = golden(wl, make_root(base, [wl.name]))
    points = freeze_points(gold, 12, seed=1)
    tried = 0
    for at in points:
        before, after, k2 = frozen_and_thawed_here(wl, make_root(base, [wl.name]), at)
        status2 = k2.run()
        assert _combined(before, b"".join(after)) == gold.output, f"output differs at {at}"
        assert status2 == gold.status, f"status differs at {at}"
        assert k2.sched.ticks == gold.ticks, f"ticks differ at {at}"
        assert k2.statuses == gold.statuses
        tried += 1
    assert tried >= min(12, len(gold.points) - 1), "too few freeze points inside the run"


@pytest.mark.parametrize("wl", WORKLOADS[:5], ids=lambda w: w.name)
def test_thaw_in_a_fresh_host_process(base: Path, wl: Workload) -> None:
    """The image is thawed by `vkckpt thaw` in a new host process."""
    gold = golden(wl, make_root(base, [wl.name]))
    for at in freeze_points(gold, 2, seed=7):
        root = make_root(base, [wl.name])
        k, before, status = run_until(wl, root, at)
        assert status is None
        image = root / "x.img"
        write_image(k, str(image))
        out = thaw_in_new_process(image, root)
        assert _combined(before, out.output) == gold.output
        assert (out.status, out.ticks, out.statuses) == (gold.status, gold.ticks, gold.statuses)


@pytest.mark.parametrize("wl", [WORKLOADS[0], WORKLOADS[2], WORKLOADS[5]],
                         ids=lambda w: w.name)
def test_freeze_thaw_freeze_is_byte_identical(base: Path, wl: Workload) -> None:
    gold = golden(wl, make_root(base, [wl.name]))
    for at in freeze_points(gold, 3, seed=3):
        root = make_root(base, [wl.name])
        k, _, status = run_until(wl, root, at)
        assert status is None
        a, b = root / "a.img", root / "b.img"
        write_image(k, str(a))
        k2 = thaw_in_process(a, [], root)
        write_image(k2, str(b))
        assert a.read_bytes() == b.read_bytes(), f"re-frozen image differs at tick {at}"


@pytest.mark.parametrize("wl", [WORKLOADS[0], WORKLOADS[2]], ids=lambda w: w.name)
def test_thawed_state_tracks_the_golden_state(base: Path, wl: Workload) -> None:
    """Digest of the whole state (memory, registers, files, scheduler) at a later point is the
    same in the thawed run and in the run never frozen."""
    gold = golden(wl, make_root(base, [wl.name]))
    at, later = freeze_points(gold, 2, seed=11)
    root = make_root(base, [wl.name])
    k, _, _ = run_until(wl, root, at)
    image = root / "x.img"
    write_image(k, str(image))
    assert k.run(until_ticks=later) is None
    want = state_digest(k, root)
    k2 = thaw_in_process(image, [], root)
    assert k2.run(until_ticks=later) is None
    assert k2.sched.ticks == k.sched.ticks
    assert state_digest(k2, root) == want


def test_guest_memory_does_not_depend_on_host_file_metadata(base: Path) -> None:
    """Two runs of `files` in different guest roots (other inodes, other times) hold the same
    bytes in guest memory: stat shows virtual inodes and virtual-clock times."""
    from vkckpt.image import ImageReader

    wl = Workload("files", ("work",))
    gold = golden(wl, make_root(base, [wl.name]))
    for at in freeze_points(gold, 4, seed=13):
        pages = []
        for _ in range(2):
            root = make_root(base, [wl.name])
            k, _, _ = run_until(wl, root, at)
            image = root / "x.img"
            write_image(k, str(image))
            r = ImageReader(image)
            pages.append([r.pages(rec) for rec in r.records() if rec.type == "pages"])
        assert pages[0] == pages[1], f"guest memory differs between roots at tick {at}"
