"""`vkckpt merge`: an incremental chain's head folded into one full image with no parent,
which thaws to the same end as the head; merging is deterministic and idempotent."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from vkckpt.guests.build import guest_path


def vk(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vkckpt", *args], cwd=cwd,
                          capture_output=True, timeout=300)


def test_merge(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    shutil.copy2(guest_path("pthreads"), tmp_path / "root" / "pthreads")
    p = vk("run", "--root", "root", "--freeze-every", "200000", "--incremental", "--continue",
           "-o", "c.img", "root/pthreads", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    head = sorted(tmp_path.glob("c.0*.img"))[2].name
    m = vk("merge", "--root", "root", head, "-o", "full.img", cwd=tmp_path)
    assert m.returncode == 0 and m.stdout.startswith(b"full.img: full image of"), m.stderr
    info = yaml.safe_load(vk("inspect", "--no-registers", "full.img", cwd=tmp_path).stdout)
    assert info["parent_id"] is None and info["incremental"] is False
    assert vk("diff", "--no-memory", head, "full.img", cwd=tmp_path).returncode == 0
    ends = [vk("thaw", "--root", "root", "--no-control", img, cwd=tmp_path)
            for img in (head, "full.img")]
    assert ends[0].returncode == ends[1].returncode == 0
    assert ends[0].stdout == ends[1].stdout != b""
    for src, out in ((head, "again.img"), ("full.img", "twice.img")):
        assert vk("merge", "--root", "root", src, "-o", out, cwd=tmp_path).returncode == 0
        assert (tmp_path / out).read_bytes() == (tmp_path / "full.img").read_bytes()
    bad = vk("merge", "--root", "root", "nope.img", "-o", "x.img", cwd=tmp_path)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
