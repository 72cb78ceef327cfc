"""A process (thread group): its vmspace and engine, threads, files, signal actions, exit state."""

from __future__ import annotations

from vkckpt.fs.fdtable import FdTable
from vkckpt.record import Record
from vkckpt.rlimits import RLimits
from vkckpt.signals.actions import SignalActions
from vkckpt.signals.itimers import ITimers
from vkckpt.signals.pending import PendingSignals
from vkckpt.signals.posix_timers import PosixTimers
from vkckpt.threads.wait import WaitQueue

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vkckpt.engine.engine import Engine
    from vkckpt.threads.thread import Thread
    from vkckpt.vmspace.vmspace import VmSpace


class Process(Record):
    """A guest process.

    `threads` holds live threads in creation order; the thread group leader's tid is `pid`.
    `engine_owner` is the thread whose registers are currently loaded in `engine`.
    After exit the process is a zombie until its parent reaps it (`wait_status` set).
    """

    __slots__ = ("pid", "ppid", "vm", "engine", "fds", "actions", "cwd", "exe", "argv", "pgid",
                 "sid", "umask", "threads", "engine_owner", "pending", "children", "child_wait",
                 "vfork_done", "exiting", "zombie", "wait_status", "exit_signal", "stopped",
                 "stop_report", "ticks", "vfork_parent", "root", "ioprio", "comm", "itimers",
                 "ptimers", "rlimits")

    def __init__(self, pid: int, ppid: int, vm: VmSpace, engine: Engine, fds: FdTable,
                 actions: SignalActions, cwd: str = "/", exe: str = "",
                 argv: list[bytes] | None = None, pgid: int = 0, sid: int = 0,
                 umask: int = 0o022, threads: list[Thread] | None = None,
                 engine_owner: Thread | None = None, pending: PendingSignals | None = None,
                 children: list[int] | None = None, exiting: bool = False, zombie: bool = False,
                 wait_status: int = 0, exit_signal: int = 17, stopped: bool = False,
                 stop_report: int | None = None, ticks: int = 0, vfork_parent: int = 0,
                 root: str = "/", ioprio: int = 0, comm: bytes = b"",
                 itimers: ITimers | None = None, ptimers: PosixTimers | None = None,
                 rlimits: RLimits | None = None) -> None:
        self.pid = pid
        self.ppid = ppid
        self.vm = vm
        self.engine = engine
        self.fds = fds
        self.actions = actions
        self.cwd = cwd
        self.exe = exe
        self.argv = [] if argv is None else argv
        self.pgid = pgid
        self.sid = sid
        self.umask = umask
        self.threads = [] if threads is None else threads
        self.engine_owner = engine_owner
        self.pending = PendingSignals() if pending is None else pending  # process-wide
        self.children = [] if children is None else children
        self.child_wait = WaitQueue(("child", pid))
        self.vfork_done = WaitQueue(("vfork", pid))
        self.exiting = exiting  # exit_group or a fatal signal is tearing the group down
        self.zombie = zombie
        self.wait_status = wait_status  # the wait4 status word once a zombie
        self.exit_signal = exit_signal  # signal sent to the parent at exit (SIGCHLD)
        self.stopped = stopped
        self.stop_report = stop_report  # pending WUNTRACED/WCONTINUED report for the parent
        self.ticks = ticks  # blocks executed by all its threads, including dead ones
        self.vfork_parent = vfork_parent  # tid sleeping in vfork/CLONE_VFORK until we exec or exit
        self.root = root  # chroot(2): the guest directory its paths start from
        self.ioprio = ioprio  # ioprio_set(2)'s value; 0: none set (IOPRIO_CLASS_NONE)
        self.comm = comm  # the name prctl(PR_SET_NAME) gave (b"": the one exec gave)
        self.itimers = ITimers() if itimers is None else itimers  # setitimer's; not inherited
        self.ptimers = PosixTimers() if ptimers is None else ptimers  # timer_create's
        self.rlimits = RLimits() if rlimits is None else rlimits  # kept across execve

    @property
    def live_threads(self) -> list[Thread]:
        return [t for t in self.threads if t.alive]

    def __repr__(self) -> str:
        return f"<Process {self.pid} {self.exe!r}{' zombie' if self.zombie else ''}>"
