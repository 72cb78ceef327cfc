"""The metadata calls of issue 14 inside the vkernel: owners, xattrs, named FIFOs, fallocate,
chroot and ioprio, their rules the host cannot show (device nodes, bounds, read-only binds),
and freezes of a run with a named FIFO open and a chrooted process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.abi.syscalls import NUMBERS
from vkckpt.ckpt.snapshot import write_image
from vkckpt.config import KernelConfig, ProcessSpec
from vkckpt.errors import GuestError, ImageError
from vkckpt.fs.binds import BindSpec
from vkckpt.fs.fifo import FifoEnd
from vkckpt.fs.inode_meta import MAX_XATTRS, InodeMeta
from vkckpt.runner import boot
from vkckpt.testing.oracle import golden, thaw_in_process, thaw_refreeze_finish
from vkckpt.testing.workload import Workload, make_root

META = Workload("metacalls", ("work",))


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("meta")


class Caller:
    """Calls syscalls as pid 1 of a booted (not running) vkernel, strings on its stack."""

    def __init__(self, root: Path, binds: list[BindSpec] | None = None) -> None:
        cfg = KernelConfig(root=str(root), stdout=lambda b: None,
                           processes=[ProcessSpec("/metacalls", ["metacalls"])])
        self.k = boot(cfg)
        for b in binds or []:
            self.k.root.bind(b)
        self.t = self.k.threads[1]
        self.scratch = self.t.process.engine.reg("rsp") - 8192

    def str(self, s: str, slot: int = 0) -> int:
        addr = self.scratch + slot * 512
        self.t.process.vm.write(addr, s.encode() + b"\0")
        return addr

    def __call__(self, name: str, *args: int) -> int:
        return self.k.dispatch(self.t, NUMBERS[name], (*args, 0, 0, 0, 0, 0, 0)[:6])


def test_device_and_socket_nodes_are_refused(base: Path) -> None:
    c = Caller(make_root(base, ["metacalls"]))
    for kind in (F.S_IFCHR, F.S_IFBLK, 0o140000):
        assert c("mknod", c.str("/work/n"), kind | 0o600, 0x103) == -E.EPERM
    assert not os.path.lexists(Path(c.k.root.host_root, "work/n"))
    assert c("mknod", c.str("/work/n"), 0o170000 | 0o600, 0) == -E.EINVAL


def test_fifo_is_a_placeholder_file_on_the_host(base: Path) -> None:
    root = make_root(base, ["metacalls"])
    c = Caller(root)
    assert c("mknod", c.str("/work/p"), F.S_IFIFO | 0o644, 0) == 0
    host = root / "work/p"
    assert host.is_file() and host.stat().st_size == 0  # never a real FIFO node
    fd = c("open", c.str("/work/p"), F.O_RDONLY | F.O_NONBLOCK, 0)
    assert isinstance(c.t.process.fds.get(fd), FifoEnd)
    assert c("open", c.str("/work/p"), F.O_CREAT | F.O_EXCL | F.O_WRONLY, 0o644) == -E.EEXIST
    assert c("unlink", c.str("/work/p")) == 0


def test_fallocate_other_modes_are_not_supported(base: Path) -> None:
    c = Caller(make_root(base, ["metacalls"]))
    fd = c("open", c.str("/work/g"), F.O_CREAT | F.O_RDWR, 0o644)
    for mode in (0x8, 0x10, 0x20, 0x40):  # collapse, zero, insert range, unshare
        assert c("fallocate", fd, mode, 0, 4096) == -E.EOPNOTSUPP
    assert c("fallocate", fd, 0, 0, 4096) == 0
    assert os.path.getsize(Path(c.k.root.host_root, "work/g")) == 4096


def test_read_only_bind_refuses_every_metadata_change(base: Path, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "f").write_text("x")
    root = make_root(base, ["metacalls"])
    c = Caller(root, [BindSpec(str(ro), "/work", ro=True)])
    f = c.str("/work/f")
    n = c.str("user.a", 1)
    assert c("chown", f, 1, 1) == -E.EROFS
    assert c("setxattr", f, n, c.str("v", 2), 1, 0) == -E.EROFS
    assert c("removexattr", f, n) == -E.EROFS
    assert c("mknod", c.str("/work/p", 3), F.S_IFIFO | 0o600, 0) == -E.EROFS
    fd = c("open", f, F.O_RDONLY, 0)
    assert c("fchown", fd, 1, 1) == -E.EROFS
    assert c("fsetxattr", fd, n, c.str("v", 2), 1, 0) == -E.EROFS
    assert c("getxattr", f, n, 0, 0) == -E.ENODATA  # reading is fine


def test_chroot_never_leaves_the_guest_root(base: Path) -> None:
    root = make_root(base, ["metacalls"])
    (root / "work/j").mkdir()
    (root / "work/j/link").symlink_to("/../../../..")
    c = Caller(root)
    assert c("chroot", c.str("/work/j")) == 0
    assert c.t.process.root == "/work/j"
    r = c.k.root.resolve("/link/../..", "/", top=c.t.process.root)
    assert r.guest == "/work/j"
    assert c("chroot", c.str("/work/nope")) == -E.ENOENT


def test_xattr_bounds(tmp_path: Path) -> None:
    m = InodeMeta()
    for i in range(MAX_XATTRS):
        m.setxattr(b"user.%d" % i, b"v", 0, F.S_IFREG)
    with pytest.raises(GuestError) as exc:
        m.setxattr(b"user.more", b"v", 0, F.S_IFREG)
    assert exc.value.errno == E.ENOSPC
    with pytest.raises(GuestError) as exc:
        m.setxattr(b"user.big", bytes(F.XATTR_SIZE_MAX + 1), 0, F.S_IFREG)
    assert exc.value.errno == E.E2BIG
    with pytest.raises(ImageError):
        InodeMeta.load([5, 0, 0, False, [[b"user.%d" % i, b""] for i in range(MAX_XATTRS + 1)]])
    with pytest.raises(ImageError):
        InodeMeta.load([5, 0, 0, False, [[b"system.posix_acl_access", b""]]])
    vino, back = InodeMeta.load(m.save(9))
    assert vino == 9 and back.xattrs == m.xattrs


def _has_fifo_open(k) -> bool:
    return any(isinstance(f, FifoEnd) for p in k.procs.values() if not p.zombie
               for f, _ in p.fds.fds.values())


def _fifo_open_sleeper(k) -> bool:
    return any(t.sleep is not None and t.sleep.queue is not None and
               t.sleep.queue.key[0].startswith("fifo-open") for t in k.threads.values())


def _chrooted(k) -> bool:
    return any(p.root != "/" for p in k.procs.values() if not p.zombie)


@pytest.mark.parametrize("cond", [_has_fifo_open, _fifo_open_sleeper, _chrooted],
                         ids=["fifo-open", "asleep-in-fifo-open", "chrooted"])
def test_frozen_with_fifo_or_chroot_thaws_identically(base: Path, cond) -> None:
    """Freeze at the first scheduling point where the state exists; the thawed run has it
    and finishes as the uninterrupted one, and refreezes to the same image."""
    gold = golden(META, make_root(base, [META.name]))
    root = make_root(base, [META.name])
    out: list[bytes] = []
    k = boot(META.config(root, out))
    assert k.run(on_schedule_point=cond) is None, "the run never reached the state"
    image = root / "x.img"
    write_image(k, str(image))
    k.shutdown()

    def check(k2) -> None:  # noqa: ANN001
        assert cond(k2), "the thaw lost the state"

    thaw_refreeze_finish(image, root, out, gold, check)


def test_sysinfo_reports_the_memory_account(base: Path) -> None:
    import struct

    c = Caller(make_root(base, ["metacalls"]))
    buf = c.scratch + 2048
    assert c("sysinfo", buf) == 0
    fields = struct.unpack("<q3Q6QHxx4x2QI4x", c.t.process.vm.read(buf, 112))
    total, free, procs, unit = fields[4], fields[5], fields[10], fields[13]
    assert total == c.k.config.memory_limit and unit == 1 and procs == 1
    assert free == total - c.k.mem.used and 0 < free < total
    assert fields[1:4] == (0, 0, 0)  # no load


def test_getcwd_outside_the_chroot_is_unreachable(base: Path) -> None:
    root = make_root(base, ["metacalls"])
    (root / "work/j").mkdir()
    c = Caller(root)
    c.t.process.cwd = "/work"
    assert c("chroot", c.str("/work/j")) == 0
    buf = c.scratch + 2048
    n = c("getcwd", buf, 64)
    assert c.t.process.vm.read(buf, n) == b"(unreachable)/work\0"
    assert c("chdir", c.str("/")) == 0 and c.t.process.cwd == "/work/j"
    n = c("getcwd", buf, 64)
    assert c.t.process.vm.read(buf, n) == b"/\0"
    assert c("ioprio_get", 1, 0) == 0 and c("ioprio_set", 1, 0, (1 << 13) | 2) == 0
    assert c.t.process.ioprio == (1 << 13) | 2 and c("ioprio_get", 1, 4242) == -E.ESRCH


def test_dev_fd_reopens_the_same_file_inside_a_chroot(base: Path) -> None:
    root = make_root(base, ["metacalls"])
    (root / "work/j").mkdir()
    (root / "work/j/x").write_text("x")
    c = Caller(root)
    assert c("chroot", c.str("/work/j")) == 0
    fd = c("open", c.str("/x"), F.O_RDONLY, 0)
    again = c("open", c.str(f"/dev/fd/{fd}", 1), F.O_RDONLY, 0)
    assert again > fd
    assert c.t.process.fds.get(again).guest_path == "/work/j/x"


def test_a_named_fifo_is_not_executable(base: Path) -> None:
    c = Caller(make_root(base, ["metacalls"]))
    assert c("mknod", c.str("/work/p"), F.S_IFIFO | 0o755, 0) == 0
    argv = c.scratch + 1024
    c.t.process.vm.write(argv, bytes(16))
    assert c("execve", c.str("/work/p"), argv, argv) == -E.EACCES


def test_fifo_end_whose_placeholder_lost_its_marker_is_refused(base: Path) -> None:
    from vkckpt.testing.hostile_images import load_records, write_records

    root = make_root(base, [META.name])
    k = boot(META.config(root, []))
    assert k.run(on_schedule_point=_has_fifo_open) is None
    image = root / "x.img"
    write_image(k, str(image))
    k.shutdown()
    recs = load_records(image)
    kr = next(r for r in recs if r[0] == "kernel")[3]
    assert any(row[3] for row in kr["inode_meta"])  # the FIFO marker is saved
    del kr["inode_meta"]
    bad = write_records(root / "bad.img", image, recs)
    with pytest.raises(ImageError, match="no longer the named FIFO"):
        thaw_in_process(bad, [], root)


def _fifo_image(base: Path) -> tuple[Path, Path, list]:
    """(root, image, records) of metacalls frozen with a named FIFO open."""
    from vkckpt.testing.hostile_images import load_records

    root = make_root(base, [META.name])
    k = boot(META.config(root, []))
    assert k.run(on_schedule_point=_has_fifo_open) is None
    image = root / "x.img"
    write_image(k, str(image))
    k.shutdown()
    return root, image, load_records(image)


def test_a_v1_fifo_flag_thaws_as_the_fifo_kind(base: Path) -> None:
    """A v1 kernel record's inode_meta flag (True: a FIFO) is upgraded to S_IFIFO."""
    from vkckpt.testing.hostile_images import write_records

    root, image, recs = _fifo_image(base)
    kr = next(r for r in recs if r[0] == "kernel")
    kinds = {row[0]: row[3] for row in kr[3]["inode_meta"]}
    assert kr[1] == 2 and F.S_IFIFO in kinds.values()
    kr[1] = 1
    kr[3]["inode_meta"] = [[*row[:3], row[3] == F.S_IFIFO, row[4]]
                           for row in kr[3]["inode_meta"]]
    k = thaw_in_process(write_records(root / "v1.img", image, recs), [], root)
    try:
        assert _has_fifo_open(k)
        assert {v: m.kind for v, m in k.inodes.meta.items()} == kinds
    finally:
        k.shutdown()
    kr[3]["inode_meta"][0][3] = 0  # no bool: not a v1 row
    with pytest.raises(ImageError, match="is no v1 row"):
        thaw_in_process(write_records(root / "bad.img", image, recs), [], root)


def test_a_placeholder_kind_on_a_directory_is_refused(base: Path) -> None:
    """An image may give a FIFO or socket type only to a regular file (its placeholder)."""
    from vkckpt.testing.hostile_images import write_records

    root, image, recs = _fifo_image(base)
    kr = next(r[3] for r in recs if r[0] == "kernel")
    (root / "work/d").mkdir()
    vino, kr["next_ino"] = kr["next_ino"], kr["next_ino"] + 1
    kr["inodes"].append(["/work/d", vino, None])
    kr["inode_meta"].append([vino, 0, 0, F.S_IFSOCK, []])
    with pytest.raises(ImageError, match="is no regular file"):
        thaw_in_process(write_records(root / "bad.img", image, recs), [], root)
