"""`vkckpt run` beyond single programs: YAML vkernels, tracing, exit codes, deadlocks,
unimplemented system calls."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def vk(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vkckpt", *args], cwd=cwd,
                          capture_output=True, timeout=300)


def test_yaml_vkernel_with_several_processes(make_root, tmp_path: Path) -> None:
    root = make_root("hello", "forkpipe")
    cfg = tmp_path / "vk.yaml"
    cfg.write_text(f"""
root: {root}
quantum: 5000
memory_limit: 256M
processes:
  - program: /forkpipe
  - program: /hello
    argv: [hello, from-yaml]
    env: {{HELLO_GREETING: yaml}}
""")
    p = vk("run", "-c", str(cfg), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert "argv[1]=from-yaml" in out and "greeting=yaml" in out and "forkpipe OK" in out


def test_bad_yaml_is_one_clear_line(tmp_path: Path) -> None:
    cfg = tmp_path / "vk.yaml"
    cfg.write_text("processes: [{program: /x, colour: blue}]\n")
    p = vk("run", "-c", str(cfg), cwd=tmp_path)
    assert p.returncode == 125
    assert b"unknown keys: colour" in p.stderr and len(p.stderr.splitlines()) == 1


def test_trace_syscalls_logs_to_stderr(make_root) -> None:
    root = make_root("hello")
    p = vk("run", "--root", str(root), "--trace-syscalls", "./hello", cwd=root)
    assert p.returncode == 0
    err = p.stderr.decode()
    assert "[1:1] arch_prctl(" in err and "exit_group(0)" in err
    assert "writev(1, " in err or "write(1, " in err
    assert "hello from guest" not in err


def test_missing_and_invalid_programs(make_root, tmp_path: Path) -> None:
    root = make_root("hello")
    assert vk("run", "--root", str(root), "/nope", cwd=root).returncode == 127
    (root / "text").write_text("not an ELF\n")
    (root / "text").chmod(0o755)
    bad = vk("run", "--root", str(root), "./text", cwd=root)
    assert bad.returncode == 126 and b"not an x86-64 executable" in bad.stderr
    outside = tmp_path / "elsewhere"
    outside.write_bytes((root / "hello").read_bytes())
    far = vk("run", "--root", str(root), str(outside), cwd=root)
    assert far.returncode == 125 and b"inside the guest root" in far.stderr


def test_deadlock_is_reported(make_root) -> None:
    root = make_root("stuck")
    for mode in ("deadlock", "pipe"):
        p = vk("run", "--root", str(root), "./stuck", mode, cwd=root)
        assert p.returncode == 125, p.stderr
        err = p.stderr.decode()
        assert "deadlock" in err and ("futex" in err or "pipe" in err), err
        assert "Traceback" not in err


def test_unimplemented_syscall_is_reported_once_by_name(make_root) -> None:
    root = make_root("stuck")
    p = vk("run", "--root", str(root), "./stuck", "enosys", cwd=root)
    assert p.returncode == 0
    assert p.stdout.decode().count("acct: -1 Function not implemented") == 2
    assert p.stderr.decode().count("unimplemented syscall acct") == 1


def test_a_host_path_through_a_guest_symlink_names_the_guest_program(make_root,
                                                                     tmp_path: Path) -> None:
    """`vkckpt run ROOT/bin/hi` where bin/hi is an absolute symlink made for the guest
    (/hello): the path is taken inside the root without following the link on the host,
    and the guest namespace resolves it (issue 14: it was refused as outside the root)."""
    root = make_root("hello")
    (root / "bin").mkdir()
    (root / "bin" / "hi").symlink_to("/hello")  # dangling on the host, /hello in the guest
    p = vk("run", "--root", str(root), str(root / "bin" / "hi"), "x", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert b"argv[1]=x" in p.stdout
    p = vk("run", "--root", str(root), "bin/hi", cwd=root)  # relative, from inside the root
    assert p.returncode == 0, p.stderr
