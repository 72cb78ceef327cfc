"""Build the bundled Go guests (``GUEST_DIR/NAME.go``) into static x86-64 binaries.

Each guest is one ``package main`` file with no dependencies outside the standard library,
built with Debian's ``go`` (``make debs`` installs golang-go) as ``CGO_ENABLED=0 GOOS=linux
GOARCH=amd64 go build -trimpath -buildvcs=false``: no cgo, no host paths, no VCS stamp, so
a binary depends only on its source and the Go version.  The build cache and GOPATH live
under the guest cache directory, the network and the user's go env file are never used.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from vkckpt.errors import GuestBuildError

GOFLAGS: tuple[str, ...] = ("-trimpath", "-buildvcs=false", "-ldflags=-s -w")
_TIMEOUT = 900.0
_MISSING = "the go toolchain is not installed: run `make debs` (Debian's golang-go)"


def go_binary() -> str:
    """The path of ``go`` on PATH; raises ``GuestBuildError`` if there is none."""
    found = shutil.which("go")
    if found is None:
        raise GuestBuildError(_MISSING)
    return found


def go_env(cache: Path) -> dict[str, str]:
    """The environment ``go`` runs with: a fixed target, caches under ``cache``, offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO") and k != "CGO_ENABLED"}
    env.update(
        CGO_ENABLED="0", GOOS="linux", GOARCH="amd64", GOAMD64="v1",
        GOCACHE=str(cache / "go-build"), GOPATH=str(cache / "gopath"),
        GOFLAGS="-mod=mod", GO111MODULE="on", GOPROXY="off", GOWORK="off",
        GOENV="off", GOTOOLCHAIN="local",
    )
    return env


@functools.cache
def go_version(go: str) -> str:
    """``go version`` of the toolchain at ``go`` (part of every Go guest's cache key)."""
    try:
        out = subprocess.run([go, "version"], capture_output=True, text=True, timeout=120,
                             check=True, env=go_env(Path("/nonexistent")))
    except (OSError, subprocess.SubprocessError) as exc:
        raise GuestBuildError(f"cannot run go: {exc}") from exc
    return out.stdout.strip()


def output_name(src: Path) -> str:
    """The cached binary's name: ``STEM-<16 hex of sha256(source+flags+go version)>``."""
    h = hashlib.sha256()
    h.update(src.read_bytes())
    h.update(b"\0go\0" + " ".join(GOFLAGS).encode())
    h.update(b"\0" + go_version(go_binary()).encode())
    return f"{src.stem}-{h.hexdigest()[:16]}"


def build_go(src: Path, tmp: Path, cache: Path) -> None:
    """Build the Go file ``src`` into ``tmp``; raises ``GuestBuildError`` on failure."""
    go = go_binary()
    cmd = [go, "build", *GOFLAGS, "-o", str(tmp), src.name]
    try:
        res = subprocess.run(cmd, cwd=src.parent, env=go_env(cache), capture_output=True,
                             text=True, timeout=_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as exc:
        raise GuestBuildError(f"cannot build {src}: {exc}") from exc
    if res.returncode != 0:
        raise GuestBuildError(
            f"building {src} failed (exit {res.returncode}):\n{res.stderr.strip()}")
