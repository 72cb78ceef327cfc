"""Tests for the guest-root sandbox (chroot-style path resolution)."""

from __future__ import annotations

import ctypes
import errno as host_errno
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vkckpt.abi.errno import (
    EEXIST,
    EINVAL,
    ELOOP,
    ENAMETOOLONG,
    ENOENT,
    ENOTDIR,
    EXDEV,
)
from vkckpt.errors import ConfigError, GuestError
from vkckpt.fs.sandbox import GuestRoot, Resolved, guest_errno


def errno_of(root: GuestRoot, path: str | bytes, **kw: object) -> int:
    with pytest.raises(GuestError) as info:
        root.resolve(path, **kw)  # type: ignore[arg-type]
    return info.value.errno


@pytest.fixture
def tree(tmp_path: Path) -> tuple[GuestRoot, Path]:
    """ROOT with a/b/, a file, and a decoy tree outside the root that escapes would reach."""
    outside = tmp_path / "outside"
    (outside / "a" / "b").mkdir(parents=True)
    (outside / "secret").write_text("host secret")
    (outside / "etc").mkdir()
    (outside / "etc" / "passwd").write_text("host passwd")
    root = outside / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f").write_text("inner")
    (root / "file").write_text("hello")
    return GuestRoot(root), root


# --- construction and basics -------------------------------------------------------------


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        GuestRoot(tmp_path / "missing")
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError):
        GuestRoot(tmp_path / "f")


def test_host_root_is_realpath(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to("real")
    assert GuestRoot(tmp_path / "alias").host_root == str(tmp_path / "real")


def test_basic_paths(tree: tuple[GuestRoot, Path]) -> None:
    g, root = tree
    assert g.resolve("/") == Resolved("/", str(root))
    assert g.resolve("/a/b") == Resolved("/a/b", str(root / "a" / "b"))
    assert g.resolve("//a///b//").guest == "/a/b"
    assert g.resolve("b/f", cwd="/a").guest == "/a/b/f"
    assert g.resolve(".", cwd="/a/b").guest == "/a/b"
    assert g.resolve("..", cwd="/a/b").guest == "/a"
    assert g.resolve("./b/../b/./f", cwd="/a").guest == "/a/b/f"
    assert g.resolve("/file", cwd="/a/b").guest == "/file"


def test_dotdot_clamps_at_root(tree: tuple[GuestRoot, Path]) -> None:
    g, root = tree
    assert g.resolve("../../..") == Resolved("/", str(root))
    assert g.resolve("../../../a", cwd="/a/b").guest == "/a"
    assert g.resolve("/../../../../a/b/../../..").guest == "/"
    # "secret" exists only outside the root
    assert errno_of(g, "../../secret") == ENOENT
    assert errno_of(g, "/../secret", cwd="/a") == ENOENT


def test_bytes_and_surrogateescape(tree: tuple[GuestRoot, Path]) -> None:
    g, root = tree
    raw = b"caf\xe9"
    (root / os.fsdecode(raw)).write_text("")
    assert g.resolve(b"/" + raw).host == os.path.join(str(root), os.fsdecode(raw))
    assert g.resolve("/" + os.fsdecode(raw)).guest == "/" + os.fsdecode(raw)
    assert g.resolve(b"/a/b", cwd=b"/").guest == "/a/b"


def test_nul_and_empty(tree: tuple[GuestRoot, Path]) -> None:
    g, _ = tree
    assert errno_of(g, "a\0b") == EINVAL
    assert errno_of(g, b"a\0") == EINVAL
    assert errno_of(g, "") == ENOENT
    assert errno_of(g, b"", must_exist=False) == ENOENT


def test_bad_cwd(tree: tuple[GuestRoot, Path]) -> None:
    g, _ = tree
    with pytest.raises(ValueError):
        g.resolve("a", cwd="a")


# --- symlinks ----------------------------------------------------------------------------


def test_relative_link_inside(tree: tuple[GuestRoot, Path]) -> None:
    g, root = tree
    (root / "ln").symlink_to("a/b")
    (root / "a" / "up").symlink_to("..")
    assert g.resolve("/ln/f") == Resolved("/a/b/f", str(root / "a" / "b" / "f"))
    assert g.resolve("/ln").guest == "/a/b"
    assert g.resolve("/a/up/a/up/file").guest == "/file"
    # ".." after a followed link is the physical parent of the target
    assert g.resolve("/ln/..").guest == "/a"


def test_links_out_via_dotdot_are_clamped(tree: tuple[GuestRoot, Path]) -> None:
    g, root = tree
    (root / "a" / "out").symlink_to("../../../../../..")
    (root / "a" / "sec").symlink_to("../../secret")
    (root / "a" / "b" / "outa").symlink_to("../../../../a/b")
    assert g.resolve("/a/out") == Resolved("/", str(root))
    assert errno_of(g, "/a/sec") == ENOENT
    assert g.resolve("/a/sec", follow=False).guest == "/a/sec"
    assert g.resolve("/a/b/outa/f").host == str(root / "a" / "b" / "f")


def test_absolute_links_are_relative_to_guest_root(tree: tuple[GuestRoot, Path]) -> None:
    g, root = tree
    (root / "pw").symlink_to("/etc/passwd")
    (root / "a" / "abs").symlink_to("/a/b/f")
    (root / "a" / "absup").symlink_to("/../../../secret")
    assert errno_of(g, "/pw") == ENOENT  # not the host's /etc/passwd
    assert g.resolve("/a/abs").host == str(root / "a" / "b" / "f")
    assert errno_of(g, "/a/absup") == ENOENT
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("guest passwd")
    r = g.resolve("/pw")
    assert r == Resolved("/etc/passwd", str(root / "etc" / "passwd"))
    assert Path(r.host).read_text() == "guest passwd"


def test_follow_false_and_trailing_slash(tree: tuple[GuestRoot, Path]) -> None:
    g, root = tree
    (root / "ld").symlink_to("a")
    (root / "lf").symlink_to("file")
    assert g.resolve("/ld", follow=False) == Resolved("/ld", str(root / "ld"))
    assert g.resolve("/ld/", follow=False).guest == "/a"  # trailing slash forces follow
    assert g.resolve("/ld/.", follow=False).guest == "/a"
    assert g.resolve("/ld/b", follow=False).guest == "/a/b"  # intermediate links always followed
    assert errno_of(g, "/lf/") == ENOTDIR
    assert errno_of(g, "/lf/", follow=False) == ENOTDIR
    (root / "lfs").symlink_to("file/")
    assert errno_of(g, "/lfs") == ENOTDIR
    assert g.resolve("/lfs", follow=False).guest == "/lfs"


def test_chained_links_follow_flag_applies_to_whole_chain(tree: tuple[GuestRoot, Path]) -> None:
    g, root = tree
    (root / "l1").symlink_to("l2")
    (root / "l2").symlink_to("/a/l3")
    (root / "a" / "l3").symlink_to("b/f")
    assert g.resolve("/l1").guest == "/a/b/f"
    assert g.resolve("/l1", follow=False).guest == "/l1"


def test_loops(tree: tuple[GuestRoot, Path]) -> None:
    g, root = tree
    (root / "self").symlink_to("self")
    (root / "p").symlink_to("q")
    (root / "q").symlink_to("/p")
    (root / "dl").symlink_to("dl/x")
    assert errno_of(g, "/self") == ELOOP
    assert errno_of(g, "/p") == ELOOP
    assert errno_of(g, "/dl") == ELOOP
    assert errno_of(g, "/self/x", must_exist=False) == ELOOP
    assert g.resolve("/self", follow=False).guest == "/self"


def test_symlink_limit_is_40(tree: tuple[GuestRoot, Path]) -> None:
    g, root = tree
    for i in range(41):
        (root / f"c{i}").symlink_to(f"c{i + 1}")
    (root / "c41").write_text("")
    assert g.resolve("/c1").guest == "/c41"  # 40 links
    assert errno_of(g, "/c0") == ELOOP  # 41 links
    assert g.resolve("/c0", follow=False).guest == "/c0"


# --- ENOTDIR, must_exist, names ----------------------------------------------------------


def test_enotdir(tree: tuple[GuestRoot, Path]) -> None:
    g, _ = tree
    assert errno_of(g, "/file/x") == ENOTDIR
    assert errno_of(g, "/file/") == ENOTDIR
    assert errno_of(g, "/file/.") == ENOTDIR
    assert errno_of(g, "/file/..") == ENOTDIR
    assert errno_of(g, "/file/x", must_exist=False) == ENOTDIR
    assert errno_of(g, "/a/b/f/", cwd="/a") == ENOTDIR
    assert g.resolve("/a/").guest == "/a"


def test_must_exist_false(tree: tuple[GuestRoot, Path]) -> None:
    g, root = tree
    assert g.resolve("/a/new", must_exist=False) == Resolved("/a/new", str(root / "a" / "new"))
    assert g.resolve("new/", cwd="/a/b", must_exist=False).guest == "/a/b/new"
    assert g.resolve("/a/b/f", must_exist=False).guest == "/a/b/f"
    assert errno_of(g, "/a/new") == ENOENT
    assert errno_of(g, "/missing/new", must_exist=False) == ENOENT
    assert errno_of(g, "/missing/../a", must_exist=False) == ENOENT


def test_dangling_links(tree: tuple[GuestRoot, Path]) -> None:
    g, root = tree
    (root / "dang").symlink_to("a/newfile")
    (root / "dabs").symlink_to("/../../newsecret")
    (root / "ddeep").symlink_to("/nodir/x")
    assert errno_of(g, "/dang") == ENOENT
    assert g.resolve("/dang", must_exist=False) == Resolved(
        "/a/newfile", str(root / "a" / "newfile")
    )
    assert g.resolve("/dang", follow=False, must_exist=False).guest == "/dang"
    assert g.resolve("/dabs", must_exist=False).host == str(root / "newsecret")
    assert errno_of(g, "/ddeep", must_exist=False) == ENOENT


def test_long_names(tree: tuple[GuestRoot, Path]) -> None:
    g, root = tree
    assert errno_of(g, "/" + "x" * 255) == ENOENT
    assert g.resolve("/" + "x" * 255, must_exist=False).guest == "/" + "x" * 255
    assert errno_of(g, "/" + "x" * 256) == ENAMETOOLONG
    assert errno_of(g, "/" + "x" * 256, must_exist=False) == ENAMETOOLONG
    assert errno_of(g, "/" + "\u00e9" * 128) == ENAMETOOLONG  # 256 bytes in UTF-8
    # names are checked when looked up, like the kernel
    assert errno_of(g, "/missing/" + "x" * 256) == ENOENT
    (root / "longln").symlink_to("x" * 300)
    assert errno_of(g, "/longln") == ENAMETOOLONG
    assert g.resolve("/" * 4095).guest == "/"
    assert errno_of(g, "/" * 4096) == ENAMETOOLONG
    assert errno_of(g, "a/" * 2048) == ENAMETOOLONG


# --- guest_path_of, host_open ------------------------------------------------------------


def test_guest_path_of(tree: tuple[GuestRoot, Path]) -> None:
    g, root = tree
    assert g.guest_path_of(str(root)) == "/"
    assert g.guest_path_of(str(root / "a" / "b")) == "/a/b"
    assert g.guest_path_of(root / "a" / ".." / "file") == "/file"
    for bad in (str(root.parent), str(root) + "x", str(root / ".." / "secret"), "a/b"):
        with pytest.raises(ValueError):
            g.guest_path_of(bad)


def test_host_open(tree: tuple[GuestRoot, Path]) -> None:
    g, root = tree
    fd = g.host_open(g.resolve("/a/b/f"), os.O_RDONLY)
    try:
        assert os.read(fd, 100) == b"inner"
    finally:
        os.close(fd)
    # O_CREAT through a dangling symlink creates the target inside the root
    (root / "dang").symlink_to("/a/created")
    fd = g.host_open(g.resolve("/dang", must_exist=False), os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
    assert (root / "a" / "created").is_file()
    # a final symlink that was not followed is never followed by the host either
    (root / "lf").symlink_to("file")
    with pytest.raises(GuestError) as info:
        g.host_open(g.resolve("/lf", follow=False), os.O_RDONLY)
    assert info.value.errno == ELOOP
    with pytest.raises(GuestError) as info:
        g.host_open(g.resolve("/file"), os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    assert info.value.errno == EEXIST
    with pytest.raises(GuestError) as info:
        g.host_open(Resolved("/x", str(root / ".." / "secret")), os.O_RDONLY)
    assert info.value.errno == EXDEV


def test_host_open_detects_directory_swap(tree: tuple[GuestRoot, Path]) -> None:
    """A host process swapping a checked directory for a symlink is caught after open."""
    g, root = tree
    r = g.resolve("/a/b/f")
    outside = root.parent
    (outside / "a" / "b" / "f").write_text("outside")
    os.rename(root / "a", root / "a.orig")
    (root / "a").symlink_to(outside / "a")
    with pytest.raises(GuestError) as info:
        g.host_open(r, os.O_RDONLY)
    assert info.value.errno == EXDEV


def test_guest_errno_mapping() -> None:
    assert guest_errno(FileNotFoundError(host_errno.ENOENT, "x")) == ENOENT
    assert guest_errno(OSError(host_errno.ELOOP, "x")) == ELOOP
    assert guest_errno(OSError(host_errno.ETXTBSY, "x")) == host_errno.ETXTBSY


# --- property tests ----------------------------------------------------------------------

COMPONENTS = ["a", "b", "..", ".", "link_out", "link_in", "abs_link", ""]


def _build_property_tree(base: Path) -> GuestRoot:
    """A root three levels deep whose ancestors all contain decoys named like guest entries."""
    root = base / "x" / "y" / "root"
    for level in (base, base / "x", base / "x" / "y"):
        (level / "a" / "b").mkdir(parents=True, exist_ok=True)
        (level / "b").mkdir(exist_ok=True)
        for name in ("link_out", "link_in", "abs_link"):
            (level / "a" / name).mkdir(exist_ok=True)
    (root / "a" / "b").mkdir(parents=True)
    (root / "b").write_text("file b")
    (root / "link_out").symlink_to("../../..")
    (root / "link_in").symlink_to("a")
    (root / "abs_link").symlink_to("/a/b")
    (root / "a" / "link_out").symlink_to("../../../../a")
    (root / "a" / "link_in").symlink_to("b")
    (root / "a" / "abs_link").symlink_to("/")
    (root / "a" / "b" / "link_out").symlink_to("../../../../../../a/b/")
    (root / "a" / "b" / "link_in").symlink_to("../link_in/../abs_link")
    (root / "a" / "b" / "abs_link").symlink_to("/../../../a/link_out")
    (root / "a" / "b" / "a").symlink_to("a")  # self loop -> ELOOP
    (root / "a" / "b" / "b").symlink_to("/b/")  # -> file with trailing slash -> ENOTDIR
    return GuestRoot(root)


@pytest.fixture(scope="module")
def prop_root(tmp_path_factory: pytest.TempPathFactory) -> GuestRoot:
    return _build_property_tree(tmp_path_factory.mktemp("prop"))


guest_paths = st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=12).map("/".join)
cwds = st.sampled_from(["/", "/a", "/a/b"])


def _inside(root: GuestRoot, host: str) -> bool:
    return os.path.commonpath([root.host_root, host]) == root.host_root


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=guest_paths, cwd=cwds, follow=st.booleans(), must_exist=st.booleans())
def test_property_never_escapes(
    prop_root: GuestRoot, path: str, cwd: str, follow: bool, must_exist: bool
) -> None:
    try:
        r = prop_root.resolve(path, cwd, follow=follow, must_exist=must_exist)
    except GuestError as exc:
        assert exc.errno in (ENOENT, ENOTDIR, ELOOP)
        return
    assert os.path.isabs(r.host) and os.path.normpath(r.host) == r.host
    assert _inside(prop_root, r.host)
    assert prop_root.guest_path_of(r.host) == r.guest
    # the host agrees: no symlink in the parent (nor in the result itself when following)
    parent = os.path.dirname(r.host) if r.guest != "/" else r.host
    assert os.path.realpath(parent) == parent
    if follow:
        assert os.path.realpath(r.host) == r.host
    if must_exist:
        assert os.path.lexists(r.host)


# openat2(RESOLVE_IN_ROOT) is the kernel's own chroot-style lookup: use it as an oracle.
_SYS_OPENAT2 = 437
_RESOLVE_IN_ROOT = 0x10
_O_PATH = getattr(os, "O_PATH", 0o10000000)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _openat2_in_root(root_fd: int, path: str, follow: bool) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    how = _OpenHow(_O_PATH | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW), 0, _RESOLVE_IN_ROOT)
    fd = libc.syscall(
        ctypes.c_long(_SYS_OPENAT2),
        ctypes.c_int(root_fd),
        ctypes.c_char_p(os.fsencode(path)),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return fd


def _have_openat2(root: GuestRoot) -> bool:
    fd = os.open(root.host_root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.close(_openat2_in_root(fd, ".", True))
        return True
    except (OSError, AttributeError):
        return False
    finally:
        os.close(fd)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=guest_paths, cwd=cwds, follow=st.booleans())
def test_property_matches_kernel_openat2(
    prop_root: GuestRoot, path: str, cwd: str, follow: bool
) -> None:
    if not _have_openat2(prop_root):
        pytest.skip("openat2(RESOLVE_IN_ROOT) unavailable")
    relative = path and not path.startswith("/") and cwd != "/"
    kpath = cwd[1:] + "/" + path if relative else path
    root_fd = os.open(prop_root.host_root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            kfd = _openat2_in_root(root_fd, kpath, follow)
        except OSError as exc:
            assert errno_of(prop_root, path, cwd=cwd, follow=follow) == exc.errno
            return
        try:
            r = prop_root.resolve(path, cwd, follow=follow)
            kst, ost = os.fstat(kfd), os.lstat(r.host)
            assert (kst.st_dev, kst.st_ino) == (ost.st_dev, ost.st_ino)
            assert os.readlink(f"/proc/self/fd/{kfd}") == r.host
        finally:
            os.close(kfd)
    finally:
        os.close(root_fd)
