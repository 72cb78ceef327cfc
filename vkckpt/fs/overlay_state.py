"""Save and load an overlay root's layers (fs/overlay.py): the upper layer in every image,
the lower one too with --embed-root (full images only).

An image of an overlay run holds one ``overlay`` record (the lower layer's tree digest,
whether this image's upper entries are all of it, whether the lower layer is embedded) and
``ovl_entry`` records, each one path of a layer: its kind (``dir``, ``file``, ``link`` or
``absent``), mode, size, symlink target and whether a whiteout marker stands beside it.  A
file's bytes follow its entry in ``ovl_data`` chunks of at most CHUNK bytes,
zlib-compressed with a CRC-32 of the plain bytes (chunks of zeros are left out), as for
ghost files.  A full image lists the whole upper layer; an incremental one the paths that
changed since its parent (Overlay.changed, exact), an ``absent`` entry removing what the
parent had there.  Entries come parents first, so the reader can refuse any entry whose
directory is missing; every path is checked component by component and created beneath
the layer's directory fd without following a symlink.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import zlib

from vkckpt.errors import ImageError
from vkckpt.fieldtypes import Maybe
from vkckpt.fs.overlay import MARKER, Overlay, marker_name
from vkckpt.host import fs as hostfs

VERSION = 1
CHUNK = 1 << 20
MAX_ENTRIES = 1_000_000  # entries of one layer in one image
MAX_BYTES = 16 << 30  # file bytes of one layer in one image
UPPER, LOWER = 0, 1
KINDS = ("absent", "dir", "file", "link")
OVERLAY_SCHEMA = {"lower": "str", "full": "bool", "embedded": "bool"}
ENTRY_SCHEMA = {"layer": "u32", "path": "str", "kind": "str", "mode": "u32", "size": "u64",
                "target": Maybe("str"), "wh": "bool"}
DATA_SCHEMA = {"entry": "u64", "off": "u64", "crc": "u32", "data": "bytes"}
RECORDS = {"overlay": (VERSION, OVERLAY_SCHEMA), "ovl_entry": (VERSION, ENTRY_SCHEMA),
           "ovl_data": (VERSION, DATA_SCHEMA)}
_DIR = os.O_PATH | os.O_DIRECTORY

Rec = tuple[str, dict]


def _key(rel: str) -> tuple[str, ...]:
    return tuple(rel.split("/"))


def upper_paths(ov: Overlay) -> dict[str, bool]:
    """Every path of the upper layer (entries and whiteouts): rel -> marker beside it."""
    out: dict[str, bool] = {}
    for dirpath, dirs, files in os.walk(ov.upper):
        base = os.path.relpath(dirpath, ov.upper)
        base = "" if base == "." else base + "/"
        for n in dirs + files:
            if n.startswith(MARKER):
                with open(os.path.join(dirpath, n), "rb") as f:
                    out[base + os.fsdecode(f.read(4096))] = True
            elif not hostfs.is_reserved(n):
                out.setdefault(base + n, False)
    return out


def _inode_paths(ov: Overlay, keys: set[tuple[int, int]]) -> set[str]:
    found = set()
    if keys:
        for dirpath, _, files in os.walk(ov.upper):
            for n in files:
                st = os.lstat(os.path.join(dirpath, n))
                if (st.st_dev, st.st_ino) in keys:
                    found.add(os.path.relpath(os.path.join(dirpath, n), ov.upper))
    return found


def save(ov: Overlay, parent_id: bytes | None, writing: set[tuple[int, int]],
         embed: bool) -> list[Rec]:
    """The records of an image of ov: the whole upper layer (and with embed the lower one)
    when parent_id is None or unknown to ov, else what changed since that image; writing:
    the upper inodes mapped shared and writable now (they count as changed in the next
    image too)."""
    base = ov.image_gen.get(parent_id) if parent_id is not None else None
    for rel in _inode_paths(ov, ov.written | writing):
        ov.touch(rel)
    ov.written = set(writing)
    if base is None:
        paths = upper_paths(ov)
        rels = sorted(paths, key=_key)
    else:
        rels = sorted((r for r, g in ov.changed.items() if g > base), key=_key)
        paths = {r: ov.marked(r) for r in rels}
    recs: list[Rec] = [("overlay", {"lower": ov.digest, "full": base is None,
                                    "embedded": embed and base is None})]
    if embed and base is None:
        recs += _layer(LOWER, ov.lower, _lower_paths(ov.lower))
    recs += _layer(UPPER, ov.upper, {r: paths[r] for r in rels})
    ov.next_gen()
    return recs


def _lower_paths(top: str) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for dirpath, dirs, files in os.walk(top):
        base = os.path.relpath(dirpath, top)
        for n in sorted(dirs + files):
            if not hostfs.is_reserved(n):
                out[n if base == "." else f"{base}/{n}"] = False
    return dict(sorted(out.items(), key=lambda kv: _key(kv[0])))


def _layer(layer: int, top: str, paths: dict[str, bool]) -> list[Rec]:
    recs: list[Rec] = []
    total = 0
    for i, (rel, wh) in enumerate(paths.items()):
        host = os.path.join(top, rel)
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            st = None
        kind = "absent" if st is None else "dir" if stat.S_ISDIR(st.st_mode) else \
            "link" if stat.S_ISLNK(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else None
        if kind is None:
            raise ImageError(f"/{rel}: only directories, files and symlinks can be saved "
                             "in an overlay layer")
        size = st.st_size if kind == "file" else 0
        total += size
        if total > MAX_BYTES:
            raise ImageError(f"an overlay layer holds more than {MAX_BYTES} bytes of files, "
                             "the most an image may carry")
        recs.append(("ovl_entry", {"layer": layer, "path": "/" + rel, "kind": kind,
                                   "mode": stat.S_IMODE(st.st_mode) if st else 0, "size": size,
                                   "target": os.readlink(host) if kind == "link" else None,
                                   "wh": wh}))
        if kind == "file":
            recs += _chunks(host, size, i)
    return recs


def _chunks(host: str, size: int, entry: int) -> list[Rec]:
    out: list[Rec] = []
    fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for off in range(0, size, CHUNK):
            plain = os.pread(fd, min(CHUNK, size - off), off)
            if plain.strip(b"\0"):
                out.append(("ovl_data", {"entry": entry, "off": off, "crc": zlib.crc32(plain),
                                         "data": zlib.compress(plain, 1)}))
    finally:
        os.close(fd)
    return out


# -- loading ------------------------------------------------------------------------------


def check_path(path: object) -> str:
    """The layer-relative path of a saved guest path; ImageError unless it is absolute,
    normal, of plain names (no "." or "..", no reserved name) and not too long."""
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path \
            or len(os.fsencode(path)) >= 4096:
        raise ImageError(f"overlay entry {path!r}: not an absolute guest path")
    names = path[1:].split("/")
    for n in names:
        if n in ("", ".", "..") or hostfs.is_reserved(n) or len(os.fsencode(n)) > 255:
            raise ImageError(f"overlay entry {path!r}: not a path of plain names")
    return path[1:]


class LayerLoader:
    """Applies one image's entries of one layer to the layer directory at top_fd."""

    def __init__(self, top_fd: int, what: str) -> None:
        self.top_fd = top_fd
        self.what = what
        self.count = 0  # entries read
        self.total = 0  # file bytes declared
        self.file: tuple[int, int, int, int] | None = None  # (entry, fd, size, mode)
        self.end = 0  # where the next chunk of the current file may start
        self.modes: list[tuple[str, int]] = []  # directories' modes, set at finish

    def entry(self, d: dict, ov: Overlay | None) -> None:
        """Apply one ovl_entry record (ov: the upper layer's overlay, for whiteouts)."""
        self._close()
        idx, self.count = self.count, self.count + 1
        if self.count > MAX_ENTRIES:
            raise ImageError(f"{self.what}: more than {MAX_ENTRIES} entries")
        rel, kind, size = check_path(d["path"]), d["kind"], d["size"]
        if kind not in KINDS or (kind != "file" and size) or \
                (kind == "link") != isinstance(d["target"], str):
            raise ImageError(f"{self.what}: entry {d['path']}: inconsistent kind {kind!r}")
        self.total += size
        if self.total > MAX_BYTES:
            raise ImageError(f"{self.what}: files hold more than {MAX_BYTES} bytes")
        head, _, name = rel.rpartition("/")
        try:
            parent = hostfs.open_beneath(self.top_fd, head, _DIR)
        except OSError:
            if kind == "absent" and not d["wh"]:
                return  # nothing there to remove
            raise ImageError(f"{self.what}: entry {d['path']}: its directory is "
                             "missing") from None
        try:
            self._apply(parent, name, rel, d, idx)
            if ov is not None:
                _marker(parent, name, d["wh"])
            elif d["wh"]:
                raise ImageError(f"{self.what}: entry {d['path']}: a whiteout in the lower "
                                 "layer")
        except OSError as exc:
            raise ImageError(f"{self.what}: cannot recreate {d['path']} "
                             f"({exc.strerror})") from None
        finally:
            os.close(parent)

    def _apply(self, parent: int, name: str, rel: str, d: dict, idx: int) -> None:
        kind, mode = d["kind"], d["mode"] & 0o7777
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and not (kind == "dir" and stat.S_ISDIR(st.st_mode)):
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(name, dir_fd=parent)
            else:
                os.unlink(name, dir_fd=parent)
            st = None
        if kind == "dir":
            if st is None:
                os.mkdir(name, 0o700, dir_fd=parent)
            self.modes.append((rel, mode))
        elif kind == "link":
            os.symlink(d["target"], name, dir_fd=parent)
        elif kind == "file":
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600, dir_fd=parent)
            os.ftruncate(fd, d["size"])
            self.file, self.end = (idx, fd, d["size"], mode), 0

    def data(self, c: dict) -> None:
        """Apply one ovl_data record: a chunk of the file the last entry made."""
        f = self.file
        off = c["off"]
        if f is None or c["entry"] != f[0] or off % CHUNK or off < self.end or off >= f[2]:
            raise ImageError(f"{self.what}: data at {off} of entry {c['entry']}: unknown "
                             "entry or offset")
        want = min(CHUNK, f[2] - off)
        try:
            plain = zlib.decompressobj().decompress(c["data"], want + 1)
        except zlib.error:
            plain = None
        if plain is None or len(plain) != want or zlib.crc32(plain) != c["crc"]:
            raise ImageError(f"{self.what}: data at {off} of entry {c['entry']} is corrupted "
                             "(size or checksum)")
        os.pwrite(f[1], plain, off)
        self.end = off + want

    def _close(self) -> None:
        if self.file is not None:
            _, fd, _, mode = self.file
            self.file = None
            os.fchmod(fd, mode)
            os.close(fd)

    def finish(self) -> None:
        """Close the last file and give directories their modes (deepest first)."""
        self._close()
        for rel, mode in sorted(self.modes, key=lambda m: -len(_key(m[0]))):
            fd = hostfs.open_beneath(self.top_fd, rel, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
        self.modes = []


def _marker(parent: int, name: str, wanted: bool) -> None:
    m = marker_name(name)
    if wanted:
        try:
            os.unlink(m, dir_fd=parent)
        except FileNotFoundError:
            pass
        fd = os.open(m, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=parent)
        try:
            os.write(fd, os.fsencode(name))
        finally:
            os.close(fd)
    else:
        try:
            os.unlink(m, dir_fd=parent)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
