"""Open unlinked (ghost) files in images: frozen while a ghost is open, with the guest root's
other files wiped or changed since, each thaw runs on exactly as the unfrozen run; the saved
form refuses hostile ghosts; a shared mapping of a ghost is refused at freeze."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from vkckpt.ckpt.chain import ImageChain
from vkckpt.ckpt.inspect import describe, verify
from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.ckpt.snapshot import write_image
from vkckpt.errors import ImageError
from vkckpt.fs import ghost_state
from vkckpt.guests import build
from vkckpt.kernel import VKernel
from vkckpt.testing.hostile_images import (
    GHOST_FIELD_CASES,
    load_records,
    set_field,
    write_records,
)
from vkckpt.testing.oracle import (
    golden,
    image_at,
    points_where,
    run_until,
    thaw_child,
    thaw_in_new_process,
    thaw_in_process,
)
from vkckpt.testing.workload import Workload
from vkckpt.vmspace.state import file_buffers

WL = Workload("ghosts", ("work",))


def _ghosts(k: VKernel) -> dict:
    files = [f for p in k.procs.values() if not p.zombie for f, _ in p.fds.fds.values()]
    return ghost_state.find_ghosts(files, k.host_path_of)


def _shared(k: VKernel) -> bool:
    """Two descriptions of one ghost are open (the open+unlink part of the guest)."""
    return any(n >= 2 for n in _per_ghost(k).values())


def _per_ghost(k: VKernel) -> dict[int, int]:
    out: dict[int, int] = {}
    for gid, _ in _ghosts(k).values():
        out[gid] = out.get(gid, 0) + 1
    return out


def _root(tmp_path: Path, name: str, n: int) -> Path:
    root = tmp_path / f"r{n}"
    (root / "work").mkdir(parents=True)
    shutil.copy2(build.guest_path(name), root / name)
    return root



@pytest.fixture(scope="module")
def points(tmp_path_factory) -> list[int]:
    """Spread-out points at which some ghost is open."""
    hits = points_where(WL, _root(tmp_path_factory.mktemp("gp"), "ghosts", 0),
                         lambda k: bool(_ghosts(k)))
    assert len(hits) >= 6
    return [hits[i * (len(hits) - 1) // 5] for i in range(6)]


def _wipe(root: Path, name: str) -> None:
    """Everything of the root but the program: the host changed it after the freeze."""
    for p in root.iterdir():
        if p.name != name and not p.name.endswith(".img"):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    (root / "work").mkdir()
    (root / "work" / "vkckpt-ghost.f").write_bytes(b"an unrelated file with the old name")
    (root / "tmp").mkdir()


def test_frozen_with_ghosts_thaws_in_a_fresh_process_after_a_wipe(tmp_path: Path,
                                                                   points: list[int]) -> None:
    gold = golden(WL, _root(tmp_path, "ghosts", 1))
    for n, at in enumerate(points):
        root = _root(tmp_path, "ghosts", 10 + n)
        k, before, status = run_until(WL, root, at)
        assert status is None and _ghosts(k)
        image = root / "x.img"
        write_image(k, str(image))
        k.shutdown()
        _wipe(root, "ghosts")
        out = thaw_in_new_process(image, root)
        assert b"".join(before) + out.output == gold.output, f"output differs at {at}"
        assert (out.status, out.ticks, out.statuses) == (gold.status, gold.ticks, gold.statuses)


def test_freeze_thaw_freeze_is_byte_identical(tmp_path: Path, points: list[int]) -> None:
    for n, at in enumerate(points[::2]):
        root = _root(tmp_path, "ghosts", 20 + n)
        k, _, _ = run_until(WL, root, at)
        a, b = root / "a.img", root / "b.img"
        write_image(k, str(a))
        k.shutdown()
        k2 = thaw_in_process(a, [], root)
        assert _per_ghost(k2) == _per_ghost(run_until(WL, _root(tmp_path, "ghosts", 30 + n),
                                                      at)[0])
        write_image(k2, str(b))
        k2.shutdown()
        assert a.read_bytes() == b.read_bytes(), f"re-frozen image differs at tick {at}"


def test_descriptions_keep_sharing_one_recreated_file(tmp_path: Path) -> None:
    """After a thaw the descriptions of one ghost are distinct opens of one unnamed host
    file: same host inode, link count 0, their own offsets; stat shows the frozen inode."""
    root = _root(tmp_path, "ghosts", 40)
    at = points_where(WL, root, _shared)[0]
    root = _root(tmp_path, "ghosts", 41)
    k, _, _ = run_until(WL, root, at)
    frozen = {g: (f.stat(), f.seek(0, 1)) for g, (_, f) in _ghosts(k).items()}
    image = root / "x.img"
    write_image(k, str(image))
    k.shutdown()
    k2 = thaw_in_process(image, [], root)
    files = [f for p in k2.procs.values() for f, _ in p.fds.fds.values()
             if isinstance(f, ghost_state.HostFile) and ghost_state.is_ghost(f, k2.host_path_of)]
    assert len({id(f) for f in files}) >= 2
    inodes = {(os.fstat(f.fd).st_dev, os.fstat(f.fd).st_ino) for f in files}
    assert len(inodes) == len(_per_ghost(k2))
    assert all(os.fstat(f.fd).st_nlink == 0 for f in files)
    for f in files:
        if id(f) in frozen:
            assert (f.stat(), f.seek(0, 1)) == frozen[id(f)]
    k2.shutdown()


def test_inspect_shows_ghosts(tmp_path: Path, points: list[int]) -> None:
    root = _root(tmp_path, "ghosts", 50)
    k, _, _ = run_until(WL, root, points[2])
    want = sorted(os.fstat(f.fd).st_size for _, f in set(_ghosts(k).values()))
    image = root / "x.img"
    write_image(k, str(image))
    k.shutdown()
    info = describe(str(image))
    assert info["ghosts"]["count"] == len(want)
    assert sorted(g["size"] for g in info["ghosts"]["files"]) == want


@pytest.fixture(scope="module")
def seed(tmp_path_factory) -> tuple[Path, Path, list]:
    """An image frozen with a shared ghost holding data."""
    base = tmp_path_factory.mktemp("ghostseed")
    at = points_where(WL, _root(base, "ghosts", 0), _shared)[-1]
    root = _root(base, "ghosts", 1)
    path = image_at(WL, root, at, base / "seed.img")
    return path, root, load_records(path)


def _thaw(path: Path, root: Path) -> None:
    k = thaw(str(path), ThawOptions(root=str(root), stdout=lambda b: None,
                                    deliver_sigthaw=False))
    k.shutdown()


@pytest.mark.parametrize(("kind", "field", "value"), GHOST_FIELD_CASES,
                         ids=[f"{c[0]}.{c[1]}-{i}" for i, c in enumerate(GHOST_FIELD_CASES)])
def test_malicious_ghost_field_is_refused(seed, tmp_path: Path, kind: str, field: str,
                                          value: object) -> None:
    src, root, recs = seed
    index = 0
    if kind == "file":
        i = next(n for n, r in enumerate(recs) if r[0] == "file" and "ghost" in r[3])
        index = sum(r[0] == "file" for r in recs[:i])
    bad = write_records(tmp_path / "bad.img", src, set_field(recs, kind, field, value, index))
    with pytest.raises(ImageError):
        _thaw(bad, root)


def test_ghost_given_twice_is_refused(seed, tmp_path: Path) -> None:
    src, root, recs = seed
    g = next(i for i, r in enumerate(recs) if r[0] == "ghost")
    bad = write_records(tmp_path / "bad.img", src, recs[:g + 1] + [recs[g]] + recs[g + 1:])
    with pytest.raises(ImageError, match="given twice"):
        _thaw(bad, root)


def test_unmutated_ghost_seed_thaws(seed) -> None:
    """The control: the seed holds ghost data and thaws (the refusals are the mutations')."""
    src, root, recs = seed
    assert any(r[0] == "ghost_data" for r in recs)
    assert any(r[0] == "file" and "ghost" in r[3] for r in recs)
    _thaw(src, root)


def test_shared_mapping_of_a_ghost_is_refused_at_freeze(tmp_path: Path) -> None:
    """shmfile maps a file MAP_SHARED: unlinked on the host while mapped, it is a ghost the
    image cannot carry (one ImageError line, no image written)."""
    wl = Workload("shmfile", ("work",))
    root = _root(tmp_path, "shmfile", 60)
    at = points_where(wl, root, lambda k: bool(file_buffers(
        [p.vm for p in k.procs.values() if not p.zombie])))[0]
    root = _root(tmp_path, "shmfile", 61)
    k, _, _ = run_until(wl, root, at)
    for p in (root / "work").iterdir():
        p.unlink()
    with pytest.raises(ImageError, match="shared mapping of an open unlinked file"):
        write_image(k, str(root / "x.img"))
    assert not (root / "x.img").exists()
    k.shutdown()


def test_incremental_images_carry_ghosts_in_full(tmp_path: Path, points: list[int]) -> None:
    """An incremental image saves each ghost whole: its chain thaws like the full image."""
    gold = golden(WL, _root(tmp_path, "ghosts", 70))
    root = _root(tmp_path, "ghosts", 71)
    k, before, _ = run_until(WL, root, points[1])
    chain = ImageChain()
    write_image(k, str(root / "full.img"), chain=chain)
    assert k.run(until_ticks=points[3]) is None  # its output goes on into `before`
    write_image(k, str(root / "incr.img"), chain=chain, incremental=True)
    k.shutdown()
    kinds = {r[0] for r in load_records(root / "incr.img")}
    assert {"ghost", "ghost_data"} <= kinds
    after: list[bytes] = []
    k2 = thaw_in_process(root / "incr.img", after, root)
    assert k2.run() == gold.status
    assert b"".join(before + after) == gold.output
    k2.shutdown()


def test_verify_accepts_an_image_with_ghosts(tmp_path: Path, points: list[int]) -> None:
    root = _root(tmp_path, "ghosts", 80)
    k, _, _ = run_until(WL, root, points[2])
    write_image(k, str(root / "x.img"))
    k.shutdown()
    assert verify(str(root / "x.img"), root=str(root))["ok"]


def _named_host_file(k: VKernel) -> bool:
    return any(type(f) is ghost_state.HostFile and os.fstat(f.fd).st_nlink == 1
               for p in k.procs.values() if not p.zombie for f, _ in p.fds.fds.values())


def test_a_path_now_naming_another_file_makes_a_ghost(tmp_path: Path) -> None:
    """A file a guest holds was renamed on the host and another put at its path: reopening
    the path would give the other file, so the image carries its bytes instead."""
    wl = Workload("files", ("work",))
    at = points_where(wl, _root(tmp_path, "files", 90), _named_host_file)[0]
    root = _root(tmp_path, "files", 91)
    k, _, _ = run_until(wl, root, at)
    files = [f for p in k.procs.values() for f, _ in p.fds.fds.values()
             if type(f) is ghost_state.HostFile]
    assert not ghost_state.find_ghosts(files, k.host_path_of)
    f = files[0]
    host = Path(k.host_path_of(f.guest_path))
    host.rename(root / "moved")
    host.write_bytes(b"another file now")
    assert [g for _, g in ghost_state.find_ghosts(files, k.host_path_of).values()] == [f]
    image = root / "x.img"
    write_image(k, str(image))
    k.shutdown()
    assert sum(r[0] == "ghost" for r in load_records(image)) == 1
    k2 = thaw_in_process(image, [], root)
    g = next(g for p in k2.procs.values() for g, _ in p.fds.fds.values()
             if type(g) is ghost_state.HostFile and os.fstat(g.fd).st_nlink == 0)
    assert g.pread(1 << 16, 0) == (root / "moved").read_bytes()
    k2.shutdown()


def test_cli_refuses_a_corrupted_ghost_in_one_line(seed, tmp_path: Path) -> None:
    src, root, recs = seed
    bad = write_records(tmp_path / "bad.img", src, set_field(recs, "ghost_data", "crc", 0))
    p, stats = thaw_child(bad, root)
    lines = p.stderr.decode().splitlines()
    assert (p.returncode, stats, len(lines)) == (125, None, 1), lines
    assert "ghost" in lines[0] and "corrupted" in lines[0]


def test_a_thaw_keeps_the_ghost_mode_whatever_the_umask(seed) -> None:
    src, root, recs = seed
    mode = next(r[3]["mode"] for r in recs if r[0] == "ghost" and r[3]["mode"] != 0o600)
    old = os.umask(0o077)
    try:
        k = thaw(str(src), ThawOptions(root=str(root), stdout=lambda b: None,
                                       deliver_sigthaw=False))
    finally:
        os.umask(old)
    modes = {os.fstat(f.fd).st_mode & 0o7777 for _, f in _ghosts(k).values()}
    k.shutdown()
    assert mode in modes


def test_a_file_renamed_while_open_is_reopened_at_its_new_name(tmp_path: Path) -> None:
    """rename(2) of an open file (the inode table follows it): no ghost, the image names
    the file by its new path, and the thawed description writes to that file."""
    wl = Workload("files", ("work",))
    at = points_where(wl, _root(tmp_path, "files", 95), _named_host_file)[0]
    root = _root(tmp_path, "files", 96)
    k, _, _ = run_until(wl, root, at)
    f = next(f for p in k.procs.values() for f, _ in p.fds.fds.values()
             if type(f) is ghost_state.HostFile)
    old = Path(k.host_path_of(f.guest_path))
    old.rename(root / "renamed")
    k.inodes.moved(os.lstat(root / "renamed"), "/renamed")  # what sys_rename does
    image = root / "x.img"
    write_image(k, str(image))
    k.shutdown()
    recs = load_records(image)
    assert not any(r[0] == "ghost" for r in recs)
    assert any(r[0] == "file" and r[3].get("path") == "/renamed" for r in recs)
    k2 = thaw_in_process(image, [], root)
    g = next(g for p in k2.procs.values() for g, _ in p.fds.fds.values()
             if type(g) is ghost_state.HostFile and g.guest_path == "/renamed")
    assert os.fstat(g.fd).st_ino == os.lstat(root / "renamed").st_ino
    k2.shutdown()
