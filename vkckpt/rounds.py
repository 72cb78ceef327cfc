"""Deterministic parallel rounds: guest code of several processes on host threads at once.

A *round* runs every thread of the run queue, in queue order, in three phases:

1. serial, round order: each thread's slice-start kernel work (`VKernel.prepare`: finish an
   interrupted call, restart, deliver signals) and any work it deferred; a thread that
   cannot run then drops out;
2. parallel: each thread runs guest code only, from its registers, until its first kernel
   entry (it is *parked* before its first syscall, Engine.run(park=True)), a fault or trap,
   or its quantum; its TSC reads the round's start time plus its own blocks (plus those its
   memory group ran before it in this phase, so no thread reads a TSC below one it may
   have seen stored); a round whose groups are single threads runs their emu_starts as
   one batch on a C crew (`_Crew`: no Python on the host threads).  Threads that
   may share memory (a memory group: one process, or processes that map one MAP_SHARED
   buffer) run one after another in round order; groups run concurrently on the host
   threads of a `CpuPool`.  Phase 2 reads and writes only the thread's registers and its
   group's memory, so its result does not depend on how many host threads there are;
3. serial, round order: each thread's phase-2 blocks are added to the clock, and a thread
   still runnable continues from where phase 2 left it (its syscall then runs inline, as in
   a plain slice) for the rest of its quantum, with the TSC set from the kernel's ticks;
   a fault or trap is handled as at the end of any slice.

A round is used only when the run queue holds two memory groups or more; otherwise the
kernel runs one plain slice of the queue's head (no parallelism is possible), so runs whose
runnable threads share one process schedule exactly as they always did.  Serial mode
(`cpus` 1) runs the very same phases on the calling thread: a run's output, ticks and images
are the same whatever `cpus` is.
"""

from __future__ import annotations

import ctypes

from vkckpt.engine import libuc
from vkckpt.engine.engine import Stop
from vkckpt.engine.preempt import native_library
from vkckpt.record import Record
from vkckpt.threads.thread import ThreadState
from vkckpt.vclock import NS_PER_TICK
from vkckpt.vmspace.vma import MAP_SHARED

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from vkckpt.engine.engine import Fault
    from vkckpt.kernel import VKernel
    from vkckpt.threads.thread import Thread

class Parked(Record):
    """What phase 2 left of one thread: why it stopped, the blocks it used, a fault."""

    __slots__ = ("stop", "used", "fault", "intno")

    def __init__(self, stop: Stop, used: int, fault: Fault | None, intno: int | None) -> None:
        self.stop = stop
        self.used = used
        self.fault = fault
        self.intno = intno


def memory_groups(threads: Sequence[Thread]) -> list[list[Thread]]:
    """Partition threads into memory groups, each in the given order, groups in the order of
    their first thread: threads of one process, and processes mapping a common MAP_SHARED
    host buffer or the same file MAP_SHARED, are in one group (only they can see each
    other's stores)."""
    root: dict[int, int] = {}  # pid -> a pid of its group (union-find)

    def find(pid: int) -> int:
        while root[pid] != pid:
            root[pid] = root[root[pid]]
            pid = root[pid]
        return pid

    owner: dict[object, int] = {}  # shared buffer id or mapped file -> a pid mapping it
    for t in threads:
        p = t.process
        if p.pid in root:
            continue
        root[p.pid] = p.pid
        for v in p.vm.vmas:
            if v.flags & MAP_SHARED and (v.buf.refs > 1 or v.buf.file_key is not None):
                key = v.buf.bid if v.buf.file_key is None else v.buf.file_key
                other = owner.setdefault(key, p.pid)
                root[find(p.pid)] = find(other)
    groups: dict[int, list[Thread]] = {}
    for t in threads:
        groups.setdefault(find(t.process.pid), []).append(t)
    return list(groups.values())


def wants_round(runq: Sequence[Thread]) -> bool:
    """The run queue holds runnable threads of two memory groups or more."""
    live = [t for t in runq if t.state is ThreadState.RUNNABLE]
    if len(live) < 2 or all(t.process is live[0].process for t in live):
        return False
    return len(memory_groups(live)) > 1


#: How long a host thread of rounds spins for the next batch before it sleeps on a futex
SPIN_NS = 300_000


class _Job(ctypes.Structure):
    """struct vk_job (engine/blockhook.c): one engine's uc_emu_start in a crew's batch."""

    _fields_ = [("uc", ctypes.c_void_p), ("rip", ctypes.c_uint64), ("err", ctypes.c_int64)]


class _Crew:
    """The C crew (engine/blockhook.c): `cpus - 1` host threads that run a batch of
    uc_emu_start calls with the caller, never touching Python, so a batch costs no GIL
    hand-off (each was ~50 us on a VM, against ~170 us of guest code per slice)."""

    def __init__(self, lib: ctypes.CDLL, workers: int) -> None:
        lib.vk_crew_new.argtypes = [ctypes.c_uint32, ctypes.c_uint64, ctypes.c_void_p]
        lib.vk_crew_new.restype = ctypes.c_void_p
        lib.vk_crew_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32]
        lib.vk_crew_run.restype = None
        lib.vk_crew_free.argtypes = [ctypes.c_void_p]
        lib.vk_crew_free.restype = None
        self._lib = lib
        emu_start = ctypes.cast(libuc.lib.uc_emu_start, ctypes.c_void_p).value
        self.crew = lib.vk_crew_new(workers, SPIN_NS, emu_start)

    def run(self, jobs: ctypes.Array) -> None:
        self._lib.vk_crew_run(self.crew, ctypes.addressof(jobs), len(jobs))

    def close(self) -> None:
        if self.crew:
            self._lib.vk_crew_free(self.crew)
            self.crew = None


class CpuPool:
    """The host threads phase 2 runs on: the caller's plus `cpus - 1` started on first use.

    When every memory group of a round is one thread, the groups' runs are one batch for
    the C crew (`_Crew`); otherwise (threads of one process run one after another, with
    Python between them) a thread pool runs the groups, at ~100 us more per round."""

    def __init__(self, cpus: int) -> None:
        self.cpus = max(1, cpus)
        self._executor = None
        self._crew: _Crew | None = None
        self._no_crew = False

    def crew(self) -> _Crew | None:
        """The C crew, started on first use (None with one CPU or without the extension)."""
        if self._crew is None and not self._no_crew and self.cpus > 1:
            lib = native_library()
            if lib is None or not hasattr(lib, "vk_crew_new"):
                self._no_crew = True
                return None
            crew = _Crew(lib, self.cpus - 1)
            if crew.crew:
                self._crew = crew
            else:
                self._no_crew = True
        return self._crew

    def run_all(self, fn: Callable[[list[Thread]], list[Parked]],
                items: list[list[Thread]]) -> list[list[Parked]]:
        """fn(item) for every item, on up to `cpus` host threads; results in item order,
        and the first item's exception (in item order) is raised after all have ended."""
        n = len(items)
        if self.cpus == 1 or n == 1:
            return [fn(x) for x in items]
        import threading  # late, like concurrent.futures: a serial thaw starts no thread

        results: list[tuple[bool, object]] = [(False, None)] * n
        lock = threading.Lock()
        todo = iter(range(n))

        def drain() -> None:
            while True:
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                try:
                    results[i] = (True, fn(items[i]))
                except BaseException as exc:  # re-raised in item order below
                    results[i] = (False, exc)

        futures = [self._pool().submit(drain) for _ in range(min(self.cpus, n) - 1)]
        drain()
        for f in futures:
            f.result()
        for ok, value in results:
            if not ok:
                raise value  # type: ignore[misc]
        return [value for _, value in results]  # type: ignore[misc]

    def _pool(self):  # noqa: ANN202 - concurrent.futures is imported only when it is used
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(self.cpus - 1, thread_name_prefix="vkcpu")
        return self._executor

    def close(self) -> None:
        """Stop the host threads (a later round starts them again)."""
        if self._crew is not None:
            self._crew.close()
            self._crew = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


def run_round(k: VKernel, pool: CpuPool) -> None:
    """Run one round over the whole run queue (see the module's docstring)."""
    members = []
    for t in k.sched.take_all():
        if _start(k, t):
            members.append(t)
    if not members:
        return
    now, quantum = k.sched.now_ns(), k.sched.quantum
    groups = memory_groups(members)
    parked: dict[Thread, Parked] = {}
    crew = pool.crew() if len(groups) > 1 and all(len(g) == 1 for g in groups) else None
    if crew is not None:
        parked.update(zip(members, _batch(crew, members, now, quantum), strict=True))
    else:
        for group, results in zip(groups, pool.run_all(
                lambda g: _guest_code(g, now, quantum), groups), strict=True):
            parked.update(zip(group, results, strict=True))
    for t in members:
        if k.exit_status is not None:
            k.account(t, parked[t].used)
            continue
        _finish(k, t, parked[t])


def _start(k: VKernel, t: Thread) -> bool:
    """Phase 1 for t: its slice-start kernel work, then what that work deferred (the engine
    is stopped); False if t cannot run now."""
    t.load()
    k.current = t
    ok = k.prepare(t)
    deferred, k.deferred = k.deferred, []
    for fn in deferred:
        fn()
    k.current = None
    k.bury()
    return ok and t.state is ThreadState.RUNNABLE and t.alive


def _guest_code(group: list[Thread], now_ns: int, quantum: int) -> list[Parked]:
    """Phase 2 for one memory group, on any host thread: guest code only, no kernel."""
    out = []
    for t in group:
        t.load()
        eng = t.process.engine
        eng.set_clock(now_ns, NS_PER_TICK)
        stop = eng.run(eng.reg("rip"), quantum, park=True)
        used = quantum - eng.counter.remaining
        out.append(Parked(stop, used, eng.fault, eng.intno))
        now_ns += used * NS_PER_TICK  # the next one may read this one's stores: its TSC is later
    return out


def _batch(crew: _Crew, threads: list[Thread], now_ns: int, quantum: int) -> list[Parked]:
    """Phase 2 for threads of distinct memory groups, as one batch for the C crew: what
    _guest_code does for each, with every uc_emu_start run in C at once."""
    jobs = (_Job * len(threads))()
    for t, job in zip(threads, jobs, strict=True):
        t.load()
        eng = t.process.engine
        eng.set_clock(now_ns, NS_PER_TICK)
        job.uc, job.rip = eng.uch, eng.reg("rip")
        eng.begin_run(quantum, park=True)
    crew.run(jobs)
    out = []
    for t, job in zip(threads, jobs, strict=True):
        eng = t.process.engine
        stop = eng.finish_run(job.err, park=True)
        out.append(Parked(stop, quantum - eng.counter.remaining, eng.fault, eng.intno))
    return out


def _finish(k: VKernel, t: Thread, parked: Parked) -> None:
    """Phase 3 for t: count its phase-2 blocks, then end its slice as a plain slice would,
    continuing first from a parked syscall if t is still runnable."""
    k.account(t, parked.used)
    if t.state is not ThreadState.RUNNABLE or not t.alive:
        return  # stopped or killed by an earlier thread's phase 3: RIP is on its syscall
    t.load()
    k.current = t
    stop = parked.stop
    if stop is Stop.PARKED:
        stop = k.run_slice(t, k.sched.quantum - parked.used)
    else:
        t.process.engine.fault, t.process.engine.intno = parked.fault, parked.intno
    k.end_slice(t, stop)
