"""Blocking writes that wait until all is written (syscalls/progress.py): a freeze while a
write sleeps with part of its bytes sent keeps that count, and the thaw goes on from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from vkckpt.abi.syscalls import NUMBERS
from vkckpt.ckpt.snapshot import write_image
from vkckpt.errors import ImageError
from vkckpt.kernel import VKernel
from vkckpt.runner import boot
from vkckpt.testing.hostile_images import load_records, write_records
from vkckpt.testing.oracle import Workload, golden, image_records, thaw_in_process
from vkckpt.testing.workload import make_root

WL = Workload("bigwrite")
_WRITES = {NUMBERS[n] for n in ("write", "sendto", "sendmsg")}


def _mid_write(k: VKernel) -> bool:
    """A thread sleeps in a write that already wrote part of its bytes."""
    return any(t.progress and t.sleep is not None and t.sleep.nr in _WRITES
               for t in k.threads.values())


def _frozen_mid_write(base: Path, skip: int) -> tuple[Path, Path, list[bytes]]:
    """Freeze bigwrite at the skip-th scheduling point where a write sleeps part-done."""
    root = make_root(base, [WL.name])
    out: list[bytes] = []
    k = boot(WL.config(root, out))
    seen = [0]

    def hook(k: VKernel) -> bool:
        if _mid_write(k):
            seen[0] += 1
        return seen[0] > skip

    assert k.run(on_schedule_point=hook) is None, "bigwrite ended before a write slept"
    image = root / "x.img"
    write_image(k, str(image))
    k.shutdown()
    return root, image, out


@pytest.mark.parametrize("skip", [0, 40, 400])
def test_a_freeze_mid_write_keeps_its_count(tmp_path: Path, skip: int) -> None:
    gold = golden(WL, make_root(tmp_path, [WL.name]))
    root, image, before = _frozen_mid_write(tmp_path, skip)
    done = [f["progress"] for _, f in image_records(image, ("thread",)) if f["progress"]]
    assert done and all(0 < n < 4 << 20 for n in done)
    after: list[bytes] = []
    k2 = thaw_in_process(image, after, root)
    assert k2.run() == gold.status
    assert b"".join(before) + b"".join(after) == gold.output
    assert k2.sched.ticks == gold.ticks


def test_a_count_on_a_thread_in_no_write_is_refused(tmp_path: Path) -> None:
    root, image, _ = _frozen_mid_write(tmp_path, 0)
    recs = load_records(image)
    idle = next(r for r in recs if r[0] == "thread" and not r[3]["progress"])
    idle[3]["progress"] = 4096
    with pytest.raises(ImageError, match="bytes of a write done"):
        thaw_in_process(write_records(tmp_path / "v2.img", image, recs), [], root)
    idle[1] = 1  # a version 1 record (before the field) holds no count
    with pytest.raises(ImageError, match="version 1 thread holds a progress count"):
        thaw_in_process(write_records(tmp_path / "v1.img", image, recs), [], root)
