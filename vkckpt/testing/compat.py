"""The compatibility suite: software nobody here wrote, run natively and under the vkernel.

A *case* (testing/compat_cases.py) is a command line of a Debian program (busybox-static
applets, bash-static scripts; Debian's dynamic sqlite3, lua5.4 and python3) with its stdin.
Both runs happen in a fresh copy of one small guest root (bin/busybox, bin/sh, bin/bash, /work
with the files of testing/compat_inputs.py): natively chrooted into it (the host kernel is the
oracle), and under the vkernel with that root.  A dynamic program's case binds host
directories (/usr) read-only at the same guest paths, natively (bind mounts in a private mount
namespace) and in the vkernel (`--bind`), and its root gets the host's /lib and /lib64 links
and the loader's cache: the same files on both sides.  A case passes when stdout and the exit
status are identical; each is also frozen at scheduling points of its vkernel run and thawed,
and the thawed run must finish with the same output, status and ticks.  A case the vkernel
answers differently by design or by a known gap says so (`known`), and vkckpt-abi(7) names
it (KNOWN DIFFERENCES).

`python -m vkckpt.testing.compat [--suite S] [--freeze N] [-k PATTERN]` prints the table and
the pass rate; tests/test_compat.py runs every case.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from vkckpt.testing.compat_cases import CASES, Case
from vkckpt.testing.compat_inputs import write_inputs

#: Host programs the root is made of (Debian's busybox-static, bash-static, and golang-go's
#: gofmt, a static Go program), by guest path.
HOST_PROGRAMS = {"bin/busybox": ("/bin/busybox",), "bin/bash": ("/bin/bash-static",),
                 "bin/gofmt": ("/usr/lib/go-1.19/bin/gofmt", "/usr/bin/gofmt")}
#: The Debian packages that provide them (the test set-up installs them: make debs).
PACKAGES = ("busybox-static", "bash-static", "golang-go")
#: The dynamic programs' suites: the host program each runs through the binds, its package.
DYNAMIC = {"sqlite3": ("/usr/bin/sqlite3", "sqlite3"), "lua5.4": ("/usr/bin/lua5.4", "lua5.4"),
           "python3": ("/usr/bin/python3", "python3")}
ENV = {"PATH": "/bin", "HOME": "/work", "LC_ALL": "C", "TZ": "UTC", "USER": "root"}
#: Where a dynamic program's loader looks besides the binds: links (or directories) as on the
#: host, and the files it reads, copied into the root.
LOADER_DIRS = ("lib", "lib64")
LOADER_FILES = ("etc/ld.so.cache",)
TIMEOUT = 60                  # seconds for a native run
TICK_LIMIT = 2_000_000_000    # blocks: a vkernel run that has not ended by then fails
QUANTUM = 2_000               # short slices: many scheduling (freeze) points


@dataclass
class Result:
    """What one case gave: native and vkernel stdout/status, and the freeze checks."""

    case: Case
    native: tuple[bytes, int]
    vk: tuple[bytes, int]
    vk_err: bytes = b""
    frozen: list[str] = field(default_factory=list)  # one line per freeze point that differed
    points: int = 0
    seconds: float = 0.0  # wall time of the whole case: both runs and every freeze

    @property
    def same(self) -> bool:
        return self.native == self.vk

    @property
    def passed(self) -> bool:
        return self.same and not self.frozen


def _host_program(guest: str) -> str:
    for cand in HOST_PROGRAMS[guest]:
        if os.path.exists(cand):
            return cand
    raise FileNotFoundError(f"{HOST_PROGRAMS[guest][0]} is missing: install "
                            f"{' '.join(PACKAGES)} (make debs)")


_APPLETS: list[str] = []


def _applets(busybox: Path) -> list[str]:
    """The applets of the host's busybox (`busybox --list`), each linked in /bin as
    `busybox --install -s` would."""
    if not _APPLETS:
        p = subprocess.run([str(busybox), "--list"], capture_output=True, check=True)
        _APPLETS.extend(a for a in p.stdout.decode().split() if "/" not in a)
    return _APPLETS


def environment(case: Case) -> dict[str, str]:
    """The case's environment: the suite's, plus what the case adds."""
    return {**ENV, **dict(case.env)}


def binds(case: Case) -> list[str]:
    """The host directories bound read-only for the case, at the same guest paths: its own,
    and /lib and /lib64 where the host has them as directories rather than links."""
    if not case.binds:
        return []
    extra = [f"/{d}" for d in LOADER_DIRS
             if os.path.isdir(f"/{d}") and not os.path.islink(f"/{d}")]
    return [*case.binds, *extra]


def _dynamic_root(root: Path, case: Case) -> None:
    """What a dynamic program needs in root: mount points for its binds, the host's /lib and
    /lib64 links, the loader's cache.  FileNotFoundError if its program is not installed
    (both runs would fail alike, which is no comparison)."""
    program, package = DYNAMIC.get(case.suite, (None, None))
    if program and not os.path.exists(program):
        raise FileNotFoundError(f"{program} is missing: install {package} (make debs)")
    for d in binds(case):
        (root / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for d in LOADER_DIRS:
        if os.path.islink(f"/{d}"):
            (root / d).symlink_to(os.readlink(f"/{d}"))
    for f in LOADER_FILES:
        if os.path.exists(f"/{f}"):
            shutil.copyfile(f"/{f}", root / f)


def make_root(base: Path, case: Case | None = None) -> Path:
    """A fresh guest root: the host programs, busybox's applets (sh among them), /tmp,
    /etc/passwd and a /work directory with the suite's input files; for a dynamic program's
    case also its mount points, loader links and cache."""
    root = Path(tempfile.mkdtemp(prefix="compat-", dir=base))
    (root / "bin").mkdir()
    for guest in HOST_PROGRAMS:
        shutil.copy2(_host_program(guest), root / guest)
    for applet in _applets(root / "bin" / "busybox"):
        if not (root / "bin" / applet).exists():
            (root / "bin" / applet).symlink_to("busybox")
    for mnt in ("dev", "proc"):
        (root / mnt).mkdir()
    (root / "tmp").mkdir(mode=0o1777)
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/work:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    write_inputs(root / "work")
    if case is not None and case.binds:
        _dynamic_root(root, case)
    return root


#: Natively, inside a private mount namespace: the host's /dev and /proc mounted in the root,
#: the case's binds mounted read-only, then chroot, cd /work and exec with the case's
#: environment untouched.
_ENTER = """
import os, subprocess, sys
root, mount = sys.argv[1], sys.argv[2]
subprocess.run([mount, "--rbind", "/dev", root + "/dev"], check=True)
subprocess.run([mount, "-t", "proc", "proc", root + "/proc"])
for d in BINDS:
    subprocess.run([mount, "--bind", d, root + d], check=True)
    subprocess.run([mount, "-o", "remount,bind,ro", root + d], check=True)
os.chroot(root)
os.chdir("/work")
os.execve(sys.argv[3], sys.argv[3:], dict(ENV))
"""


def _host_tool(name: str) -> str:
    for d in ("/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        if os.path.exists(f"{d}/{name}"):
            return f"{d}/{name}"
    raise FileNotFoundError(f"{name} is missing on this host (util-linux)")


def run_native(case: Case, root: Path) -> tuple[bytes, int]:
    """The case chrooted into root on the host, with the host's /dev and /proc (as root, or
    in a user namespace)."""
    ns = ["--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        ns = ["--map-root-user", *ns]
    script = f"ENV = {environment(case)!r}\nBINDS = {binds(case)!r}\n{_ENTER}"
    p = subprocess.run([_host_tool("unshare"), *ns, "--", sys.executable, "-I", "-c", script,
                        str(root), _host_tool("mount"), *case.argv], input=case.stdin,
                       capture_output=True, env={"PATH": "/usr/bin:/bin"}, timeout=TIMEOUT)
    return p.stdout, 128 - p.returncode if p.returncode < 0 else p.returncode


def config(case: Case, root: Path, out: list[bytes], err: list[bytes]):
    """The KernelConfig that runs the case in root."""
    from vkckpt.config import KernelConfig, ProcessSpec

    return KernelConfig(root=str(root), quantum=QUANTUM, stdout=out.append,
                        stderr=err.append, stdin=case.stdin, cpus=1, binds=bind_specs(case),
                        log=lambda line: err.append(line.encode() + b"\n"),
                        processes=[ProcessSpec(case.argv[0], list(case.argv),
                                               environment(case), cwd="/work")])


def bind_specs(case: Case) -> list:
    """The case's binds as the vkernel takes them (--bind HOST:HOST:ro)."""
    from vkckpt.fs.binds import BindSpec

    return [BindSpec(d, d, ro=True) for d in binds(case)]


def shell_status(wait_status: int) -> int:
    """A wait status in the shell's convention: the exit code, or 128 + the signal."""
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)


def run_vkernel(case: Case, root: Path) -> tuple[bytes, int, bytes, list[int], int]:
    """(stdout, status, stderr, scheduling points, ticks) of the case under the vkernel."""
    from vkckpt.errors import GuestError
    from vkckpt.runner import boot
    from vkckpt.testing.oracle import run_noting

    out: list[bytes] = []
    err: list[bytes] = []
    try:
        k = boot(config(case, root, out, err))
    except (GuestError, OSError) as exc:
        return b"", 127, f"boot: {exc}".encode(), [], 0
    try:
        status, points = run_noting(k, TICK_LIMIT)
        if status is None:
            err.append(b"vkckpt: did not finish within the tick limit\n")
            return b"".join(out), -1, b"".join(err), points, k.sched.ticks
        return b"".join(out), shell_status(status), b"".join(err), points, k.sched.ticks
    finally:
        k.shutdown()


def check_frozen(case: Case, base: Path, at: int, want: tuple[bytes, int, int]) -> str:
    """Freeze a fresh run at tick `at`, thaw it here and finish: '' or what differed."""
    from vkckpt.ckpt.restore import ThawOptions, thaw
    from vkckpt.ckpt.snapshot import write_image
    from vkckpt.runner import boot

    root = make_root(base, case)
    try:
        out: list[bytes] = []
        err: list[bytes] = []
        k = boot(config(case, root, out, err))
        if k.run(until_ticks=at) is not None:
            return f"tick {at}: ended before the freeze"
        image = root / "x.img"
        write_image(k, str(image))
        rest = k.config.stdin  # what the guests had not read: the thawed run's stdin
        k.shutdown()
        k2 = thaw(str(image), ThawOptions(root=str(root), stdout=out.append, stdin=rest,
                                           stderr=err.append, deliver_sigthaw=False,
                                           binds=bind_specs(case)))
        k2.log = lambda line: err.append(line.encode() + b"\n")
        try:
            status = k2.run(until_ticks=TICK_LIMIT)
            got = (b"".join(out), -1 if status is None else shell_status(status),
                   k2.sched.ticks)
        finally:
            k2.shutdown()
        if got == want:
            return ""
        names = ("output", "status", "ticks")
        what = [n for n, a, b in zip(names, got, want, strict=True) if a != b]
        return f"tick {at}: {', '.join(what)} differ"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_case(case: Case, base: Path, freezes: int = 2) -> Result:
    """Run one case natively and under the vkernel, then frozen at `freezes` points."""
    start = time.monotonic()
    root = make_root(base, case)
    try:
        native = run_native(case, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    root = make_root(base, case)
    try:
        out, status, err, points, ticks = run_vkernel(case, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    res = Result(case, native, (out, status), err)
    inside = [p for p in points if 0 < p < ticks]
    if freezes and inside and status >= 0:
        step = max(1, len(inside) // (freezes + 1))
        chosen = sorted(set(inside[step - 1::step][:freezes]))
        res.points = len(chosen)
        for at in chosen:
            why = check_frozen(case, base, at, (out, status, ticks))
            if why:
                res.frozen.append(why)
    res.seconds = time.monotonic() - start
    return res


def select(cases: list[Case], suites: list[str], patterns: list[str]) -> list[Case]:
    """The cases of the named suites (all when none) whose name matches a pattern."""
    return [c for c in cases if (not suites or c.suite in suites)
            and (not patterns or any(fnmatch.fnmatch(c.name, p) for p in patterns))]


def verdict(r: Result) -> str:
    """same, known (a known difference still there), FIXED (a known case now matches the
    host: its note must go) or DIFF (unexpected, or a freeze point that differed)."""
    if r.frozen:
        return "DIFF"
    if r.case.known:
        return "FIXED" if r.same else "known"
    return "same" if r.same else "DIFF"


def table(results: list[Result]) -> list[str]:
    """The pass-rate table: per suite, cases, identical to the host and known differences."""
    suites: dict[str, list[Result]] = {}
    for r in results:
        suites.setdefault(r.case.suite, []).append(r)
    rows = [("suite", "cases", "identical", "known")]
    for name, rs in [*suites.items(), ("all", results)]:
        rows.append((name, str(len(rs)), str(sum(r.same for r in rs)),
                     str(sum(bool(r.case.known) for r in rs))))
    return [f"{a:<12} {b:>5} {c:>9} {d:>5}" for a, b, c, d in rows]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vkckpt.testing.compat",
                                 description="Run the compatibility suite; print a table and "
                                 "the pass rate (exit 1 when an unexpected case differs).")
    ap.add_argument("--suite", action="append", default=[],
                    help="busybox, busybox-sh, bash, sqlite3, lua5.4, python3")
    ap.add_argument("-k", action="append", default=[], metavar="PATTERN",
                    help="only cases whose name matches (fnmatch)")
    ap.add_argument("--freeze", type=int, default=2, metavar="N",
                    help="freeze points per case (default 2)")
    ap.add_argument("-v", action="store_true", help="show the output of differing cases")
    args = ap.parse_args(argv)
    cases = select(CASES, args.suite, args.k)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="vkckpt-compat-") as d:
        for i, case in enumerate(cases, 1):
            r = run_case(case, Path(d), args.freeze)
            results.append(r)
            mark = verdict(r)
            note = "; ".join(r.frozen) or (case.known if not r.same else "")
            print(f"[{i}/{len(cases)}] {mark:5} {case.suite}/{case.name} "
                  f"(frozen at {r.points}, {r.seconds:.1f} s) {note}", flush=True)
            if args.v and not r.same:
                print(f"    native: {r.native!r}\n    vkckpt: {r.vk!r}\n"
                      f"    stderr: {r.vk_err[-400:]!r}")
    print("\n".join(table(results)))
    same = sum(r.same for r in results)
    bad = sum(verdict(r) in ("DIFF", "FIXED") for r in results)
    rate = 100.0 * same / len(cases) if cases else 0.0
    print(f"{same} of {len(cases)} identical to the host ({rate:.1f}%); {bad} unexpected")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
