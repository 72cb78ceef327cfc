"""Write a stopped vkernel into an image (records + pages); see vkckpt-image(5).

Precondition: the kernel is at a scheduling point (no engine running, no deferred work).
Subsystems turn their objects into plain fields (threads/state.py, signals/state.py,
vmspace/state.py, fs/state.py); this module orders them and owns the page scan.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from vkckpt.ckpt import pages as PG
from vkckpt.errors import ImageError
from vkckpt.fs.state import save_fdtable, save_file, save_pipe
from vkckpt.host import fs as hostfs
from vkckpt.image import ImageWriter
from vkckpt.record import Comparable
from vkckpt.signals.state import save_actions, save_pending
from vkckpt.threads.state import save_thread
from vkckpt.vmspace.state import covered_pages, save_vmspace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vkckpt.image import Header
    from vkckpt.kernel import VKernel
    from vkckpt.process import Process
    from vkckpt.threads.thread import Thread
    from vkckpt.vmspace.hostmem import HostBuffer

#: Record types and the versions this vkckpt writes (and reads, see restore.py).
RECORD_VERSIONS = {"kernel": 1, "buffer": 1, "pipe": 1, "file": 1, "process": 1,
                   "vmspace": 1, "thread": 1, "waitq": 1, "pages": 1, "zero_pages": 1,
                   "meta": 1}
#: VKernel attributes that are not kernel-record fields, and why.
KERNEL_TRANSIENT = {
    "config": "its saved parts are quantum/memory_limit/seed/max_*; streams are the host's",
    "table": "the syscall table is code", "on_eintr": "code", "root": "saved as the root path",
    "sched": "saved as ticks/idle_ns/timer_seq/runq/timers/quantum",
    "futexes": "rebuilt from the waitq records", "procs": "process records",
    "poll_q": "its sleepers are in the waitq records",
    "threads": "thread records", "current": "None at a scheduling point",
    "resched": "False at a scheduling point", "deferred": "empty at a scheduling point",
    "graveyard": "empty at a scheduling point", "_run_budget": "0 at a scheduling point",
    "ckpt_queue": "its sleeper is saved runnable (overrides)",
    "ckpt_request": "served before the image is written", "last_image": "header parent id",
    "page_base": "rebuilt from the pages at thaw", "vkernel_id": "in the header",
    "stdout": "host stream", "stderr": "host stream", "log": "host stream",
    "image_key": "a host secret: seals images, never in one",
    "exit_status": "saved", "statuses": "saved", "reported_enosys": "saved as enosys",
    "mem": "recomputed from the VMA and pipe records; its limit is memory_limit",
    "host_fds": "a host resource: measured at start, recounted from the file records",
    "out": "host stream: output queued at a freeze is written by the run that made it",
    "slice_out": "0 at a scheduling point",
}
#: Process fields saved under other names or rebuilt on thaw.
PROCESS_TRANSIENT = {"vm", "engine", "engine_owner", "child_wait", "vfork_done", "fds",
                     "actions", "pending", "threads"}


def _durable() -> None:
    """The wait of a freeze whose image was already at its path when it returned."""


class FreezeResult(Comparable):
    """What a freeze wrote.  `wait()` returns once the image is durable at `path` (at once,
    unless the freeze was asked to finish in the background) and raises its ImageError."""

    __slots__ = ("header", "path", "pages", "zero_pages", "wait")

    def __init__(self, header: Header, path: str, pages: int, zero_pages: int,
                 wait: Callable[[], None] = _durable) -> None:
        self.header = header
        self.path = path
        self.pages = pages
        self.zero_pages = zero_pages
        self.wait = wait


def thread_regs(t: Thread) -> dict[str, int]:
    """Every register of t, loading its context into the engine if another thread owns it."""
    t.load()
    return t.process.engine.get_state()


def save_process(p: Process, fids: dict[int, int], scope: list[int] | None) -> dict:
    """A process; links to processes outside the image's scope are cut (parent -> vkernel)."""
    return {
        "pid": p.pid, "ppid": p.ppid if _in_scope(p.ppid, scope) else 0, "pgid": p.pgid,
        "sid": p.sid, "umask": p.umask,
        "cwd": p.cwd, "exe": p.exe, "argv": list(p.argv),
        "children": [c for c in p.children if _in_scope(c, scope)],
        "exiting": p.exiting, "zombie": p.zombie, "wait_status": p.wait_status,
        "exit_signal": p.exit_signal, "stopped": p.stopped, "stop_report": p.stop_report,
        "ticks": p.ticks, "vfork_parent": p.vfork_parent, "pending": save_pending(p.pending),
        "actions": save_actions(p.actions),
        "fds": [] if p.zombie else save_fdtable(p.fds, fids),
        "threads": [t.tid for t in p.live_threads],
    }


def root_hint(k: VKernel, dir_fd: int) -> str:
    """The guest root as an image created in directory dir_fd records it: empty when that
    directory lies inside the root, where guests can read it (and thaw needs --root anyway,
    see ckpt/trust.py).  Where the fd is now decides: a guest may have renamed the image
    path's directories meanwhile, and the image goes where the fd is."""
    return "" if k.root.holds(os.readlink(f"/proc/self/fd/{dir_fd}")) else k.root.host_root


def save_kernel(k: VKernel, scope: list[int] | None, woken: list[int],
                root: str | None = None) -> dict:
    """Kernel-wide state; `woken` threads join the run queue's tail (as the live run does);
    root: the guest root hint to record (default: the root)."""
    c = k.config
    s = k.sched
    return {
        "next_pid": k.next_pid, "next_pipe": k.next_pipe, "next_bid": k.next_bid,
        "init_pid": k.init_pid if _in_scope(k.init_pid, scope) else min(scope),
        "sleep_seq": k.sleep_seq, "rng_counter": k.rng_counter,
        "ticks": s.ticks, "idle_ns": s.idle_ns, "timer_seq": s._timer_seq,
        "runq": [t.tid for t in s.runq if _in_scope(t.process.pid, scope)] + woken,
        "timers": [[d, q, t.tid] for d, q, t in sorted(s.timers, key=lambda x: x[:2])
                   if t.sleep is not None and t.sleep.timer == q
                   and _in_scope(t.process.pid, scope)],
        "quantum": s.quantum, "memory_limit": c.memory_limit, "seed": c.seed,
        "max_processes": c.max_processes, "max_threads": c.max_threads,
        "exit_status": k.exit_status, "statuses": sorted([p, st] for p, st in k.statuses.items()),
        "enosys": sorted(k.reported_enosys),
        "root": k.root.host_root if root is None else root, "scope": scope,
        "inodes": k.inodes.save(k.host_path_of), "next_ino": k.inodes.next_ino,
    }


def _in_scope(pid: int, scope: list[int] | None) -> bool:
    return scope is None or pid in scope


def write_image(k: VKernel, path: str, *, scope: list[int] | None = None,
                incremental: bool = False, codec: str = "none",
                overrides: dict[int, int] | None = None,
                progress: Callable[[int, int], None] | None = None,
                fault_hook: Callable[[int], None] | None = None,
                background: bool = False, dir_fd: int | None = None) -> FreezeResult:
    """Freeze k into path (atomically; created in dir_fd if given, see ImageWriter).
    overrides: tid -> syscall result in the image only (checkpoint(2) returns its retval in
    the thawed run).  background: return once every byte is written, and make the image
    durable (checksum, fsync, rename) on a helper thread while the vkernel runs on; the
    result's wait() joins it."""
    procs = [p for pid, p in sorted(k.procs.items()) if _in_scope(pid, scope)]
    live = [p for p in procs if not p.zombie]
    parent = k.last_image if incremental else None
    mine = None
    if dir_fd is None:
        dir_fd = hostfs.pinned_dir(os.path.dirname(path) or ".")
    if dir_fd is None:
        dir_fd = mine = _open_image_dir(k, path)
    try:
        return _write(k, path, procs, live, scope, parent, codec, overrides or {}, progress,
                      fault_hook, background, dir_fd)
    finally:
        if mine is not None:
            os.close(mine)  # the writer holds its own duplicate


def _open_image_dir(k: VKernel, path: str) -> int:
    """The directory of an image path named late (a control-socket request), opened now:
    inside the guest root beneath the root fd, without following a symlink the guests may
    have planted there; outside it as named (the requester's to trust)."""
    head = os.path.dirname(os.path.abspath(path))
    inside = k.root.holds(head)
    try:
        if not inside:
            return hostfs.open_dir(head)
        return hostfs.open_beneath(k.root.root_fd, os.path.relpath(head, k.root.host_root),
                                   os.O_PATH | os.O_DIRECTORY)
    except OSError as exc:
        how = " without following a guest's symlink" if inside else ""
        raise ImageError(f"cannot create checkpoint image {path}: its directory cannot be "
                         f"opened{how} ({exc.strerror})") from None


def _write(k: VKernel, path: str, procs: list[Process], live: list[Process],
           scope: list[int] | None, parent: tuple[bytes, str] | None, codec: str,
           overrides: dict[int, int], progress: Callable[[int, int], None] | None,
           fault_hook: Callable[[int], None] | None, background: bool,
           dir_fd: int | None) -> FreezeResult:
    with ImageWriter(path, vkernel_id=k.vkernel_id, parent_id=parent[0] if parent else None,
                     incremental=parent is not None, codec=codec,
                     fault_hook=fault_hook, dir_fd=dir_fd, key=k.image_key) as w:
        # no host path: the parent is found beside the image by its file name
        w.add("meta", {"ticks": k.sched.ticks,
                       "parent_path": os.path.basename(parent[1]) if parent else None,
                       "processes": len(procs)}, critical=False)
        overrides = {tid: v for tid, v in overrides.items()
                     if tid in k.threads and _in_scope(k.threads[tid].process.pid, scope)}
        w.add("kernel", save_kernel(k, scope, sorted(overrides), root_hint(k, dir_fd)))
        bufs: dict[int, HostBuffer] = {}
        cover = covered_pages(bufs, [p.vm for p in live])
        for bid in sorted(bufs):
            w.add("buffer", {"bid": bid, "size": bufs[bid].size})
        fids = _save_files(w, live)
        for p in procs:
            w.add("process", save_process(p, fids, scope))
            if not p.zombie:
                w.add("vmspace", {"pid": p.pid, **save_vmspace(p.vm)})
        for p in live:
            for t in p.live_threads:
                rec = save_thread(t, thread_regs(t))
                if t.tid in overrides:
                    rec.update(state="runnable", sleep=None, wake_result=overrides[t.tid])
                w.add("thread", rec)
        for key, q in sorted(_queues(k, live).items(), key=lambda kv: repr(kv[0])):
            tids = [t.tid for t in q.waiters if t.tid not in overrides]
            if tids:
                w.add("waitq", {"key": list(key), "tids": tids})
        npages, nzero, base = _save_pages(k, w, bufs, cover, parent is not None, progress)
        if background:
            header, commit_wait = w.commit_background()
        else:
            header, commit_wait = w.commit(), _durable
    k.last_image = (header.image_id, path)
    k.page_base = base

    def wait() -> None:
        try:
            commit_wait()
        except ImageError:
            if k.last_image == (header.image_id, path):
                k.last_image = None  # no parent on disk: the next incremental freeze is full
            raise
    return FreezeResult(header, path, npages, nzero, wait)


def _save_files(w: ImageWriter, live: list[Process]) -> dict[int, int]:
    fids: dict[int, int] = {}
    pipes = {}
    files = []
    for p in live:
        for _, (f, _) in sorted(p.fds.fds.items()):
            if id(f) not in fids:
                fids[id(f)] = len(fids) + 1
                files.append(f)
                if f.kind == "pipe":
                    pipes[f.pipe.id] = f.pipe
    for pid_ in sorted(pipes):
        w.add("pipe", save_pipe(pipes[pid_]))
    for f in files:
        w.add("file", save_file(f, fids[id(f)]))
    return fids


def _queues(k: VKernel, live: list[Process]) -> dict[tuple, object]:
    out = {}
    for p in live:
        for t in p.live_threads:
            if t.sleep is not None and t.sleep.queue is not None:
                out[t.sleep.queue.key] = t.sleep.queue
    return out


def _save_pages(k: VKernel, w: ImageWriter, bufs: dict[int, HostBuffer],
                cover: dict[int, list[tuple[int, int]]], incremental: bool,
                progress: Callable[[int, int], None] | None) -> tuple[int, int, dict]:
    total = sum(b - a for rs in cover.values() for a, b in rs)
    done = npages = nzero = 0
    new_base = {}
    gen = PG.begin_freeze()
    for bid in sorted(bufs):
        buf = bufs[bid]
        plan = PG.plan_buffer(buf, cover[bid], k.page_base.get(bid), incremental, gen)
        for (a, b), write, zero in zip(cover[bid], plan.write, plan.zero, strict=True):
            if zero:
                w.add("zero_pages", {"buf": bid, "ranges": [list(r) for r in zero]})
                nzero += sum(e - s for s, e in zero)
            for s, e in write:
                w.add_pages(bid, s, buf.view[s * 4096: e * 4096])
                npages += e - s
            done += b - a
            if progress:
                progress(done, total)
        new_base[bid] = plan.base
    return npages, nzero, new_base
