"""--fs overlay: the guest root is a read-only lower layer named by its tree digest; guests'
changes go to a private upper layer.  The host kernel is the oracle: the layers guest sees
on an overlay what it sees when it changes a copy of the root directly, and the host root
is exactly as before (digest, and every entry's inode and times)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vkckpt.ckpt.chain import ImageChain
from vkckpt.ckpt.inspect import describe
from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.ckpt.snapshot import write_image
from vkckpt.config import KernelConfig, ProcessSpec, load_config
from vkckpt.errors import ConfigError, ImageError
from vkckpt.fs import treedigest
from vkckpt.fs.sandbox import GuestRoot
from vkckpt.guests import build
from vkckpt.runner import boot
from vkckpt.testing.hostile_images import load_records, write_records
from vkckpt.testing.oracle import image_records, run_noting, thaw_refreeze_finish
from vkckpt.testing.outcome import Outcome


def make_tree(root: Path) -> Path:
    """The lower layer the layers guest expects: files, a symlink, directories."""
    root.mkdir()
    shutil.copy2(build.guest_path("layers"), root / "layers")
    w = root / "work"
    (w / "sub").mkdir(parents=True)
    (w / "tree" / "deep").mkdir(parents=True)
    (w / "empty").mkdir()
    (w / "full").mkdir()
    (w / "full" / "x.txt").write_text("x\n")
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
    for needle in (b"rmdir full: -1 errno 39", b"rename onto full: -1 errno 39",
                   b"unlink again: -1 errno 2", b"early directory descriptor: mode 40700",
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


# -- images -------------------------------------------------------------------------------


def config(root: Path, out: list[bytes], *args: str, embed: bool = False) -> KernelConfig:
    return KernelConfig(root=str(root), quantum=997, stdout=out.append, stderr=out.append,
                        processes=[ProcessSpec("/layers", ["layers", "/work", *args])],
                        fs="overlay", embed_root=embed)


def chain_of_images(lower: Path, where: Path, n: int, embed: bool = False
                    ) -> tuple[Outcome, list[tuple[Path, bytes]]]:
    """The golden overlay run of layers, and n images of one run frozen along it (a full
    image, then incremental ones), each with the output written before it."""
    out: list[bytes] = []
    k = boot(config(lower, out, "40", embed=embed))
    status, points = run_noting(k)
    gold = Outcome(b"".join(out), b"", status, k.sched.ticks, dict(k.statuses), points)
    k.shutdown()
    inside = [p for p in points if 0 < p < gold.ticks]
    ats = [inside[len(inside) * (i + 1) // (n + 1)] for i in range(n)]
    out = []
    k = boot(config(lower, out, "40", embed=embed))
    chain = ImageChain()
    images = []
    for i, at in enumerate(ats):
        assert k.run(until_ticks=at) is None
        img = where / f"chain{i}.img"
        write_image(k, str(img), chain=chain, incremental=i > 0)
        images.append((img, b"".join(out)))
    assert k.run() == gold.status and b"".join(out) == gold.output
    k.shutdown()
    return gold, images


def finish_thawed(img: Path, root: Path | None, before: bytes, gold: Outcome,
                  binds: list | None = None, stdin: bytes | None = None) -> None:
    """Thaw img here (with the guests' unread stdin) and run it to the end: with before,
    the golden run's output, status, ticks and statuses."""
    after: list[bytes] = []
    k = thaw(str(img), ThawOptions(root=None if root is None else str(root),
                                   stdout=after.append, stderr=after.append,
                                   deliver_sigthaw=False, binds=binds, stdin=stdin))
    try:
        status = k.run()
        assert before + b"".join(after) == gold.output, img.name
        assert (status, k.sched.ticks, k.statuses) == (gold.status, gold.ticks, gold.statuses)
    finally:
        k.shutdown()


def test_every_image_of_an_incremental_chain_thaws_and_finishes_as_the_unfrozen_run(
        tmp_path: Path) -> None:
    lower = make_tree(tmp_path / "lower")
    before = host_state(lower)
    gold, images = chain_of_images(lower, tmp_path, 4)
    recs = [image_records(img, ("overlay", "ovl_entry")) for img, _ in images]
    assert [r[0][1]["full"] for r in recs] == [True, False, False, False]
    assert all(f["lower"] == before[0] for r in recs for t, f in r if t == "overlay")
    full_paths = {f["path"] for t, f in recs[0] if t == "ovl_entry"}
    assert "/work/keep.txt" in full_paths and "/work/tree" not in full_paths  # not changed
    seen = {(f["path"], f["kind"], f["wh"]) for r in recs for t, f in r if t == "ovl_entry"}
    assert {("/work/tree2/deep/leaf.txt", "file", False), ("/work/tree", "absent", True),
            ("/work/gone.txt", "dir", True), ("/work/sub/mode.txt", "absent", True)} <= seen
    assert all(kind == "absent" for p, kind, _ in seen if p.startswith("/work/tree/"))
    views = [describe(str(img), False)["overlay"] for img, _ in images]  # vkckpt inspect
    assert [v["full"] for v in views] == [True, False, False, False]
    assert all(v["lower_digest"] == before[0] and not v["embedded_lower"] for v in views)
    assert [v["upper_entries"] for v in views] == [
        sum(t == "ovl_entry" and f["layer"] == 0 for t, f in r) for r in recs]
    assert views[0]["upper_file_bytes"] > 0
    for img, out in reversed(images):  # the later images exist: the earlier still thaw
        finish_thawed(img, lower, out, gold)
    assert host_state(lower) == before


def test_an_incremental_image_holds_exactly_what_changed(tmp_path: Path) -> None:
    lower = make_tree(tmp_path / "lower")
    out: list[bytes] = []
    k = boot(config(lower, out, "40"))
    try:
        chain = ImageChain()
        log = k.root.overlay.up("work/log.txt")
        while not os.path.exists(log) or os.path.getsize(log) != 6:  # its one write done
            assert k.run(until_ticks=k.sched.ticks + 1) is None
        write_image(k, str(tmp_path / "a.img"), chain=chain)
        write_image(k, str(tmp_path / "b.img"), chain=chain, incremental=True)  # no change
        assert image_records(tmp_path / "b.img", ("ovl_entry",)) == []
        while not os.path.exists(k.root.overlay.up("work/keep.txt")):  # the first append
            assert k.run(until_ticks=k.sched.ticks + 1) is None
        write_image(k, str(tmp_path / "c.img"), chain=chain, incremental=True)
        got = [f["path"] for _, f in image_records(tmp_path / "c.img", ("ovl_entry",))]
        assert got == ["/work/keep.txt"]  # copied up (its directory was, for log.txt)
        write_image(k, str(tmp_path / "d.img"), chain=chain, incremental=True)
        assert image_records(tmp_path / "d.img", ("ovl_entry",)) == []  # nothing ran since
        size = os.path.getsize(k.root.overlay.up("work/keep.txt"))
        while os.path.getsize(k.root.overlay.up("work/keep.txt")) == size:  # one more append
            assert k.run(until_ticks=k.sched.ticks + 1) is None
        write_image(k, str(tmp_path / "e.img"), chain=chain, incremental=True)
        got = [f["path"] for _, f in image_records(tmp_path / "e.img", ("ovl_entry",))]
        assert got == ["/work/keep.txt"]  # not log.txt: open for writing, but not written
    finally:
        k.shutdown()


def test_a_root_with_another_digest_is_refused_in_one_line(tmp_path: Path) -> None:
    lower = make_tree(tmp_path / "lower")
    _, images = chain_of_images(lower, tmp_path, 1)
    want = treedigest.tree_digest(str(lower))
    (lower / "work" / "keep.txt").write_text("changed on the host\n")
    got = treedigest.tree_digest(str(lower))
    p = subprocess.run([sys.executable, "-m", "vkckpt", "thaw", str(images[0][0]), "--root",
                        str(lower), "--no-control"], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 125
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and want in lines[0] and got in lines[0], p.stderr


def test_embedded_root_thaws_with_the_host_root_wiped(tmp_path: Path) -> None:
    lower = make_tree(tmp_path / "lower")
    gold, images = chain_of_images(lower, tmp_path, 3, embed=True)
    heads = [image_records(img, ("overlay",))[0][1] for img, _ in images]
    assert [h["embedded"] for h in heads] == [True, False, False]  # incrementals refer to it
    lows = [f for t, f in image_records(images[0][0], ("ovl_entry",)) if f["layer"] == 1]
    assert {"/layers", "/work/tree/deep/leaf.txt"} <= {f["path"] for f in lows}
    assert not any(f["layer"] == 1 for img, _ in images[1:]
                   for _, f in image_records(img, ("ovl_entry",)))
    shutil.rmtree(lower)
    for img, before in images:
        stats = img.with_suffix(".stats.yaml")
        p = subprocess.run([sys.executable, "-m", "vkckpt", "thaw", str(img), "--no-control",
                            "--no-sigthaw", "--stats", str(stats)], capture_output=True,
                           timeout=600)
        assert p.returncode == gold.status, p.stderr.decode()
        assert before + p.stdout == gold.output, img.name
        st = yaml.safe_load(stats.read_text())
        assert st["ticks"] == gold.ticks
    finish_thawed(images[-1][0], None, images[-1][1], gold)  # here too, and nothing is left
    assert not [n for n in os.listdir(os.environ.get("TMPDIR") or "/tmp")
                if n.startswith(f"vkckpt-lower.{os.getpid()}.")]


def test_a_corrupted_embedded_root_is_refused_by_its_digest(tmp_path: Path) -> None:
    lower = make_tree(tmp_path / "lower")
    _, images = chain_of_images(lower, tmp_path, 1, embed=True)
    recs = load_records(images[0][0])
    for rtype, _, _, f in recs:
        if rtype == "ovl_entry" and f["layer"] == 1 and f["path"] == "/work/keep.txt":
            f["mode"] = 0o600  # bytes intact, checksums fine: only the digest can tell
    bad = tmp_path / "bad.img"
    write_records(bad, images[0][0], recs)
    with pytest.raises(ImageError, match="embedded lower layer has tree digest"):
        thaw(str(bad), ThawOptions(deliver_sigthaw=False))


# -- export ------------------------------------------------------------------------------


def host_tree_at(lower: Path, where: Path, at: int) -> str:
    """The digest of the tree a default-mode run on a copy of lower has at tick at."""
    copy = where / f"copy{at}"
    shutil.copytree(lower, copy, symlinks=True)
    out: list[bytes] = []
    cfg = config(copy, out, "40")
    cfg.fs = "host"
    k = boot(cfg)
    try:
        assert k.run(until_ticks=at) is None
        return treedigest.tree_digest(str(copy))
    finally:
        k.shutdown()


def vkckpt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vkckpt", *args], capture_output=True,
                          text=True, timeout=300)


def test_export_writes_the_tree_the_guest_saw_at_each_freeze(tmp_path: Path) -> None:
    lower = make_tree(tmp_path / "lower")
    _, images = chain_of_images(lower, tmp_path, 3)
    for i, (img, _) in enumerate(images):
        ticks = image_records(img, ("meta",))[0][1]["ticks"]
        dest = tmp_path / f"export{i}"
        p = vkckpt("export", str(img), str(dest), "--root", str(lower))
        assert p.returncode == 0, p.stderr
        assert treedigest.tree_digest(str(dest)) == host_tree_at(lower, tmp_path, ticks)
    assert (tmp_path / "export2" / "work" / "tree2" / "deep" / "leaf.txt").read_text() == \
        "leaf\n"


def test_export_refuses_a_full_dir_a_missing_root_and_a_wrong_one(tmp_path: Path) -> None:
    lower = make_tree(tmp_path / "lower")
    _, images = chain_of_images(lower, tmp_path, 1)
    img = str(images[0][0])
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    p = vkckpt("export", img, str(full), "--root", str(lower))
    assert p.returncode == 1 and "not empty" in p.stderr and (full / "x").exists()
    p = vkckpt("export", img, str(tmp_path / "new"))
    assert p.returncode == 1 and "give --root" in p.stderr
    other = make_tree(tmp_path / "other")
    (other / "work" / "extra").write_text("x")
    p = vkckpt("export", img, str(tmp_path / "new"), "--root", str(other))
    assert p.returncode == 1 and "tree digest" in p.stderr
    assert not (tmp_path / "new").exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".vkckpt-tmp.")]


def test_export_of_an_embedded_image_needs_no_root(tmp_path: Path) -> None:
    lower = make_tree(tmp_path / "lower")
    _, images = chain_of_images(lower, tmp_path, 2, embed=True)
    want = treedigest.tree_digest(str(tmp_path / "lower"))  # before the run: lower unchanged
    shutil.rmtree(lower)
    dest = tmp_path / "out"
    dest.mkdir()
    p = vkckpt("export", str(images[1][0]), str(dest))
    assert p.returncode == 0, p.stderr
    assert (dest / "layers").is_file() and (dest / "work" / "keep.txt").read_text() \
        .startswith("lower\nround 0\n")
    assert treedigest.tree_digest(str(dest)) != want


def test_yaml_fs_overlay_and_embed_root(tmp_path: Path) -> None:
    lower = make_tree(tmp_path / "lower")
    good = tmp_path / "good.yaml"
    good.write_text("root: lower\nfs: overlay\nembed_root: true\n"
                    "processes:\n  - program: /layers\n    argv: [layers, /work]\n")
    cfg = load_config(good)
    assert (cfg.fs, cfg.embed_root, cfg.root) == ("overlay", True, str(lower))
    for text, err in (("fs: tmpfs\n", "fs must be one of host, overlay"),
                      ("embed_root: 1\n", "embed_root must be true or false"),
                      ("embed_root: true\n", "embed_root needs fs: overlay")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text + "processes:\n  - program: /layers\n")
        with pytest.raises(ConfigError, match=err):
            load_config(bad)
    p = vkckpt("run", "-c", str(good), "--quantum", "200", "--freeze-at", "500", "-o",
               str(tmp_path / "y.img"))
    assert p.returncode == 0, p.stderr
    assert image_records(tmp_path / "y.img", ("overlay",))[0][1]["embedded"] is True
    p = vkckpt("run", "--root", str(lower), "--embed-root", str(lower / "layers"))
    assert p.returncode == 125 and "--embed-root needs --fs overlay" in p.stderr


def test_freeze_thaw_freeze_is_identical_at_points_all_along(tmp_path: Path) -> None:
    lower = make_tree(tmp_path / "lower")
    out: list[bytes] = []
    k = boot(config(lower, out, "2"))
    status, points = run_noting(k)
    gold = Outcome(b"".join(out), b"", status, k.sched.ticks, dict(k.statuses), points)
    k.shutdown()
    inside = [p for p in points if 0 < p < gold.ticks]
    for at in inside[:: max(1, len(inside) // 8)]:
        out = []
        k = boot(config(lower, out, "2"))
        assert k.run(until_ticks=at) is None
        img = tmp_path / f"p{at}.img"
        write_image(k, str(img))
        k.shutdown()
        thaw_refreeze_finish(img, lower, out, gold)
    assert not [n for n in os.listdir(os.environ.get("TMPDIR") or "/tmp")
                if n.startswith(f"vkckpt-upper.{os.getpid()}.")]


def test_an_image_inside_the_lower_layer_is_refused(tmp_path: Path) -> None:
    lower = make_tree(tmp_path / "lower")
    before = host_state(lower)
    p = vkckpt("run", "--root", str(lower), "--fs", "overlay", "--quantum", "200",
               "--freeze-at", "500", "-o", str(lower / "work" / "x.img"), str(lower / "layers"),
               "/work")
    assert p.returncode == 125 and "an overlay's lower layer" in p.stderr, p.stderr
    assert host_state(lower) == before
