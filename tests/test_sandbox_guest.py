"""A hostile guest tries to reach the host outside its root: `..`, absolute paths, symlinks
planted inside the root that point out, openat from directory descriptors, rename and
symlink creation. Nothing outside the root may be read, written or created."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_guest_cannot_leave_its_root(make_root, tmp_path: Path) -> None:
    root = make_root("escape")
    outside = root.parent
    secret = outside / "secret.txt"
    secret.write_text("TOP-SECRET host data\n")
    (outside / "secretdir").mkdir()
    (outside / "secretdir" / "secret.txt").write_text("TOP-SECRET too\n")
    os.symlink("../secret.txt", root / "link_rel")
    os.symlink(str(secret), root / "link_abs")
    os.symlink(str(outside / "secretdir"), root / "link_dir")
    before = sorted(os.listdir(outside))
    p = subprocess.run([sys.executable, "-m", "vkckpt", "run", "--root", str(root), "./escape",
                        "secret.txt"], cwd=root, capture_output=True, timeout=120)
    out = p.stdout.decode()
    assert p.returncode == 0, out + p.stderr.decode()
    assert "LEAKED" not in out and "leaks=0" in out
    assert "chdir /..: cwd=/\n" in out
    assert sorted(os.listdir(outside)) == before, "the guest created something outside"
    assert not (outside / "secretdir" / "moved").exists()
    assert secret.read_text() == "TOP-SECRET host data\n"
    assert (root / "secret.txt.new").exists()  # '../x' from '/' lands inside the root
