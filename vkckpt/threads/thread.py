"""A thread: CPU context on its process's engine, signal mask, pending signals, sleep state."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vkckpt.signals.pending import PendingSignals
from vkckpt.threads.wait import WaitQueue

if TYPE_CHECKING:
    from vkckpt.process import Process


class ThreadState(enum.Enum):
    RUNNABLE = "runnable"
    BLOCKED = "blocked"
    STOPPED = "stopped"   # job control stop of the whole group
    DEAD = "dead"


@dataclass
class Sleep:
    """Why a blocked thread sleeps and how its syscall resumes."""

    queue: WaitQueue | None
    deadline: int | None
    timeout_result: int
    restartable: bool
    nr: int
    args: tuple[int, ...]
    seq: int  # global order of going to sleep (keeps wake-up order across freeze/thaw)
    timer: int = 0  # sequence of its live scheduler timer (0: none)


@dataclass(eq=False)
class Thread:
    """A schedulable thread of a process.

    Owned by the kernel; `ctx` holds the CPU state whenever the thread is not loaded on the
    engine (`process.engine_owner is not self`).
    """

    tid: int
    process: Process
    ctx: object = None
    state: ThreadState = ThreadState.RUNNABLE
    sigmask: int = 0
    pending: PendingSignals = field(default_factory=PendingSignals)
    altstack: tuple[int, int, int] = (0, 2, 0)  # ss_sp, ss_flags (SS_DISABLE), ss_size
    clear_child_tid: int = 0
    robust_list: tuple[int, int] = (0, 0)
    sleep: Sleep | None = None
    wake_result: int | None = None  # result handed over by the waker
    retry: bool = False              # re-run the sleeping syscall before user code
    retry_call: tuple[int, tuple[int, ...]] = (0, ())
    restart_nr: int | None = None    # SA_RESTART: re-execute this syscall after the handler
    saved_sigmask: int | None = None  # rt_sigsuspend's mask to restore after the handler
    ticks: int = 0                   # blocks executed by this thread
    exit_code: int = 0
    ckpt_frames: list[int] = field(default_factory=list)  # live SIGCKPT handler frames
    futex_bitset: int = 0xFFFFFFFF   # the bitset of the futex wait it sleeps in

    def deliverable(self) -> int:
        """Signals pending for this thread or its process that its mask lets through."""
        return (self.pending.mask | self.process.pending.mask) & ~self.sigmask

    def load(self) -> None:
        """Make this thread's registers the ones in its process's engine."""
        p = self.process
        owner = p.engine_owner
        if owner is self:
            return
        if owner is not None and owner.alive and owner.ctx is not None:
            p.engine.context_save(owner.ctx)
        p.engine.context_load(self.ctx)
        p.engine_owner = self

    @property
    def alive(self) -> bool:
        return self.state is not ThreadState.DEAD

    def __repr__(self) -> str:
        return f"<Thread {self.tid} of pid {self.process.pid} {self.state.value}>"
