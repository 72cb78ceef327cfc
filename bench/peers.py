"""Issue 13's peers: the same static binaries run whole by `vkckpt run`, by Debian's
qemu-user (qemu-x86_64-static, the program a user would pick to just run one) and natively,
interleaved, medians of `repeat` runs each.  Each row's ratio is vkckpt's seconds over the
peer's; the targets are issue 13's (against qemu-user).  Wall time of the whole command, so
vkckpt's interpreter start-up counts, as it does for a user.  Without qemu-user the rows say
so (`make bench` installs it where it can)."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import time

from bench.common import Guests, Profile, Result

#: name -> (program, args(profile, where the root's files are), target ratio against
#: qemu-user, output that must appear); "busybox" is Debian's busybox-static, when installed.
WORKLOADS = {
    "startup": ("hello", lambda p, at: [], 10.0, ""),
    "compute": ("compute", lambda p, at: [str(p.compute_scale * 5)], 3.0, "iterations="),
    "getppid": ("getppid_loop", lambda p, at: [str(p.syscalls)], 5.0, "done"),
    "mutex": ("mutex_bench", lambda p, at: [], 15.0, "total=400000"),
    "sha256sum": ("busybox", lambda p, at: ["sha256sum", f"{at}/data"], 3.0, "  "),
    "sort": ("busybox", lambda p, at: ["sort", f"{at}/lines"], 3.0, " line"),
}
BUSYBOX = "/bin/busybox"
DATA_MB = {"full": 20, "quick": 2}      # sha256sum input
LINES = {"full": 400_000, "quick": 40_000}  # sort input: ~5 MB in the full profile


def qemu() -> str | None:
    """The qemu-user binary, or None when it is not installed."""
    return shutil.which("qemu-x86_64-static") or shutil.which("qemu-x86_64")


def _time(cmd: list[str], want: str) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, timeout=600)
    secs = time.perf_counter() - t0
    if p.returncode != 0 or want.encode() not in p.stdout:
        raise RuntimeError(f"{cmd[0]} {' '.join(cmd[1:])[-80:]}: status {p.returncode}, "
                           f"output {p.stdout[-200:]!r}")
    return secs


def _busybox_files(p: Profile, g: Guests) -> bool:
    """Copy busybox and its inputs into the root (deterministic bytes); False if missing."""
    if not os.path.exists(BUSYBOX):
        return False
    shutil.copy2(BUSYBOX, g.root / "busybox")
    seed = hashlib.sha256(b"vkckpt bench").digest()
    (g.root / "data").write_bytes(seed * (DATA_MB[p.name] << 15))
    rng = random.Random(7)
    (g.root / "lines").write_text("".join(f"{rng.getrandbits(40):012x} line\n"
                                          for _ in range(LINES[p.name])))
    return True


def run(p: Profile, g: Guests) -> Result:
    r = Result("peers", "the same binaries: vkckpt run vs qemu-user vs native (wall time)")
    q = qemu()
    if q is None:
        r.notes.append("qemu-user-static is not installed: no peer rows (make bench installs it)")
    busybox = _busybox_files(p, g)
    if not busybox:
        r.notes.append("busybox-static is not installed: no sha256sum/sort rows")
    for name, (guest, args, target, want) in WORKLOADS.items():
        if guest == "busybox" and not busybox:
            continue
        if guest != "busybox":
            g.add(guest)
        prog = str(g.root / guest)
        vk = [sys.executable, "-m", "vkckpt", "run", "--root", str(g.root), prog]
        sides = {"vkckpt": vk + args(p, ""), "native": [prog, *args(p, str(g.root))]}
        if q is not None:
            sides["qemu"] = [q, prog, *args(p, str(g.root))]
        times: dict[str, list[float]] = {s: [] for s in sides}
        for _ in range(p.repeat):
            for side, cmd in sides.items():
                times[side].append(_time(cmd, want))
        med = {s: statistics.median(v) for s, v in times.items()}
        for side in sides:
            r.add(f"{name}_{side}_s", med[side], "s")
        r.add(f"{name}_vs_native", med["vkckpt"] / med["native"], "x")
        if q is not None:
            r.add(f"{name}_vs_qemu", med["vkckpt"] / med["qemu"], "x")
            r.target(f"{name}_vs_qemu", "<=", target)
    r.notes.append("ratios = vkckpt seconds / peer seconds; targets are issue 13's")
    return r
