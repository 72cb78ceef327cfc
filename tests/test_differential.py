"""Differential tests: each guest runs natively and under `vkckpt run`; stdout and status match."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# name -> arguments (the guest's cwd is its root, so relative paths mean the same in both runs)
CASES: dict[str, tuple[str, ...]] = {
    "hello": ("one", "two words"),
    "pthreads": (),
    "signals": (),
    "forkpipe": (),
    "pollpipes": (),
    "sigwait": (),
    "execer": (),
    "files": ("work",),
    "mmaps": ("work",),
    "segfault": (),
    "compute": (),
    "ckpt_signals": ("3",),
    "mutex_bench": (),
    "demo": (),
    "spawn": ("./hello",),
    "stdio_kind": (),
    "fsmeta": ("work",),
    "metacalls": ("work",),
    "vforkchld": (),
    "fdlinks": ("work",),
    "renames": ("work",),
    "dynelf": ("work",),
    "epolls": ("work",),
    "eventfds": (),
    "reclocks": ("work",),
    "copyfile": ("work",),
    "procread": ("work",),
    "timerfds": (),
    "signalfds": (),
    "itimers": (),
    "ptimers": (),
    "shmfile": ("work",),
    "unixpair": (),
    "unixserver": (),
    "unixdgram": (),
    "unixgc": (),
    "tcploop": (),
    "udploop": (),
    "sockedge": ("work",),
    "bigwrite": (),
    "netbench": (),
    "rlimits": (),
    "ghosts": ("work",),
    "goruntime": (),
    # Go programs (vkckpt/guests/*.go, built with Debian's go)
    "gocompute": (),
    "gotimers": (),
    "gofiles": ("work",),
    "gogc": (),
    "goexec": (),
    "gosignals": (),
    "gohttp": (),
}
#: Guests a case's root holds besides its own program.
COMPANIONS: dict[str, tuple[str, ...]] = {"spawn": ("hello",), "goexec": ("hello",)}
ENV = {"HELLO_GREETING": "bonjour", "VKCKPT_TEST_A": "1"}


def shell_status(rc: int) -> int:
    """subprocess return code in the shell's convention (128+N for signal N)."""
    return 128 - rc if rc < 0 else rc


def run_native(root: Path, name: str, args: tuple[str, ...]) -> tuple[bytes, int]:
    p = subprocess.run([f"./{name}", *args], cwd=root, capture_output=True, env=ENV,
                       timeout=120)
    return p.stdout, shell_status(p.returncode)


def run_vkckpt(root: Path, name: str, args: tuple[str, ...], *extra: str
               ) -> subprocess.CompletedProcess:
    env_args = [a for k, v in ENV.items() for a in ("-e", f"{k}={v}")]
    return subprocess.run([sys.executable, "-m", "vkckpt", "run", "--root", str(root),
                           *env_args, *extra, f"./{name}", *args], cwd=root,
                          capture_output=True, timeout=300)


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_output_and_status_as_native(make_root, name: str) -> None:
    args = CASES[name]
    extra = COMPANIONS.get(name, ())
    native_out, native_rc = run_native(make_root(name, *extra), name, args)
    p = run_vkckpt(make_root(name, *extra), name, args)
    assert p.stdout == native_out, p.stderr.decode()[-2000:]
    assert p.returncode == native_rc, p.stderr.decode()[-2000:]
    assert b"unimplemented syscall" not in p.stderr, p.stderr.decode()


def test_native_statuses_are_meaningful(make_root) -> None:
    """Guard the oracle itself: the segfault guest really dies of SIGSEGV natively."""
    _, rc = run_native(make_root("segfault"), "segfault", ())
    assert rc == 128 + 11
