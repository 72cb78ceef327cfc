"""Host resources (vkckpt-security(7), RESOURCE LIMITS): a guest cannot exhaust the host.

Each attack runs the `limits` guest under `vkckpt run` and measures the host RSS of the
vkckpt process (wait4's ru_maxrss), so the bound asserted is on the host, not on counters.
"""

from __future__ import annotations

import os
import resource
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vkckpt import hostout
from vkckpt.abi import errno as E
from vkckpt.ckpt.freeze import freeze
from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.config import KernelConfig, ProcessSpec
from vkckpt.engine.engine import Engine
from vkckpt.errors import GuestError
from vkckpt.runner import boot
from vkckpt.vmspace.account import DEFAULT_LIMIT, MAX_MAP_COUNT, MemAccount
from vkckpt.vmspace.vma import MAP_ANONYMOUS, MAP_PRIVATE, PAGE
from vkckpt.vmspace.vmspace import VmSpace

MiB = 1 << 20
#: RSS of a vkckpt process beyond its memory limit: the interpreter, Unicorn's code and
#: per-engine state the account charges at a flat rate (measured: ~35 MiB for one process).
OVERHEAD = 160 * MiB
TIMEOUT = 120


class Run:
    def __init__(self, rc: int, stdout: str, stderr: str, maxrss: int) -> None:
        self.rc, self.stdout, self.stderr, self.maxrss = rc, stdout, stderr, maxrss


#: Runs argv[2:] as a child and writes its peak RSS to argv[1]: the child is forked from
#: this small interpreter, not from pytest, whose RSS a fork would make the child's peak.
_MEASURE = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable] + sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss * 1024))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def vkckpt(root: Path, *args: str, limit: str | None = None, preexec=None) -> Run:
    """Run `vkckpt run` in root; returns its status, output and peak host RSS in bytes."""
    opts = ["--no-control"] + (["--memory-limit", limit] if limit else [])
    rss = root / ".rss"
    p = subprocess.run([sys.executable, "-c", _MEASURE, str(rss), "-m", "vkckpt", "run",
                        *opts, *args], cwd=root, capture_output=True,
                       stdin=subprocess.DEVNULL, preexec_fn=preexec, timeout=TIMEOUT)
    return Run(p.returncode, p.stdout.decode(), p.stderr.decode(), int(rss.read_text()))


# -- the vkernel-wide memory limit ------------------------------------------------------------


def test_twelve_processes_of_200_mib_stay_under_the_limit(make_root) -> None:
    """12 x 200 MiB touched used to take 4.7 GB of host memory whatever the limit."""
    r = vkckpt(make_root("limits"), "./limits", "hog", "12", "200", limit="512M")
    assert r.rc == 0, r.stderr
    mapped = int(r.stdout.split()[1])
    assert 1 <= mapped < 12, r.stdout
    assert r.maxrss < 512 * MiB + OVERHEAD, r.maxrss


def test_fork_bomb_stops_at_the_limit_with_enomem(make_root) -> None:
    """Forking until failure used to reach 1024 processes and 3 GB (EAGAIN)."""
    r = vkckpt(make_root("limits"), "./limits", "forkbomb", limit="256M")
    assert r.rc == 0, r.stderr
    assert r.stdout == "forkbomb: stopped by ENOMEM\n"
    assert r.maxrss < 256 * MiB + OVERHEAD, r.maxrss


def test_pipe_buffers_count_against_the_limit(make_root) -> None:
    """Filled pipes used to hold 64 MB (743 MB with forks) under a 16M limit."""
    r = vkckpt(make_root("limits"), "./limits", "pipes", limit="16M")
    assert r.rc == 0, r.stderr
    words = r.stdout.split()
    assert words[2:] == ["pipes,", "ENFILE,", "data", "intact"], r.stdout
    assert 0 < int(words[1]) * 65536 < 16 * MiB
    assert r.maxrss < 16 * MiB + OVERHEAD, r.maxrss


def test_too_small_a_limit_is_one_line_saying_what_to_do(make_root) -> None:
    r = vkckpt(make_root("limits"), "./limits", "pipes", limit="1M")
    assert r.rc == 126
    assert r.stderr == "vkckpt: /limits: does not fit the memory limit (raise --memory-limit)\n"


def test_thaw_rebuilds_the_account_and_keeps_the_limit(make_root) -> None:
    """The limit is in the kernel record; what the guests hold is recounted on thaw."""
    root = make_root("limits")
    out: list[bytes] = []
    cfg = KernelConfig(root=str(root), memory_limit=64 * MiB, stdout=out.append,
                       processes=[ProcessSpec("/limits", ["limits", "pipes"])])
    k = boot(cfg)
    assert k.run(until_ticks=200_000) is None
    image = root / "k.img"
    freeze(k, str(image))
    k2 = thaw(str(image), ThawOptions(root=str(root), stdout=out.append, stderr=out.append))
    assert (k2.mem.limit, k2.mem.used) == (k.mem.limit, k.mem.used)
    assert k.run() == k2.run() == 0
    assert out[0] == out[1] and out[0].startswith(b"pipes: ")
    k.shutdown()
    k2.shutdown()
    assert k.mem.used == k2.mem.used == hostout.COST  # every pipe and vmspace gave back


def test_the_default_limit_is_the_whole_vkernels() -> None:
    assert KernelConfig().memory_limit == DEFAULT_LIMIT == 16 << 30


# -- the VMA cap ------------------------------------------------------------------------------


def test_vma_cap_is_linux_max_map_count_and_gives_enomem() -> None:
    assert MAX_MAP_COUNT == 65530
    vm = VmSpace(Engine(on_syscall=lambda: False), MemAccount(), max_map_count=40)
    try:
        addrs = []
        with pytest.raises(GuestError) as ei:
            for i in range(100):  # alternating protections: nothing can merge
                addrs.append(vm.mmap(0, 3 * PAGE, 3 - 2 * (i % 2), MAP_PRIVATE | MAP_ANONYMOUS))
        assert ei.value.errno == E.ENOMEM and len(vm.vmas) == 40
        for split in (lambda: vm.mprotect(addrs[0], PAGE, 0),        # as in Linux, a split
                      lambda: vm.munmap(addrs[0] + PAGE, PAGE)):     # is one mapping more
            with pytest.raises(GuestError) as ei:
                split()
            assert ei.value.errno == E.ENOMEM
        assert len(vm.vmas) == 40
        vm.munmap(addrs[0], 3 * PAGE)
        vm.mprotect(addrs[1], PAGE, 3)  # now there is room for the split
        assert len(vm.vmas) == 39  # ... and the head joined the equal mapping below it
    finally:
        vm.release()


@pytest.mark.parametrize("pattern", [[], ["whole"]])
def test_many_mmap_and_mprotect_calls_keep_their_semantics(make_root, pattern) -> None:
    """The bounded slice of bench/maps.py (which reports the time growth as a ratio):
    every mapping keeps its protection whether mprotect splits it or changes it whole."""
    r = vkckpt(make_root("limits"), "./limits", "maps", "300", *pattern)
    assert (r.rc, r.stdout) == (0, "maps: ok\n"), r.stderr


def test_mprotect_of_whole_regions_changes_them_in_place() -> None:
    """No engine region is made or removed: mprotect of a whole VMA used to remap it."""
    vm = VmSpace(Engine(on_syscall=lambda: False), MemAccount())
    try:
        a = vm.mmap(0, 2 * PAGE, 3, MAP_PRIVATE | MAP_ANONYMOUS)
        vm.write(a, b"kept")
        before = vm.engine.regions()
        vm.mprotect(a, 2 * PAGE, 1)
        after = vm.engine.regions()
        assert [(b, e) for b, e, _ in after] == [(b, e) for b, e, _ in before]
        assert [p for _, _, p in after] == [1]  # UC_PROT_READ: the engine faults a store
        assert vm.read(a, 4) == b"kept"
        with pytest.raises(GuestError):
            vm.write(a, b"x")
    finally:
        vm.release()


# -- execve reads only what it loads ----------------------------------------------------------


def _elf(loads: list[tuple[int, int, int]]) -> bytes:
    """A static ELF whose entry runs exit(0); loads are (offset, filesz, memsz) extra PT_LOADs
    after the one holding the code."""
    code = bytes([0xB8, 60, 0, 0, 0, 0x31, 0xFF, 0x0F, 0x05])  # mov eax,60; xor edi,edi; syscall
    phnum = 1 + len(loads)
    code_at = 64 + 56 * phnum
    ehdr = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8) + struct.pack(
        "<HHIQQQIHHHHHH", 2, 62, 1, 0x400000 + code_at, 64, 0, 0, 64, 56, phnum, 64, 0, 0)
    size = code_at + len(code)
    phs = struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, size, size, 4096)
    for i, (off, filesz, memsz) in enumerate(loads):
        va = 0x1000_0000 * (i + 1)
        phs += struct.pack("<IIQQQQQQ", 1, 6, off, va, va, filesz, memsz, 4096)
    return ehdr + phs + code


def _program(root: Path, name: str, image: bytes, size: int = 0) -> None:
    p = root / name
    p.write_bytes(image)
    if size:
        os.truncate(p, size)
    p.chmod(0o755)


def test_execve_of_an_8_gib_sparse_file_reads_only_its_segments(make_root) -> None:
    """The whole file used to be read into memory before its headers were looked at."""
    root = make_root()
    _program(root, "sparse", _elf([(8192, 4096, 8192)]), 8 << 30)
    r = vkckpt(root, "./sparse")
    assert r.rc == 0, r.stderr
    assert r.maxrss < OVERHEAD, r.maxrss


def test_execve_refuses_segments_beyond_the_file_or_the_limit(make_root) -> None:
    root = make_root()
    _program(root, "beyond", _elf([(8192, 1 << 40, 1 << 40)]), 1 << 20)
    _program(root, "huge", _elf([(8192, 4096, 1 << 40)]), 1 << 20)
    r = vkckpt(root, "./beyond")
    assert r.rc == 126 and "not an x86-64 executable" in r.stderr, r.stderr
    r = vkckpt(root, "./huge")
    assert r.rc == 126 and "does not fit the memory limit" in r.stderr, r.stderr
    assert r.maxrss < OVERHEAD


def _nofile(n: int):
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    return lower


# -- the host-fd reserve -----------------------------------------------------------------------


def test_guest_files_leave_host_fds_for_a_freeze(make_root) -> None:
    """A guest opening files until it fails must not leave the vkernel without descriptors:
    its checkpoint(2) used to fail (EMFILE on the image's temporary file)."""
    root = make_root("limits")
    r = vkckpt(root, "./limits", "fds", "/f.img", preexec=_nofile(200))
    assert r.rc == 0, r.stderr
    assert r.stdout == "fds: stopped by ENFILE\ncheckpointed\n", r.stderr
    t = subprocess.run([sys.executable, "-m", "vkckpt", "thaw", "--root", str(root),
                        "--no-control", str(root / "f.img")], cwd=root, capture_output=True,
                       preexec_fn=_nofile(200), timeout=TIMEOUT)
    assert t.returncode == 0, t.stderr
    assert t.stdout == b"resumed\n"


def test_a_failed_open_at_emfile_gives_its_host_fd_back(make_root) -> None:
    """Opens past the guest's 1024 descriptors used to leak one host descriptor each."""
    root = make_root("limits")
    cfg = KernelConfig(root=str(root), stdout=lambda b: None,
                       processes=[ProcessSpec("/limits", ["limits", "fds", "/x.img"])])
    k = boot(cfg)
    k.host_fds.budget = 5000
    k.run(on_schedule_point=lambda k: k.host_request is not None)
    assert k.host_fds.held == 1021  # 1024 guest descriptors, 3 of them the console
    k.procs[1].fds.close_all()
    assert k.host_fds.held == 0
    k.shutdown()


# -- console output never stalls the vkernel ---------------------------------------------------


def test_a_stalled_stdout_reader_does_not_block_freezes(make_root) -> None:
    """3.2 MB to a pipe nobody reads: a blocking write used to stop the whole vkernel, so
    `vkckpt freeze --pid` timed out.  Now the request is served during the stall, the
    output is complete and in order once read, and the schedule is the unstalled one."""
    root = make_root("limits")
    lines = 200_000
    quiet = subprocess.run([sys.executable, "-m", "vkckpt", "run", "--no-control", "--stats",
                            "quiet.yaml", "./limits", "spew", str(lines)], cwd=root,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=TIMEOUT)
    assert quiet.returncode == 0, quiet.stderr
    p = subprocess.Popen([sys.executable, "-m", "vkckpt", "run", "--stats", "stalled.yaml",
                          "./limits", "spew", str(lines)], cwd=root, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        time.sleep(2)  # the pipe (64 KiB) and the console queue (1 MiB) are full by now
        assert p.poll() is None
        f = subprocess.run([sys.executable, "-m", "vkckpt", "freeze", "--pid", str(p.pid),
                            "-o", str(root / "stall.img"), "--timeout", "30"],
                           capture_output=True, timeout=60)
        assert f.returncode == 0, f.stderr
        out, err = p.communicate(timeout=TIMEOUT)
    finally:
        p.kill()
        p.wait()
    assert p.returncode == 0, err
    assert out == b"".join(b"%015d\n" % i for i in range(lines))
    assert err.endswith(b"spew: done\n")
    ticks = [next(x for x in (root / n).read_text().splitlines() if x.startswith("ticks"))
             for n in ("quiet.yaml", "stalled.yaml")]
    assert ticks[0] == ticks[1]
    assert (root / "stall.img").stat().st_size > 0


def test_thaw_refuses_an_image_that_needs_more_than_its_limit() -> None:
    """A crafted image whose VMAs exceed the recorded limit is refused before it runs."""
    from vkckpt.errors import ImageError
    from vkckpt.vmspace.hostmem import HostBuffer
    from vkckpt.vmspace.state import load_vmspace

    buf = HostBuffer(64 * MiB, 1)
    vm = VmSpace(Engine(on_syscall=lambda: False), MemAccount(16 * MiB))
    d = {"brk_start": 0, "brk": 0,
         "vmas": [[0x1000_0000, 0x1000_0000 + 64 * MiB, 3, MAP_PRIVATE | MAP_ANONYMOUS, "",
                   1, 0, "", 0]]}
    try:
        with pytest.raises(ImageError, match="memory limit"):
            load_vmspace(d, vm, {1: buf})
    finally:
        vm.release()
    assert vm.mem.used == 0
