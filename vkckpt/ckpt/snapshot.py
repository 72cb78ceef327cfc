"""Write a stopped vkernel into an image (records + pages); see vkckpt-image(5).

Precondition: the kernel is at a scheduling point (no engine running, no deferred work).
Each type turns itself into plain fields in its state module (kernel_state.py,
process_state.py, threads/state.py, vmspace/state.py, fs/state.py); this module only
collects them, in the order restore.py reads them back, and owns the page scan.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from vkckpt import kernel_state, process_state
from vkckpt.ckpt import pages as PG
from vkckpt.ckpt.chain import ImageChain
from vkckpt.ckpt.schema import RECORD_VERSIONS
from vkckpt.engine import cpu_state
from vkckpt.errors import ImageError
from vkckpt.fs import ghost_state, inet_state, lock_state, overlay_state, unix_state
from vkckpt.fs.files import HostFile
from vkckpt.fs.state import fingerprint, save_file, save_pipe
from vkckpt.host import fs as hostfs
from vkckpt.image import ImageWriter
from vkckpt.process_state import in_scope
from vkckpt.record import Comparable
from vkckpt.threads.state import save_thread
from vkckpt.vmspace.hostmem import materialise_all
from vkckpt.vmspace.state import (
    covered_pages,
    file_buffers,
    save_buffer,
    save_filemap,
    save_vmspace,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vkckpt.ckpt.pages import BufBase
    from vkckpt.image import Header
    from vkckpt.kernel import VKernel
    from vkckpt.process import Process
    from vkckpt.threads.thread import Thread
    from vkckpt.vmspace.hostmem import HostBuffer

__all__ = ["RECORD_VERSIONS", "FreezeResult", "write_image"]  # RECORD_VERSIONS: see schema.py

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


def root_hint(k: VKernel, dir_fd: int) -> str:
    """The guest root as an image created in directory dir_fd records it: empty when that
    directory lies inside the root, where guests can read it (and thaw needs --root anyway,
    see ckpt/trust.py).  Where the fd is now decides: a guest may have renamed the image
    path's directories meanwhile, and the image goes where the fd is."""
    return "" if k.root.holds(os.readlink(f"/proc/self/fd/{dir_fd}")) else k.root.host_root


def write_image(k: VKernel, path: str, *, chain: ImageChain | None = None,
                scope: list[int] | None = None, incremental: bool = False,
                codec: str = "none", overrides: dict[int, int] | None = None,
                progress: Callable[[int, int], None] | None = None,
                fault_hook: Callable[[int], None] | None = None,
                background: bool = False, dir_fd: int | None = None,
                durable: bool = True) -> FreezeResult:
    """Freeze k into path (atomically; created in dir_fd if given, see ImageWriter).
    chain: the chain the image extends (incremental: on its newest image; sealed with its
    key); None writes a full, unsealed image and changes nothing a caller must restore.
    overrides: tid -> syscall result in the image only (checkpoint(2) returns its retval in
    the thawed run).  background: return once every byte is written, and make the image
    durable (checksum, fsync, rename) on a helper thread while the vkernel runs on; the
    result's wait() joins it.  durable=False: complete and renamed into place, but not
    synced to disk (a migration's images, which a crash makes useless anyway)."""
    chain = ImageChain() if chain is None else chain
    procs = [p for pid, p in sorted(k.procs.items()) if in_scope(pid, scope)]
    parent = chain.parent if incremental else None
    mine = None
    if dir_fd is None:
        dir_fd = hostfs.pinned_dir(os.path.dirname(path) or ".")
    if dir_fd is None:
        dir_fd = mine = _open_image_dir(k, path)
    if k.root.overlay is not None and k.root.holds(os.readlink(f"/proc/self/fd/{dir_fd}")):
        if mine is not None:
            os.close(mine)
        raise ImageError(f"cannot create checkpoint image {path}: it is inside the guest "
                         "root, an overlay's lower layer, which stays unchanged; write it "
                         "outside --root")
    try:
        with ImageWriter(path, vkernel_id=k.vkernel_id,
                         parent_id=parent[0] if parent else None,
                         incremental=parent is not None, codec=codec, fault_hook=fault_hook,
                         dir_fd=dir_fd, key=chain.key, versions=RECORD_VERSIONS,
                         durable=durable) as w:
            npages, nzero, base = _write(k, w, procs, scope, parent, chain.page_base,
                                         overrides or {}, progress, dir_fd)
            header, commit_wait = w.commit_background() if background else (w.commit(),
                                                                             _durable)
    finally:
        if mine is not None:
            os.close(mine)  # the writer holds its own duplicate
    chain.extend(header.image_id, path, base)
    if k.root.overlay is not None:
        k.root.overlay.saved(header.image_id)

    def wait() -> None:
        try:
            commit_wait()
        except ImageError:
            chain.lose(header.image_id, path)  # no parent on disk: the next one is full
            raise
    return FreezeResult(header, path, npages, nzero, wait)


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


def _write(k: VKernel, w: ImageWriter, procs: list[Process], scope: list[int] | None,
           parent: tuple[bytes, str] | None, base: dict[int, BufBase],
           overrides: dict[int, int], progress: Callable[[int, int], None] | None,
           dir_fd: int) -> tuple[int, int, dict]:
    """Every record of the image, in the order restore.py reads them: meta, kernel,
    buffers, file mappings, pipes and files, processes with their vmspaces, threads, wait
    queues, locks, pages.
    base: the parent's page bases.  Returns (pages written, zero pages, the page bases of
    the chain's new newest image)."""
    live = [p for p in procs if not p.zombie]
    # no host path: the parent is found beside the image by its file name
    w.add("meta", {"ticks": k.sched.ticks,
                   "parent_path": os.path.basename(parent[1]) if parent else None,
                   "processes": len(procs)}, critical=False)
    overrides = {tid: v for tid, v in overrides.items()
                 if tid in k.threads and in_scope(k.threads[tid].process.pid, scope)}
    w.add("kernel", kernel_state.save(k, scope, sorted(overrides), root_hint(k, dir_fd)))
    w.add("cpu", cpu_state.save(), critical=False)  # what guests saw, checked at thaw
    if k.root.overlay is not None:  # only an overlay run's images hold its layers
        writing = _writing(live)
        for rtype, rec in overlay_state.save(k.root.overlay, parent[0] if parent else None,
                                             writing, k.config.embed_root):
            w.add(rtype, rec)
    bufs: dict[int, HostBuffer] = {}
    cover = covered_pages(bufs, [p.vm for p in live])
    for bid in sorted(bufs):
        w.add("buffer", save_buffer(bufs[bid]))
    for _bid, fb in sorted(file_buffers([p.vm for p in live]).items()):
        if os.fstat(fb.fd).st_nlink == 0:
            raise ImageError(f"{fb.path}: a shared mapping of an open unlinked file cannot be "
                             "saved in an image (map it MAP_PRIVATE or keep a name)")
        w.add("filemap", {**save_filemap(fb), "fingerprint": _fingerprint(k, fb.fd)})
    fids = _save_files(w, k, live)
    for p in procs:
        w.add("process", process_state.save(p, fids, scope))
        if not p.zombie:
            w.add("vmspace", {"pid": p.pid, **save_vmspace(p.vm)})
    for p in live:
        for t in p.live_threads:
            rec = save_thread(t, thread_regs(t))
            if t.tid in overrides:
                rec.update(state="runnable", sleep=None, wake_result=overrides[t.tid])
            w.add("thread", rec)
    for key, q in sorted(_queues(live).items(), key=lambda kv: repr(kv[0])):
        tids = [t.tid for t in q.waiters if t.tid not in overrides]
        if tids:
            w.add("waitq", {"key": list(key), "tids": tids})
    sleepers = {t.tid for p in live for t in p.live_threads if t.tid not in overrides}
    locks = lock_state.save(k.locks, fids, {p.pid for p in live}, sleepers)
    if locks is not None:  # only while a lock is held: images without any stay as before
        w.add("locks", locks)
    return _save_pages(w, bufs, cover, base, parent is not None, progress)


def _number(files: list, fids: dict[int, int], new: Iterable) -> None:
    """Append (and number) the files of new that are not numbered yet."""
    for f in new:
        if id(f) not in fids:
            fids[id(f)] = len(fids) + 1
            files.append(f)


def _add_carried(files: list, fids: dict[int, int], i: int) -> None:
    """Append (and number) the files in flight in the queues files[i:] reach, transitively."""
    while i < len(files):
        _number(files, fids, unix_state.carried(files[i]))
        i += 1


def _save_files(w: ImageWriter, k: VKernel, live: list[Process]) -> dict[int, int]:
    """Every open file description the live processes hold, then those in flight in their
    sockets' queues (SCM_RIGHTS), then the in-flight sockets no descriptor reaches (garbage
    the collector has not yet met) and what they carry, with the pipes and sockets they use."""
    fids: dict[int, int] = {}
    files = []
    for p in live:
        _number(files, fids, (f for _, (f, _) in sorted(p.fds.fds.items())))
    _add_carried(files, fids, 0)
    n = len(files)
    _number(files, fids, unix_state.in_flight(k.unix))  # no descriptor reaches them: garbage
    _add_carried(files, fids, n)
    pipes = {f.pipe.id: f.pipe for f in files if f.kind in ("pipe", "fifo")}
    for pid_ in sorted(pipes):
        w.add("pipe", save_pipe(pipes[pid_]))
    socks = unix_state.sockets_of(files)
    if socks or k.unix.next_id > 1:  # written only when there are sockets: see vkckpt-image(5)
        w.add("unixns", unix_state.save_ns(k.unix))
    for s in socks:
        w.add("socket", unix_state.save_socket(s, k.unix, fids))
    ghosts = ghost_state.find_ghosts(files, k.host_path_of)  # records only while a ghost is open
    for rtype, rec in ghost_state.save_ghosts(ghosts, k.inodes):
        w.add(rtype, rec)
    if inet_state.wanted(socks, k.inet):  # only with internet sockets: see vkckpt-image(5)
        w.add("inetns", inet_state.save_ns(k.inet))
        for s in socks:
            if s.inet is not None:
                w.add("inetsock", inet_state.save_socket(s))
    for f in files:
        d = save_file(f, fids[id(f)], fids)
        if id(f) in ghosts:  # reopened from its saved bytes, not compared with a path
            d["ghost"] = ghosts[id(f)][0]
            del d["fingerprint"]
        elif type(f) is HostFile:  # a guest renamed it: reopened at its new name
            d["path"] = ghost_state.reopen_path(f, k.inodes, k.host_path_of)
        if "fingerprint" in d and k.root.overlay is not None:
            d["fingerprint"] = dict(OVERLAY_FINGERPRINT)
        w.add("file", d)
    return fids


#: The fingerprint of every file of an overlay run's images: its files are the image's own
#: (the upper layer) or the lower layer's (checked by its digest), so nothing is compared,
#: and nothing host-specific (an inode, a host directory's size) makes a re-freeze differ.
OVERLAY_FINGERPRINT = {"size": 0, "stamp": None, "sha256": None}


def _fingerprint(k: VKernel, fd: int) -> dict:
    return fingerprint(fd) if k.root.overlay is None else dict(OVERLAY_FINGERPRINT)


def _writing(live: list[Process]) -> set[tuple[int, int]]:
    """The host inodes live processes map shared and writable: an overlay counts them as
    changed in every image while they are (stores into a mapping are not seen)."""
    keys = set()
    for fb in file_buffers([p.vm for p in live]).values():
        if fb.writable:
            st = os.fstat(fb.fd)
            keys.add((st.st_dev, st.st_ino))
    return keys


def _queues(live: list[Process]) -> dict[tuple, object]:
    """The wait queues live threads sleep on, by key."""
    out = {}
    for p in live:
        for t in p.live_threads:
            if t.sleep is not None and t.sleep.queue is not None:
                out[t.sleep.queue.key] = t.sleep.queue
    return out


def _save_pages(w: ImageWriter, bufs: dict[int, HostBuffer],
                cover: dict[int, list[tuple[int, int]]], base: dict[int, BufBase],
                incremental: bool, progress: Callable[[int, int], None] | None
                ) -> tuple[int, int, dict]:
    """The covered pages of every buffer: all non-zero ones, or (incremental) those that
    may differ from base; returns (pages, zero pages, the new bases)."""
    total = sum(b - a for rs in cover.values() for a, b in rs)
    done = npages = nzero = 0
    new_base = {}
    materialise_all()  # pages a lazy thaw left in its image read as absent (zeros) otherwise
    gen = PG.begin_freeze()
    for bid in sorted(bufs):
        buf = bufs[bid]
        plan = PG.plan_buffer(buf, cover[bid], base.get(bid), incremental, gen)
        for (a, b), write, zero in zip(cover[bid], plan.write, plan.zero, strict=True):
            if zero:
                w.add("zero_pages", {"buf": bid, "ranges": [list(r) for r in zero]})
                nzero += sum(e - s for s, e in zero)
            w.add_page_runs(bid, buf.view, write)
            npages += sum(e - s for s, e in write)
            done += b - a
            if progress:
                progress(done, total)
        new_base[bid] = plan.base
    return npages, nzero, new_base
