"""Images a guest can write are not trusted (vkckpt-security(7), IMAGES): the recorded guest
root is a hint, --key seals images, images in the guest root hold no host path or mtime,
readers stay within bounded memory, verify reopens read-only, and write-protection costs
no page tables for unpopulated memory."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from vkckpt.ckpt import wp
from vkckpt.ckpt.inspect import describe, verify
from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.errors import ImageError
from vkckpt.fs import state
from vkckpt.testing import hostile_images as H
from vkckpt.testing.workload import make_root
from vkckpt.vmspace.hostmem import HostBuffer


def vk(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vkckpt", *args], cwd=cwd,
                          capture_output=True, timeout=300)


def one_line(r: subprocess.CompletedProcess) -> str:
    err = r.stderr.decode()
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def self_image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A guest's checkpoint(2) of itself, written into its own root."""
    root = make_root(tmp_path_factory.mktemp("trust"), ["ckpt_self"])
    r = vk("run", "--root", str(root), "./ckpt_self", "self", "work/self.img", cwd=root)
    assert r.returncode == 0, r.stderr
    return root, root / "work" / "self.img"


@pytest.mark.parametrize("forged", ["/", ".", "work/.."])
def test_a_guest_cannot_choose_the_root_its_image_thaws_in(self_image, tmp_path: Path,
                                                            forged: str) -> None:
    """The guest rewrites the recorded root (checksums recomputed): no thaw uses it."""
    root, img = self_image
    bad = root / "work" / f"forged{len(forged)}.img"
    H.write_records(bad, img, H.set_field(H.load_records(img), "kernel", "root", forged))
    assert H.load_records(bad)[1][3]["root"] == forged
    for cwd in (root, tmp_path):  # a relative root would be the thawing shell's cwd
        t = vk("thaw", "--no-control", str(bad), cwd=cwd)
        assert t.returncode == 125 and "give --root DIR" in one_line(t)
        v = vk("verify", str(bad), cwd=cwd)
        assert v.returncode == 1
        assert "guest root" in one_line(v) and "give --root DIR" in v.stderr.decode()
    ok = vk("thaw", "--no-control", "--root", str(root), str(bad), cwd=tmp_path)
    assert ok.returncode == 3 and ok.stdout.startswith(b"resumed from the image")


def test_an_image_in_the_root_holds_no_host_path(self_image) -> None:
    root, img = self_image
    data = img.read_bytes()
    assert str(root).encode() not in data and os.path.realpath(root).encode() not in data
    kernel = next(r for r in H.load_records(img) if r[0] == "kernel")[3]
    assert kernel["root"] == ""
    t = vk("thaw", "--no-control", str(img), cwd=root)
    assert t.returncode == 125 and "records no guest root" in one_line(t)


def test_a_recorded_root_owned_by_someone_else_is_not_used(self_image, tmp_path: Path) -> None:
    root, img = self_image
    other = tmp_path / "other"
    other.mkdir()
    os.chown(other, 4242, 4242)  # the test runs as root: it can give the directory away
    bad = tmp_path / "other.img"
    H.write_records(bad, img, H.set_field(H.load_records(img), "kernel", "root", str(other)))
    with pytest.raises(ImageError, match="owned by uid 4242, not by you; give --root DIR"):
        thaw(str(bad))


def test_large_files_are_fingerprinted_without_their_host_mtime(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * (state.HASH_LIMIT + 1))
    fd = os.open(big, os.O_RDONLY)
    try:
        fp = state.fingerprint(fd)
        st = os.fstat(fd)
    finally:
        os.close(fd)
    assert set(fp) == {"size", "stamp", "sha256"} and fp["sha256"] is None
    assert len(fp["stamp"]) == 16
    for leak in (str(st.st_mtime_ns).encode(), st.st_mtime_ns.to_bytes(8, "big"),
                 st.st_mtime_ns.to_bytes(8, "little"), str(st.st_ino).encode()):
        assert leak not in fp["stamp"]
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # same size, new mtime: changed
    fd = os.open(big, os.O_RDONLY)
    try:
        assert state._changed(fp, fd, state.fingerprint(fd))
    finally:
        os.close(fd)
    key = state.stamp_key()
    path = Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"))
    path = path / "vkckpt" / "stamp.key"
    assert path.read_bytes() == key and path.stat().st_mode & 0o077 == 0


def test_sealed_images_and_key_files(tmp_path: Path) -> None:
    root = make_root(tmp_path, ["hello"])
    key = tmp_path / "key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    img = tmp_path / "s.img"
    r = vk("run", "--root", str(root), "--key", str(key), "--quantum", "101", "--freeze-at",
           "500", "-o", str(img), "./hello", cwd=root)
    assert r.returncode == 0, r.stderr
    assert vk("verify", "-q", "--key", str(key), str(img), cwd=tmp_path).returncode == 0
    assert vk("inspect", "--key", str(key), str(img), cwd=tmp_path).returncode == 0
    t = vk("thaw", "--no-control", "--key", str(key), str(img), cwd=tmp_path)
    assert t.returncode == 0, t.stderr
    # a forgery: the records rewritten without the key, every checksum valid
    forged = tmp_path / "forged.img"
    H.write_records(forged, img, [r for r in H.load_records(img) if r[0] != "seal"])
    assert vk("verify", "-q", str(forged), cwd=tmp_path).returncode == 0  # intact, unsealed
    for cmd, status in (("thaw", 125), ("verify", 1), ("inspect", 1)):
        f = vk(cmd, "--key", str(key), str(forged), cwd=tmp_path)
        assert f.returncode == status and "is not sealed" in one_line(f)
    key.chmod(0o644)
    t = vk("thaw", "--no-control", "--key", str(key), str(img), cwd=tmp_path)
    assert t.returncode == 125 and "chmod 600" in one_line(t)
    inside = root / "key"
    inside.write_bytes(key.read_bytes())
    inside.chmod(0o600)
    r = vk("run", "--root", str(root), "--key", str(inside), "./hello", cwd=root)
    assert r.returncode == 125 and "inside the guest root" in one_line(r)


def test_verify_reopens_recorded_files_read_only(self_image, tmp_path: Path) -> None:
    """A file recorded open for writing is reopened by verify for reading: opening a running
    executable for writing fails (ETXTBSY), reading it does not."""
    root, img = self_image
    busy = root / "busy"
    busy.write_bytes(Path("/bin/sleep").read_bytes())
    busy.chmod(0o755)
    bad = tmp_path / "wronly.img"
    fp = {"size": 0, "stamp": None, "sha256": None}
    H.write_records(bad, img, H._host_file(H.load_records(img), "/busy", fp, flags=1))
    proc = subprocess.Popen([str(busy), "30"])
    try:
        report = verify(str(bad), str(root))
        assert report["ok"]
        with pytest.raises(ImageError, match="busy"):  # thaw opens it as recorded
            thaw(str(bad), ThawOptions(root=str(root), allow_changed_files=True))
    finally:
        proc.kill()
        proc.wait()


def test_a_record_of_nested_empty_arrays_costs_bounded_memory(tmp_path: Path,
                                                              self_image) -> None:
    """63 MB of msgpack empty arrays would decode to ~4 GB of lists: unknown and optional,
    the record is skipped undecoded; known (meta), it is refused before it is decoded."""
    root, img = self_image
    recs = H.load_records(img)

    def thaw_and_drop(p: str) -> None:
        thaw(p, ThawOptions(root=str(root), stdout=lambda b: None)).shutdown()

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for rtype in ("x-unknown", "meta"):
        bad = tmp_path / f"{rtype}.img"
        H.write_records(bad, img, [H.nested_bomb(rtype, False, 63), *recs[1:]])
        for check in (lambda p: verify(p, str(root)), describe, thaw_and_drop):
            if rtype == "meta":
                with pytest.raises(ImageError, match="more than 1000000 objects"):
                    check(str(bad))
            else:
                check(str(bad))
        bad.unlink()
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown < 300 << 10, f"peak RSS grew by {grown >> 10} MiB"


def test_write_protection_costs_no_page_tables_for_unpopulated_memory() -> None:
    def pte_kib() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmPTE:"):
                return int(line.split()[1])
        raise AssertionError("no VmPTE in /proc/self/status")

    tracker = wp.Tracker.get()
    assert tracker is not None or not wp.scan_available()
    buf = HostBuffer(64 << 30, 1)  # 64 GiB: 128 MiB of PTEs if every page were marked
    try:
        buf.view[0] = buf.view[5 << 30] = 1
        before = pte_kib()
        if tracker is not None:
            tracker.register(buf.addr, buf.size)
            buf.view[0] = buf.view[1 << 30] = 2
            cats = tracker.harvest(buf.addr, buf.size // 4096)
            written = set((cats & wp.PAGE_IS_WRITTEN).nonzero()[0].tolist())
            assert written == {0, (1 << 30) // 4096}  # page 0 rewritten, page 1 GiB new
        else:
            assert wp.present_pages(buf.addr, buf.size // 4096) is not None
        assert pte_kib() - before < 4096
    finally:
        buf.refs = 1
        buf.decref()


def test_a_sealed_incremental_chain_thaws_with_its_key(tmp_path: Path) -> None:
    """Sealed images inside the root still record no host path: --key proves who wrote
    them, --root says where to thaw them."""
    root = make_root(tmp_path, ["hello"])
    key = tmp_path / "key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    out = root / "work" / "c.img"
    r = vk("run", "--root", str(root), "--key", str(key), "--quantum", "101",
           "--freeze-every", "300", "--incremental", "-o", str(out), "./hello", cwd=root)
    assert r.returncode == 0, r.stderr
    chain = sorted(out.parent.glob("c.*.img"))
    assert len(chain) >= 2 and all(H.load_records(p)[-1][0] == "seal" for p in chain)
    assert all(str(root).encode() not in p.read_bytes() for p in chain)
    last = str(chain[-1])
    v = vk("verify", "-q", "--key", str(key), "--root", str(root), last, cwd=tmp_path)
    assert v.returncode == 0, v.stderr
    t = vk("thaw", "--no-control", "--key", str(key), "--root", str(root), last, cwd=tmp_path)
    assert t.returncode == 0, t.stderr
    t = vk("thaw", "--no-control", "--key", str(key), last, cwd=tmp_path)
    assert t.returncode == 125 and "records no guest root" in one_line(t)
    # the base image replaced by an unsealed copy of itself: refused with the key
    H.write_records(chain[0], chain[0], H.load_records(chain[0])[:-1])
    t = vk("thaw", "--no-control", "--key", str(key), "--root", str(root), last, cwd=tmp_path)
    assert t.returncode == 125 and one_line(t)
