"""Dynamically linked programs (PT_INTERP): Debian's glibc programs and a dynamically built
guest run under `--bind /usr:/usr:ro` exactly as natively, freeze and thaw identically, and
a missing interpreter is ENOENT with a message that names it."""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from vkckpt.abi import errno as E
from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.ckpt.snapshot import write_image
from vkckpt.config import KernelConfig, ProcessSpec
from vkckpt.errors import GuestError
from vkckpt.fs.binds import BindSpec
from vkckpt.guests.build import cache_dir, source_path, zig_version
from vkckpt.runner import boot
from vkckpt.testing.oracle import run_noting
from vkckpt.vmspace.loader import parse_elf

LOADER = Path("/lib64/ld-linux-x86-64.so.2")
pytestmark = pytest.mark.skipif(not LOADER.exists() or not Path("/usr/lib64").is_dir(),
                                reason="needs a usrmerged glibc host (Debian)")
USR = BindSpec("/usr", "/usr", ro=True)
ENV = {"PATH": "/usr/bin", "LC_ALL": "C"}
GNU_FLAGS = ("-target", "x86_64-linux-gnu", "-O2", "-g0")


def usr_root(base: Path) -> Path:
    """A guest root for /usr bound read-only: the usrmerge links, the loader's cache."""
    root = base / f"r{len(list(base.iterdir()))}"
    for d in ("usr", "etc", "work", "tmp"):
        (root / d).mkdir(parents=True)
    for name in ("lib", "lib64", "bin", "sbin"):
        (root / name).symlink_to(f"usr/{name}")
    for f in ("ld.so.cache", "passwd", "group"):
        if Path("/etc", f).exists():
            shutil.copy(Path("/etc", f), root / "etc" / f)
    return root


@pytest.fixture(scope="module")
def dyn_guest() -> Path:
    """The dynelf guest built dynamically against glibc (cached beside the static guests)."""
    src = source_path("dynelf")
    h = hashlib.sha256(src.read_bytes() + " ".join(GNU_FLAGS).encode() +
                       zig_version().encode()).hexdigest()[:16]
    out = cache_dir() / f"dynelf-gnu-{h}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        subprocess.run([sys.executable, "-m", "ziglang", "cc", *GNU_FLAGS, "-o", str(tmp),
                        str(src), "-ldl"], check=True, capture_output=True, timeout=600)
        os.replace(tmp, out)
    return out


def vk(root: Path, *argv: str, binds: tuple[str, ...] = ("/usr:/usr:ro",)
       ) -> subprocess.CompletedProcess:
    env = [a for k, v in ENV.items() for a in ("-e", f"{k}={v}")]
    bind = [a for b in binds for a in ("--bind", b)]
    return subprocess.run([sys.executable, "-m", "vkckpt", "run", "--root", str(root), *bind,
                           *env, *argv], cwd=root, capture_output=True, timeout=600)


def native(root: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), cwd=root, capture_output=True, env=ENV, timeout=600)


def test_dynamic_guest_same_as_native(tmp_path: Path, dyn_guest: Path) -> None:
    root = usr_root(tmp_path)
    shutil.copy2(dyn_guest, root / "dynelf")
    want = native(root, "./dynelf", "work")
    assert b"interp /lib64/ld-linux-x86-64.so.2, base set: 1" in want.stdout
    assert b"missing interpreter: ENOENT" in want.stdout
    got = vk(root, "./dynelf", "work")
    assert (got.stdout, got.returncode) == (want.stdout, want.returncode), got.stderr.decode()
    assert b"unimplemented syscall" not in got.stderr, got.stderr.decode()
    # the guest's execve of a copy without its interpreter: ENOENT, and vkckpt says why
    assert b"its interpreter /nowhere/ld.so: not found" in got.stderr


PROGRAMS = {
    "python3": ("/usr/bin/python3", "-c", "print(1+1)"),
    "python3-json-hashlib": ("/usr/bin/python3", "-c",
                             "import json,hashlib; print(json.dumps({'h': hashlib.sha256("
                             "b'vk').hexdigest()[:12]}))"),
    "sqlite3": ("/usr/bin/sqlite3", ":memory:", "select 1+1, upper('ok')"),
    "lua5.4": ("/usr/bin/lua5.4", "-e", "print(1, string.format('%5.2f', 3.14159))"),
    "ls": ("/usr/bin/ls", "/usr/lib/x86_64-linux-gnu/gconv/gconv-modules"),
    "false": ("/usr/bin/false",),
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_debian_programs_same_as_native(tmp_path: Path, name: str) -> None:
    argv = PROGRAMS[name]
    if not Path(argv[0]).exists():
        pytest.skip(f"{argv[0]} is not installed")
    root = usr_root(tmp_path)
    want = native(root, *argv)
    got = vk(root, *argv)
    assert got.stdout == want.stdout, got.stderr.decode()[-2000:]
    assert got.returncode == want.returncode, got.stderr.decode()[-2000:]


def test_ls_of_the_guest_root(tmp_path: Path) -> None:
    """`ls -l /` lists the guest's own root, its usrmerge links and the bound /usr."""
    root = usr_root(tmp_path)
    got = vk(root, "/usr/bin/ls", "-l", "/")
    out = got.stdout.decode()
    assert "lib -> usr/lib" in out and "lib64 -> usr/lib64" in out, got.stderr.decode()
    assert " usr\n" in out and " work\n" in out


def _bad_interp(src: Path, dst: Path, interp: bytes) -> None:
    """A copy of a dynamic program whose PT_INTERP names interp (as long as it fits)."""
    data = bytearray(src.read_bytes())
    phoff, = struct.unpack_from("<Q", data, 32)
    phnum, = struct.unpack_from("<H", data, 56)
    for i in range(phnum):
        p_type, _, off, _, _, size = struct.unpack_from("<IIQQQQ", data, phoff + 56 * i)
        if p_type == 3:
            assert len(interp) < size
            data[off:off + size] = interp.ljust(size, b"\0")
    dst.write_bytes(bytes(data))
    dst.chmod(0o755)


def test_missing_interpreter_from_the_command_line(tmp_path: Path, dyn_guest: Path) -> None:
    root = usr_root(tmp_path)
    _bad_interp(dyn_guest, root / "bad", b"/lib64/ld-nowhere.so")
    got = vk(root, "./bad")
    assert got.returncode == 127, got.stderr.decode()
    assert got.stderr.decode().strip().endswith(
        "its interpreter /lib64/ld-nowhere.so: not found"), got.stderr.decode()


def test_pt_interp_checks() -> None:
    """Linux's checks of the PT_INTERP string: the last byte NUL, at most PATH_MAX bytes."""
    def elf(interp: bytes, size: int | None = None) -> bytes:
        head = bytearray(64)
        head[:6] = b"\x7fELF\x02\x01"
        struct.pack_into("<HHIQQQIHHH", head, 16, 3, 62, 1, 0x1000, 64, 0, 0, 64, 56, 2)
        n = len(interp) if size is None else size
        ph = struct.pack("<IIQQQQQQ", 3, 4, 176, 0, 0, n, n, 1)
        ph += struct.pack("<IIQQQQQQ", 1, 5, 0, 0, 0, 176 + len(interp), 176 + len(interp), 4096)
        return bytes(head) + ph + interp

    def parse(data: bytes):
        return parse_elf(lambda n, off: data[off:off + n], len(data))

    assert parse(elf(b"/lib/ld.so\0")).interp == "/lib/ld.so"
    assert parse(elf(b"/a\0junk\0")).interp == "/a"
    for bad in (elf(b"/lib/ld.so"), elf(b"\0"), elf(b"/x\0", size=5000)):
        with pytest.raises(GuestError) as exc:
            parse(bad)
        assert exc.value.errno == E.ENOEXEC


def test_dynamic_program_freezes_and_thaws_identically(tmp_path: Path,
                                                       dyn_guest: Path) -> None:
    """Frozen at several scheduling points (in the loader, in libc, around the execve of
    itself) and thawed, the dynamic guest finishes exactly as the run never frozen."""
    def config(root: Path, out: list[bytes]) -> KernelConfig:
        return KernelConfig(root=str(root), quantum=997, stdout=out.append,
                            stderr=out.append, binds=[USR],
                            processes=[ProcessSpec("/dynelf", ["./dynelf", "work"], ENV)])

    def fresh() -> Path:
        root = usr_root(tmp_path)
        shutil.copy2(dyn_guest, root / "dynelf")
        return root

    gold_out: list[bytes] = []
    k = boot(config(fresh(), gold_out))
    status, points = run_noting(k)
    ticks = k.sched.ticks
    inside = [p for p in points if 0 < p < ticks]
    assert len(inside) >= 6
    for at in inside[:: max(1, len(inside) // 6)][:6]:
        root = fresh()
        before: list[bytes] = []
        k = boot(config(root, before))
        assert k.run(until_ticks=at) is None
        image = tmp_path / "x.img"
        write_image(k, str(image))
        k.shutdown()
        after: list[bytes] = []
        k2 = thaw(str(image), ThawOptions(root=str(root), stdout=after.append,
                                          stderr=after.append, deliver_sigthaw=False,
                                          binds=[USR]))
        assert k2.run() == status, f"status differs at {at}"
        assert b"".join(before + after) == b"".join(gold_out), f"output differs at {at}"
        assert k2.sched.ticks == ticks
