"""Saved forms of open /proc files and directories: the snapshot taken at open.

A /proc file saves the bytes it was generated with and its offset, not a way to make them
again: what a thawed guest reads next is exactly what it would have read unfrozen, even
though the processes, times and memory it describes are the thawed ones.  A directory
saves its listing and position the same way.
"""

from __future__ import annotations

from vkckpt.abi import fcntl as F
from vkckpt.errors import ImageError
from vkckpt.fs.procfiles import ProcDir, ProcFile
from vkckpt.fs.procfs import is_proc

#: The fields of the `file` record these kinds add (fs/state.py's FILE_SCHEMA takes them).
#: ProcDir.lister is not saved: a thawed directory keeps the listing it had.
SCHEMA = {"data": "bytes", "mode": "u32", "names": [("str", "u32")]}
MAX_DATA = 16 << 20    # more than any generated /proc file holds (maps of 65530 VMAs: ~6 MiB)
MAX_NAMES = 1 << 17    # more entries than any /proc directory lists
_FILE_MODES = {F.S_IFREG | 0o444, F.S_IFREG | 0o400, F.S_IFREG | 0o644}


def save_proc(f: ProcFile, d: dict) -> None:
    d["path"], d["offset"], d["data"], d["mode"] = f.path, f.pos, f.data, f.mode


def save_procdir(f: ProcDir, d: dict) -> None:
    d["path"], d["offset"] = f.path, f.pos
    d["names"] = [[n, m] for n, m in f.names]


def _checked(d: dict) -> tuple[str, int]:
    path, pos = d["path"], d["offset"]
    if not isinstance(path, str) or not is_proc(path.rstrip("/")) or "\0" in path \
            or len(path) > 4096:
        raise ImageError(f"file {d['id']!r}: {path!r} is not a /proc path")
    if not isinstance(pos, int) or pos < 0:
        raise ImageError(f"file {d['id']!r} ({path}): negative offset {pos!r}")
    return path, pos


def load_proc(d: dict) -> ProcFile:
    path, pos = _checked(d)
    data, mode = d["data"], d["mode"]
    if not isinstance(data, bytes) or len(data) > MAX_DATA or mode not in _FILE_MODES:
        raise ImageError(f"file {d['id']!r} ({path}): not a /proc file's snapshot")
    return ProcFile(d["flags"], path, data, mode, pos)


def load_procdir(d: dict) -> ProcDir:
    path, pos = _checked(d)
    names = d["names"]
    if not isinstance(names, list) or len(names) > MAX_NAMES:
        raise ImageError(f"file {d['id']!r} ({path}): too many directory entries")
    for name, mode in names:
        if not name or "/" in name or "\0" in name or len(name) > 255 or name in (".", ".."):
            raise ImageError(f"file {d['id']!r} ({path}): bad entry name {name!r}")
        if mode & F.S_IFMT not in (F.S_IFREG, F.S_IFDIR, F.S_IFLNK):
            raise ImageError(f"file {d['id']!r} ({path}): bad entry mode {mode!r}")
    return ProcDir(d["flags"], path, [(n, m) for n, m in names], pos)
