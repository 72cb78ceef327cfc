"""A corpus of crafted images: each built from a valid seed image, checksums recomputed, with
what `vkckpt thaw`, `verify` and `inspect` must answer (tests/test_image_corpus.py).

An answer is an exit status; every refusal must be exactly one stderr line and no
traceback.  The commands run through testing/forkrun.py (each in a forked child, with a time
limit and its peak RSS), so a crafted image that costs host memory or hangs is caught too.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

from vkckpt.fs.lock_state import MAX_LOCKS
from vkckpt.fs.state import fingerprint
from vkckpt.image import ImageReader, ImageWriter

REFUSED = "refused"  # thaw 125, verify/inspect 1, one stderr line
ANY = "any"          # inspect: 0, or refused (as above)
KEY = b"corpus key, 32 bytes of secret!!"
OTHER_KEY = b"somebody else's key, 32 bytes!!!"

#: Field mutations of structural records (also fuzzed in-process by test_hostile_images.py).
FIELD_CASES = [
    ("buffer", "size", 1 << 62),             # absurd size
    ("buffer", "size", 4095),                # unaligned
    ("buffer", "bid", -1),
    ("vmspace", "vmas", [[0x1000, 0x0, 3, 2, "", 1, 0, "", 0]]),            # end < start
    ("vmspace", "vmas", [[0x10000, 0x20000, 3, 2, "", 1, 0, "", 0]] * 2),   # overlap
    ("vmspace", "vmas", [[0x7FFFFFFFF000, 0x800000001000, 3, 2, "", 1, 0, "", 0]]),
    ("vmspace", "vmas", [[0x10000, 0x20000, 3, 2, "", 999999, 0, "", 0]]),  # no such buffer
    ("thread", "regs", {"rax": 1}),          # registers missing
    ("thread", "pid", 424242),               # a pid that points nowhere
    ("thread", "state", "levitating"),
    ("thread", "sleep", {"queue": ["futex", "private", 1, 8], "deadline": None,
                         "timeout_result": 0, "restartable": True, "nr": 202, "args": [],
                         "seq": 1, "timer": 0}),
    ("process", "threads", [1, 1, 1]),
    ("process", "fds", [[3, 999, 0]]),
    ("process", "pid", 0),
    ("process", "root", "jail"),             # chroot(2) root not an absolute guest path
    ("process", "ioprio", -1),
    ("process", "rlimits", [[7, 2048, 4096]]),        # RLIMIT_NOFILE above fs.nr_open
    ("process", "rlimits", [[99, 1, 1]]),             # no such resource
    ("process", "rlimits", [[3, 9, 8]]),              # soft above hard
    ("process", "rlimits", [[3, 1, 2], [3, 1, 2]]),   # one resource twice
    ("kernel", "quantum", 0),
    ("kernel", "runq", [31337]),
    ("kernel", "timers", [[5, 1, 1]]),
    ("kernel", "next_pid", "many"),
    ("kernel", "inode_meta", [[2, 0, 0, 0, [[b"user.%d" % i, b""] for i in range(65)]]]),
    ("kernel", "inode_meta", [[2, 0, 0, 0o10000, [[b"user.a", bytes(1 << 17)]]]]),  # too big
    ("kernel", "inode_meta", [[2, 0, 0, 0, [[b"system.posix_acl_access", b""]]]]),
    ("kernel", "inode_meta", [[2, 0, 0, 0, []], [2, 1, 1, 0, []]]),  # given twice
    ("kernel", "inode_meta", [[2, 0, 0, 0o60000, []]]),  # a block device: no placeholder's
    ("kernel", "inode_meta", [[2, 0, 0, True, []]]),  # v1's FIFO flag in a v2 record
    ("kernel", "publish", [[8000, 70000]]),  # a guest port no TCP port can be
    ("kernel", "publish", [[8000, 80], [8000, 81]]),  # one host port published twice
    ("kernel", "publish", [[8000 + i, 80] for i in range(65)]),  # more than MAX_PUBLISH
    ("kernel", "external", [5]),  # external connections without published ports
    ("pipe", "data", b"x" * (1 << 20)),
    ("file", "kind", "socket"),
    ("file", "kind", "timerfd"),             # a timerfd without its clock and setting
    ("file", "kind", "eventfd"),             # an eventfd without its counter
    ("file", "kind", "signalfd"),            # a signalfd without its mask
    ("process", "itimers", [[0, 5, 0, 1 << 40]]),  # a kernel timer seq never handed out
    ("process", "itimers", [[7, 5, 0, 0]]),  # no such interval timer
    ("process", "ptimers", {"next_id": 1, "timers": [[0, 1, 0, 10, 0, 0, 5, 0, 1 << 40, 0]]}),
    ("process", "ptimers", {"next_id": 1, "timers": [[0, 99, 0, 10, 0, 0, 0, 0, 0, 0]]}),
    ("waitq", "tids", [1, 2, 3, 4, 5]),
    ("thread", "progress", 1 << 40),         # more written than one write moves
    ("thread", "progress_msgs", 5000),       # more messages than one sendmmsg moves
    ("process", "comm", b"a name longer than fifteen bytes"),
]

#: Crafted `locks` records (seed images hold none): name, fields, what the refusal says.
_LOCK = [0x801, 2, "posix", 1, 1, 1, 0, 9]  # process 1 write-locks bytes 0-9 of inode 2
LOCK_CASES = [
    ("too-many", {"posix": [_LOCK] * (2 * MAX_LOCKS + 1)}, "more than"),
    ("owner-missing", {"posix": [[*_LOCK[:3], 424242, 424242, *_LOCK[5:]]]}, "not in the image"),
    ("ofd-owner-missing", {"posix": [[*_LOCK[:2], "ofd", 999, -1, *_LOCK[5:]]]},
     "not in the image"),
    ("end-before-start", {"posix": [[*_LOCK[:6], 9, 0]]}, "invalid"),
    ("type-unlock", {"posix": [[*_LOCK[:5], 2, 0, 9]]}, "invalid"),
    ("owner-overlaps", {"posix": [_LOCK, _LOCK]}, "overlap"),
    ("flock-twice", {"flock": [[0x801, 2, 1, 1], [0x801, 2, 1, 0]]}, "flock"),
    ("sleeper-awake", {"posix": [_LOCK], "blocked": [[1, 1, -1]]}, "sleep on a lock"),
    ("malformed", {"posix": "everything"}, "malformed"),
]

#: Field mutations of socket records: the seed must hold sockets (tests/test_unix_sockets.py
#: freezes unixpair with bytes and files in flight for them).
SOCKET_FIELD_CASES = [
    ("socket", "id", 0),
    ("socket", "state", "levitating"),
    ("socket", "type", 3),                   # SOCK_RAW is made a datagram socket, never saved
    ("socket", "shutdown", 9),
    ("socket", "sndbuf", -1),
    ("socket", "sndbuf", 1 << 31),           # a budget setsockopt never gives: host memory
    ("socket", "rcvbuf", 16),
    ("socket", "peer", 999999),              # names no endpoint
    ("socket", "acceptq", [999999]),
    ("socket", "msgs", "nope"),
    ("socket", "msgs", [[b"x", None, 0, [999999], None, 0]]),      # carries no saved file
    ("socket", "msgs", [[b"x", None, 999999, [], None, 0]]),       # from no endpoint
    ("socket", "msgs", [[b"x" * (1 << 24) + b"x", None, 0, [], None, 0]]),  # past MAX_QUEUED
    ("socket", "msgs", [[b"", None, 0, [], None, 0]] * ((1 << 16) + 1)),     # past MAX_MSGS
    ("unixns", "next_id", 1),                # socket ids past the next one
]

#: Field mutations of internet socket records: the seed must hold them (tests/test_inet_sockets.py
#: freezes tcploop with bytes in flight for them).
INET_FIELD_CASES = [
    ("inetsock", "id", 999999),              # names no socket
    ("inetsock", "family", 1),               # AF_UNIX is no internet family
    ("inetsock", "peer", b"short"),          # a name is 16 address bytes and a port
    ("inetsock", "linger", [7, 0]),
    ("inetsock", "keepcnt", 1000),           # TCP_KEEPCNT is at most 127
    ("inetsock", "keepidle", -1),
    ("inetsock", "syn", b"short"),           # SYN_SENT's destination is a whole name
    ("inetns", "next_port", 80),             # below ip_local_port_range
    ("inetns", "next_port", 70000),          # no port at all
]

#: Field mutations of ghost files' records: the seed must hold a ghost with data (tests/
#: test_ghosts.py freezes the ghosts guest while its unlinked file is open).
GHOST_FIELD_CASES = [
    ("ghost", "id", 999999),                 # the files name a ghost no record gives
    ("ghost", "vino", 1),                    # not an inode number the table hands out
    ("ghost", "vino", 1 << 40),              # past next_ino: unknown
    ("ghost", "size", 1 << 40),              # past MAX_GHOST_BYTES
    ("ghost", "size", 1),                    # smaller than its data
    ("ghost", "mode", "rw"),
    ("ghost_data", "ghost", 999999),         # data of no ghost
    ("ghost_data", "off", 1 << 20),          # past the ghost's size
    ("ghost_data", "off", 7),                # not on a chunk boundary
    ("ghost_data", "crc", 0),                # checksum mismatch
    ("ghost_data", "data", b"not zlib"),
    ("ghost_data", "data", b"x" * 100),
    ("file", "ghost", 999999),               # a description of no ghost
]

#: Field mutations of an overlay run's records, with the kind of entry mutated ("dir" or
#: "file": the first ovl_entry of that kind; None: the first record of the type).  The seed
#: is a full image of tests/test_overlay.py's layers guest holding file data.
OVERLAY_FIELD_CASES = [
    ("overlay", "lower", "sha256:" + "0" * 64, None),  # another lower layer
    ("overlay", "full", False, None),        # a chain that starts with an incremental
    ("overlay", "embedded", True, None),     # an embedded layer with no entries
    ("overlay", "lower", 7, None),
    ("ovl_entry", "path", "work/x", "file"),             # not absolute
    ("ovl_entry", "path", "/work/../x", "file"),         # not plain names
    ("ovl_entry", "path", "/work//x", "file"),
    ("ovl_entry", "path", "/work/.vkckpt-tmp.wh.x", "file"),  # a reserved name
    ("ovl_entry", "path", "/" + "x" * 256, "file"),      # a name too long
    ("ovl_entry", "path", "/nodir/x", "file"),           # its directory is missing
    ("ovl_entry", "kind", "fifo", "file"),
    ("ovl_entry", "size", 5, "dir"),         # only files have sizes
    ("ovl_entry", "size", 1 << 40, "file"),  # past MAX_BYTES
    ("ovl_entry", "size", 1, "file"),        # smaller than its data
    ("ovl_entry", "layer", 7, "file"),
    ("ovl_entry", "layer", 1, "file"),       # a lower entry in an image embedding none
    ("ovl_entry", "target", "x", "file"),    # a target for a file
    ("ovl_entry", "mode", "rw", "file"),
    ("ovl_data", "entry", 999999, None),     # data of no entry
    ("ovl_data", "off", 1 << 20, None),      # past the file's size
    ("ovl_data", "off", 7, None),            # not on a chunk boundary
    ("ovl_data", "crc", 0, None),            # checksum mismatch
    ("ovl_data", "data", b"not zlib", None),
    ("ovl_data", "data", b"x" * 100, None),
]

Recs = list  # [type, version, critical, fields] lists, or raw msgpack payloads (bytes)


def load_records(path: Path) -> Recs:
    """Every record of an image, as editable lists."""
    return [[r.type, r.version, r.critical, r.fields] for r in ImageReader(path).records()]


def write_records(dst: Path, like: Path, recs: Recs, key: bytes | None = None) -> Path:
    """recs as a new image with valid checksums and like's header ids (sealed with key)."""
    h = ImageReader(like).header
    sealed = {} if key is None else {"key": key}
    with ImageWriter(dst, vkernel_id=h.vkernel_id, **sealed) as w:
        for r in recs:
            if not isinstance(r, bytes) and _encodable(r):
                w.add(r[0], r[3], version=r[1], critical=r[2])
            else:  # what no writer would write: a crafted payload
                w._emit("raw", r if isinstance(r, bytes) else msgpack.packb(r))
    return dst


def _encodable(r: list) -> bool:
    """Whether ImageWriter.add accepts record r (it refuses what its reader would)."""
    from vkckpt.image.codecs import _canon
    from vkckpt.image.limits import DEFAULT_LIMITS
    try:
        _canon(r[3], 2, DEFAULT_LIMITS)
    except Exception:
        return False
    return True


def set_field(recs: Recs, kind: str, name: str, value: object, index: int = 0) -> Recs:
    """A copy of recs with field `name` of the index-th record of type kind set to value."""
    out = copy.deepcopy(recs)
    hits = [r for r in out if not isinstance(r, bytes) and r[0] == kind]
    hits[index % len(hits)][3][name] = value
    return out


def nested_bomb(rtype: str, critical: bool, megabytes: int) -> bytes:
    """A record payload of `megabytes` arrays of a million empty arrays each (within every
    msgpack length limit): a byte of msgpack for each empty list, which costs about 64
    bytes once decoded."""
    inner = b"\xdd" + (1_000_000).to_bytes(4, "big") + b"\x90" * 1_000_000
    outer = b"\xdc" + megabytes.to_bytes(2, "big") + inner * megabytes
    return (b"\x94" + msgpack.packb(rtype) + msgpack.packb(1) + msgpack.packb(critical)
            + b"\x81" + msgpack.packb("pad") + outer)


def nested_bomb_small(i: int) -> bytes:
    """A 60 KB optional "meta" record (a type readers decode) of 60000 empty arrays."""
    return (b"\x94" + msgpack.packb("meta") + msgpack.packb(1) + msgpack.packb(False)
            + b"\x81" + msgpack.packb(f"pad{i}") + b"\xdd" + (60_000).to_bytes(4, "big")
            + b"\x90" * 60_000)


@dataclass
class Crafted:
    """One crafted image and what each command must answer for it (REFUSED, ANY or a status)."""

    name: str
    path: Path
    thaw: object = REFUSED
    verify: object = REFUSED
    inspect: object = ANY
    root: bool = True   # pass --root ROOT to thaw and verify
    key: bool = False   # pass --key KEYFILE to all three
    why: str = ""       # a phrase the refusal must contain (thaw)
    extra: list[str] = field(default_factory=list)

    def argv(self, command: str, root: Path, keyfile: Path) -> list[str]:
        out = [command]
        if command != "inspect" and self.root:
            out += ["--root", str(root)]
        if command == "thaw":
            out += ["--no-control", *self.extra]
        if self.key:
            out += ["--key", str(keyfile)]
        return out + [str(self.path)]


def _host_file(recs: Recs, path: str, fp: dict, flags: int = 0, offset: int = 0,
               kind: str = "host") -> Recs:
    """recs with its first file record turned into an open host file of the root."""
    out = copy.deepcopy(recs)
    f = next(r for r in out if r[0] == "file")
    f[3].update(kind=kind, path=path, flags=flags, offset=offset, fingerprint=fp)
    f[3].pop("stream", None)
    return out


def _proc_file(recs: Recs, **fields: object) -> Recs:
    """recs with its first file record turned into an open /proc file (or directory)."""
    out = copy.deepcopy(recs)
    f = next(r for r in out if r[0] == "file")
    f[3].update({"kind": "proc", "path": "/proc/1/status", "offset": 0, "data": b"x\n",
                 "mode": 0o100444, **fields})
    f[3].pop("stream", None)
    return out


def _fp(host: Path) -> dict:
    fd = os.open(host, os.O_RDONLY | os.O_NONBLOCK)
    try:
        return fingerprint(fd)
    finally:
        os.close(fd)


def _big_vma(recs: Recs, size: int, limit: int | None = None) -> Recs:
    """recs with one more buffer of `size` bytes mapped by one more VMA of process 1."""
    out = copy.deepcopy(recs)
    kr = next(r for r in out if r[0] == "kernel")[3]
    bid = kr["next_bid"]
    kr["next_bid"] += 1
    if limit is not None:
        kr["memory_limit"] = limit
    at = next(i for i, r in enumerate(out) if r[0] == "buffer")
    out.insert(at, ["buffer", 1, True, {"bid": bid, "size": size}])
    vm = next(r for r in out if r[0] == "vmspace")[3]
    vm["vmas"].append([0x100000000000, 0x100000000000 + size, 3, 0x22, "big", bid, 0, "", 0])
    return out


def _filemap(recs: Recs, path: str, fp: dict, **fields: object) -> Recs:
    """recs with a shared mapping of the root's file at path (fingerprint fp) in process 1,
    its filemap record's fields then set from `fields`."""
    out = copy.deepcopy(recs)
    kr = next(r for r in out if r[0] == "kernel")[3]
    bid = kr["next_bid"]
    kr["next_bid"] += 1
    d = {"bid": bid, "size": 4096, "path": path, "file_off": 0, "writable": False,
         "fingerprint": fp, **fields}
    at = next(i for i, r in enumerate(out) if r[0] == "buffer")
    out.insert(at, ["filemap", 1, True, d])
    size = d["size"] if isinstance(d["size"], int) and d["size"] > 0 else 4096
    vm = next(r for r in out if r[0] == "vmspace")[3]
    vm["vmas"].append([0x100000000000, 0x100000000000 + (size + 4095) // 4096 * 4096, 1,
                       0x01, path, bid, 0, path, 0])
    return out


def build(seed: Path, root: Path, work: Path) -> list[Crafted]:
    """Every crafted image, written into work (seed: a valid image of a guest in root)."""
    recs = load_records(seed)
    work.mkdir(parents=True, exist_ok=True)
    out: list[Crafted] = []

    def add(name: str, r: Recs, seal: bytes | None = None, **kw: object) -> None:
        out.append(Crafted(name, write_records(work / f"{name}.img", seed, r, seal), **kw))

    for kind, name, value in FIELD_CASES:
        add(f"field-{kind}.{name}-{len(out)}", set_field(recs, kind, name, value))
    pages = next(i for i, r in enumerate(recs) if r[0] in ("pages", "zero_pages"))
    for name, fields, why in LOCK_CASES:
        add(f"locks-{name}", recs[:pages] + [["locks", 1, True, fields]] + recs[pages:],
            why=why)
    # -- reader bounds -----------------------------------------------------------------
    meta = next(i for i, r in enumerate(recs) if r[0] == "meta")
    add("bomb-unknown-optional", recs[:meta + 1] + [nested_bomb("x-later", False, 63)]
        + recs[meta + 1:], thaw=0, verify=0, inspect=0)
    add("bomb-meta", recs[:meta] + [nested_bomb("meta", False, 63)] + recs[meta + 1:],
        inspect=REFUSED, why="objects")
    small = [nested_bomb_small(i) for i in range(120)]  # 120 x 60 KB, each under SCAN_ABOVE
    add("bomb-many-small", recs[:meta + 1] + small + recs[meta + 1:], inspect=REFUSED,
        why="objects")
    deep: object = 1
    for _ in range(40):
        deep = [deep]
    add("deep-nesting", set_field(recs, "kernel", "statuses", deep), inspect=REFUSED,
        why="deeper")
    add("unknown-critical", recs + [["x-later", 1, True, {}]], inspect=REFUSED)
    add("vma-1tib", _big_vma(recs, 1 << 40), why="memory limit")
    add("vma-1tib-limit-2tib", _big_vma(recs, 1 << 40, limit=2 << 40), why="memory_limit")
    many = copy.deepcopy(recs)
    kr = next(r for r in many if r[0] == "kernel")[3]
    at = next(i for i, r in enumerate(many) if r[0] == "buffer")
    for i in range(200):
        many.insert(at, ["buffer", 1, True, {"bid": kr["next_bid"] + i, "size": 1 << 40}])
    kr["next_bid"] += 200
    add("buffers-200x1tib", many, why="buffers")
    # -- records the old loaders tripped over ------------------------------------------
    prog = next(p for p in sorted(root.iterdir()) if p.is_file())
    guest, fp = f"/{prog.name}", _fp(prog)
    add("file-negative-offset", _host_file(recs, guest, fp, offset=-5), why="offset")
    add("file-nul-path", _host_file(recs, guest + "\0x", fp), why="path")
    pr = next(r for r in recs if r[0] == "process")[3]
    fds = pr["fds"]
    add("duplicate-fd", set_field(recs, "process", "fds", fds + [fds[0]]), why="twice")
    add("filemap-size-unaligned", _filemap(recs, guest, fp, size=4095), why="size")
    add("filemap-huge", _filemap(recs, guest, fp, size=1 << 44), why="memory limit")
    add("filemap-offset-unaligned", _filemap(recs, guest, fp, file_off=100), why="offset")
    add("filemap-relative", _filemap(recs, prog.name, fp), why="path")
    add("filemap-nul-path", _filemap(recs, guest + "\0x", fp), why="path")
    add("filemap-changed", _filemap(recs, guest, {**fp, "size": fp["size"] + 1}),
        why="changed")
    add("filemap-missing", _filemap(recs, "/no-such-file", fp), why="reopen")
    add("cwd-relative", set_field(recs, "process", "cwd", "work"), why="cwd")
    add("cwd-nul", set_field(recs, "process", "cwd", "/wo\0rk"), why="cwd")
    add("exe-relative", set_field(recs, "process", "exe", "forkpipe"), why="exe")
    # -- files that are not what they were ---------------------------------------------
    fifo = root / "fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    add("file-fifo", _host_file(recs, "/fifo", {"size": 0, "stamp": None, "sha256": None}),
        why="regular file")
    add("file-fifo-wronly", _host_file(recs, "/fifo", {"size": 0, "stamp": None,
                                                       "sha256": None}, flags=1))
    add("file-dir-as-host", _host_file(recs, "/work", _fp(root / "work")),
        why="regular file")
    add("file-as-dir", _host_file(recs, guest, fp, kind="dir"))
    # -- /proc snapshots an open /proc file could not hold --------------------------------
    add("proc-outside", _proc_file(recs, path="/etc/passwd"), why="not a /proc path")
    add("proc-negative-offset", _proc_file(recs, offset=-1), why="offset")
    add("proc-mode-device", _proc_file(recs, mode=0o020666), why="snapshot")
    add("proc-data-not-bytes", _proc_file(recs, data="text"), why="malformed")
    add("procdir-slash-name", _proc_file(recs, kind="procdir", path="/proc",
                                         names=[["a/b", 0o40555]]), why="entry name")
    add("procdir-many-names", _proc_file(recs, kind="procdir", path="/proc",
                                         names=[["n", 0o100444]] * 140_000),
        why="too many directory entries")
    # -- roots an image must not choose ------------------------------------------------
    slash = work / "slash"  # a directory that is the host's / under another name
    if not slash.is_symlink():
        slash.symlink_to("/")
    for name, hint in (("root-slash", "/"), ("root-relative", "."), ("root-empty", ""),
                       ("root-slash-by-symlink", str(slash)), ("root-dotdot", "/tmp/.."),
                       ("root-nul", str(root) + "\0"), ("root-missing", str(root) + "-gone")):
        add(name, set_field(recs, "kernel", "root", hint), root=False, inspect=0,
            why="give --root DIR")
    # -- seals ---------------------------------------------------------------------------
    add("unsealed-with-key", recs, key=True, inspect=REFUSED, why="not sealed")
    add("sealed-other-key", recs, seal=OTHER_KEY, key=True, inspect=REFUSED,
        why="does not match")
    sealed = write_records(work / "sealed.img", seed, recs, KEY)
    forged = load_records(sealed)  # the seal record kept, one field changed
    kr = next(r for r in forged if r[0] == "kernel")[3]
    kr["seed"] += 1
    add("sealed-then-tampered", forged, key=True, inspect=REFUSED, why="does not match")
    # inside the root, where a guest could have written it: trusted only when sealed
    inside = write_records(root / "work" / "sealed.img", seed, recs, KEY)
    out.append(Crafted("sealed-in-root-with-key", inside, thaw=0, verify=0, inspect=0,
                       root=False, key=True))
    out.append(Crafted("sealed-in-root-without-key", inside, root=False, inspect=0,
                       why="could have written it"))
    return out
