"""Nothing is lost: a freeze killed mid-write or failing on a full disk leaves the previous
image intact and thawable; many chained freeze/thaw cycles neither diverge nor leak."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from vkckpt.ckpt.chain import ImageChain
from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.ckpt.snapshot import write_image
from vkckpt.errors import ImageError
from vkckpt.host import fs as hostfs
from vkckpt.image import ImageReader
from vkckpt.testing.crash import WRITER as CRASH_WRITER
from vkckpt.testing.crash import crash
from vkckpt.testing.oracle import Workload, golden, run_until
from vkckpt.testing.soak import soak
from vkckpt.testing.workload import make_root


def test_sigkill_during_freezes_never_damages_the_last_image(tmp_path: Path) -> None:
    """The bounded slice of `make crashtest` (which does 1000 kills): 50 SIGKILLs at random
    moments of a freeze loop; after each the last image verifies, thaws and runs to its
    end, and the next start-up leaves no temp file of the dead run behind."""
    rep = crash(50, tmp_path)
    assert rep.failures == []
    assert rep.kills == 50 and rep.checks >= 49
    assert rep.mid_write >= 1 and rep.reclaimed >= rep.mid_write  # kills did land mid-write


class _FullDisk:
    """forkpipe run to a third of its course and frozen into good.img, then run on to two
    thirds: the moment a freeze that hits a full disk must not damage anything."""

    def __init__(self, tmp_path: Path) -> None:
        wl = Workload("forkpipe")
        self.gold = golden(wl, make_root(tmp_path, ["forkpipe"]))
        a, self.b = (self.gold.points[len(self.gold.points) // 3],
                     self.gold.points[2 * len(self.gold.points) // 3])
        self.root = make_root(tmp_path, ["forkpipe"])
        self.k, self.out, _ = run_until(wl, self.root, a)
        self.good = self.root / "good.img"
        self.chain = ImageChain()
        write_image(self.k, str(self.good), chain=self.chain)
        self.before = self.good.read_bytes()

    def check_untouched(self) -> None:
        assert self.good.read_bytes() == self.before
        assert not [n for n in os.listdir(self.root) if hostfs.is_reserved(n)]

    def check_later_image_and_run(self, later: Path) -> None:
        """The live run ends as the golden one, and so does a thaw of later."""
        assert self.k.run() == self.gold.status
        assert b"".join(self.out) == self.gold.output
        thawed: list[bytes] = []
        k2 = thaw(str(later), ThawOptions(root=str(self.root), stdout=thawed.append,
                                          deliver_sigthaw=False))
        assert k2.run() == self.gold.status and self.gold.output.endswith(b"".join(thawed))


def test_full_disk_during_freeze_keeps_the_previous_image_and_the_run(tmp_path: Path) -> None:
    fd = _FullDisk(tmp_path)
    assert fd.k.run(until_ticks=fd.b) is None

    def enospc(written: int) -> None:
        if written > 4096:
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(ImageError, match="space"):
        write_image(fd.k, str(fd.good), chain=fd.chain, incremental=True, fault_hook=enospc)
    fd.check_untouched()
    later = fd.root / "later.img"
    # the failed freeze left no trace behind
    write_image(fd.k, str(later), chain=fd.chain, incremental=True)
    fd.check_later_image_and_run(later)


def test_full_disk_while_an_image_becomes_durable_in_the_background(tmp_path: Path) -> None:
    """The guests run on while a background freeze fails: wait() reports it, the previous
    image is untouched, and the next incremental freeze is a full one (its parent is gone)."""
    fd = _FullDisk(tmp_path)

    def enospc_while_committing(written: int) -> None:
        if threading.current_thread().name == "vkckpt-image-commit":
            raise OSError(errno.ENOSPC, "No space left on device")

    res = write_image(fd.k, str(fd.good), chain=fd.chain, incremental=True,
                      fault_hook=enospc_while_committing, background=True)
    assert fd.k.run(until_ticks=fd.b) is None  # the run goes on while the image is committed
    with pytest.raises(ImageError, match="space"):
        res.wait()
    fd.check_untouched()
    later = fd.root / "later.img"
    assert not write_image(fd.k, str(later), chain=fd.chain, incremental=True).header.incremental
    fd.check_later_image_and_run(later)


def test_soak_chain_matches_golden_and_does_not_leak(tmp_path: Path) -> None:
    r = soak(iterations=30, workdir=tmp_path)
    assert r.iterations == 30 and r.mismatches == []
    assert r.final_output_ok
    assert r.rss_end - r.rss_start < 64 << 20, "host memory grows across freeze/thaw cycles"


def test_interrupted_first_writer_leaves_no_file_at_the_path(tmp_path: Path) -> None:
    """Killed while its first image is being written, a writer leaves nothing at the path
    (O_TMPFILE) or a hidden temp file the next start-up reclaims (named temp files)."""
    root = make_root(tmp_path, ["pthreads"])
    image = tmp_path / "first.img"
    for tmpfile in ("1", "0"):
        p = subprocess.Popen([sys.executable, "-c", CRASH_WRITER, str(root), str(image)],
                             stdout=subprocess.PIPE, env={**os.environ, "VKCKPT_TMPFILE": tmpfile})
        assert p.stdout.readline() == b"up\n"
        while tmpfile == "0" and p.poll() is None and not any(
                hostfs.is_reserved(n) for n in os.listdir(tmp_path)):
            time.sleep(0.001)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        p.stdout.close()
        if image.exists():  # the first image completed before the kill landed
            ImageReader(image).verify()
        fd = hostfs.open_dir(tmp_path)
        hostfs.reclaim_temps(fd)  # what the next start-up does
        os.close(fd)
        assert not [n for n in os.listdir(tmp_path) if hostfs.is_reserved(n)]


def test_hostile_neighbours_do_not_disturb_freeze_and_thaw(make_root) -> None:
    """A crasher, a fork bomb and a spinner share the vkernel with a pthreads program; frozen
    after they misbehaved, the vkernel thaws and finishes like the run never frozen."""
    from vkckpt.config import KernelConfig, ProcessSpec
    from vkckpt.runner import boot

    root = make_root("pthreads", "crashers", "bombs")

    def config(out: list[bytes]) -> KernelConfig:
        return KernelConfig(root=str(root), quantum=997, stdout=out.append, stderr=out.append,
                            processes=[ProcessSpec("/pthreads", ["pthreads"]),
                                       ProcessSpec("/crashers", ["crashers", "div"]),
                                       ProcessSpec("/bombs", ["bombs", "forks"]),
                                       ProcessSpec("/crashers", ["crashers", "ill"])])

    gout: list[bytes] = []
    g = boot(config(gout))
    gstatus = g.run()
    assert gstatus == 0 and b"pthreads OK" in b"".join(gout)
    for at in (g.sched.ticks // 3, 2 * g.sched.ticks // 3):
        out: list[bytes] = []
        k = boot(config(out))
        assert k.run(until_ticks=at) is None
        image = root / "n.img"
        write_image(k, str(image))
        after: list[bytes] = []
        k2 = thaw(str(image), ThawOptions(root=str(root), stdout=after.append,
                                          stderr=after.append))
        assert k2.run() == gstatus
        assert b"".join(out + after) == b"".join(gout)
        assert k2.statuses == g.statuses and k2.sched.ticks == g.sched.ticks
