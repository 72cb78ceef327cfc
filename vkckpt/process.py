"""A process (thread group): its vmspace and engine, threads, files, signal actions, exit state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vkckpt.fs.fdtable import FdTable
from vkckpt.signals.actions import SignalActions
from vkckpt.signals.pending import PendingSignals
from vkckpt.threads.wait import WaitQueue

if TYPE_CHECKING:
    from vkckpt.engine.engine import Engine
    from vkckpt.threads.thread import Thread
    from vkckpt.vmspace.vmspace import VmSpace


@dataclass(eq=False)
class Process:
    """A guest process.

    `threads` holds live threads in creation order; the thread group leader's tid is `pid`.
    `engine_owner` is the thread whose registers are currently loaded in `engine`.
    After exit the process is a zombie until its parent reaps it (`wait_status` set).
    """

    pid: int
    ppid: int
    vm: VmSpace
    engine: Engine
    fds: FdTable
    actions: SignalActions
    cwd: str = "/"
    exe: str = ""
    argv: list[bytes] = field(default_factory=list)
    pgid: int = 0
    sid: int = 0
    umask: int = 0o022
    threads: list[Thread] = field(default_factory=list)
    engine_owner: Thread | None = None
    pending: PendingSignals = field(default_factory=PendingSignals)  # process-wide
    children: list[int] = field(default_factory=list)
    child_wait: WaitQueue = field(init=False)
    vfork_done: WaitQueue = field(init=False)
    exiting: bool = False        # exit_group or a fatal signal is tearing the group down
    zombie: bool = False
    wait_status: int = 0         # the wait4 status word once a zombie
    exit_signal: int = 17        # signal sent to the parent at exit (SIGCHLD)
    stopped: bool = False
    stop_report: int | None = None  # pending WUNTRACED/WCONTINUED report for the parent
    ticks: int = 0               # blocks executed by all its threads, including dead ones
    vfork_parent: int = 0        # tid sleeping in vfork/CLONE_VFORK until we exec or exit

    def __post_init__(self) -> None:
        self.child_wait = WaitQueue(("child", self.pid))
        self.vfork_done = WaitQueue(("vfork", self.pid))

    @property
    def live_threads(self) -> list[Thread]:
        return [t for t in self.threads if t.alive]

    def __repr__(self) -> str:
        return f"<Process {self.pid} {self.exe!r}{' zombie' if self.zombie else ''}>"
