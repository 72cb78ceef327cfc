"""Rebuild a vkernel from an image (following its incremental chain); see vkckpt-image(5).

Every value read from an image is checked before use; any inconsistency is an ImageError
naming the problem, found before the run starts.  Host resources (engines, host buffers,
reopened files) are rebuilt here, in the guest root `trust.guest_root` allows, and never
more memory than the image's own memory limit (at most MAX_GUEST_MEMORY) per process.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from vkckpt.abi import signals as S
from vkckpt.abi.limits import NOFILE
from vkckpt.ckpt import pages as PG
from vkckpt.ckpt import schema, trust
from vkckpt.ckpt.snapshot import RECORD_VERSIONS
from vkckpt.config import KernelConfig
from vkckpt.engine.engine import Engine
from vkckpt.errors import ImageError
from vkckpt.fs.fdtable import FdTable
from vkckpt.fs.files import HostFile
from vkckpt.fs.pipe import CAPACITY, Pipe
from vkckpt.fs.state import load_file
from vkckpt.image import ImageReader
from vkckpt.image.format import MAX_CHUNK_PAGES, PageChunk
from vkckpt.image.limits import MAX_GUEST_MEMORY
from vkckpt.kernel import VKernel
from vkckpt.process import Process
from vkckpt.record import Comparable
from vkckpt.signals.pending import SigInfo
from vkckpt.signals.state import load_actions, load_pending
from vkckpt.task_signals import send_to_process
from vkckpt.threads.state import load_thread
from vkckpt.threads.thread import ThreadState
from vkckpt.threads.wait import WaitQueue
from vkckpt.vmspace.hostmem import HostBuffer
from vkckpt.vmspace.state import covered_pages, load_vmspace
from vkckpt.vmspace.vma import PAGE
from vkckpt.vmspace.vmspace import VmSpace

MAX_CHAIN = 1000
MAX_FD = NOFILE


class ThawOptions(Comparable):
    """How to thaw: where the guest root is now, and what to do about changed files.

    root None: the image's hint, if trust.guest_root accepts it.  key: every image of the
    chain must be sealed with it (and then its root hint is trusted).  read_only: reopen
    the guests' files for reading only (verify)."""

    __slots__ = ("root", "allow_changed_files", "deliver_sigthaw", "stdout", "stderr", "stdin",
                 "trace_syscalls", "extra", "key", "read_only")

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
    ) -> None:
        self.root = root
        self.key = key
        self.read_only = read_only
        self.allow_changed_files = allow_changed_files
        self.deliver_sigthaw = deliver_sigthaw
        self.stdout = stdout
        self.stderr = stderr
        self.stdin = stdin
        self.trace_syscalls = trace_syscalls
        self.extra = {} if extra is None else extra


def load_chain(path: str) -> list[ImageReader]:
    """The image and its ancestors, base first; every link's ids are checked."""
    chain = [ImageReader(path)]
    seen = {chain[0].header.image_id}
    while chain[0].header.incremental:
        child = chain[0]
        hint = _meta(child).get("parent_path")
        if not isinstance(hint, str) or not hint:
            raise ImageError(f"{child.path}: incremental image without a parent path")
        ppath = os.path.join(os.path.dirname(os.path.abspath(child.path)), os.path.basename(hint))
        if not os.path.exists(ppath):
            raise ImageError(f"{child.path}: parent image {os.path.basename(hint)} not found "
                             f"beside it")
        parent = ImageReader(ppath)
        if parent.header.image_id != child.header.parent_id:
            raise ImageError(f"{ppath}: is not the parent of {child.path} (image id mismatch)")
        if parent.header.vkernel_id != child.header.vkernel_id:
            raise ImageError(f"{ppath}: belongs to another vkernel")
        if parent.header.image_id in seen or len(chain) >= MAX_CHAIN:
            raise ImageError(f"{child.path}: the incremental chain loops or is too long")
        seen.add(parent.header.image_id)
        chain.insert(0, parent)
    return chain


class _DigestCheck:
    """check_digests() of every image of a chain on a helper thread (hashlib drops the GIL).

    A chain smaller than INLINE_DIGESTS is checked at once: starting a thread (and importing
    threading, ~3 ms) would cost more than the hashing it overlaps.
    """

    INLINE_DIGESTS = 4 << 20

    def __init__(self, chain: list[ImageReader]) -> None:
        self.error: ImageError | None = None
        self.thread = None
        if sum(os.path.getsize(r.path) for r in chain) < self.INLINE_DIGESTS:
            self._run(chain)
            return
        import threading

        self.thread = threading.Thread(target=self._run, args=(chain,), daemon=True)
        self.thread.start()

    def _run(self, chain: list[ImageReader]) -> None:
        try:
            for r in chain:
                r.check_digests(parallel=True)
        except ImageError as exc:
            self.error = exc

    def join(self) -> None:
        """Wait for the check; raises its ImageError."""
        if self.thread is not None:
            self.thread.join()
        if self.error is not None:
            raise self.error


def _meta(r: ImageReader) -> dict:
    for rec in r.records(RECORD_VERSIONS):
        if rec.type == "meta":
            return rec.fields
        if rec.type == "kernel":
            break
    return {}


def thaw(path: str, opts: ThawOptions | None = None) -> VKernel:
    """Load the image at path into a new vkernel ready to run."""
    opts = opts or ThawOptions()
    chain = load_chain(path)
    final = chain[-1]
    if opts.key is not None:  # authenticate before believing anything, the root above all
        for r in chain:
            r.check_digests(opts.key.secret)
        digests = _DigestCheck([])
    else:
        digests = _DigestCheck(chain)  # whole-file checksums, hashed beside the loading
    recs: dict[str, list[dict]] = {}
    k = None
    try:
        for rec in final.records(RECORD_VERSIONS, skip_pages=True):  # pages: _apply_pages
            if rec.type not in ("pages", "zero_pages", "meta"):  # meta: see load_chain
                schema.check(rec.type, rec.fields)
                recs.setdefault(rec.type, []).append(rec.fields)
        root = trust.guest_root(chain, opts.root, _one(recs, "kernel")["root"],
                                sealed=opts.key is not None)
        trust.check_key_outside(opts.key, root)
        k = _build(final, recs, opts, root)
        _apply_pages(k, chain)
    except ImageError:
        digests.join()  # a corrupted file explains a malformed record best
        if k is not None:
            k.shutdown()
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError,
            MemoryError, OSError) as exc:
        digests.join()
        if k is not None:
            k.shutdown()
        raise ImageError(f"{path}: malformed image ({type(exc).__name__}: {exc})") from None
    try:
        digests.join()
    except ImageError:
        k.shutdown()
        raise
    k.last_image = (final.header.image_id, path)
    if opts.deliver_sigthaw:
        for p in sorted(k.procs.values(), key=lambda p: p.pid):
            h = p.actions.get(S.SIGTHAW).handler
            if not p.zombie and h not in (S.SIG_DFL, S.SIG_IGN):
                send_to_process(k, p, SigInfo(S.SIGTHAW, S.SI_KERNEL))
    return k


def _one(recs: dict[str, list[dict]], kind: str) -> dict:
    got = recs.get(kind, [])
    if len(got) != 1:
        raise ImageError(f"image must hold exactly one {kind} record, found {len(got)}")
    return got[0]


def _build(final: ImageReader, recs: dict[str, list[dict]], opts: ThawOptions,
           root: str) -> VKernel:
    kr = _one(recs, "kernel")
    limit = _pos(kr["memory_limit"], "memory_limit")
    if limit > MAX_GUEST_MEMORY:
        raise ImageError(f"kernel memory_limit {limit} is above the {MAX_GUEST_MEMORY} bytes "
                         "an image may give a process")
    _check_memory(recs, limit)
    cfg = KernelConfig(root=root, quantum=_pos(kr["quantum"], "quantum"),
                       memory_limit=limit, seed=kr["seed"],
                       max_processes=kr["max_processes"], max_threads=kr["max_threads"],
                       stdout=opts.stdout, stderr=opts.stderr, stdin=opts.stdin,
                       trace_syscalls=opts.trace_syscalls)
    if not os.path.isdir(cfg.root):
        raise ImageError(f"guest root {cfg.root} does not exist; pass --root")
    k = VKernel(cfg)
    k.vkernel_id = final.header.vkernel_id
    for name in ("next_pid", "next_pipe", "next_bid", "init_pid", "sleep_seq", "rng_counter"):
        setattr(k, name, _nonneg(kr[name], name))
    k.exit_status = kr["exit_status"]
    k.statuses = {int(a): int(b) for a, b in kr["statuses"]}
    k.reported_enosys = set(kr["enosys"])
    k.sched.ticks, k.sched.idle_ns = _nonneg(kr["ticks"], "ticks"), kr["idle_ns"]
    k.sched._timer_seq = kr["timer_seq"]
    bufs = _buffers(recs.get("buffer", []), k)
    pipes = {}
    for d in recs.get("pipe", []):
        if not isinstance(d["data"], bytes) or len(d["data"]) > CAPACITY:
            raise ImageError(f"pipe {d['id']} holds more than a pipe can")
        pipes[d["id"]] = Pipe(d["id"], k.mem, k.poll_q)
        pipes[d["id"]].data = bytearray(d["data"])
    if not all(isinstance(r, list) and len(r) == 3 and isinstance(r[0], str)
               for r in kr.get("inodes", [])):
        raise ImageError("the inode table is malformed")
    k.inodes.load(kr.get("inodes", []), kr.get("next_ino", 2), k.host_path_of)
    files = {}
    for d in recs.get("file", []):
        if d["id"] in files:
            raise ImageError(f"file id {d['id']!r} is duplicated")
        files[d["id"]] = load_file(d, k.root, pipes, opts.allow_changed_files, k.inodes,
                                   opts.read_only, svc=k.file_services())
    k.host_fds.adopt(sum(isinstance(f, HostFile) for f in files.values()))
    vms = {d["pid"]: d for d in recs.get("vmspace", [])}
    queues: dict[tuple, WaitQueue] = {}
    for d in recs.get("process", []):
        _process(k, d, vms, bufs, files, queues)
    for pipe in pipes.values():
        queues[pipe.read_q.key] = pipe.read_q
        queues[pipe.write_q.key] = pipe.write_q
    queues[k.poll_q.key] = k.poll_q
    orders = {d["pid"]: list(d["threads"]) for d in recs.get("process", [])}
    _threads(k, recs.get("thread", []), queues, orders)
    _waitqs(k, recs.get("waitq", []), queues)
    _sched(k, kr)
    return k


def _guest_path(v: str, what: str) -> None:
    if not v.startswith("/") or "\0" in v or len(v) > 4096:
        raise ImageError(f"{what} {_short(v)} is not an absolute guest path")


def _short(v: str) -> str:
    return repr(v) if len(v) <= 60 else repr(v[:57] + "...")


def _pos(v: object, what: str) -> int:
    if not isinstance(v, int) or v <= 0:
        raise ImageError(f"kernel {what} must be a positive integer")
    return v


def _nonneg(v: object, what: str) -> int:
    if not isinstance(v, int) or v < 0:
        raise ImageError(f"kernel {what} must be a non-negative integer")
    return v


def _check_memory(recs: dict[str, list[dict]], limit: int) -> None:
    """Refuse more host memory than the image's processes may map: no process maps more than
    limit, no buffer is larger, and there are no more buffers than VMAs to use them."""
    nvmas = 0
    for d in recs.get("vmspace", []):
        vmas = d.get("vmas")
        if not isinstance(vmas, list) or not all(
                isinstance(v, list) and len(v) == 9 and isinstance(v[0], int)
                and isinstance(v[1], int) for v in vmas):
            raise ImageError(f"vmspace of process {d.get('pid')!r}: malformed VMA list")
        total = sum(max(0, v[1] - v[0]) for v in vmas)
        nvmas += len(vmas)
        if total > limit:
            raise ImageError(f"process {d.get('pid')!r} maps {total} bytes, more than its "
                             f"memory limit of {limit}")
    bufs = recs.get("buffer", [])
    if len(bufs) > nvmas:
        raise ImageError(f"the image has {len(bufs)} buffers for {nvmas} VMAs")
    for d in bufs:
        if isinstance(d["size"], int) and d["size"] > limit:
            raise ImageError(f"buffer {d['bid']!r} of {d['size']} bytes is larger than the "
                             f"memory limit of {limit}")


def _buffers(rows: list[dict], k: VKernel) -> dict[int, HostBuffer]:
    bufs = {}
    for d in rows:
        size, bid = d["size"], d["bid"]
        if not isinstance(size, int) or size <= 0 or size % PAGE:
            raise ImageError(f"buffer {bid!r} has an impossible size {size!r}")
        if bid in bufs or not isinstance(bid, int) or not 0 < bid < k.next_bid:
            raise ImageError(f"buffer id {bid!r} is duplicated or out of range")
        try:
            bufs[bid] = HostBuffer(size, bid)
        except MemoryError:
            raise ImageError(f"buffer {bid} of {size} bytes cannot be mapped on this "
                             "host") from None
    return bufs


def _process(k: VKernel, d: dict, vms: dict, bufs: dict, files: dict, queues: dict) -> None:
    pid = d["pid"]
    if not isinstance(pid, int) or not 0 < pid < k.next_pid or pid in k.procs:
        raise ImageError(f"process id {pid!r} is duplicated or out of range")
    eng = vm = None
    fds = FdTable()
    if not d["zombie"]:
        if pid not in vms:
            raise ImageError(f"process {pid} has no vmspace record")
        eng = Engine(k.syscall_entry)
        vm = VmSpace(eng, k.mem, k.alloc_bid)
        load_vmspace(vms[pid], vm, bufs)
        for fd, fid, ce in d["fds"]:
            if fid not in files or not 0 <= fd < MAX_FD:
                raise ImageError(f"process {pid}: descriptor {fd} refers to unknown file {fid}")
            if fd in fds.fds:
                raise ImageError(f"process {pid}: descriptor {fd} appears twice")
            fds.install(files[fid], bool(ce), fd=fd)
    for name in ("cwd", "exe"):
        if name == "cwd" or d[name]:
            _guest_path(d[name], f"process {pid} {name}")
    p = Process(pid, d["ppid"], vm, eng, fds, load_actions(d["actions"]), cwd=d["cwd"],
                exe=d["exe"], argv=list(d["argv"]), pgid=d["pgid"], sid=d["sid"],
                umask=d["umask"], pending=load_pending(d["pending"]),
                children=list(d["children"]), exiting=d["exiting"], zombie=d["zombie"],
                wait_status=d["wait_status"], exit_signal=d["exit_signal"],
                stopped=d["stopped"], stop_report=d["stop_report"], ticks=d["ticks"],
                vfork_parent=d.get("vfork_parent", 0))
    k.procs[pid] = p
    queues[p.child_wait.key] = p.child_wait
    queues[p.vfork_done.key] = p.vfork_done


def _threads(k: VKernel, rows: list[dict], queues: dict, orders: dict[int, list]) -> None:
    """Threads from their records; orders lists each process's tids as the image had them."""
    by_tid = {}
    for d in rows:
        p = k.procs.get(d["pid"])
        if p is None or p.zombie:
            raise ImageError(f"thread {d['tid']!r} belongs to no live process")
        t, regs = load_thread(d, p, queues)
        _test_fault_regs(regs)
        if t.tid in by_tid or not 0 < t.tid < k.next_pid:
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


def _sched(k: VKernel, kr: dict) -> None:
    for tid in kr["runq"]:
        t = k.threads.get(tid)
        if t is None or t.state is not ThreadState.RUNNABLE:
            raise ImageError(f"run queue names thread {tid!r}, which is not runnable")
        k.sched.runq.append(t)
    for deadline, seq, tid in kr["timers"]:
        t = k.threads.get(tid)
        if t is None or t.sleep is None or t.sleep.timer != seq or t.sleep.deadline != deadline:
            raise ImageError(f"timer for thread {tid!r} does not match its sleep")
        k.sched.timers.append((deadline, seq, t))
    k.sched.timers.sort(key=lambda x: (x[0], x[1]))


def _apply_pages(k: VKernel, chain: list[ImageReader]) -> None:
    """Lay down page data from the base image up to the final one; then remember it as the
    base for the next incremental freeze."""
    bufs = {}
    cover = covered_pages(bufs, [p.vm for p in k.procs.values() if not p.zombie])
    laid: dict[int, list[tuple[int, int]]] = {}
    flip = _test_fault() == "flip-page"
    for r in chain:
        for rec in r.records_and_pages(RECORD_VERSIONS):
            if isinstance(rec, PageChunk):
                buf = bufs.get(rec.buf)
                first, count = rec.first, rec.count
                if buf is None or not 1 <= count <= MAX_CHUNK_PAGES or \
                        first + count > buf.size // PAGE:
                    rec = r.chunk_record(rec)  # the generic path below checks and says why
                else:  # straight from the file into guest memory
                    PG.populate(buf, first, count)
                    dest = buf.view[first * PAGE: (first + count) * PAGE]
                    r.load_pages(rec, dest)
                    if flip:  # test-only fault, see _test_fault
                        dest[0] ^= 0xFF
                        flip = False
                    laid.setdefault(rec.buf, []).append((first, first + count))
                    continue
            if rec.type == "pages":
                data = r.pages(rec)
                if flip:  # test-only fault, see _test_fault
                    data, flip = bytes([data[0] ^ 0xFF]) + data[1:], False
                _put_pages(bufs, rec.fields, data)
                if rec.fields["buf"] in bufs:
                    first = rec.fields["first"]
                    laid.setdefault(rec.fields["buf"], []).append(
                        (first, first + len(data) // PAGE))
            elif rec.type == "zero_pages":
                buf = bufs.get(rec.fields["buf"])
                for a, b in rec.fields["ranges"]:
                    if buf is not None:
                        _check_range(buf, a, b)
                        buf.view[a * PAGE: b * PAGE] = bytes((b - a) * PAGE)
    k.page_base = PG.thawed_bases(bufs, cover, laid)


def _check_range(buf: HostBuffer, a: object, b: object) -> None:
    if not (isinstance(a, int) and isinstance(b, int) and 0 <= a < b <= buf.size // PAGE):
        raise ImageError(f"page range {a!r}-{b!r} lies outside buffer {buf.bid}")


def _put_pages(bufs: dict[int, HostBuffer], f: dict, data: bytes) -> None:
    buf = bufs.get(f["buf"])
    if buf is None:
        return  # the buffer was freed after that (parent) image was written
    first = f["first"]
    _check_range(buf, first, first + len(data) // PAGE)
    buf.view[first * PAGE: first * PAGE + len(data)] = data


def _test_fault() -> str:
    """TEST ONLY: a restore bug planted on purpose, so the regression suite (`vkckpt regress`)
    can prove that it notices and bisects one.  Inert unless VKCKPT_TEST_FAULT is set:
    `drop-register:NAME` zeroes register NAME of every thread after loading it, `flip-page`
    flips the first byte of the first page laid down.  Child processes inherit it."""
    return os.environ.get("VKCKPT_TEST_FAULT", "")


def _test_fault_regs(regs: dict[str, int]) -> None:
    fault = _test_fault()
    if fault.startswith("drop-register:") and fault[14:] in regs:
        regs[fault[14:]] = 0
