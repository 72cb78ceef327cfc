"""The loader's cache of parsed ELF headers (vmspace/loader.py): reused for an unchanged file,
re-parsed for a file rewritten in place or replaced."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from vkckpt.config import KernelConfig, ProcessSpec
from vkckpt.guests.build import guest_path
from vkckpt.runner import boot
from vkckpt.vmspace import loader


def _run(root: Path) -> bytes:
    out: list[bytes] = []
    k = boot(KernelConfig(root=str(root), stdout=out.append, stderr=out.append,
                          log=lambda s: None, processes=[ProcessSpec("/prog", ["prog", "3"])]))
    status = k.run()
    k.shutdown()
    assert status == 0, b"".join(out)
    return b"".join(out)


def _same_size(a: bytes, b: bytes) -> tuple[bytes, bytes]:
    n = max(len(a), len(b))
    return a.ljust(n, b"\0"), b.ljust(n, b"\0")


def test_unchanged_file_is_parsed_once(tmp_path: Path) -> None:
    prog = tmp_path / "prog"
    shutil.copy2(guest_path("hello"), prog)
    calls = []

    def pread(n: int, off: int) -> bytes:
        calls.append((n, off))
        with open(prog, "rb") as f:
            f.seek(off)
            return f.read(n)

    key = loader.file_identity(os.stat(prog))
    first = loader.parse_elf_cached(key, pread, prog.stat().st_size)
    reads = len(calls)
    assert reads > 0
    assert loader.parse_elf_cached(key, pread, prog.stat().st_size) is first
    assert len(calls) == reads


def test_a_file_rewritten_in_place_is_parsed_again(tmp_path: Path) -> None:
    """Same inode, same size, mtime put back: the ctime still tells the change."""
    root = tmp_path / "root"
    root.mkdir()
    hello, forkwait = _same_size(guest_path("hello").read_bytes(),
                                 guest_path("forkwait").read_bytes())
    prog = root / "prog"
    prog.write_bytes(hello)
    prog.chmod(0o755)
    assert b"hello from guest" in _run(root)
    before = prog.stat()
    with open(prog, "r+b") as f:  # in place: the inode stays
        f.write(forkwait)
    os.utime(prog, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = prog.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == \
        (before.st_ino, before.st_size, before.st_mtime_ns)
    assert b"children=3 status_sum=3" in _run(root)


def test_a_file_replaced_by_rename_is_parsed_again(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy2(guest_path("hello"), root / "prog")
    assert b"hello from guest" in _run(root)
    shutil.copy2(guest_path("forkwait"), root / "prog.new")
    os.replace(root / "prog.new", root / "prog")
    assert b"children=3 status_sum=3" in _run(root)
