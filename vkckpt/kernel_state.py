"""The vkernel's saved form (the `kernel` record): save, load, schema piece, transient fields.

The record also carries the scheduler's fields (sched_state.py), the configuration a thaw
rebuilds the vkernel from (quantum, memory limit, seed, process and thread limits) and the
binds (guest path, read-only, keyed identity of the host directory: fs/binds.py), which a
thaw must be given again (`--bind`) and checks, and the published ports (`--publish`) with the
external connections' endpoints, which a thaw resets.
"""

from __future__ import annotations

from vkckpt import sched_state
from vkckpt.abi import fcntl as F
from vkckpt.config import KernelConfig
from vkckpt.errors import ImageError
from vkckpt.fs.binds import MAX_BINDS
from vkckpt.fs.publish import MAX_PUBLISH
from vkckpt.fs.sandbox import PATH_MAX
from vkckpt.fs.state import stamp_key
from vkckpt.fs.unix_state import MAX_SOCKETS
from vkckpt.image.limits import MAX_GUEST_MEMORY
from vkckpt.image.migrate import migration
from vkckpt.process_state import in_scope

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vkckpt.kernel import VKernel

VERSION = 2  # 2: inode_meta's fourth column is the inode's file type, not a FIFO flag
#: VKernel attributes that are not kernel-record fields, and why.
TRANSIENT = {
    "config": "its saved parts are quantum/memory_limit/seed/max_*; streams are the host's",
    "table": "the syscall table is code", "on_eintr": "code", "root": "saved as the root path",
    "ids": "saved as next_pid/next_pipe/next_bid",
    "sched": "saved as ticks/idle_ns/timer_seq/runq/timers/quantum (sched_state.py)",
    "futexes": "rebuilt from the waitq records",
    "locks": "the locks record (fs/lock_state.py)", "procs": "process records",
    "unix": "the unixns and socket records (fs/unix_state.py)",
    "inet": "the inetns and inetsock records (fs/inet_state.py)",
    "publish": "host sockets: saved as publish (the ports) and external (reset on thaw)",
    "poll_q": "its sleepers are in the waitq records",
    "sigfds": "recounted as the signalfd file records load; its queue has watchers only",
    "threads": "thread records", "current": "None at a scheduling point",
    "resched": "False at a scheduling point", "deferred": "empty at a scheduling point",
    "graveyard": "empty at a scheduling point", "_run_budget": "0 at a scheduling point",
    "host_request": "served before the image is written (its caller is saved runnable)",
    "vkernel_id": "in the header",
    "stdout": "host stream", "stderr": "host stream", "log": "host stream",
    "exit_status": "saved", "statuses": "saved", "reported_enosys": "saved as enosys",
    "mem": "recomputed from the VMA and pipe records; its limit is memory_limit",
    "host_fds": "a host resource: measured at start, recounted from the file records",
    "out": "host stream: output queued at a freeze is written by the run that made it",
    "slice_out": "0 at a scheduling point",
    "cpu_pool": "host threads: no result depends on them (rounds.py)",
    "always_round": "a test switch (rounds even of one memory group); False in real runs",
}
#: The type/range table ckpt/schema.py checks (inodes: checked by load).
SCHEMA = {"exit_status": "?i32", "init_pid": "u32", "max_processes": "u32",
          "max_threads": "u32", "memory_limit": "u64", "next_bid": "u64",
          "next_ino": "u64", "next_pid": "u32", "next_pipe": "u64",
          "rng_counter": "u64", "root": "str", "seed": "u64",
          "sleep_seq": "u64", "statuses": [("u32", "i32")], "enosys": ["u64"],
          "binds": [("str", "bool", "bytes")],
          "publish": [("u32", "u32")], "external": ["u64"],
          "inode_meta": [("u64", "u32", "u32", "u32", [("bytes", "bytes")])],
          "exec_env": [("bytes", "bytes")],
          **sched_state.SCHEMA}
RECORDS = {"kernel": (VERSION, SCHEMA)}
_COUNTERS = ("init_pid", "sleep_seq", "rng_counter")


@migration("kernel", 1)
def _kernel_v1_to_v2(fields: dict) -> dict:
    """kernel v1 -> v2: an inode_meta row's FIFO flag (a bool) becomes its file type
    (S_IFIFO or 0); v1 kept socket inodes in the unixns record (fs/unix_state.py)."""
    if "inode_meta" not in fields:
        return dict(fields)
    rows = []
    for row in fields["inode_meta"]:
        if not isinstance(row, list) or len(row) != 5 or not isinstance(row[3], bool):
            raise ValueError(f"inode_meta row {row!r} is no v1 row")
        rows.append([*row[:3], F.S_IFIFO if row[3] else 0, row[4]])
    return {**fields, "inode_meta": rows}


def save(k: VKernel, scope: list[int] | None, woken: list[int], root: str | None = None) -> dict:
    """Kernel-wide state; `woken` threads join the run queue's tail (as the live run does);
    root: the guest root hint to record (default: the root)."""
    c = k.config
    ids = k.ids
    kr = {
        "next_pid": ids.next_pid, "next_pipe": ids.next_pipe, "next_bid": ids.next_bid,
        "init_pid": k.init_pid if in_scope(k.init_pid, scope) else min(scope),
        "sleep_seq": k.sleep_seq, "rng_counter": k.rng_counter,
        **sched_state.save(k.sched, scope, woken),
        "memory_limit": c.memory_limit, "seed": c.seed,
        "max_processes": c.max_processes, "max_threads": c.max_threads,
        "exit_status": k.exit_status, "statuses": sorted([p, st] for p, st in k.statuses.items()),
        "enosys": sorted(k.reported_enosys),
        "root": k.root.host_root if root is None else root, "scope": scope,
        "inodes": k.inodes.save(k.host_path_of), "next_ino": k.inodes.next_ino,
    }
    meta = k.inodes.save_meta(kr["inodes"])
    if meta:  # written only when some inode has an owner, file type or attribute
        kr["inode_meta"] = meta
    if k.root.mounts:  # written only when there are binds: images without any stay as before
        kr["binds"] = [[m.guest, m.ro, m.identity(stamp_key())] for m in k.root.mounts]
    if k.exec_env:  # written only when a thaw set variables for later execs (vkckpt fanout)
        kr["exec_env"] = [[n, v] for n, v in k.exec_env.items()]
    if k.publish.active:  # written only with published ports: such a run is not deterministic
        kr["publish"] = [list(pp) for pp in k.publish.ports]
        kr["external"] = k.publish.external_ids()
    return kr


def config(kr: dict, root: str, **host: object) -> KernelConfig:
    """The configuration of the vkernel the record describes, in guest root `root`; host:
    the host-side fields (streams, tracing).  Refuses a memory limit an image may not ask."""
    limit = _pos(kr["memory_limit"], "memory_limit")
    if limit > MAX_GUEST_MEMORY:
        raise ImageError(f"kernel memory_limit {limit} is above the {MAX_GUEST_MEMORY} bytes "
                         "an image may give a process")
    return KernelConfig(root=root, quantum=_pos(kr["quantum"], "quantum"), memory_limit=limit,
                        seed=kr["seed"], max_processes=kr["max_processes"],
                        max_threads=kr["max_threads"], **host)


def load(k: VKernel, kr: dict, vkernel_id: bytes) -> None:
    """Give a new vkernel the record's counters, exit statuses, clock and inode table."""
    k.vkernel_id = vkernel_id
    k.ids.load(*(_nonneg(kr[name], name) for name in ("next_pid", "next_pipe", "next_bid")))
    k.init_pid, k.sleep_seq, k.rng_counter = (_nonneg(kr[name], name) for name in _COUNTERS)
    k.exit_status = kr["exit_status"]
    k.statuses = {int(a): int(b) for a, b in kr["statuses"]}
    k.reported_enosys = set(kr["enosys"])
    sched_state.load_clock(k.sched, kr)
    if not all(isinstance(r, list) and len(r) == 3 and isinstance(r[0], str)
               for r in kr.get("inodes", [])):
        raise ImageError("the inode table is malformed")
    k.inodes.load(kr.get("inodes", []), kr.get("next_ino", 2), k.host_path_of)
    k.inodes.load_meta(kr.get("inode_meta", []), k.host_path_of)
    k.exec_env = exec_env(kr.get("exec_env", []))


#: Variables a kernel sets in later execs' environments, and the bytes of a name or value.
MAX_EXEC_ENV, MAX_EXEC_ENV_TEXT = 64, 4096


def exec_env(rows: list) -> dict[bytes, bytes]:
    """The exec_env rows as a map; ImageError unless each is NAME (no '=' or NUL) and VALUE
    (no NUL), within the limits, names distinct."""
    env = {n: v for n, v in rows}
    if len(rows) > MAX_EXEC_ENV or len(env) != len(rows) or not all(
            0 < len(n) <= MAX_EXEC_ENV_TEXT and len(v) <= MAX_EXEC_ENV_TEXT
            and b"=" not in n and b"\0" not in n + v for n, v in rows):
        raise ImageError("the kernel record's exec_env is malformed")
    return env


def check_binds(k: VKernel, kr: dict) -> None:
    """Refuse a thaw whose binds (mounted from --bind) are not the ones the image records:
    one missing, one more, another read-only flag or another host directory."""
    rows = kr.get("binds", [])  # images before binds have none
    if len(rows) > MAX_BINDS or any(len(g) >= PATH_MAX or not g.startswith("/") or
                                    len(ident) != 16 for g, _, ident in rows):
        raise ImageError("the kernel record's binds are malformed")
    given = {m.guest: m for m in k.root.mounts}
    if len(given) != len(k.root.mounts) or len({g for g, _, _ in rows}) != len(rows):
        raise ImageError("the kernel record's binds are malformed")
    key = stamp_key()
    for guest, ro, ident in rows:
        m = given.pop(guest, None)
        how = f"--bind HOST:{guest}{':ro' if ro else ''}"
        if m is None:
            raise ImageError(f"the image has a bind on {guest}: give it again with {how}")
        if m.ro != ro or m.identity(key) != ident:
            raise ImageError(f"bind {m.host}:{guest}: not the {'read-only ' if ro else ''}"
                             f"directory the image was frozen with; give that one with {how}")
    for guest in given:
        raise ImageError(f"--bind on {guest}: the image has no bind there; drop it")


def check_publish(k: VKernel, kr: dict, strict: bool = True) -> list[int]:
    """Refuse a thaw not given the published ports the image records (--publish), in the
    same order (not strict: a read-only thaw, which publishes nothing); returns the
    external connections' endpoints (reset by the thaw)."""
    rows, ext = kr.get("publish", []), kr.get("external", [])
    if len(rows) > MAX_PUBLISH or len(ext) > MAX_SOCKETS or (ext and not rows) or \
            any(not 0 < p < 65536 for r in rows for p in r) or \
            len({r[0] for r in rows}) != len(rows):
        raise ImageError("the kernel record's published ports are malformed")
    want = [tuple(r) for r in rows]
    if strict and want != list(k.config.publish):
        shown = " ".join(f"--publish {h}:{g}" for h, g in want) or "no --publish"
        raise ImageError(f"the image was frozen with {shown}: give the same again")
    return list(ext)


def _pos(v: object, what: str) -> int:
    if not isinstance(v, int) or v <= 0:
        raise ImageError(f"kernel {what} must be a positive integer")
    return v


def _nonneg(v: object, what: str) -> int:
    if not isinstance(v, int) or v < 0:
        raise ImageError(f"kernel {what} must be a non-negative integer")
    return v
