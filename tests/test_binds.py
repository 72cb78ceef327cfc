"""Bind mounts (`--bind HOST:GUEST[:ro]`, YAML binds): resolution inside a bind never leaves
it, a read-only bind refuses every modifying call with EROFS and leaves the host untouched,
images record binds and a thaw refuses binds that are missing, changed or extra."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.ckpt.snapshot import write_image
from vkckpt.config import KernelConfig, ProcessSpec, load_config
from vkckpt.errors import ConfigError, ImageError
from vkckpt.fs.binds import MAX_BINDS, BindSpec, parse_bind
from vkckpt.image import ImageReader, ImageWriter
from vkckpt.runner import boot
from vkckpt.testing.oracle import run_noting

BUSYBOX = Path("/bin/busybox")
pytestmark = pytest.mark.skipif(not BUSYBOX.exists(), reason="needs Debian's busybox-static")
SECRET = "HOST SECRET outside every bind"
APPLETS = ("cat", "echo", "touch", "rm", "rmdir", "mv", "mkdir", "chmod", "ln", "truncate",
           "ls", "pwd", "cp")


def setup(tmp: Path) -> tuple[Path, Path, Path]:
    """(guest root, host directory for a read-only bind, one for a read-write bind)."""
    root, ro, rw = tmp / "root", tmp / "outside" / "ro", tmp / "outside" / "rw"
    for d in (root / "bin", root / "mnt" / "ro", root / "mnt" / "rw", root / "tmp",
              ro / "sub", ro / "empty", rw):
        d.mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / "mnt" / "secret").write_text("the root's own /mnt/secret\n")
    (tmp / "outside" / "secret").write_text(SECRET + "\n")
    (ro / "f").write_text("data\n")
    (ro / "sub" / "g").write_text("deep\n")
    (ro / "esc").symlink_to("../secret")           # guest /mnt/secret, not the host's
    (ro / "abs").symlink_to("/secret")             # guest /secret: missing
    (ro / "up").symlink_to("../../../../../../..")  # the guest root
    return root, ro, rw


def vk(root: Path, script: str, *binds: str, cmd: str = "run") -> subprocess.CompletedProcess:
    args = [a for b in binds for a in ("--bind", b)]
    return subprocess.run([sys.executable, "-m", "vkckpt", cmd, "--root", str(root), *args,
                           "-e", "PATH=/bin", "/bin/busybox", "sh", "-c", script],
                          capture_output=True, timeout=300)


def tree(d: Path) -> list[tuple]:
    """Everything a write could change under host directory d."""
    out = []
    for p in sorted(d.rglob("*")):
        st = p.lstat()
        data = os.readlink(p) if p.is_symlink() else (p.read_bytes() if p.is_file() else b"")
        out.append((str(p), st.st_mode, st.st_size, st.st_mtime_ns, st.st_uid, data))
    st = d.lstat()
    return [*out, (str(d), st.st_mode, st.st_mtime_ns)]


WRITES = {
    "write": "echo x > /mnt/ro/f", "append": "echo x >> /mnt/ro/f",
    "create": "echo x > /mnt/ro/new", "touch": "touch /mnt/ro/f", "touch-new": "touch /mnt/ro/n",
    "rm": "rm /mnt/ro/f", "rmdir": "rmdir /mnt/ro/empty", "mv": "mv /mnt/ro/f /mnt/ro/g",
    "rmdir-top": "rmdir /mnt/ro", "mkdir": "mkdir /mnt/ro/d", "chmod": "chmod 600 /mnt/ro/f",
    "ln": "ln /mnt/ro/f /mnt/ro/h", "symlink": "ln -s f /mnt/ro/s",
    "truncate": "truncate -s 0 /mnt/ro/f", "mv-out": "mv /mnt/ro/sub/g /tmp/g",
}


def test_read_only_bind_refuses_every_write(tmp_path: Path) -> None:
    root, ro, rw = setup(tmp_path)
    before = tree(ro)
    script = "".join(f"{cmd} 2>&1; echo '{name} rc='$?\n" for name, cmd in WRITES.items())
    p = vk(root, "cat /mnt/ro/f /mnt/ro/sub/g\n" + script, f"{ro}:/mnt/ro:ro")
    out = p.stdout.decode()
    assert out.startswith("data\ndeep\n"), p.stderr.decode()
    for name in WRITES:
        assert f"{name} rc=0" not in out, out
        assert f"{name} rc=" in out, out
    assert "Device or resource busy" in out  # rmdir-top: the mount point's entry is the root's
    said = out + p.stderr.decode()  # the shell reports a failed redirection itself
    assert said.count("Read-only file system") == len(WRITES) - 1, said  # mv-out: copy, then rm
    assert tree(ro) == before


def test_read_write_bind_writes_the_host(tmp_path: Path) -> None:
    root, ro, rw = setup(tmp_path)
    p = vk(root, "echo made > /mnt/rw/new && mkdir /mnt/rw/d && mv /mnt/rw/new /mnt/rw/d/n"
           " && ln -s n /mnt/rw/d/l && cat /mnt/rw/d/l; rmdir /mnt/rw 2>&1; mv /mnt/rw /x 2>&1;"
           " echo end", f"{rw}:/mnt/rw")
    out = p.stdout.decode()
    assert out.startswith("made\n") and out.rstrip().endswith("end"), p.stderr.decode()
    assert out.count("Device or resource busy") == 2, out  # a bind's top is not removed
    assert (rw / "d" / "n").read_text() == "made\n" and rw.is_dir()


def test_nothing_escapes_a_bind(tmp_path: Path) -> None:
    """`..` at a bind's top is the mount point's parent in the guest; symlinks inside the
    bind are read in the guest namespace; the host directory around the bind is never seen."""
    root, ro, rw = setup(tmp_path)
    p = vk(root, "cat /mnt/ro/../secret; cat /mnt/ro/esc; cat /mnt/ro/abs 2>&1;"
           " cat /mnt/ro/sub/../../secret; ls /mnt/ro/up/mnt; cd /mnt/ro/sub && cd ../.. && pwd"
           " && ls; cat /mnt/ro/up/../secret 2>&1; echo end",
           f"{ro}:/mnt/ro:ro", f"{rw}:/mnt/rw")
    out = p.stdout.decode()
    assert SECRET not in out and SECRET not in p.stderr.decode()
    assert out.count("the root's own /mnt/secret") == 3, out
    assert "No such file or directory" in out and out.rstrip().endswith("end"), out
    assert "/mnt\nro\nrw\nsecret\n" in out, out


def test_bad_binds_are_refused(tmp_path: Path) -> None:
    root, ro, rw = setup(tmp_path)
    for bind, why in ((f"{ro}:/nowhere", "create the mount point"),
                      (f"{ro}:/mnt/secret", "not a directory"),
                      (f"{tmp_path}/missing:/mnt/ro", "is not a directory"),
                      (f"{ro}:relative", "absolute guest path"),
                      (f"{ro}:/mnt/ro:rx", "expected HOST:GUEST")):
        p = vk(root, "echo ran", bind)
        assert p.returncode == 125 and why in p.stderr.decode(), (bind, p.stderr)
        assert p.stdout == b""
    p = vk(root, "echo ran", f"{ro}:/mnt/ro", f"{rw}:/mnt/ro")
    assert p.returncode == 125 and b"already a mount point" in p.stderr


def test_parse_and_yaml(tmp_path: Path) -> None:
    assert parse_bind("/a:/b:ro") == BindSpec("/a", "/b", True)
    assert parse_bind("a:/b") == BindSpec("a", "/b", False)
    assert parse_bind("/a:/b:rw") == BindSpec("/a", "/b", False)
    for bad in ("/a", "/a:b", ":/b", "/a:/b:ro:x", "/a:/b:xx"):
        with pytest.raises(ConfigError):
            parse_bind(bad)
    cfg = tmp_path / "vk.yaml"
    cfg.write_text("root: r\nbinds: ['d:/mnt/d:ro', {host: /e, guest: /mnt/e}]\n"
                   "processes: [{program: /bin/true}]\n")
    got = load_config(cfg).binds
    assert got == [BindSpec(str(tmp_path / "d"), "/mnt/d", True), BindSpec("/e", "/mnt/e")]
    for bad in ("binds: x", "binds: [{host: /e}]", "binds: [{host: /e, guest: /f, ro: 1}]"):
        cfg.write_text(f"{bad}\nprocesses: [{{program: /bin/true}}]\n")
        with pytest.raises(ConfigError):
            load_config(cfg)


SLOW = "i=0; while [ $i -lt 40 ]; do i=$((i+1)); cat /mnt/ro/f > /mnt/rw/copy; done; " \
       "cat /mnt/rw/copy /mnt/ro/sub/g"


def _config(root: Path, out: list[bytes], binds: list[BindSpec]) -> KernelConfig:
    return KernelConfig(root=str(root), quantum=997, stdout=out.append, stderr=out.append,
                        binds=binds, processes=[ProcessSpec("/bin/busybox", ["sh", "-c", SLOW],
                                                            {"PATH": "/bin"})])


@pytest.fixture()
def frozen(tmp_path: Path) -> tuple[Path, Path, list[BindSpec], bytes, list[bytes]]:
    """(image, root, binds, the whole run's output, the output before the freeze)."""
    root, ro, rw = setup(tmp_path)
    binds = [BindSpec(str(ro), "/mnt/ro", True), BindSpec(str(rw), "/mnt/rw")]
    gold: list[bytes] = []
    k = boot(_config(root, gold, binds))
    _, points = run_noting(k)
    before: list[bytes] = []
    k = boot(_config(root, before, binds))
    assert k.run(until_ticks=points[len(points) // 2]) is None
    image = tmp_path / "x.img"
    write_image(k, str(image))
    k.shutdown()
    return image, root, binds, b"".join(gold), before


def _thaw(image: Path, root: Path, binds: list[BindSpec], out: list[bytes] | None = None):
    out = [] if out is None else out
    return thaw(str(image), ThawOptions(root=str(root), binds=binds, stdout=out.append,
                                        stderr=out.append, deliver_sigthaw=False))


def test_thaw_checks_the_binds(frozen, tmp_path: Path) -> None:
    image, root, binds, gold, before = frozen
    other = tmp_path / "other"
    other.mkdir()
    ro, rw = binds
    cases = [([rw], "the image has a bind on /mnt/ro: give it again with --bind HOST:/mnt/ro:ro"),
             ([BindSpec(str(other), "/mnt/ro", True), rw], "not the read-only directory"),
             ([BindSpec(ro.host, "/mnt/ro"), rw], "not the read-only directory"),
             ([ro, BindSpec(str(other), "/mnt/rw")], "not the directory the image"),
             ([ro, rw, BindSpec(str(other), "/tmp")], "the image has no bind there")]
    for given, why in cases:
        with pytest.raises(ImageError, match=why):
            _thaw(image, root, given)
    after: list[bytes] = []
    k = _thaw(image, root, binds, after)
    assert k.run() == 0
    assert b"".join(before + after) == gold
    assert gold.endswith(b"data\ndeep\n")


def test_thaw_command_says_what_to_do(frozen) -> None:
    image, root, binds, _, _ = frozen
    p = subprocess.run([sys.executable, "-m", "vkckpt", "thaw", str(image), "--root", str(root),
                        "--bind", str(binds[1])], capture_output=True, timeout=300)
    err = p.stderr.decode()
    assert p.returncode == 125 and len(err.strip().splitlines()) == 1, err
    assert "give it again with --bind HOST:/mnt/ro:ro" in err
    p = subprocess.run([sys.executable, "-m", "vkckpt", "thaw", str(image), "--root", str(root),
                        "--no-control", *[a for b in binds for a in ("--bind", str(b))]],
                       capture_output=True, timeout=300)
    assert p.returncode == 0 and p.stdout.endswith(b"data\ndeep\n"), p.stderr.decode()


def test_hostile_binds_records(frozen, tmp_path: Path) -> None:
    """A kernel record's binds of the wrong shape, too many or inconsistent: one ImageError."""
    image, root, binds, _, _ = frozen
    recs = [(r.type, r.version, r.critical, r.fields) for r in ImageReader(image).records()]
    kr = next(r for r in recs if r[0] == "kernel")[3]
    good = kr["binds"]
    assert [g for g, _, _ in good] == ["/mnt/ro", "/mnt/rw"]
    bad_values = ["x", [["/mnt/ro", "yes", good[0][2]]], [[1, True, good[0][2]]],
                  [["/mnt/ro", True, b"short"]], [["mnt/ro", True, good[0][2]]],
                  [good[0], good[0], good[1]], [["/m" * 3000, True, good[0][2]]],
                  [["/mnt/ro", True, good[0][2], 5]],
                  [[f"/b{i}", False, good[0][2]] for i in range(MAX_BINDS + 1)],
                  [good[1], [good[0][0], good[0][1], good[1][2]]]]
    h = ImageReader(image).header
    for i, value in enumerate(bad_values):
        out = copy.deepcopy(recs)
        next(r for r in out if r[0] == "kernel")[3]["binds"] = value
        path = tmp_path / f"hostile{i}.img"
        with ImageWriter(path, vkernel_id=h.vkernel_id) as w:
            for typ, ver, crit, fields in out:
                w.add(typ, fields, version=ver, critical=crit)
        with pytest.raises(ImageError):
            _thaw(path, root, binds)


def test_verify_takes_the_binds(frozen) -> None:
    """verify checks the binds as thaw does: refused without them, valid with them."""
    image, root, binds, _, _ = frozen
    base = [sys.executable, "-m", "vkckpt", "verify", str(image), "--root", str(root)]
    p = subprocess.run(base, capture_output=True, timeout=300)
    assert p.returncode == 1 and "give it again with --bind HOST:/mnt/ro:ro" in p.stderr.decode()
    p = subprocess.run([*base, *[a for b in binds for a in ("--bind", str(b))]],
                       capture_output=True, timeout=300)
    assert p.returncode == 0 and b"ok: true" in p.stdout, p.stderr.decode()
