"""The vkernel: owns processes and threads, runs the scheduler loop, enters system calls.

Rules live with the objects that own them (vmspace, signals, files, lifecycle modules); this
module coordinates.  All guest-visible behaviour is a function of the configuration and the
block counts, so two runs of the same vkernel are identical.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from vkckpt import hostout, rounds, task_signals
from vkckpt import sigsend as send
from vkckpt.abi import errno as E
from vkckpt.abi.syscalls import NAMES as SYSCALL_NAMES
from vkckpt.config import KernelConfig
from vkckpt.engine import cpumodel
from vkckpt.engine.engine import Stop
from vkckpt.errors import GuestError
from vkckpt.fs.inodes import InodeTable
from vkckpt.fs.locks import LockTable
from vkckpt.fs.ops import FileServices
from vkckpt.fs.procfs import ProcView
from vkckpt.fs.publish import Publisher
from vkckpt.fs.sandbox import GuestRoot
from vkckpt.fs.signalfd import SignalFdHub
from vkckpt.fs.unix_ns import UnixNamespace
from vkckpt.host.fds import HostFds
from vkckpt.ids import Ids, sha256, vkernel_id
from vkckpt.kernel_idle import idle
from vkckpt.kernel_trace import trace_line
from vkckpt.sched import NS_PER_TICK, Scheduler
from vkckpt.threads.futex import FutexTable
from vkckpt.threads.thread import Sleep, Thread, ThreadState
from vkckpt.threads.wait import Block, WaitQueue
from vkckpt.vmspace.account import MemAccount

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.engine.engine import Engine
    from vkckpt.process import Process
    from vkckpt.syscalls.table import Entry
    from vkckpt.vmspace.vmspace import VmSpace

NORETURN = object()  # a handler's result when it set the registers itself (or never returns)
#: Engine region work a time slice may do before it ends early (VmSpace._map: 1 + n**2 / 65536
#: per region added among n, so at most ~0.15 s however many regions there are): requests are
#: served between slices only.
REGION_WORK_PER_SLICE = 256


class VKernel:
    """A virtual kernel hosting guest processes on Unicorn engines."""

    def __init__(self, config: KernelConfig, table: dict[int, Entry],
                 on_eintr: dict[int, Callable[..., int]]) -> None:
        """A vkernel running nothing yet; table and on_eintr are syscalls/table.py's (passed
        in by runner.boot and the thaw: the kernel sits below the syscall handlers)."""
        self.config = config
        self.mem = MemAccount(config.memory_limit)  # every vmspace, pipe and console buffer
        self.host_fds = HostFds()  # host descriptors guest files may hold
        self.table = table
        self.on_eintr = on_eintr
        self.root = GuestRoot(config.root, overlay=config.fs == "overlay")
        self.inodes = InodeTable(self.now_ns)
        if self.root.overlay is not None:
            self.root.overlay.copied = self.inodes_copied
            # an upper directory is recreated at thaw: a host size that grew with entries
            # since removed (ext4's) would differ, so every directory says 4096
            self.inodes.dir_size = 4096
            self.inodes.on_touch = self.root.overlay.wrote
        self.unix = UnixNamespace(self.root, self.inodes)  # AF_UNIX names (fs/unix_ns.py)
        self.inet = self.unix.inet  # loopback TCP and UDP ports (fs/inet_ns.py)
        self.publish = Publisher(config.publish)  # host ports forwarded in (fs/publish.py)
        self.sched = Scheduler(config.quantum)
        self.futexes = FutexTable()
        self.locks = LockTable()  # file locks of every process (fcntl, flock)
        self.poll_q = WaitQueue(("poll",))  # readiness events: pipes notify it, polls sleep on it
        self.sigfds = SignalFdHub()  # live signalfds: queued signals wake their readers
        self.procs: dict[int, Process] = {}
        self.threads: dict[int, Thread] = {}
        self.ids = Ids()  # pids/tids, pipe ids, host-buffer ids
        self.init_pid = 1  # the run ends when this process exits (PID-namespace semantics)
        self.sleep_seq = 0
        self.current: Thread | None = None
        self.resched = False
        self.deferred: list[Callable[[], None]] = []
        self.reported_enosys: set[int] = set()
        self.rng_counter = 0
        self.exec_env: dict[bytes, bytes] = {}  # set in every later execve's env (fanout)
        self.exit_status: int | None = None  # pid 1's wait status once it exits
        self.statuses: dict[int, int] = {}   # every process's wait status, by pid
        self.out = hostout.HostOut()  # console output to host descriptors, never blocking
        self.mem.force(hostout.COST)
        self.slice_out = 0  # console bytes written in the running time slice
        self.stdout: Callable[[bytes], None] = config.stdout or self._host_writer(1)
        self.stderr: Callable[[bytes], None] = config.stderr or self._host_writer(2)
        self.log: Callable[[str], None] = config.log or self._host_log
        self._run_budget = 0
        self.graveyard: list[tuple[VmSpace, Engine]] = []
        self.host_request: object | None = None  # a guest's request for the host (post_request)
        self.vkernel_id = vkernel_id(config)
        self.cpu_pool = rounds.CpuPool(config.cpus)  # host threads for rounds' guest code
        self.always_round = False  # tests: every step a round, even of one memory group

    # -- requests a guest makes of the host (checkpoint(2)) ------------------------------------
    def post_request(self, req: object) -> bool:
        """Ask the host for a service run() stops for; False while another one waits."""
        if self.host_request is not None:
            return False
        self.host_request = req
        return True

    def take_request(self) -> object | None:
        """The waiting request, now the caller's to serve (None if there is none)."""
        req, self.host_request = self.host_request, None
        return req

    def host_path_of(self, guest: str) -> str | None:
        """Host path of a guest path in the root (not following a final symlink), or None."""
        try:
            return self.root.resolve(guest, "/", follow=False).host
        except GuestError:
            return None

    # -- time and randomness -----------------------------------------------------------------
    def inodes_copied(self, old: os.stat_result, new: os.stat_result) -> None:
        """An overlay copied a lower file up: its virtual inode (number, time, metadata)
        is the upper copy's too, as overlayfs keeps st_ino across copy-up."""
        ent = self.inodes.entries.get((old.st_dev, old.st_ino))
        if ent is not None:
            self.inodes.entries[(new.st_dev, new.st_ino)] = ent

    def now_ns(self) -> int:
        """Virtual monotonic time, including the blocks of the run in progress."""
        running = 0
        if self.current is not None and self._run_budget:
            running = self._run_budget - self.current.process.engine.counter.remaining
        return self.sched.now_ns(running)

    def random_bytes(self, n: int) -> bytes:
        """The vkernel's deterministic random stream (AT_RANDOM, getrandom, /dev/urandom)."""
        out = bytearray()
        while len(out) < n:
            self.rng_counter += 1
            out += sha256(b"%d:%d" % (self.config.seed, self.rng_counter)).digest()
        return bytes(out[:n])

    def file_services(self) -> FileServices:
        """What open files may use of this kernel (handed to them when they are made)."""
        return FileServices(self.console_read, self.console_write, self.random_bytes,
                            self.host_fds, self.poll_q, self.now_ns, self.sched.arm,
                            self._current, self.sigfds)

    def _current(self) -> Thread | None:
        """The thread in a system call (what a signalfd reads for)."""
        return self.current

    def proc_view(self) -> ProcView:
        """What /proc may read of this kernel (fs/procfs.py)."""
        return ProcView(self.procs, self.now_ns, lambda: self.sched.idle_ns,
                        lambda: self.ids.next_pid - 1, self.config.memory_limit,
                        cpumodel.cpuid, cpumodel.FEATURES, self.random_bytes,
                        [(m.guest, m.ro) for m in self.root.mounts], self.inodes.known)

    # -- console -----------------------------------------------------------------------------
    def console_write(self, stream: int, data: bytes) -> None:
        """A guest write to the console: always whole; a slice that wrote SLICE_OUT bytes
        ends after this call, so the console queue stays bounded (hostout.py)."""
        (self.stderr if stream == 2 else self.stdout)(data)
        self.slice_out += len(data)
        if self.slice_out >= hostout.SLICE_OUT:
            self.resched = True

    def _host_writer(self, fd: int) -> Callable[[bytes], None]:
        return lambda data: self.out.write(fd, data)

    def _host_log(self, line: str) -> None:
        sys.stderr.flush()
        self.out.write(2, (line + "\n").encode(errors="replace"))

    def console_read(self, n: int) -> bytes:
        if self.config.stdin is not None:
            data, self.config.stdin = self.config.stdin[:n], self.config.stdin[n:]
            return data
        try:
            return os.read(0, n)
        except OSError:
            return b""

    # -- sleeping and waking -----------------------------------------------------------------
    def sleep(self, t: Thread, req: Block, nr: int, args: tuple[int, ...]) -> None:
        """Put t to sleep as a handler asked; it leaves the run queue."""
        self.sleep_seq += 1
        t.sleep = Sleep(req.queue, req.deadline, req.timeout_result, req.restartable, nr,
                        args, self.sleep_seq)
        t.state = ThreadState.BLOCKED
        t.wake_result = None
        t.retry = False
        if req.queue is not None:
            req.queue.waiters.append(t)
        if req.deadline is not None:
            self.sched.add_timer(req.deadline, t)
        self.sched.remove(t)
        ready = t.deliverable()
        if ready:  # a signal already deliverable interrupts the sleep at once
            send.interrupt(self, t, (ready & -ready).bit_length())

    def add_process(self, p: Process) -> None:
        """Register p under its pid (a new process, or one thawed); closing its descriptors
        releases its file locks, and its interval timers send their signals to it and arm on
        this kernel's clock."""
        self.procs[p.pid] = p
        pid, locks = p.pid, self.locks
        p.fds.on_close = lambda f, last: locks.closed(pid, f, last)
        send.bind_timers(self, p)

    def add_thread(self, t: Thread) -> None:
        """Register t under its tid; its waker makes it runnable here when a queue wakes it."""
        self.threads[t.tid] = t
        t.waker = self._runnable

    def _runnable(self, t: Thread) -> None:
        """A woken thread rejoins this kernel's run queue (every Thread.waker)."""
        self.sched.enqueue(t)

    # -- system call entry -------------------------------------------------------------------
    def syscall_entry(self, nr: int, args: tuple[int, ...]) -> tuple[int | None, bool]:
        """Engine callback at a syscall instruction (engine/sysentry.py): (the value for RAX,
        or None when the handler set the registers or the thread sleeps; whether to stop)."""
        t = self.current
        ret = self.dispatch(t, nr, args)
        if ret is NORETURN or ret is None:
            return None, True
        if t.process.vm.region_work >= REGION_WORK_PER_SLICE:
            self.resched = True  # a guest-determined point: the schedule stays repeatable
        return ret, self.resched or bool(t.deliverable())

    def dispatch(self, t: Thread, nr: int, args: tuple[int, ...]) -> object:
        """Run handler nr for t; returns its result, NORETURN, or None when t went to sleep."""
        entry = self.table.get(nr)
        if entry is None:
            if nr not in self.reported_enosys:
                self.reported_enosys.add(nr)
                self.log(f"vkckpt: unimplemented syscall {SYSCALL_NAMES.get(nr, nr)} ({nr}) "
                         f"in pid {t.process.pid}: ENOSYS")
            ret: object = -E.ENOSYS
        else:
            try:
                ret = entry.handler(self, t, *args[: entry.nargs])
            except GuestError as exc:
                ret = -exc.errno
            except Block as req:
                self.sleep(t, req, nr, args)
                ret = None
        if self.config.trace_syscalls:
            self.log(trace_line(t, nr, args, entry, "?" if ret is NORETURN else ret))
        return ret

    # -- the run loop ------------------------------------------------------------------------
    def run(self, until_ticks: int | None = None,
            on_schedule_point: Callable[[VKernel], bool] | None = None) -> int | None:
        """Schedule threads until init exits (returns its wait status), or return None at the
        first scheduling point where ticks >= until_ticks, a guest asked for a checkpoint, or
        the hook returns True.  on_schedule_point(k) is called at every scheduling point the
        loop passes short of those (where a freeze may land).  Stopping never shortens a time
        slice, so the schedule is the same as in a run that never stopped.

        Between two scheduling points runs one step: a parallel round over the whole run
        queue when it holds threads of two memory groups or more (rounds.py), else one
        time slice of the queue's head."""
        while self.exit_status is None:
            if until_ticks is not None and self.sched.ticks >= until_ticks:
                return None
            if self.host_request is not None:
                return None
            if on_schedule_point is not None and on_schedule_point(self):
                return None
            if self.out.backlogged():  # the host reads slowly: guests wait, requests do not
                self.out.wait(hostout.BACKLOG, 0.05)
                continue
            if self.publish.active:  # the outside world, at scheduling points only
                self.publish.pump(self.unix, self.poll_q, self.mem)
            self.sched.fire_events()
            for t in self.sched.expired():
                t.wake(t.sleep.timeout_result)
            if rounds.wants_round(self.sched.runq) or self.always_round and self.sched.runq:
                rounds.run_round(self, self.cpu_pool)
                continue
            t = self.sched.next()
            if t is None:
                idle(self)  # the clock jumps, the host wakes us, or Deadlock
                continue
            self._run_thread(t)
        self.out.wait(0, None)  # the run's output is out before its status is reported
        self.publish.drain()  # what guests wrote to host connections (none: no wait)
        return self.exit_status

    def _run_thread(self, t: Thread) -> None:
        """One time slice of t: its slice-start work, then guest code for a quantum."""
        t.load()
        self.current = t
        if not self.prepare(t):
            self.current = None
            return
        self.end_slice(t, self.run_slice(t, self.sched.quantum))

    def run_slice(self, t: Thread, budget: int) -> Stop:
        """Run current thread t (loaded) for up to budget blocks, system calls inline, and
        count the blocks it ran."""
        p = t.process
        eng = p.engine
        self._run_budget = budget
        self.resched = False
        eng.set_clock(self.sched.now_ns(), NS_PER_TICK)
        self.slice_out = 0
        p.vm.region_work = 0
        stop = eng.run(eng.reg("rip"), budget)
        self._run_budget = 0
        self.account(t, budget - eng.counter.remaining)
        return stop

    def account(self, t: Thread, used: int) -> None:
        """Add t's `used` blocks to the clock, to t and to its process."""
        self.sched.ticks += used
        t.ticks += used
        t.process.ticks += used
        if t.process.itimers.cpu_armed:
            t.process.itimers.charge(used * NS_PER_TICK)

    def end_slice(self, t: Thread, stop: Stop) -> None:
        """End current thread t's slice, which stopped for `stop`: deferred work, a CPU
        exception, freeing retired engines, and back to the run queue if still runnable."""
        deferred, self.deferred = self.deferred, []
        for fn in deferred:
            fn()
        if stop in (Stop.FAULT, Stop.INTERRUPT, Stop.ILLEGAL) and t.alive:
            task_signals.cpu_exception(self, t, stop)
        self.current = None
        self.bury()
        if t.state is ThreadState.RUNNABLE and t.alive:
            self.sched.enqueue(t)

    def prepare(self, t: Thread) -> bool:
        """Finish t's interrupted syscall and deliver signals; False if t cannot run now."""
        eng = t.process.engine
        if t.retry:
            t.retry = False
            s_nr, s_args = t.retry_call
            self.current = t
            ret = self.dispatch(t, s_nr, s_args)
            t.retry_deadline = None  # a sleep it went back to holds the deadline again
            if ret is None:
                return False
            if ret is not NORETURN:
                eng.set_reg("rax", ret)
        elif t.restart_nr is not None:
            eng.set_reg("rip", eng.reg("rip") - 2)  # back onto the syscall instruction
            eng.set_reg("rax", t.restart_nr)
            t.restart_nr = None
        elif t.wake_result is not None:
            eng.set_reg("rax", t.wake_result)
            if t.wake_result != -E.EINTR:
                t.end_temporary_mask()  # a timeout: signals wait under the caller's mask
            t.wake_result = None
        task_signals.deliver_pending(self, t)
        if t.sleep is None:
            t.end_temporary_mask()  # EINTR for a signal that ran no handler
        return t.state is ThreadState.RUNNABLE and t.alive

    # -- defer work until the engine has stopped ---------------------------------------------
    def retire(self, vm: VmSpace, engine: Engine) -> None:
        """Free an address space and its engine once no engine is running."""
        self.graveyard.append((vm, engine))
        if self.current is None:
            self.bury()

    def bury(self) -> None:
        """Free the retired address spaces and engines (no engine is running)."""
        for vm, engine in self.graveyard:
            vm.release()
            engine.close()
        self.graveyard = []

    def shutdown(self) -> None:
        """Release every engine and host buffer (the vkernel is not run again)."""
        for p in self.procs.values():
            if not p.zombie and p.vm is not None:
                self.graveyard.append((p.vm, p.engine))
                p.zombie = True
        self.bury()
        self.cpu_pool.close()
        self.publish.close()
        if self.root.overlay is not None:  # its private layers go with it
            self.root.overlay.close()

    def defer(self, fn: Callable[[], None]) -> object:
        """Run fn once the current engine stops; the caller returns NORETURN."""
        self.deferred.append(fn)
        self.resched = True
        return NORETURN

