"""Nothing is lost: a freeze killed mid-write or failing on a full disk leaves the previous
image intact and thawable; many chained freeze/thaw cycles neither diverge nor leak."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.ckpt.snapshot import write_image
from vkckpt.errors import ImageError
from vkckpt.image import ImageReader
from vkckpt.testing.oracle import Workload, golden, make_root, run_until
from vkckpt.testing.soak import soak

WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from vkckpt.ckpt.snapshot import write_image
    from vkckpt.testing.oracle import Workload
    from vkckpt.runner import boot
    root, image, ready = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    k = boot(Workload("pthreads").config(root, []))
    at = 0
    while True:
        at += 40000
        if k.run(until_ticks=at) is not None:
            k = boot(Workload("pthreads").config(root, []))
            at = 0
            continue
        write_image(k, image, codec="zstd")
        ready.touch()
""")


def test_sigkill_during_freezes_never_damages_the_last_image(tmp_path: Path) -> None:
    root = make_root(tmp_path, ["pthreads"])
    image = tmp_path / "live.img"
    rng = random.Random(1234)
    survived = 0
    for round_ in range(8):
        ready = tmp_path / f"ready{round_}"
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(image), str(ready)],
                             stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ready.exists(), p.stderr.read().decode() if p.poll() is not None else "no image"
        time.sleep(rng.uniform(0.0, 0.4))
        p.send_signal(signal.SIGKILL)
        p.wait()
        stats = ImageReader(image).verify()  # the file at the path is always a whole image
        assert stats["pages"] > 0
        k = thaw(str(image), ThawOptions(stdout=lambda b: None))
        assert k.run() == 0
        k.shutdown()
        survived += 1
        for tmp in tmp_path.glob("live.img.tmp.*"):  # leftovers never sit at the image's path
            assert tmp.name != image.name and ".tmp." in tmp.name
            tmp.unlink()
    assert survived == 8


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
        write_image(self.k, str(self.good))
        self.before = self.good.read_bytes()

    def check_untouched(self) -> None:
        assert self.good.read_bytes() == self.before
        assert not list(self.root.glob("good.img.tmp.*"))

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
        write_image(fd.k, str(fd.good), incremental=True, fault_hook=enospc)
    fd.check_untouched()
    later = fd.root / "later.img"
    write_image(fd.k, str(later), incremental=True)  # the failed freeze left no trace behind
    fd.check_later_image_and_run(later)


def test_full_disk_while_an_image_becomes_durable_in_the_background(tmp_path: Path) -> None:
    """The guests run on while a background freeze fails: wait() reports it, the previous
    image is untouched, and the next incremental freeze is a full one (its parent is gone)."""
    fd = _FullDisk(tmp_path)

    def enospc_while_committing(written: int) -> None:
        if threading.current_thread().name == "vkckpt-image-commit":
            raise OSError(errno.ENOSPC, "No space left on device")

    res = write_image(fd.k, str(fd.good), incremental=True,
                      fault_hook=enospc_while_committing, background=True)
    assert fd.k.run(until_ticks=fd.b) is None  # the run goes on while the image is committed
    with pytest.raises(ImageError, match="space"):
        res.wait()
    fd.check_untouched()
    later = fd.root / "later.img"
    assert not write_image(fd.k, str(later), incremental=True).header.incremental
    fd.check_later_image_and_run(later)


def test_soak_chain_matches_golden_and_does_not_leak(tmp_path: Path) -> None:
    r = soak(iterations=30, workdir=tmp_path)
    assert r.iterations == 30 and r.mismatches == []
    assert r.final_output_ok
    assert r.rss_end - r.rss_start < 64 << 20, "host memory grows across freeze/thaw cycles"


def test_interrupted_writer_leaves_no_file_at_the_path(tmp_path: Path) -> None:
    root = make_root(tmp_path, ["pthreads"])
    image = tmp_path / "first.img"
    ready = tmp_path / "ready"
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(image), str(ready)])
    while not any(tmp_path.glob("first.img.tmp.*")) and p.poll() is None:
        time.sleep(0.001)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    if image.exists():  # the first image completed before the kill landed
        ImageReader(image).verify()


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
