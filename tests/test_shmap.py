"""MAP_SHARED file mappings (vmspace/filemap.py): the host's own shared mapping of the file,
coherent with read/write; images record the file and range, never the pages."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

from vkckpt.ckpt.chain import ImageChain
from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.ckpt.snapshot import write_image
from vkckpt.engine.engine import Engine
from vkckpt.errors import GuestError, ImageError
from vkckpt.host.fds import HostFds
from vkckpt.image import ImageReader
from vkckpt.rounds import memory_groups
from vkckpt.testing.hostile_images import load_records, write_records
from vkckpt.testing.oracle import golden, run_until, thaw_in_process
from vkckpt.testing.workload import Workload, make_root
from vkckpt.vmspace import filemap
from vkckpt.vmspace.filemap import FileBuffer
from vkckpt.vmspace.vma import MAP_SHARED, PAGE
from vkckpt.vmspace.vmspace import VmSpace

WL = Workload("shmfile", ("work",))
RW = 3


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shmap")


@pytest.fixture(scope="module")
def gold(base: Path):
    return golden(WL, make_root(base, [WL.name]))


def _mid_exchange(base: Path, gold) -> tuple[Path, Path, list[bytes]]:
    """An image of shmfile frozen while parent and child exchange values through the map:
    (image, root, the output before the freeze)."""
    for at in gold.points[len(gold.points) // 5:]:
        root = make_root(base, [WL.name])
        k, before, status = run_until(WL, root, at)
        assert status is None
        if len(k.procs) == 2 and any(v.buf.file_key for p in k.procs.values()
                                     for v in p.vm.vmas):
            image = root / "x.img"
            write_image(k, str(image))
            k.shutdown()
            return image, root, before
        k.shutdown()
    raise AssertionError("no freeze point inside the exchange")


def test_frozen_mid_exchange_thaws_identically(base: Path, gold) -> None:
    assert b"shmfile OK" in gold.output and gold.status == 0
    image, root, before = _mid_exchange(base, gold)
    recs = load_records(image)
    maps = [f for t, _, _, f in recs if t == "filemap"]
    assert len(maps) == 1 and maps[0]["path"] == "/work/shm.dat" and maps[0]["writable"]
    assert maps[0]["size"] == 2 * PAGE and maps[0]["file_off"] == 0
    # the file's pages are the file's: no page records, no buffer record for them
    bid = maps[0]["bid"]
    assert not any(t in ("pages", "zero_pages") and f["buf"] == bid for t, _, _, f in recs)
    assert not any(t == "buffer" and f["bid"] == bid for t, _, _, f in recs)
    after: list[bytes] = []
    k2 = thaw_in_process(image, after, root)
    try:
        assert k2.run() == gold.status
        assert b"".join(before) + b"".join(after) == gold.output
        assert k2.sched.ticks == gold.ticks
    finally:
        k2.shutdown()


def test_thaw_then_freeze_writes_the_sameload_records(base: Path, gold) -> None:
    image, root, _ = _mid_exchange(base, gold)
    k2 = thaw_in_process(image, [], root)
    again = root / "y.img"
    write_image(k2, str(again))
    k2.shutdown()
    strip = [r for r in load_records(image) if r[0] != "meta"]
    assert [r for r in load_records(again) if r[0] != "meta"] == strip


def test_thaw_refuses_a_mapped_file_changed_since(base: Path, gold) -> None:
    image, root, _ = _mid_exchange(base, gold)
    with open(root / "work" / "shm.dat", "r+b") as f:
        f.write(b"\xff" * 8)
    with pytest.raises(ImageError, match="changed since the freeze"):
        thaw_in_process(image, [], root)


def test_read_only_thaw_maps_copy_on_write(base: Path, gold) -> None:
    image, root, _ = _mid_exchange(base, gold)
    data = (root / "work" / "shm.dat").read_bytes()
    k2 = thaw(str(image), ThawOptions(root=str(root), read_only=True, stdout=lambda b: None,
                                      stderr=lambda b: None, deliver_sigthaw=False))
    try:
        bufs = [v.buf for p in k2.procs.values() for v in p.vm.vmas if v.buf.file_key]
        assert bufs and all(b.private for b in bufs)
        p = next(p for p in k2.procs.values() if any(v.buf.file_key for v in p.vm.vmas))
        v = next(v for v in p.vm.vmas if v.buf.file_key)
        p.vm.write(v.start, b"\x99" * 16)
        assert p.vm.read(v.start, 16) == b"\x99" * 16
        assert (root / "work" / "shm.dat").read_bytes() == data
    finally:
        k2.shutdown()


def test_incremental_images_never_hold_file_pages(base: Path, gold) -> None:
    """Stores into the shared file page between two freezes of a chain: the incremental
    image holds the filemap record again and no page of it; the chain thaws identically."""
    for at in gold.points[len(gold.points) // 5:]:
        root = make_root(base, [WL.name])
        k, _, _ = run_until(WL, root, at)
        if len(k.procs) == 2:
            break
        k.shutdown()
    chain = ImageChain()
    write_image(k, str(root / "a.img"), chain=chain)
    p = next(p for p in k.procs.values() if any(v.buf.file_key for v in p.vm.vmas))
    v = next(v for v in p.vm.vmas if v.buf.file_key)
    data = p.vm.read(v.start + 1024, 64)
    p.vm.write(v.start + 1024, b"\x01" * 64)  # a written file page, as the guest would
    p.vm.write(v.start + 1024, data)           # ... and put back: the run goes on as it was
    assert k.run(until_ticks=k.sched.ticks + 3000) is None
    write_image(k, str(root / "b.img"), chain=chain, incremental=True)
    k.shutdown()
    recs = load_records(root / "b.img")
    bid = next(f for t, _, _, f in recs if t == "filemap")["bid"]
    assert ImageReader(root / "b.img").header.flags & 1
    assert not any(t in ("pages", "zero_pages") and f["buf"] == bid for t, _, _, f in recs)
    after: list[bytes] = []
    k2 = thaw_in_process(root / "b.img", after, root)
    try:
        assert k2.run() == gold.status
        assert k2.sched.ticks == gold.ticks
        assert gold.output.endswith(b"".join(after)) and b"shmfile OK" in b"".join(after)
    finally:
        k2.shutdown()


HOSTILE = [("size", 4095), ("size", 1 << 62), ("file_off", 123), ("path", "work/shm.dat"),
           ("path", "/work/../../../etc/passwd"), ("path", "/work/missing"),
           ("writable", "yes"), ("bid", 0), ("fingerprint", {"size": 1})]


@pytest.mark.parametrize("field,value", HOSTILE, ids=[f"{f}={v!r}"[:40] for f, v in HOSTILE])
def test_hostile_filemap_fields_are_refused(base: Path, gold, field: str, value: object,
                                            tmp_path: Path) -> None:
    image, root, _ = _mid_exchange(base, gold)
    recs = copy.deepcopy(load_records(image))
    next(r for r in recs if r[0] == "filemap")[3][field] = value
    bad = write_records(tmp_path / "bad.img", image, recs)
    with pytest.raises(ImageError):
        k = thaw(str(bad), ThawOptions(root=str(root), stdout=lambda b: None,
                                       deliver_sigthaw=False))
        k.shutdown()


def test_filemap_bid_shared_with_a_buffer_is_refused(base: Path, gold, tmp_path: Path) -> None:
    image, root, _ = _mid_exchange(base, gold)
    recs = copy.deepcopy(load_records(image))
    other = next(r for r in recs if r[0] == "buffer")[3]["bid"]
    next(r for r in recs if r[0] == "filemap")[3]["bid"] = other
    bad = write_records(tmp_path / "dup.img", image, recs)
    with pytest.raises(ImageError, match="duplicated"):
        thaw(str(bad), ThawOptions(root=str(root), stdout=lambda b: None,
                                   deliver_sigthaw=False)).shutdown()


# -- the vmspace on a real engine ----------------------------------------------------------
def _file(tmp_path: Path, size: int) -> int:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, size)
    return fd


def _map(vm: VmSpace, fd: int, fds: HostFds, length: int, off: int = 0) -> int:
    return vm.mmap(0, length, RW, MAP_SHARED, path="/f", file_off=off,
                   backing=lambda size, bid: FileBuffer(fd, size, off, "/f", True, bid, fds))


def test_engine_maps_only_pages_inside_the_file(tmp_path: Path) -> None:
    fd, fds = _file(tmp_path, PAGE + 1), HostFds(100)
    vm = VmSpace(Engine(on_syscall=lambda: False))
    a = _map(vm, fd, fds, 4 * PAGE)
    assert vm.file_mapped == {a: 2 * PAGE}
    vm.write(a + PAGE, b"hi")
    assert os.pread(fd, 8, PAGE) == b"h"  # the byte past EOF stays in the page only
    assert filemap.file_fault(vm, a + 3 * PAGE) is False  # past EOF: SIGBUS
    assert filemap.file_fault(vm, a + 8) is None  # mapped: not a file page fault
    os.ftruncate(fd, 4 * PAGE)
    assert filemap.file_fault(vm, a + 3 * PAGE) is True  # grown: mapped, the access runs again
    os.ftruncate(fd, PAGE)
    filemap.sync_files(vm)
    assert vm.file_mapped == {a: PAGE}
    with pytest.raises(GuestError):
        vm.engine.read(a + PAGE, 1)


def test_fork_shares_file_pages_and_release_closes_the_file(tmp_path: Path) -> None:
    fd, fds = _file(tmp_path, 2 * PAGE), HostFds(100)
    vm = VmSpace(Engine(on_syscall=lambda: False))
    a = _map(vm, fd, fds, 2 * PAGE)
    child = vm.fork(Engine(on_syscall=lambda: False))
    assert vm.vmas.find(a).buf is child.vmas.find(a).buf and fds.held == 1
    child.write(a + 100, b"from the child")
    assert vm.read(a + 100, 14) == b"from the child"
    os.pwrite(fd, b"from write", 2000)
    assert child.read(a + 2000, 10) == b"from write"
    child.release()
    assert fds.held == 1
    vm.release()
    assert fds.held == 0  # the last mapping gone: its descriptor is closed


def test_processes_mapping_one_file_share_a_memory_group(tmp_path: Path) -> None:
    class P:
        def __init__(self, pid: int, vm: VmSpace) -> None:
            self.pid, self.vm = pid, vm

    class T:
        def __init__(self, p: P) -> None:
            self.process = p

    fd, fds = _file(tmp_path, PAGE), HostFds(100)
    vms = [VmSpace(Engine(on_syscall=lambda: False)) for _ in range(3)]
    _map(vms[0], fd, fds, PAGE)
    _map(vms[2], fd, fds, PAGE)  # separately mapped: its own buffer, the same file
    threads = [T(P(i + 1, vm)) for i, vm in enumerate(vms)]
    groups = memory_groups(threads)
    assert [[t.process.pid for t in g] for g in groups] == [[1, 3], [2]]
    for vm in vms:
        vm.release()
