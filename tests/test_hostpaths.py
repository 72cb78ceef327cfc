"""Issue 11, host paths: a guest renames directories and plants symlinks in its root while
the vkernel writes images, --stats files and temp files there; nothing may land outside the
root, a forged file may never become an image, a listing may never crash the run, and temp
files of dead runs are reclaimed (and nothing else)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from vkckpt.abi import errno as E
from vkckpt.errors import GuestError
from vkckpt.fs.files import DirFile
from vkckpt.fs.inodes import InodeTable
from vkckpt.fs.sandbox import GuestRoot
from vkckpt.host import fs as hostfs
from vkckpt.host.fds import HostFds
from vkckpt.image import ImageReader, ImageWriter


def vk(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vkckpt", *args], cwd=cwd,
                          capture_output=True, timeout=timeout)


def temps(directory: Path) -> list[str]:
    return [n for n in os.listdir(directory) if hostfs.is_reserved(n) or ".tmp." in n]


@pytest.fixture
def host(tmp_path: Path) -> tuple[Path, Path]:
    """A host directory and a host file outside every guest root, to aim symlinks at."""
    d = tmp_path / "hostdir"
    d.mkdir()
    f = tmp_path / "victim.txt"
    f.write_text("precious host data\n")
    return d, f


# -- attacks through the command line -----------------------------------------------------


def test_sigckpt_handler_moving_the_directory_does_not_redirect_checkpoint(make_root, host):
    """Attack 1: the image goes to the directory checkpoint(2) named when it was called."""
    hostdir, _ = host
    root = make_root("hostpaths")
    r = vk("run", "--root", str(root), "./hostpaths", "ckptdir", str(hostdir), cwd=root)
    assert r.returncode == 0, r.stderr
    assert b"checkpoint=0 " in r.stdout
    assert os.listdir(hostdir) == [], "the image was written through the planted symlink"
    assert (root / "d").is_symlink()
    ImageReader(root / "d.moved" / "img").verify()


def test_symlink_planted_at_checkpoint_name_is_replaced_not_followed(make_root, host):
    _, victim = host
    root = make_root("hostpaths")
    r = vk("run", "--root", str(root), "./hostpaths", "ckptlink", str(victim), cwd=root)
    assert r.returncode == 0, r.stderr
    assert b"checkpoint=0 " in r.stdout
    assert victim.read_text() == "precious host data\n"
    img = root / "d" / "img"
    assert not img.is_symlink()
    ImageReader(img).verify()


def test_stats_never_follow_a_symlink_the_guest_planted(make_root, host):
    """Attack 3: `cd root; vkckpt run --stats stats.yaml ./guest` (the default root is .)."""
    _, victim = host
    root = make_root("hostpaths")
    r = vk("run", "--stats", "stats.yaml", "./hostpaths", "stats", str(victim), cwd=root)
    assert r.returncode == 0, r.stderr
    assert b"symlink: 0" in r.stdout
    assert victim.read_text() == "precious host data\n"
    stats = root / "stats.yaml"
    assert not stats.is_symlink()
    assert yaml.safe_load(stats.read_text())["exit_code"] == 0
    assert temps(root) == []


def test_image_directory_swapped_during_freeze_every(make_root, host):
    """Attack 3: -o imgs/out.img is pinned at start-up; a later /imgs -> host dir is ignored."""
    hostdir, _ = host
    root = make_root("hostpaths")
    (root / "imgs").mkdir()
    r = vk("run", "--freeze-every", "20000", "-o", "imgs/out.img", "./hostpaths", "imgdir",
           str(hostdir), "60", cwd=root)
    assert r.returncode == 0, r.stderr
    assert b"swapped /imgs: 0 0" in r.stdout
    assert os.listdir(hostdir) == [], "an image landed outside the root"
    images = sorted((root / "imgs.moved").glob("out.*.img"))
    assert len(images) >= 6
    for img in images:
        ImageReader(img).verify()
    assert temps(root / "imgs.moved") == []


def test_sigusr1_freeze_uses_the_image_directory_pinned_at_start_up(make_root, host):
    """The control socket's default image (-o) after the guest swapped its directory."""
    hostdir, _ = host
    root = make_root("hostpaths")
    (root / "imgs").mkdir()
    p = subprocess.Popen([sys.executable, "-m", "vkckpt", "run", "-o", "imgs/out.img",
                          "./hostpaths", "imgdir", str(hostdir), "12000"], cwd=root,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline() == b"swapped /imgs: 0 0\n"
    p.send_signal(signal.SIGUSR1)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert b"frozen at tick" in err
    assert os.listdir(hostdir) == [], "the SIGUSR1 image went through the planted symlink"
    img = ImageReader(root / "imgs.moved" / "out.img")
    img.verify()
    kernel = next(r.fields for r in img.records() if r.type == "kernel")
    assert kernel["root"] == "", "an image inside the root must not record the host root"


def test_control_request_into_the_root_never_follows_a_guest_symlink(make_root, host,
                                                                    tmp_path):
    """`vkckpt freeze --pid P -o ROOT/imgs/x.img` after the guest swapped /imgs for a symlink
    to a host directory: the request names a directory inside the guest root late, so it is
    opened beneath the root and the planted symlink is refused, not followed."""
    from vkckpt.ckpt.control_dir import socket_path

    hostdir, _ = host
    root = make_root("hostpaths")
    (root / "imgs").mkdir()
    p = subprocess.Popen([sys.executable, "-m", "vkckpt", "run", "./hostpaths", "imgdir",
                          str(hostdir), "3000000"], cwd=root,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"swapped /imgs: 0 0\n"
        assert os.path.exists(socket_path(p.pid))
        bad = vk("freeze", "--pid", str(p.pid), "-o", str(root / "imgs" / "x.img"),
                 cwd=tmp_path)
        good = vk("freeze", "--pid", str(p.pid), "--stop", "-o",
                  str(root / "imgs.moved" / "y.img"), cwd=tmp_path)
        out, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert bad.returncode == 1 and b"symlink" in bad.stderr, bad.stderr
    assert os.listdir(hostdir) == [], "the requested image went through the planted symlink"
    assert good.returncode == 0, good.stderr
    ImageReader(root / "imgs.moved" / "y.img").verify()
    assert p.returncode == 0, err


@pytest.mark.parametrize("tmpfile", ["1", "0"], ids=["O_TMPFILE", "named"])
def test_background_commit_cannot_be_replaced_by_a_forged_file(make_root, tmpfile: str):
    """Attacks 3, 4 and 7: the guest lists the image directory while images are committed
    in the background and renames a forged file onto every temp name it sees; it sees none
    (and no host pid), cannot create one, its listings never crash the run, and every
    image is the vkernel's.  Named temp files exist for the whole commit: hidden too."""
    root = make_root("hostpaths")
    (root / "imgs").mkdir()
    r = subprocess.run([sys.executable, "-m", "vkckpt", "run", "--freeze-every", "4000", "-o",
                        "imgs/out.img", "./hostpaths", "forge", "/imgs", "300"], cwd=root,
                       capture_output=True, timeout=300,
                       env={**os.environ, "VKCKPT_TMPFILE": tmpfile})
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "create reserved: No such file or directory" in out
    assert "listings=300 seen=0 forged=0" in out, out
    images = sorted((root / "imgs").glob("out.*.img"))
    assert len(images) >= 10
    for img in images:
        ImageReader(img).verify()
    assert temps(root / "imgs") == []
    assert b"Traceback" not in r.stderr


def test_listing_survives_a_host_process_changing_the_directory(make_root):
    """Attack 4: entries vanish and appear while the guest lists /work in a loop."""
    root = make_root("hostpaths")
    work = root / "work"
    stop = threading.Event()

    def churn() -> None:
        i = 0
        while not stop.is_set():
            p = work / f"f{i % 50}"
            if p.exists():
                p.unlink()
            else:
                p.write_bytes(b"x")
            i += 1

    th = threading.Thread(target=churn)
    th.start()
    try:
        r = vk("run", "./hostpaths", "list", "/work", "1500", cwd=root)
    finally:
        stop.set()
        th.join()
    assert r.returncode == 0, r.stderr
    assert b"listings=1500 " in r.stdout


# -- the rule itself ----------------------------------------------------------------------


def _tree(tmp_path: Path) -> tuple[int, Path]:
    r = tmp_path / "r"
    (r / "a" / "b").mkdir(parents=True)
    (r / "a" / "f").write_text("f")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(out, r / "lo")
    os.symlink("a", r / "la")
    os.symlink("f", r / "a" / "lf")
    os.symlink("nowhere", r / "dang")
    return hostfs.open_dir(r), r


CASES = [("a", os.O_RDONLY | os.O_DIRECTORY, None), ("a/f", os.O_RDONLY, None),
         ("", os.O_RDONLY | os.O_DIRECTORY, None), ("lo", os.O_RDONLY, errno.ELOOP),
         ("lo/x", os.O_RDWR | os.O_CREAT, errno.ELOOP), ("la/f", os.O_RDONLY, errno.ELOOP),
         ("a/lf", os.O_RDONLY, errno.ELOOP), ("dang", os.O_RDWR | os.O_CREAT, errno.ELOOP),
         ("lo", os.O_PATH | os.O_DIRECTORY, errno.ELOOP), ("a/lf", os.O_PATH, errno.ELOOP),
         ("a/f/x", os.O_RDONLY, errno.ENOTDIR), ("nope/x", os.O_RDONLY, errno.ENOENT),
         ("../x", os.O_RDONLY, errno.EXDEV), ("a/../a", os.O_RDONLY, errno.EXDEV),
         ("/etc", os.O_RDONLY, errno.EXDEV), ("a", os.O_WRONLY, errno.EISDIR)]


@pytest.mark.parametrize("openat2", [True, False], ids=["openat2", "walk"])
def test_open_beneath_refuses_every_symlink_and_escape(tmp_path: Path, monkeypatch,
                                                       openat2: bool) -> None:
    monkeypatch.setattr(hostfs, "_openat2_works", openat2)
    if openat2:  # this host must have it, or the fallback is all that is tested
        os.close(hostfs._openat2(hostfs.open_dir(tmp_path), ".", os.O_PATH, 0))
    d, r = _tree(tmp_path)
    for path, flags, want in CASES:
        try:
            fd = hostfs.open_beneath(d, path, flags, 0o644)
        except OSError as e:
            assert e.errno == want, (path, errno.errorcode[e.errno])
        else:
            os.close(fd)
            assert want is None, path
    assert os.listdir(tmp_path / "out") == []


@pytest.mark.parametrize("openat2", [True, False], ids=["openat2", "walk"])
def test_host_open_refuses_a_directory_swapped_after_the_walk(tmp_path: Path, monkeypatch,
                                                              openat2: bool) -> None:
    """The TOCTOU of sandbox.py: a host process swaps /a for a symlink between resolve and
    open; the open is refused before anything outside is touched."""
    monkeypatch.setattr(hostfs, "_openat2_works", openat2)
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    g = GuestRoot(root)
    r = g.resolve("/a/new", must_exist=False)
    os.rename(root / "a", root / "a.orig")
    os.symlink(outside, root / "a")
    with pytest.raises(GuestError) as info:
        g.host_open(r, os.O_WRONLY | os.O_CREAT, 0o644)
    assert info.value.errno == E.EXDEV
    assert os.listdir(outside) == []


def test_reserved_names_do_not_exist_for_guests(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    name = hostfs.temp_name()
    (root / name).write_text("in flight")
    (root / "seen").write_text("")
    g = GuestRoot(root)
    for path in (f"/{name}", f"/{hostfs.TEMP_PREFIX}x", f"/{name}/..", f"/x/../{name}"):
        with pytest.raises(GuestError) as info:
            g.resolve(path, must_exist=False)
        assert info.value.errno == E.ENOENT, path
    os.symlink(name, root / "alias")
    with pytest.raises(GuestError):
        g.resolve("/alias")
    fd = g.host_open(g.resolve("/"), os.O_RDONLY | os.O_DIRECTORY)
    d = DirFile(fd, 0, "/", str(root), InodeTable(lambda: 0), HostFds(budget=16))
    listing = d.getdents(4096, 4096)
    assert b"seen\0" in listing and b"alias\0" in listing
    assert hostfs.TEMP_PREFIX.encode() not in listing and str(os.getpid()).encode() not in listing


@pytest.mark.parametrize("tmpfile", ["1", "0"], ids=["O_TMPFILE", "named"])
def test_image_writer_replaces_a_symlink_at_its_name(tmp_path: Path, monkeypatch,
                                                     tmpfile: str) -> None:
    monkeypatch.setenv("VKCKPT_TMPFILE", tmpfile)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    d = tmp_path / "d"
    d.mkdir()
    os.symlink(victim, d / "x.img")
    w = ImageWriter(d / "x.img", vkernel_id=b"K" * 16)
    w.add("kernel", {"a": 1})
    assert temps(d) == ([] if tmpfile == "1" else temps(d)) and len(temps(d)) == int(
        tmpfile == "0")
    _, wait = w.commit_background()
    wait()
    assert victim.read_text() == "precious" and not (d / "x.img").is_symlink()
    ImageReader(d / "x.img").verify()
    assert temps(d) == []


def test_image_writer_in_a_pinned_directory(tmp_path: Path) -> None:
    """With dir_fd the image lands in the directory the fd names, whatever the path says."""
    d = tmp_path / "imgs"
    d.mkdir()
    out = hostfs.OutputPath(d / "a.img")
    os.rename(d, tmp_path / "imgs.moved")
    os.symlink(tmp_path / "elsewhere", d)
    (tmp_path / "elsewhere").mkdir()
    with ImageWriter(out.sibling("b.img"), vkernel_id=b"K" * 16, dir_fd=out.dir_fd) as w:
        w.add("kernel", {"a": 1})
    out.close()
    assert os.listdir(tmp_path / "elsewhere") == []
    ImageReader(tmp_path / "imgs.moved" / "b.img").verify()


# -- crash hygiene ------------------------------------------------------------------------


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_reclaim_removes_only_temp_files_of_dead_runs(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    dead = _dead_pid()
    rnd = "0123456789abcdef"
    parent = os.getppid()
    start = hostfs._start_time(parent)
    names = {
        f"{hostfs.TEMP_PREFIX}{dead}.5.{rnd}": True,               # owner gone
        f"{hostfs.TEMP_PREFIX}{parent}.{start + 1}.{rnd}": True,   # pid reused since
        f"{hostfs.TEMP_PREFIX}{parent}.{start}.{rnd}": False,      # owner alive
        hostfs.temp_name(): False,                                 # ours
        f"{hostfs.TEMP_PREFIX}{dead}.5.xyz": False,                # not our scheme
        f"{hostfs.TEMP_PREFIX}{dead}.5.{rnd}0": False,
        f"x{hostfs.TEMP_PREFIX}{dead}.5.{rnd}": False,
        f"out.img.tmp.{dead}.abcd1234": False,                     # not ours to judge
        f"{hostfs.TEMP_PREFIX}9999999999.5.{rnd}": False,          # no such pid can exist
    }
    for n in names:
        (d / n).write_text("left behind")
    link = f"{hostfs.TEMP_PREFIX}{dead}.6.{rnd}"
    os.symlink(tmp_path / "victim", d / link)
    (tmp_path / "victim").write_text("v")
    sub = f"{hostfs.TEMP_PREFIX}{dead}.7.{rnd}"
    (d / sub).mkdir()
    other = f"{hostfs.TEMP_PREFIX}{dead}.8.{rnd}"
    (d / other).write_text("someone else's")
    os.chown(d / other, 65534, 65534)  # the suite runs as root here; as a user it is moot
    fd = hostfs.open_dir(d)
    removed = hostfs.reclaim_temps(fd)
    os.close(fd)
    assert sorted(removed) == sorted(n for n, gone in names.items() if gone)
    left = set(os.listdir(d))
    assert left == {n for n, gone in names.items() if not gone} | {link, sub, other}
    assert (tmp_path / "victim").read_text() == "v"


def test_start_up_reclaims_dead_temps_before_any_freeze(make_root) -> None:
    root = make_root("hello")
    (root / "imgs").mkdir()
    stale = root / "imgs" / f"{hostfs.TEMP_PREFIX}{_dead_pid()}.1.0123456789abcdef"
    stale.write_bytes(b"half an image")
    keep = root / "imgs" / "notes.txt"
    keep.write_text("mine")
    r = vk("run", "-o", "imgs/never.img", "./hello", cwd=root)
    assert r.returncode == 0, r.stderr
    assert not stale.exists() and keep.read_text() == "mine"
    assert not (root / "imgs" / "never.img").exists()


def test_bad_output_paths_are_one_line_errors(make_root) -> None:
    root = make_root("hello")
    for opt, path in (("-o", "missing/x.img"), ("--stats", "nodir/s.yaml"), ("-o", "imgs/"),
                      ("-o", f"{hostfs.TEMP_PREFIX}x")):
        r = vk("run", opt, path, "./hello", cwd=root)
        err = r.stderr.decode()
        assert r.returncode == 125 and err.count("\n") == 1, (opt, path, err)
        assert err.startswith(f"vkckpt: {opt} {path}: "), err
