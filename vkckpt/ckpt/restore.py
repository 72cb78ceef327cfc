"""Rebuild a vkernel from an image (following its incremental chain); see vkckpt-image(5).

Every value read from an image is checked before use; any inconsistency is an ImageError
naming the problem, found before the run starts.  Host resources (engines, host buffers,
reopened files) are rebuilt in the guest root `trust.guest_root` allows, and never more
memory than the image's own memory limit (at most MAX_GUEST_MEMORY) per process.  Each type
loads itself in its state module; this module only collects them, in snapshot.py's order.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from vkckpt import kernel_state, process_state, sched_state
from vkckpt.abi import signals as S
from vkckpt.ckpt import lazy_thaw, overlay_thaw, schema, trust
from vkckpt.ckpt import pages as PG
from vkckpt.ckpt.chain import DigestCheck, ImageChain, load_chain
from vkckpt.ckpt.lay_pages import Laid, lay_pages
from vkckpt.ckpt.schema import RECORD_VERSIONS
from vkckpt.engine import cpu_state
from vkckpt.errors import ConfigError, GuestError, ImageError
from vkckpt.fs import ghost_state, inet_state, lock_state, unix_state
from vkckpt.fs.binds import BindSpec
from vkckpt.fs.fifo import FifoEnd, all_queues
from vkckpt.fs.files import HostFile
from vkckpt.fs.publish import reset_external
from vkckpt.fs.state import link_files, load_file, load_pipes, reopen_mapped
from vkckpt.fs.unix_file import SocketFile
from vkckpt.image import ImageReader
from vkckpt.kernel import VKernel
from vkckpt.record import Comparable
from vkckpt.signals.pending import SigInfo
from vkckpt.syscalls.table import ON_EINTR, TABLE
from vkckpt.task_signals import send_to_process
from vkckpt.threads.state import load_thread
from vkckpt.threads.wait import WaitQueue
from vkckpt.vmspace.filemap import FileBuffer
from vkckpt.vmspace.hostmem import HostBuffer
from vkckpt.vmspace.state import check_filemap, check_memory, covered_pages, load_buffers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vkckpt.ckpt.migrate_stage import Staged

__all__ = ["ThawOptions", "add_after_load", "load_chain", "thaw"]  # load_chain: chain.py

AfterLoad = Callable[[VKernel, dict[int, HostBuffer], Laid], None]
_after_load: list[AfterLoad] = []


def add_after_load(hook: AfterLoad) -> None:
    """Call hook(k, buffers, laid) in every later thaw of this process, once the registers
    and pages are in place and before anything is derived from them; laid lists the page
    runs written per buffer id, in order.  For test-only faults (vkckpt/testing/fault.py)."""
    _after_load.append(hook)


class ThawOptions(Comparable):
    """How to thaw: where the guest root is now, and what to do about changed files.

    root None: the image's hint, if trust.guest_root accepts it.  key: every image of the
    chain must be sealed with it (and then its root hint is trusted).  binds: the image's
    binds given again (kernel_state.check_binds).  read_only: reopen
    the guests' files for reading only (verify).  lazy: leave page chunks in the image and
    fault them in on first touch (True), load them all now (False), or decide by size
    (None; see lazy_thaw.py, which also says when the host forces the eager path).
    refreeze: the thaw is frozen again at once and never run (vkckpt merge): published
    ports and external connections stay as the image records them, none bound or reset."""

    __slots__ = ("root", "allow_changed_files", "deliver_sigthaw", "stdout", "stderr", "stdin",
                 "trace_syscalls", "extra", "key", "read_only", "lazy", "binds", "publish",
                 "refreeze")

    def __init__(
        self,
        root: str | None = None,
        allow_changed_files: bool = False,
        deliver_sigthaw: bool = True,
        stdout: Callable[[bytes], None] | None = None,
        stderr: Callable[[bytes], None] | None = None,
        stdin: bytes | None = None,
        trace_syscalls: bool = False,
        extra: dict | None = None,
        key: trust.ImageKey | None = None,
        read_only: bool = False,
        lazy: bool | None = None,
        binds: list[BindSpec] | None = None,
        publish: list[tuple[int, int]] | None = None,
        refreeze: bool = False,
    ) -> None:
        self.root = root
        self.binds = [] if binds is None else binds
        self.publish = [] if publish is None else publish  # host ports bound again
        self.refreeze = refreeze  # merge: frozen again at once, never run
        self.lazy = lazy
        self.key = key
        self.read_only = read_only
        self.allow_changed_files = allow_changed_files
        self.deliver_sigthaw = deliver_sigthaw
        self.stdout = stdout
        self.stderr = stderr
        self.stdin = stdin
        self.trace_syscalls = trace_syscalls
        self.extra = {} if extra is None else extra


def thaw(path: str, opts: ThawOptions | None = None, *,
         chain: ImageChain | None = None, staged: Staged | None = None) -> VKernel:
    """Load the image at path into a new vkernel ready to run.  chain: extended with that
    image, so that the thawed vkernel's next incremental freeze hangs on it.  staged: the
    chain as live migration received it (path is its last image): every image already
    checked, the earlier ones' pages already laid (see migrate_stage.py)."""
    opts = opts or ThawOptions()
    images = load_chain(path) if staged is None else staged.images
    final = images[-1]
    lazy = staged is None and lazy_thaw.wanted(images, opts.lazy, opts.key is not None,
                                                opts.read_only)
    if staged is not None:
        digests = DigestCheck([])  # each image was checked (with the key) as it arrived
    elif opts.key is not None:  # authenticate before believing anything, the root above all
        for r in images:
            r.check_digests(opts.key.secret)
        digests = DigestCheck([])
    elif lazy:
        digests = DigestCheck([])  # checked while the guest runs (check_digests_aside)
    else:
        digests = DigestCheck(images)  # whole-file checksums, hashed beside the loading
    k = ovl = None
    try:
        recs = _records(final)
        ovl = overlay_thaw.begin(images, recs)
        root = ovl.root if ovl is not None and ovl.root else \
            trust.guest_root(images, opts.root, _one(recs, "kernel")["root"],
                             sealed=opts.key is not None)
        trust.check_key_outside(opts.key, root)
        k = _build(final, recs, opts, root, staged, ovl)
        base = _pages(k, images, lazy, staged)
    except ImageError:
        digests.join()  # a corrupted file explains a malformed record best
        if k is not None:
            k.shutdown()
        overlay_thaw.abandon(ovl, k)
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError,
            MemoryError, OSError) as exc:
        digests.join()
        if k is not None:
            k.shutdown()
        overlay_thaw.abandon(ovl, k)
        raise ImageError(f"{path}: malformed image ({type(exc).__name__}: {exc})") from None
    try:
        digests.join()
    except ImageError:
        k.shutdown()
        raise
    if lazy:
        lazy_thaw.check_digests_aside(images)
    if chain is not None:
        chain.extend(final.header.image_id, path, base)
        if staged is not None:  # a stream's images end with the receive: the next is full
            chain.lose(final.header.image_id, path)
    if opts.deliver_sigthaw:
        _sigthaw(k)
    return k


def _records(final: ImageReader) -> dict[str, list[dict]]:
    """The structural records of the final image by type, each checked against its schema
    (pages: _pages; meta: see chain.load_chain)."""
    recs: dict[str, list[dict]] = {}
    for rec in final.records(RECORD_VERSIONS, skip_pages=True):
        if rec.type not in ("pages", "zero_pages", "meta", "ovl_entry", "ovl_data"):
            schema.check(rec.type, rec.fields)
            recs.setdefault(rec.type, []).append(rec.fields)
    return recs


def _sigthaw(k: VKernel) -> None:
    """SIGTHAW to every live process that handles it."""
    for p in sorted(k.procs.values(), key=lambda p: p.pid):
        h = p.actions.get(S.SIGTHAW).handler
        if not p.zombie and h not in (S.SIG_DFL, S.SIG_IGN):
            send_to_process(k, p, SigInfo(S.SIGTHAW, S.SI_KERNEL))


def _one(recs: dict[str, list[dict]], kind: str) -> dict:
    got = recs.get(kind, [])
    if len(got) != 1:
        raise ImageError(f"image must hold exactly one {kind} record, found {len(got)}")
    return got[0]


def _build(final: ImageReader, recs: dict[str, list[dict]], opts: ThawOptions,
           root: str, staged: Staged | None = None,
           ovl: overlay_thaw.OverlayChain | None = None) -> VKernel:
    """Every record, in the order snapshot.py wrote them: kernel, buffers, pipes and files,
    processes with their vmspaces, threads, wait queues, locks (pages: _pages)."""
    kr = _one(recs, "kernel")
    cpu_state.check(recs.get("cpu", []))  # before anything is built: one line, exit 125
    cfg = kernel_state.config(kr, root, stdout=opts.stdout, stderr=opts.stderr,
                              stdin=opts.stdin, trace_syscalls=opts.trace_syscalls,
                              publish=opts.publish)
    check_memory(recs.get("vmspace", []), recs.get("buffer", []) + recs.get("filemap", []),
                 cfg.memory_limit)
    if not os.path.isdir(cfg.root):
        raise ImageError(f"guest root {cfg.root} does not exist; pass --root")
    if ovl is not None:  # the files are the image's: checked by the lower layer's digest
        cfg.fs, cfg.embed_root = "overlay", ovl.embedded
        opts = opts.replace(allow_changed_files=True)
    try:
        k = VKernel(cfg, TABLE, ON_EINTR)
    except ConfigError as exc:
        raise ImageError(str(exc)) from None
    try:
        if ovl is not None:
            overlay_thaw.finish(k.root.overlay, ovl, final.header.image_id)
        for b in opts.binds:
            k.root.bind(b)
        kernel_state.check_binds(k, kr)
        external = kernel_state.check_publish(k, kr, strict=not (opts.read_only
                                                                  or opts.refreeze))
        if opts.refreeze:  # ports and external connections kept as recorded, bound nowhere
            k.publish.adopt([tuple(r) for r in kr.get("publish", [])], external)
        else:
            k.publish.open()
    except (ConfigError, ImageError) as exc:
        k.shutdown()
        raise ImageError(str(exc)) from None
    kernel_state.load(k, kr, final.header.vkernel_id)
    bufs = load_buffers(recs.get("buffer", []), k.ids.next_bid)
    if staged is not None:
        staged.adopt(bufs)
    _filemaps(k, recs.get("filemap", []), bufs, opts)
    pipes = load_pipes(recs.get("pipe", []), k.mem, k.poll_q)
    sock_rows = recs.get("socket", [])
    socks = unix_state.load_sockets(sock_rows, k.poll_q, k.mem)
    files = _files(k, recs.get("file", []), pipes, opts, socks,
                   (recs.get("ghost", []), recs.get("ghost_data", [])))
    unix_state.link_messages(socks, sock_rows, files)
    ns_rows = recs.get("unixns", [])
    if len(ns_rows) > 1 or (sock_rows and not ns_rows):
        raise ImageError("an image with sockets holds exactly one unixns record")
    unix_state.load_ns(k.unix, ns_rows[0] if ns_rows else None, sock_rows, socks)
    inet_state.load(k.inet, recs.get("inetns", []), recs.get("inetsock", []), socks)
    unix_state.count_in_flight(socks)
    held = {f.sock.id for f in files.values() if isinstance(f, SocketFile)}
    reset_external(socks, external, held, reset=not opts.refreeze)  # the host side is gone
    queues: dict[tuple, WaitQueue] = {}
    vms = {d["pid"]: d for d in recs.get("vmspace", [])}
    for d in recs.get("process", []):
        p = process_state.load(k, d, vms, bufs, files)
        k.add_process(p)
        process_state.load_timers(k, d, p)
        queues.update((q.key, q) for q in process_state.queues(p))
    for pipe in pipes.values():
        queues[pipe.read_q.key] = pipe.read_q
        queues[pipe.write_q.key] = pipe.write_q
    queues[k.poll_q.key] = k.poll_q
    queues.update((q.key, q) for q in all_queues(k.inodes))
    orders = {d["pid"]: list(d["threads"]) for d in recs.get("process", [])}
    _threads(k, recs.get("thread", []), queues, orders)
    _waitqs(k, recs.get("waitq", []), queues)
    if len(recs.get("locks", [])) > 1:
        raise ImageError("image holds more than one locks record")
    live = {pid for pid, p in k.procs.items() if not p.zombie}
    lock_state.load((recs.get("locks") or [None])[0], k.locks, live, files, k.threads, queues)
    sched_state.load_queues(k.sched, kr, k.threads)
    sched_state.check_events(k.sched)
    return k


def _filemaps(k: VKernel, rows: list[dict], bufs: dict[int, HostBuffer],
              opts: ThawOptions) -> None:
    """The buffers of shared file mappings, into bufs: each file (unchanged since the
    freeze) mapped again from the guest root; copy-on-write in a read-only thaw."""
    for d in rows:
        check_filemap(d, bufs, k.ids.next_bid)
        fd = reopen_mapped(d["path"], d["writable"], d.get("fingerprint"), k.root,
                           opts.read_only, opts.allow_changed_files)
        try:
            bufs[d["bid"]] = FileBuffer(fd, d["size"], d["file_off"], d["path"],
                                        d["writable"], d["bid"], k.host_fds, opts.read_only)
        except (OSError, GuestError) as exc:
            raise ImageError(f"{d['path']}: cannot map it again ({exc})") from None
        finally:
            os.close(fd)


def _files(k: VKernel, rows: list[dict], pipes: dict, opts: ThawOptions,
           socks: dict, ghost_recs: tuple[list[dict], list[dict]]) -> dict:
    """Open file descriptions by saved id (guest-root files reopened by path, ghosts from
    their saved bytes)."""
    files = {}
    ov = k.root.overlay  # an overlay's lower layer is never written, not even unnamed files
    ghosts = ghost_state.load_ghosts(*ghost_recs, k.root.root_fd if ov is None else ov.upper_fd,
                                     k.inodes)
    try:
        for d in rows:
            if d["id"] in files:
                raise ImageError(f"file id {d['id']!r} is duplicated")
            files[d["id"]] = load_file(d, k.root, pipes, opts.allow_changed_files, k.inodes,
                                       opts.read_only, svc=k.file_services(), socks=socks,
                                       ns=k.unix, ghosts=ghosts)
        ghost_state.set_modes(ghosts, ghost_recs[0])
    finally:
        for fd in ghosts.values():
            os.close(fd)
    k.host_fds.adopt(sum(isinstance(f, (HostFile, FifoEnd)) for f in files.values()))
    link_files(files, rows)
    return files


def _threads(k: VKernel, rows: list[dict], queues: dict, orders: dict[int, list]) -> None:
    """Threads from their records; orders lists each process's tids as the image had them."""
    by_tid = {}
    for d in rows:
        p = k.procs.get(d["pid"])
        if p is None or p.zombie:
            raise ImageError(f"thread {d['tid']!r} belongs to no live process")
        t, regs = load_thread(d, p, queues)
        if t.tid in by_tid or not 0 < t.tid < k.ids.next_pid:
            raise ImageError(f"thread id {t.tid!r} is duplicated or out of range")
        p.engine.set_state(regs)
        t.ctx = p.engine.context_new()
        p.engine_owner = t
        by_tid[t.tid] = t
        k.add_thread(t)
    for p in k.procs.values():
        order = orders.get(p.pid, [])
        if len(order) != len(set(order)) or \
                set(order) != {t.tid for t in by_tid.values() if t.process is p}:
            raise ImageError(f"process {p.pid}: thread list does not match thread records")
        p.threads = [by_tid[tid] for tid in order]
        if not p.zombie and not p.threads:
            raise ImageError(f"process {p.pid} is alive but has no thread")
    for key, q in queues.items():
        if key[0] == "futex":
            k.futexes.queues[tuple(key[1:])] = q


def _waitqs(k: VKernel, rows: list[dict], queues: dict) -> None:
    """Each wait queue's sleepers in their saved order, checked against the threads."""
    for d in rows:
        key = tuple(d["key"])
        q = queues.get(key)
        waiters = [k.threads.get(tid) for tid in d["tids"]]
        if q is None or any(t is None or t.sleep is None or t.sleep.queue is not q
                            for t in waiters):
            raise ImageError(f"wait queue {key!r} does not match its sleeping threads")
        q.waiters = waiters
    for t in k.threads.values():
        if t.sleep is not None and t.sleep.queue is not None and t not in t.sleep.queue.waiters:
            raise ImageError(f"thread {t.tid} sleeps on a queue that does not list it")


def _pages(k: VKernel, images: list[ImageReader], lazy: bool,
           staged: Staged | None = None) -> dict:
    """Lay down page data from the base image up to the final one (lazy: leaving what it can
    in the images, see lazy_thaw.py; staged: only the final one's, the rest is laid);
    returns the page bases the next incremental freeze compares against."""
    bufs: dict[int, HostBuffer] = {}
    cover = covered_pages(bufs, [p.vm for p in k.procs.values() if not p.zombie])
    if staged is not None:
        laid = staged.laid_for(bufs, lay_pages(images[-1:], bufs))
    else:
        laid = lazy_thaw.lay(images, bufs) if lazy else lay_pages(images, bufs)
    for hook in _after_load:
        hook(k, bufs, laid)
    return PG.thawed_bases(bufs, cover, laid)
