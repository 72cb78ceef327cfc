"""--fs overlay: the guest root is a read-only lower layer named by its tree digest; guests'
changes go to a private upper layer.  The host kernel is the oracle: the layers guest sees
on an overlay what it sees when it changes a copy of the root directly, and the host root
is exactly as before (digest, and every entry's inode and times)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from vkckpt.config import KernelConfig, ProcessSpec
from vkckpt.errors import ConfigError
from vkckpt.fs import treedigest
from vkckpt.fs.sandbox import GuestRoot
from vkckpt.guests import build
from vkckpt.runner import boot


def make_tree(root: Path) -> Path:
    """The lower layer the layers guest expects: files, a symlink, directories."""
    root.mkdir()
    shutil.copy2(build.guest_path("layers"), root / "layers")
    w = root / "work"
    (w / "sub").mkdir(parents=True)
    (w / "tree" / "deep").mkdir(parents=True)
    (w / "empty").mkdir()
    (w / "keep.txt").write_text("lower\n")
    (w / "gone.txt").write_text("gone\n")
    os.symlink("keep.txt", w / "link")
    (w / "sub" / "big.bin").write_bytes(bytes(range(256)) * 20)
    (w / "sub" / "mode.txt").write_text("mode\n")
    (w / "sub" / "mode.txt").chmod(0o644)
    (w / "tree" / "top.txt").write_text("top\n")
    (w / "tree" / "deep" / "leaf.txt").write_text("leaf\n")
    return root


def host_state(root: Path) -> tuple[str, list[tuple]]:
    """The tree digest and every entry's (path, inode, mode, size, mtime, ctime)."""
    rows = []
    for dirpath, dirs, files in os.walk(root):
        for n in sorted(dirs + files):
            st = os.lstat(os.path.join(dirpath, n))
            rows.append((os.path.join(dirpath, n), st.st_ino, st.st_mode, st.st_size,
                         st.st_mtime_ns, st.st_ctime_ns))
    return treedigest.tree_digest(str(root)), sorted(rows)


def run(root: Path, fs: str, *args: str) -> tuple[bytes, int | None]:
    out: list[bytes] = []
    cfg = KernelConfig(root=str(root), quantum=997, stdout=out.append, stderr=out.append,
                       processes=[ProcessSpec("/layers", ["layers", "/work", *args])], fs=fs)
    k = boot(cfg)
    try:
        status = k.run()
    finally:
        k.shutdown()
    return b"".join(out), status


def test_overlay_sees_what_the_host_does_and_leaves_the_lower_layer_alone(tmp_path: Path
                                                                          ) -> None:
    lower = make_tree(tmp_path / "lower")
    oracle = tmp_path / "copy"
    shutil.copytree(lower, oracle, symlinks=True)
    before = host_state(lower)
    got, status = run(lower, "overlay", "3")
    want, want_status = run(oracle, "host", "3")
    assert status == want_status == 0
    assert got == want
    for needle in (b"rmdir full: -1 errno 39", b"unlink again: -1 errno 2",
                   b"cat tree/deep/leaf.txt: errno 2", b"round 2", b"early reader sees"):
        assert needle in got
    assert host_state(lower) == before  # nothing changed on the host: not even an inode


def test_overlay_upper_layer_is_private_and_removed(tmp_path: Path) -> None:
    lower = make_tree(tmp_path / "lower")
    g = GuestRoot(lower, overlay=True)
    upper = Path(g.overlay.upper)
    assert upper.is_dir() and upper.stat().st_mode & 0o077 == 0
    assert not upper.is_relative_to(lower)
    g.close()
    assert not upper.exists()


def test_tree_digest_covers_contents_modes_and_links(tmp_path: Path) -> None:
    lower = make_tree(tmp_path / "lower")
    d0 = treedigest.tree_digest(str(lower))
    assert d0 == treedigest.tree_digest(str(lower)) and d0.startswith("sha256:")
    (lower / "work" / "keep.txt").write_text("lowes\n")  # same size, other bytes
    d1 = treedigest.tree_digest(str(lower))
    (lower / "work" / "keep.txt").chmod(0o600)
    d2 = treedigest.tree_digest(str(lower))
    os.unlink(lower / "work" / "link")
    os.symlink("gone.txt", lower / "work" / "link")
    d3 = treedigest.tree_digest(str(lower))
    assert len({d0, d1, d2, d3}) == 4


def test_tree_digest_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lower = make_tree(tmp_path / "lower")
    monkeypatch.setattr(treedigest, "MAX_TREE_FILES", 5)
    with pytest.raises(ConfigError, match="more than 5 files"):
        treedigest.tree_digest(str(lower))
    monkeypatch.setattr(treedigest, "MAX_TREE_FILES", 1000)
    monkeypatch.setattr(treedigest, "MAX_TREE_BYTES", 100)
    with pytest.raises(ConfigError, match="more than 100 bytes"):
        treedigest.tree_digest(str(lower))


def test_tree_digest_never_follows_a_symlink(tmp_path: Path) -> None:
    lower = make_tree(tmp_path / "lower")
    outside = tmp_path / "outside"
    outside.mkdir()
    d0 = treedigest.tree_digest(str(lower))
    os.symlink(outside, lower / "work" / "out")
    d1 = treedigest.tree_digest(str(lower))
    (outside / "secret").write_text("x" * 100)
    assert treedigest.tree_digest(str(lower)) == d1 != d0
