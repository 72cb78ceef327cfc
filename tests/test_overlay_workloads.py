"""The bundled guests that work with files, on an overlay root: each prints what it does
on the host's root directly (the run without --fs overlay on a copy), an incremental chain
of images frozen along the run thaws, every image, to finish as the unfrozen run, a full
image frozen again after its thaw holds the same records, and the host root is untouched."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_overlay import finish_thawed, host_state

from vkckpt.ckpt.chain import ImageChain
from vkckpt.ckpt.snapshot import write_image
from vkckpt.regress.cases import QUANTUM
from vkckpt.runner import boot
from vkckpt.testing.oracle import run_noting, thaw_refreeze_finish
from vkckpt.testing.outcome import Outcome
from vkckpt.testing.workload import Workload, make_root

#: Guests that create, write, rename, lock, map and remove files in their directory.
GUESTS = ["files", "renames", "shmfile", "reclocks", "ghosts", "metacalls", "unixserver",
          "epolls", "mmaps", "procread", "dynelf", "unixdgram", "fdlinks", "fsmeta"]


def _run(wl: Workload, root: Path, fs: str) -> tuple[Outcome, list[bytes]]:
    out: list[bytes] = []
    cfg = wl.config(root, out)
    cfg.fs = fs
    k = boot(cfg)
    status, points = run_noting(k)
    k.shutdown()
    return Outcome(b"".join(out), b"", status, k.sched.ticks, dict(k.statuses), points), out


@pytest.mark.parametrize("name", GUESTS)
def test_guest_on_an_overlay(name: str, tmp_path: Path) -> None:
    wl = Workload(name, ("work",), quantum=QUANTUM)
    root = make_root(tmp_path, [name])
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, symlinks=True)
    before = host_state(root)
    gold, _ = _run(wl, root, "overlay")
    host, _ = _run(wl, copy, "host")
    assert (gold.output, gold.status) == (host.output, host.status)
    inside = [p for p in gold.points if 0 < p < gold.ticks]
    ats = sorted({inside[len(inside) * i // 4] for i in (1, 2, 3)})
    out: list[bytes] = []
    cfg = wl.config(root, out)
    cfg.fs = "overlay"
    k = boot(cfg)
    chain = ImageChain()
    images = []
    for i, at in enumerate(ats):
        assert k.run(until_ticks=at) is None
        img = tmp_path / f"{name}{i}.img"
        write_image(k, str(img), chain=chain, incremental=i > 0)
        images.append((img, b"".join(out)))
    assert k.run() == gold.status
    k.shutdown()
    for img, prefix in reversed(images):
        finish_thawed(img, root, prefix, gold)
    thaw_refreeze_finish(images[0][0], root, [images[0][1]], gold)  # the full one: same records
    assert host_state(root) == before
