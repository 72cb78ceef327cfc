"""`vkckpt diff`: two images of one run at one tick are the same (exit 0); at two ticks they
differ in registers and memory (exit 1, also as JSON); an unreadable image is exit 2 with one
line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from vkckpt.guests.build import guest_path


def vk(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vkckpt", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=300)


def test_diff(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    shutil.copy2(guest_path("pthreads"), tmp_path / "root" / "pthreads")
    for name, tick in (("a", 300_000), ("b", 300_000), ("c", 400_000)):
        p = vk("run", "--root", "root", "--freeze-at", str(tick), "-o", f"{name}.img",
               "root/pthreads", cwd=tmp_path)
        assert p.returncode == 0, p.stderr
    same = vk("diff", "a.img", "b.img", cwd=tmp_path)
    assert same.returncode == 0 and same.stdout == "", same.stdout + same.stderr
    p = vk("diff", "--json", "a.img", "c.img", cwd=tmp_path)
    assert p.returncode == 1
    cats = {d["category"] for d in json.loads(p.stdout)}
    assert {"registers", "memory", "scheduler"} <= cats, cats
    text = vk("diff", "--no-memory", "a.img", "c.img", cwd=tmp_path)
    assert text.returncode == 1 and "memory " not in text.stdout
    assert text.stdout.startswith("registers  thread ")
    (tmp_path / "bad.img").write_bytes(b"not an image at all")
    bad = vk("diff", "a.img", "bad.img", cwd=tmp_path)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
