"""`vkckpt demo` (what `make demo` runs) tells its story and succeeds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_freezes_thaws_and_matches(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "vkckpt", "demo", "--workdir", str(tmp_path)],
                       capture_output=True, timeout=600)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    out = p.stdout.decode()
    assert "IDENTICAL" in out and "[5/5]" in out
    assert (tmp_path / "demo.img").stat().st_size > 0
    before = [ln for ln in out.splitlines() if ln.startswith("      | round")]
    assert 0 < len(before) < 9, "the freeze should land between the demo's visible lines"
