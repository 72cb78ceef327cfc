"""Build the bundled guest programs into static x86-64 binaries: C with ``zig cc`` (musl),
Go with ``go build`` (:mod:`vkckpt.guests.gobuild`).

Binaries are cached under ``$VKCKPT_CACHE_DIR`` (default ``~/.cache/vkckpt/guests``) with a
name that hashes the source, the flags and the compiler's version, so an edited source rebuilds and
an unchanged one never does. Builds write a temporary file in the cache directory and
``os.replace`` it into place, which makes concurrent builds of the same guest safe.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vkckpt.errors import GuestBuildError
from vkckpt.guests import gobuild

GUEST_DIR: Path = Path(__file__).resolve().parent
#: -s: zig's libc objects carry debug info naming zig's cache directory, and the loader maps
#: the file bytes after a segment's end as Linux does, so unstripped guests (and the golden
#: images holding their pages) differed from one zig cache to another.
CFLAGS: tuple[str, ...] = ("-target", "x86_64-linux-musl", "-static", "-O2", "-g0", "-s")
LDLIBS: tuple[str, ...] = ("-lpthread",)
_TIMEOUT = 600.0


def _zig() -> list[str]:
    return [sys.executable, "-m", "ziglang"]


@functools.cache
def zig_version() -> str:
    """The version string of the bundled zig compiler."""
    try:
        out = subprocess.run(
            [*_zig(), "version"], capture_output=True, text=True, timeout=120, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise GuestBuildError(f"cannot run zig: {exc}") from exc
    return out.stdout.strip()


def cache_dir() -> Path:
    """The directory binaries are cached in (created on demand by the builders)."""
    env = os.environ.get("VKCKPT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "vkckpt" / "guests"


def guest_names() -> list[str]:
    """The names of the bundled guests (the stems of ``GUEST_DIR/*.c`` and ``*.go``), sorted."""
    return sorted(p.stem for p in (*GUEST_DIR.glob("*.c"), *GUEST_DIR.glob("*.go")))


def go_guest_names() -> list[str]:
    """The names of the bundled Go guests, sorted."""
    return sorted(p.stem for p in GUEST_DIR.glob("*.go"))


def source_path(name: str) -> Path:
    """The C or Go source of guest ``name``; raises ``GuestBuildError`` if there is none."""
    for suffix in (".c", ".go"):
        src = GUEST_DIR / f"{name}{suffix}"
        if src.is_file():
            return src
    raise GuestBuildError(f"no such guest program: {name!r}")


def output_name(src: Path) -> str:
    """The cached binary's file name: ``STEM-<16 hex of sha256(source+flags+compiler)>``."""
    if src.suffix == ".go":
        return gobuild.output_name(src)
    h = hashlib.sha256()
    h.update(src.read_bytes())
    h.update(b"\0" + " ".join(CFLAGS + LDLIBS).encode())
    h.update(b"\0" + zig_version().encode())
    return f"{src.stem}-{h.hexdigest()[:16]}"


def compile_source(src: Path, out_dir: Path) -> Path:
    """Compile ``src`` into ``out_dir`` (if not already there) and return the binary's path."""
    src = Path(src)
    out_dir = Path(out_dir)
    out = out_dir / output_name(src)
    if out.is_file():
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if src.suffix == ".go":
            tmp.unlink()  # go build will not overwrite a file that is not an object file
            gobuild.build_go(src, tmp, cache_dir())  # one go build cache for every out_dir
        else:
            _zig_cc(src, tmp)
        tmp.chmod(0o755)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _zig_cc(src: Path, tmp: Path) -> None:
    """Compile the C file ``src`` into ``tmp``; raises ``GuestBuildError`` on failure."""
    cmd = [*_zig(), "cc", *CFLAGS, "-o", str(tmp), str(src), *LDLIBS]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as exc:
        raise GuestBuildError(f"cannot compile {src}: {exc}") from exc
    if res.returncode != 0:
        raise GuestBuildError(
            f"compiling {src} failed (exit {res.returncode}):\n{res.stderr.strip()}"
        )


def guest_path(name: str) -> Path:
    """Build guest ``name`` if needed and return the path of its static binary."""
    return compile_source(source_path(name), cache_dir())


def build_all(jobs: int = 2) -> dict[str, Path]:
    """Build every bundled guest with ``jobs`` parallel compilers; map name to binary path."""
    names = guest_names()
    zig_version()  # resolve once before fanning out
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        paths = list(pool.map(guest_path, names))
    return dict(zip(names, paths, strict=True))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m vkckpt.guests.build [-j N] [NAME...]``; print name and path."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m vkckpt.guests.build", description=main.__doc__)
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("names", nargs="*", help="guests to build (default: all)")
    args = ap.parse_args(argv)
    try:
        if args.names:
            with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
                built = dict(zip(args.names, pool.map(guest_path, args.names), strict=True))
        else:
            built = build_all(args.jobs)
    except GuestBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, path in built.items():
        print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
