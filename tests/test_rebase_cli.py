"""`vkckpt rebase`: an incremental image re-parented onto the merge of its parent thaws
exactly as before; a base holding another state is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from tests.test_merge_cli import vk
from vkckpt.guests.build import guest_path


def test_rebase_onto_merged_parent(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    shutil.copy2(guest_path("pthreads"), tmp_path / "root" / "pthreads")
    p = vk("run", "--root", "root", "--freeze-every", "200000", "--incremental", "--continue",
           "-o", "c.img", "root/pthreads", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    imgs = sorted(tmp_path.glob("c.0*.img"))
    head, parent, older = imgs[2].name, imgs[1].name, imgs[0].name
    assert vk("merge", "--root", "root", parent, "-o", "base.img", cwd=tmp_path).returncode == 0
    r = vk("rebase", head, "--onto", "base.img", "-o", "re.img", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    info = yaml.safe_load(vk("inspect", "--no-registers", "re.img", cwd=tmp_path).stdout)
    base = yaml.safe_load(vk("inspect", "--no-registers", "base.img", cwd=tmp_path).stdout)
    assert info["parent_id"] == base["image_id"] and info["incremental"] is True
    assert vk("diff", head, "re.img", cwd=tmp_path).returncode == 0
    for src, out in ((head, "m1.img"), ("re.img", "m2.img")):  # re-frozen without running
        assert vk("merge", "--root", "root", src, "-o", out, cwd=tmp_path).returncode == 0
    assert vk("diff", "m1.img", "m2.img", cwd=tmp_path).returncode == 0
    assert (tmp_path / "m1.img").read_bytes() == (tmp_path / "m2.img").read_bytes()
    ends = [vk("thaw", "--root", "root", "--no-control", "--stats", f"{img}.stats",
               img, cwd=tmp_path) for img in (head, "re.img")]
    assert ends[0].returncode == ends[1].returncode == 0
    assert ends[0].stdout == ends[1].stdout != b""
    ticks = [yaml.safe_load((tmp_path / f"{img}.stats").read_text())["ticks"]
             for img in (head, "re.img")]
    assert ticks[0] == ticks[1]
    assert vk("merge", "--root", "root", older, "-o", "old.img", cwd=tmp_path).returncode == 0
    bad = vk("rebase", head, "--onto", "old.img", "-o", "x.img", cwd=tmp_path)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert b"does not hold the state" in bad.stderr and not (tmp_path / "x.img").exists()
