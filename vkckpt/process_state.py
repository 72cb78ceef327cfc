"""A process's saved form (the `process` record): save, load, schema piece, transient fields.

Its address space (vmspace/state.py), descriptors (fs/state.py), signal state
(signals/state.py) and threads (threads/state.py) have their own pieces; this module links
them by id.  Links to processes outside an image's scope are cut (parent -> the vkernel).
"""

from __future__ import annotations

from vkckpt.abi.limits import NOFILE
from vkckpt.engine.engine import Engine
from vkckpt.errors import GuestError, ImageError
from vkckpt.fs.fdtable import FdTable
from vkckpt.fs.state import FDTABLE_SCHEMA, save_fdtable
from vkckpt.process import Process
from vkckpt.rlimits import RLimits, check
from vkckpt.signals.state import (
    ACTIONS_SCHEMA,
    ITIMERS_SCHEMA,
    PENDING_SCHEMA,
    PTIMERS_SCHEMA,
    load_actions,
    load_itimers,
    load_pending,
    load_ptimers,
    save_actions,
    save_itimers,
    save_pending,
    save_ptimers,
)
from vkckpt.vmspace.state import load_vmspace
from vkckpt.vmspace.vmspace import VmSpace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vkckpt.fs.files import OpenFile
    from vkckpt.kernel import VKernel
    from vkckpt.threads.wait import WaitQueue
    from vkckpt.vmspace.hostmem import HostBuffer

VERSION = 1
#: Process fields not saved under their own name, and why.
TRANSIENT = {
    "vm": "the vmspace record", "engine": "rebuilt at thaw; registers are in thread records",
    "engine_owner": "the last thread loaded at thaw",
    "child_wait": "its sleepers are in the waitq records",
    "vfork_done": "its sleepers are in the waitq records",
}
#: Process fields saved only when they differ from their default, with a value that does
#: (old images stay byte-identical): tests/test_state_fields.py sets each and looks.
OPTIONAL = {"comm": b"name", "root": "/sub", "ioprio": (2 << 13) | 4}
#: The type/range table ckpt/schema.py checks.
SCHEMA = {"pid": "u32", "ppid": "u32", "pgid": "u32", "sid": "u32", "umask": "u32",
          "cwd": "str", "exe": "str", "argv": ["bytes"], "children": ["u32"],
          "exiting": "bool", "zombie": "bool", "wait_status": "i32", "exit_signal": "sig",
          "stopped": "bool", "stop_report": "?u32", "ticks": "u64", "vfork_parent": "u32",
          "threads": ["u32"], "root": "str", "ioprio": "u32", "fds": FDTABLE_SCHEMA,
          "actions": ACTIONS_SCHEMA, "pending": PENDING_SCHEMA, "comm": "bytes",
          "itimers": ITIMERS_SCHEMA, "ptimers": PTIMERS_SCHEMA,
          "rlimits": [("u32", "u64", "u64")]}
#: Fields written only when they hold something (images without them stay as before).
SOMETIMES = {"itimers": "only while an interval timer is set (setitimer, alarm)",
             "ptimers": "only once the process has created a POSIX timer"}
RECORDS = {"process": (VERSION, SCHEMA)}
MAX_GUEST_PATH = 4096
COMM_LEN = 15  # TASK_COMM_LEN less its NUL


def in_scope(pid: int, scope: list[int] | None) -> bool:
    """Whether an image of scope (None: every process) holds process pid."""
    return scope is None or pid in scope


def save(p: Process, fids: dict[int, int], scope: list[int] | None) -> dict:
    """The process record of p; fids maps id(open file) -> saved file id."""
    d = {
        "pid": p.pid, "ppid": p.ppid if in_scope(p.ppid, scope) else 0, "pgid": p.pgid,
        "sid": p.sid, "umask": p.umask,
        "cwd": p.cwd, "exe": p.exe, "argv": list(p.argv),
        "children": [c for c in p.children if in_scope(c, scope)],
        "exiting": p.exiting, "zombie": p.zombie, "wait_status": p.wait_status,
        "exit_signal": p.exit_signal, "stopped": p.stopped, "stop_report": p.stop_report,
        "ticks": p.ticks, "vfork_parent": p.vfork_parent, "pending": save_pending(p.pending),
        "actions": save_actions(p.actions),
        "fds": [] if p.zombie else save_fdtable(p.fds, fids),
        "threads": [t.tid for t in p.live_threads],
        **({"root": p.root} if p.root != "/" else {}),  # optional: old images stay as they were
        **({"ioprio": p.ioprio} if p.ioprio else {}),
        **({"comm": p.comm} if p.comm else {}),  # written only when prctl set one
        **save_rlimits(p.rlimits),
    }
    timers = [] if p.zombie else save_itimers(p.itimers)
    if timers:
        d["itimers"] = timers
    ptimers = None if p.zombie else save_ptimers(p.ptimers)
    if ptimers is not None:
        d["ptimers"] = ptimers
    return d


def save_rlimits(r: RLimits) -> dict:
    """The optional `rlimits` field: [resource, soft, hard] for each limit changed from its
    default, by resource; absent when none is (so older images read the same)."""
    return {"rlimits": [[res, *r.changed[res]] for res in sorted(r.changed)]} if r.changed \
        else {}


def load_rlimits(pid: int, rows: list) -> RLimits:
    """RLimits from the `rlimits` field; each row must be a limit setrlimit(2) would accept."""
    r = RLimits()
    for res, soft, hard in rows:
        try:
            check(res, soft, hard)
        except GuestError as exc:
            raise ImageError(f"process {pid}: resource limit {res} is invalid") from exc
        if res in r.changed:
            raise ImageError(f"process {pid}: resource limit {res} appears twice")
        r.set(res, soft, hard)
    return r


def load(k: VKernel, d: dict, vms: dict[int, dict], bufs: dict[int, HostBuffer],
         files: dict[int, OpenFile]) -> Process:
    """A Process from its record, with a new engine and address space unless a zombie.
    Its threads come later (threads/state.py); k provides the id space and memory account."""
    pid = d["pid"]
    if not isinstance(pid, int) or not 0 < pid < k.ids.next_pid or pid in k.procs:
        raise ImageError(f"process id {pid!r} is duplicated or out of range")
    eng = vm = None
    rlimits = load_rlimits(pid, d.get("rlimits", []))
    fds = FdTable(min(rlimits.nofile, NOFILE))
    if not d["zombie"]:
        if pid not in vms:
            raise ImageError(f"process {pid} has no vmspace record")
        eng = Engine(k.syscall_entry)
        vm = VmSpace(eng, k.mem, k.ids.bid)
        load_vmspace(vms[pid], vm, bufs)
        _load_fds(pid, d["fds"], files, fds)
    comm = d.get("comm", b"")
    if len(comm) > COMM_LEN or b"\0" in comm:
        raise ImageError(f"process {pid}: comm {comm!r} is longer than {COMM_LEN} bytes")
    for name in ("cwd", "exe", "root"):
        if name == "cwd" or d.get(name):
            _guest_path(d[name], f"process {pid} {name}")
    return Process(pid, d["ppid"], vm, eng, fds, load_actions(d["actions"]), cwd=d["cwd"],
                   exe=d["exe"], argv=list(d["argv"]), pgid=d["pgid"], sid=d["sid"],
                   umask=d["umask"], pending=load_pending(d["pending"]),
                   children=list(d["children"]), exiting=d["exiting"], zombie=d["zombie"],
                   wait_status=d["wait_status"], exit_signal=d["exit_signal"],
                   stopped=d["stopped"], stop_report=d["stop_report"], ticks=d["ticks"],
                   vfork_parent=d.get("vfork_parent", 0), root=d.get("root", "/"),
                   ioprio=d.get("ioprio", 0), comm=comm, rlimits=rlimits)


def load_timers(k: VKernel, d: dict, p: Process) -> None:
    """Set p's interval and POSIX timers from its record (p registered with k: they arm
    on k)."""
    rows = d.get("itimers", [])
    if (rows or "ptimers" in d) and p.zombie:
        raise ImageError(f"process {p.pid}: a zombie has no timers")
    load_itimers(rows, p.itimers)
    if "ptimers" in d:
        load_ptimers(d["ptimers"], p.ptimers)


def queues(p: Process) -> list[WaitQueue]:
    """The wait queues p owns (a thread's saved sleep names one by key)."""
    return [p.child_wait, p.vfork_done]


def _load_fds(pid: int, rows: list, files: dict[int, OpenFile], fds: FdTable) -> None:
    for fd, fid, ce in rows:
        if fid not in files or not 0 <= fd < NOFILE:
            raise ImageError(f"process {pid}: descriptor {fd} refers to unknown file {fid}")
        if fd in fds.fds:
            raise ImageError(f"process {pid}: descriptor {fd} appears twice")
        fds.install(files[fid], bool(ce), fd=fd)


def _guest_path(v: str, what: str) -> None:
    if not v.startswith("/") or "\0" in v or len(v) > MAX_GUEST_PATH:
        raise ImageError(f"{what} {_short(v)} is not an absolute guest path")


def _short(v: str) -> str:
    return repr(v) if len(v) <= 60 else repr(v[:57] + "...")
