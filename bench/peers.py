"""Issue 13's peers: the same static binaries run whole by `vkckpt run`, by Debian's
qemu-user (qemu-x86_64-static, the program a user would pick to just run one) and natively,
interleaved, medians of `repeat` runs each.  Each row's ratio is vkckpt's seconds over the
peer's; the targets are issue 13's (against qemu-user).  Wall time of the whole command, so
vkckpt's interpreter start-up counts, as it does for a user.  Without qemu-user the rows say
so (`make bench` installs it where it can).

The sh_loop row execs a program; qemu-user without binfmt_misc would let the host kernel run
that child natively.  So on the qemu side the program is a script `#!<qemu> <root>/busybox`
(the host kernel runs qemu on busybox with the script's path as argv[1], and busybox takes
the applet from its name), as binfmt_misc would; on the other two sides the same name is a
symlink to busybox.  All three sides must print the same output."""

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

FORKS = 200                                 # fork row: children forked, exited, waited for
SH_LOOPS = {"full": 2000, "quick": 200}     # sh_loop row: iterations of 3 forks + 1 exec
#: Each iteration: a subshell, a command substitution of a builtin, and one of an external
#: program ($1, an applet by its name), so 3 forks and 1 exec (ash execs in the forked child).
SH_LOOP = ('i=0; s=0; while [ $i -lt $2 ]; do ( : ); x=$(echo $i); y=$("$1" $i); '
           's=$((s + y + x - i)); i=$((i + 1)); done; echo "loops=$i sum=$s"')

#: name -> (program, args(profile, where the root's files are, where its programs are),
#: target ratio against qemu-user or None (informative), output that must appear);
#: "busybox" is Debian's busybox-static, when installed.
WORKLOADS = {
    "startup": ("hello", lambda p, at, bin: [], 10.0, ""),
    "compute": ("compute", lambda p, at, bin: [str(p.compute_scale * 5)], 3.0, "iterations="),
    "getppid": ("getppid_loop", lambda p, at, bin: [str(p.syscalls)], 5.0, "done"),
    "mutex": ("mutex_bench", lambda p, at, bin: [], 15.0, "total=400000"),
    "sha256sum": ("busybox", lambda p, at, bin: ["sha256sum", f"{at}/data"], 3.0, "  "),
    "sort": ("busybox", lambda p, at, bin: ["sort", f"{at}/lines"], 3.0, " line"),
    "fork": ("forkwait", lambda p, at, bin: [str(FORKS)], None, f"children={FORKS} "),
    "sh_loop": ("busybox", lambda p, at, bin: ["sh", "-c", SH_LOOP, "sh", f"{bin}/echo",
                                               str(SH_LOOPS[p.name])], 3.0, "loops="),
}
#: Rows whose output must be the same byte for byte on every side.
SAME_OUTPUT = ("fork", "sh_loop")
BUSYBOX = "/bin/busybox"
DATA_MB = {"full": 20, "quick": 2}      # sha256sum input
LINES = {"full": 400_000, "quick": 40_000}  # sort input: ~5 MB in the full profile


def qemu() -> str | None:
    """The qemu-user binary, or None when it is not installed."""
    return shutil.which("qemu-x86_64-static") or shutil.which("qemu-x86_64")


def _time(cmd: list[str], want: str) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, timeout=900)
    secs = time.perf_counter() - t0
    if p.returncode != 0 or want.encode() not in p.stdout:
        raise RuntimeError(f"{cmd[0]} {' '.join(cmd[1:])[-80:]}: status {p.returncode}, "
                           f"output {p.stdout[-200:]!r} {p.stderr[-200:]!r}")
    return secs, p.stdout


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


def _applet_dirs(g: Guests, q: str | None) -> dict[str, str]:
    """Where each side finds the applets the sh loop execs: bin/ holds symlinks to busybox
    (relative, so they resolve inside the guest root and on the host alike); qemu-bin/ holds
    scripts that run busybox under qemu, as binfmt_misc would."""
    (g.root / "bin").mkdir(exist_ok=True)
    link = g.root / "bin" / "echo"
    if not link.is_symlink():
        link.symlink_to("../busybox")
    dirs = {"vkckpt": "/bin", "native": str(g.root / "bin")}
    if q is not None:
        qbin = g.root / "qemu-bin"
        qbin.mkdir(exist_ok=True)
        script = qbin / "echo"
        script.write_text(f"#!{os.path.realpath(q)} {g.root / 'busybox'}\n")
        script.chmod(0o755)
        dirs["qemu"] = str(qbin)
    return dirs


def run(p: Profile, g: Guests) -> Result:
    r = Result("peers", "the same binaries: vkckpt run vs qemu-user vs native (wall time)")
    q = qemu()
    if q is None:
        r.notes.append("qemu-user-static is not installed: no peer rows (make bench installs it)")
    busybox = _busybox_files(p, g)
    if not busybox:
        r.notes.append("busybox-static is not installed: no sha256sum/sort/sh_loop rows")
    bins = _applet_dirs(g, q) if busybox else {}
    for name, (guest, args, target, want) in WORKLOADS.items():
        if guest == "busybox" and not busybox:
            continue
        if guest != "busybox":
            g.add(guest)
        prog = str(g.root / guest)
        vk = [sys.executable, "-m", "vkckpt", "run", "--root", str(g.root), prog]
        sides = {"vkckpt": vk + args(p, "", bins.get("vkckpt", "")),
                 "native": [prog, *args(p, str(g.root), bins.get("native", ""))]}
        if q is not None:
            sides["qemu"] = [q, prog, *args(p, str(g.root), bins.get("qemu", ""))]
        side_by_side(r, name, sides, p.repeat, want, target if q is not None else None,
                     name in SAME_OUTPUT)
    if "fork_vkckpt_s" in r.metrics:
        for side in ("vkckpt", "qemu", "native"):
            if f"fork_{side}_s" in r.metrics:
                per = (r.metrics[f"fork_{side}_s"] - r.metrics[f"startup_{side}_s"]) / FORKS
                r.add(f"fork_{side}_per_child_ms", per * 1e3, "ms")
    r.notes.append("ratios = vkckpt seconds / peer seconds; targets are issue 13's")
    r.notes.append(f"fork: {FORKS} children fork, exit and are waited for (informative: "
                   "mostly start-up; per_child = (fork - startup) / children)")
    r.notes.append(f"sh_loop: busybox sh, {SH_LOOPS[p.name]} x (subshell, $(builtin), "
                   "$(exec of an applet)); qemu's exec'd applets run under qemu through a "
                   "#!qemu busybox script, as binfmt_misc would; outputs checked equal")
    return r


def side_by_side(r: Result, name: str, sides: dict[str, list[str]], repeat: int, want: str,
                 target: float | None, same_output: bool = False) -> None:
    """Time every side `repeat` times interleaved; record medians and ratios (same_output:
    the sides must print the same bytes)."""
    times: dict[str, list[float]] = {s: [] for s in sides}
    outputs: dict[str, bytes] = {}
    for _ in range(repeat):
        for side, cmd in sides.items():
            secs, outputs[side] = _time(cmd, want)
            times[side].append(secs)
    if same_output and len(set(outputs.values())) != 1:
        raise RuntimeError(f"{name}: the sides printed different output: {outputs!r}")
    med = {s: statistics.median(v) for s, v in times.items()}
    for side in sides:
        r.add(f"{name}_{side}_s", med[side], "s")
    r.add(f"{name}_vs_native", med["vkckpt"] / med["native"], "x")
    if "qemu" in med:
        r.add(f"{name}_vs_qemu", med["vkckpt"] / med["qemu"], "x")
        if target is not None:
            r.target(f"{name}_vs_qemu", "<=", target)
