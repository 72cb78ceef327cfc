"""A thread: CPU context on its process's engine, signal mask, pending signals, sleep state."""

from __future__ import annotations

import enum

from vkckpt.abi.syscalls import NUMBERS
from vkckpt.record import Comparable, Record
from vkckpt.signals.pending import PendingSignals
from vkckpt.threads.wait import WaitQueue

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable

    from vkckpt.process import Process

_NR_RT_SIGTIMEDWAIT = NUMBERS["rt_sigtimedwait"]


class ThreadState(enum.Enum):
    RUNNABLE = "runnable"
    BLOCKED = "blocked"
    STOPPED = "stopped"   # job control stop of the whole group
    DEAD = "dead"


class Sleep(Comparable):
    """Why a blocked thread sleeps and how its syscall resumes."""

    __slots__ = ("queue", "deadline", "timeout_result", "restartable", "nr", "args", "seq",
                 "timer")

    def __init__(self, queue: WaitQueue | None, deadline: int | None,
                 timeout_result: int | None, restartable: bool, nr: int,
                 args: tuple[int, ...], seq: int, timer: int = 0) -> None:
        self.queue = queue
        self.deadline = deadline
        self.timeout_result = timeout_result
        self.restartable = restartable
        self.nr = nr
        self.args = args
        self.seq = seq  # global order of going to sleep (keeps wake-up order across freeze/thaw)
        self.timer = timer  # sequence of its live scheduler timer (0: none)


class Thread(Record):
    """A schedulable thread of a process.

    Owned by the kernel; `ctx` holds the CPU state whenever the thread is not loaded on the
    engine (`process.engine_owner is not self`).
    """

    __slots__ = ("tid", "process", "ctx", "state", "sigmask", "pending", "altstack",
                 "clear_child_tid", "robust_list", "sleep", "wake_result", "retry", "retry_call",
                 "restart_nr", "saved_sigmask", "ticks", "exit_code", "ckpt_frames",
                 "futex_bitset", "retry_deadline", "progress", "waker")

    def __init__(self, tid: int, process: Process, ctx: object = None,
                 state: ThreadState = ThreadState.RUNNABLE, sigmask: int = 0,
                 pending: PendingSignals | None = None,
                 altstack: tuple[int, int, int] = (0, 2, 0), clear_child_tid: int = 0,
                 robust_list: tuple[int, int] = (0, 0), sleep: Sleep | None = None,
                 wake_result: int | None = None, retry: bool = False,
                 retry_call: tuple[int, tuple[int, ...]] = (0, ()),
                 restart_nr: int | None = None, saved_sigmask: int | None = None,
                 ticks: int = 0, exit_code: int = 0, ckpt_frames: list[int] | None = None,
                 futex_bitset: int = 0xFFFFFFFF, retry_deadline: int | None = None,
                 progress: int = 0, waker: Callable[[Thread], None] | None = None) -> None:
        self.tid = tid
        self.process = process
        self.ctx = ctx
        self.state = state
        self.sigmask = sigmask
        self.pending = PendingSignals() if pending is None else pending
        self.altstack = altstack  # ss_sp, ss_flags (SS_DISABLE), ss_size
        self.clear_child_tid = clear_child_tid
        self.robust_list = robust_list
        self.sleep = sleep
        self.wake_result = wake_result  # result handed over by the waker
        self.retry = retry  # re-run the sleeping syscall before user code
        self.retry_call = retry_call
        self.restart_nr = restart_nr  # SA_RESTART: re-execute this syscall after the handler
        # the caller's mask while a call waits under a temporary one (rt_sigsuspend, ppoll,
        # rt_sigtimedwait); a handler's frame or the call's end restores it
        self.saved_sigmask = saved_sigmask
        self.ticks = ticks  # blocks executed by this thread
        self.exit_code = exit_code
        self.ckpt_frames = [] if ckpt_frames is None else ckpt_frames  # live SIGCKPT frames
        self.futex_bitset = futex_bitset  # the bitset of the futex wait it sleeps in
        self.retry_deadline = retry_deadline  # a re-run wait keeps its first deadline
        # bytes the sleeping write already wrote: its re-run goes on from there (progress.py)
        self.progress = progress
        # makes a woken thread runnable again: installed by the kernel that registers the
        # thread (VKernel.add_thread), so queues wake their waiters without the kernel
        self.waker = waker

    def wake(self, result: int | None = None) -> None:
        """End this thread's sleep: with a result its syscall returns it, else the handler
        runs again.  Needs a waker once registered (a sleeping thread always is)."""
        s = self.sleep
        if s is None:
            return
        if s.queue is not None and self in s.queue.waiters:
            s.queue.waiters.remove(self)
        self.sleep = None
        self.wake_result = result
        self.retry = result is None
        self.retry_call = (s.nr, s.args)
        self.retry_deadline = s.deadline if self.retry else None
        if self.state is ThreadState.BLOCKED:
            self.waker(self)

    def deliverable(self) -> int:
        """Signals pending for this thread or its process that its mask lets through."""
        return (self.pending.mask | self.process.pending.mask) & ~self.sigmask

    def in_sigtimedwait(self) -> bool:
        """Asleep in rt_sigtimedwait(2), with the waited signals unblocked for the wait."""
        return self.sleep is not None and self.sleep.nr == _NR_RT_SIGTIMEDWAIT

    def blocks(self, bit: int) -> bool:
        """The thread blocks the signals of bit, counting those rt_sigtimedwait unblocked for
        its wait (Linux's real_blocked): such a signal is queued even if it is ignored."""
        return bool(self.sigmask & bit) or (self.in_sigtimedwait()
                                            and bool((self.saved_sigmask or 0) & bit))

    def end_temporary_mask(self) -> None:
        """A call that waited with a temporary signal mask (ppoll) ends: the caller's is back."""
        if self.saved_sigmask is not None:
            self.sigmask, self.saved_sigmask = self.saved_sigmask, None

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
