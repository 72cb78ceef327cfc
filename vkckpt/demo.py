"""`vkckpt demo`: freeze a multithreaded guest mid-run and thaw it in a new process."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from vkckpt.config import KernelConfig, ProcessSpec
from vkckpt.guests.build import guest_path
from vkckpt.runner import run

GUEST = "demo"


def _vkckpt(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vkckpt", *args], cwd=cwd, capture_output=True)


def run_demo(workdir: str | None = None) -> int:
    """Tell the whole story on the bundled pthreads guest; exit 0 when outputs match."""
    base = Path(workdir or tempfile.mkdtemp(prefix="vkckpt-demo-")).resolve()
    root = base / "root"
    root.mkdir(parents=True, exist_ok=True)
    say = print
    say(f"[1/5] building the guest {GUEST!r} with zig cc (cached after the first time)")
    shutil.copy2(guest_path(GUEST), root / GUEST)
    out: list[bytes] = []
    golden = run(KernelConfig(root=str(root), processes=[ProcessSpec(f"/{GUEST}", [GUEST])],
                              stdout=out.append))
    golden_out = b"".join(out)
    at = golden.ticks // 2
    say(f"[2/5] uninterrupted run: status {golden.exit_code}, {golden.ticks} blocks executed")
    image = base / "demo.img"
    first = _vkckpt("run", "--root", str(root), "--freeze-at", str(at), "-o", str(image),
                    "--compress", "zstd", f"./{GUEST}", cwd=root)
    if first.returncode != 0:
        sys.stderr.write(first.stderr.decode())
        return 1
    lines = first.stdout.count(b"\n")
    say(f"[3/5] frozen at block {at} into {image} ({image.stat().st_size} bytes); "
        f"{lines} lines printed before the freeze:")
    for ln in first.stdout.decode().splitlines():
        say(f"      | {ln}")
    info = yaml.safe_load(_vkckpt("inspect", "--no-registers", str(image), cwd=root).stdout)
    for p in info["processes"]:
        say(f"      pid {p['pid']} {p['exe']}: {len(p['threads'])} threads, "
            f"{len(p['vmas'])} VMAs")
    say(f"      pages stored: {info['pages']['stored_pages']} "
        f"of {info['pages']['covered_pages']} mapped (zero pages elided)")
    second = _vkckpt("thaw", str(image), cwd=root)
    say(f"[4/5] thawed in a new host process (status {second.returncode}); it printed:")
    for ln in second.stdout.decode().splitlines():
        say(f"      | {ln}")
    combined = first.stdout + second.stdout
    same = combined == golden_out and second.returncode == golden.exit_code
    say(f"[5/5] frozen+thawed output {'is IDENTICAL to' if same else 'DIFFERS from'} the "
        f"uninterrupted run ({len(golden_out)} bytes)")
    if not same:
        sys.stderr.write(second.stderr.decode()[-2000:])
    return 0 if same else 1
