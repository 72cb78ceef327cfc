"""Queueing signals: pending sets, picking the thread that takes one, interrupting its sleep,
stopping and continuing a group.  Kernel coordination (it reads the running thread, the
scheduler and the process table), so it sits in the kernel layer beside task_signals; nothing
here ends a process: SIGKILL and fatal default actions are task_signals'."""

from __future__ import annotations

from vkckpt.abi import errno as E
from vkckpt.abi import signals as S
from vkckpt.abi.syscalls import SYS_CHECKPOINT
from vkckpt.signals.pending import SigInfo
from vkckpt.signals.posix_timers import DELAYTIMER_MAX
from vkckpt.threads.thread import ThreadState

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel
    from vkckpt.process import Process
    from vkckpt.signals.posix_timers import PosixTimer
    from vkckpt.threads.thread import Thread


def kernel_info(sig: int, code: int = S.SI_KERNEL, addr: int = 0) -> SigInfo:
    return SigInfo(sig, code, addr=addr)


# -- queueing ----------------------------------------------------------------------------------
def queue_to_process(k: VKernel, p: Process, info: SigInfo) -> None:
    """Queue info on the thread group and wake a thread that can take it.  Precondition:
    info is not SIGKILL (whose default action ends the group: task_signals.send_to_process)."""
    if p.zombie or p.exiting:
        return
    sig = info.signo
    if sig == S.SIGCONT:
        continue_group(k, p)
    if p.actions.ignored(sig) and not _blocked_everywhere(p, sig):
        return
    if p.pending.add(info):
        _notify(k, p, sig)
        k.sigfds.signalled(k.poll_q)


def queue_to_thread(k: VKernel, t: Thread, info: SigInfo) -> None:
    """Queue info on one thread (tgkill(2), faults, SIGPIPE).  Precondition: not SIGKILL."""
    p = t.process
    if p.zombie or p.exiting or not t.alive:
        return
    if p.actions.ignored(info.signo) and not t.blocks(S.sigbit(info.signo)):
        return
    if t.pending.add(info):
        interrupt(k, t, info.signo)
        k.sigfds.signalled(k.poll_q)


def bind_timers(k: VKernel, p: Process) -> None:
    """Give p's interval and POSIX timers this kernel's clock and signal queueing (a process
    registered: new, forked or thawed)."""
    p.itimers.bind(lambda sig: queue_to_process(k, p, kernel_info(sig)), k.sched.arm,
                   k.now_ns)
    p.ptimers.bind(lambda tm, missed: timer_signal(k, p, tm, missed), k.sched.arm, k.now_ns)


def timer_signal(k: VKernel, p: Process, tm: PosixTimer, missed: int) -> int:
    """Queue POSIX timer tm's signal to p (or its SIGEV_THREAD_ID thread), or add to the
    overrun of the one it queued that is still pending (Linux's send_sigqueue: one
    sigqueue per timer); `missed` periods passed unseen.  Returns that signal's overrun."""
    t = None
    if tm.notify & S.SIGEV_THREAD_ID:
        t = k.threads.get(tm.target)
        if t is None or not t.alive or t.process is not p:
            return 0
    pending = p.pending if t is None else t.pending
    for info in pending.queue:
        if info.code == S.SI_TIMER and info.pid == tm.tid and info.signo == tm.signo:
            info.uid = min(DELAYTIMER_MAX, info.uid + missed + 1)
            return info.uid
    info = SigInfo(tm.signo, S.SI_TIMER, pid=tm.tid, uid=min(DELAYTIMER_MAX, missed),
                   value=tm.value)  # si_timerid and si_overrun sit where pid and uid do
    if t is None:
        queue_to_process(k, p, info)
    else:
        queue_to_thread(k, t, info)
    return info.uid


def _blocked_everywhere(p: Process, sig: int) -> bool:
    return all(t.blocks(S.sigbit(sig)) for t in p.live_threads)


def _notify(k: VKernel, p: Process, sig: int) -> None:
    """Pick the thread that will take a process-directed signal and interrupt its sleep."""
    bit = S.sigbit(sig)
    cur = k.current
    if cur is not None and cur.process is p and not cur.sigmask & bit:
        return
    for t in p.live_threads:
        if not t.sigmask & bit:
            interrupt(k, t, sig)
            return


def interrupt(k: VKernel, t: Thread, sig: int) -> None:
    """A deliverable signal arrived for sleeping t: end its syscall with EINTR or restart."""
    if t.sigmask & S.sigbit(sig) or t.sleep is None or t.sleep.nr == SYS_CHECKPOINT:
        return  # checkpoint(2) callers wait for their image without interruption
    if t.in_sigtimedwait():
        t.wake()  # the call runs again: it takes a waited signal or ends with EINTR
        return
    act = t.process.actions.get(sig)
    if act.handler == S.SIG_DFL and S.default_action(sig) in (S.IGNORE, S.STOP, S.CONT):
        return
    s = t.sleep
    if act.handler != S.SIG_DFL and s.queue is not None and s.queue.key[0] == "vfork":
        return  # vfork waits killably: the handler runs once the child exec'ed or exited
    if t.progress:  # a write that sent some: it returns their count (progress.py)
        done, t.progress = t.progress, 0
        t.wake(done)
        return
    if s.restartable and act.flags & S.SA_RESTART and act.handler not in (S.SIG_DFL,):
        t.wake(0)
        t.wake_result = None
        t.restart_nr = s.nr
    else:
        report = k.on_eintr.get(s.nr)
        t.wake(report(k, t, s) if report else -E.EINTR)


def continue_group(k: VKernel, p: Process) -> None:
    for sig in (S.SIGSTOP, S.SIGTSTP, S.SIGTTIN, S.SIGTTOU):
        p.pending.discard(sig)
    if p.stopped:
        p.stopped = False
        p.stop_report = 0xFFFF
        for t in p.live_threads:
            if t.state is ThreadState.STOPPED:
                t.state = ThreadState.BLOCKED if t.sleep else ThreadState.RUNNABLE
                if t.state is ThreadState.RUNNABLE:
                    k.sched.enqueue(t)
        notify_parent_stop(k, p, S.CLD_CONTINUED, S.SIGCONT)


def stop_group(k: VKernel, p: Process, sig: int) -> None:
    p.pending.discard(S.SIGCONT)
    p.stopped = True
    p.stop_report = (sig << 8) | 0x7F
    for t in p.live_threads:
        if t.state is ThreadState.RUNNABLE:
            k.sched.remove(t)
        t.state = ThreadState.STOPPED
    notify_parent_stop(k, p, S.CLD_STOPPED, sig)


def notify_parent_stop(k: VKernel, p: Process, code: int, sig: int) -> None:
    """Job control: tell the parent that p stopped or continued (SIGCHLD, its wait queue)."""
    parent = k.procs.get(p.ppid)
    if parent is None or parent.zombie:
        return
    act = parent.actions.get(S.SIGCHLD)
    if not act.flags & S.SA_NOCLDSTOP:
        queue_to_process(k, parent, SigInfo(S.SIGCHLD, code, pid=p.pid, status=sig))
    parent.child_wait.wake_all()
