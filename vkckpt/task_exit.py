"""Ending threads and processes: exit(2), exit_group(2), fatal signals, zombies, wait4(2)."""

from __future__ import annotations

import struct

from vkckpt import sigsend as send
from vkckpt.abi import errno as E
from vkckpt.abi import signals as S
from vkckpt.errors import GuestError
from vkckpt.signals.pending import SigInfo
from vkckpt.task_clone import vfork_release
from vkckpt.threads.futex import futex_key
from vkckpt.threads.thread import ThreadState
from vkckpt.threads.wait import Block

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel
    from vkckpt.process import Process
    from vkckpt.threads.thread import Thread

WNOHANG, WUNTRACED, WEXITED, WCONTINUED, WNOWAIT = 1, 2, 4, 8, 0x01000000
P_ALL, P_PID, P_PGID = 0, 1, 2
WCOREFLAG = 0x80


def reap_thread(k: VKernel, t: Thread) -> None:
    """Make t dead: off every queue, its clear-child-tid futex woken (a musl lock)."""
    if not t.alive:
        return
    if t.sleep is not None:
        t.wake(0)
    k.sched.remove(t)
    t.state = ThreadState.DEAD
    if t.clear_child_tid and not t.process.exiting:
        try:
            t.process.vm.write(t.clear_child_tid, bytes(4))
            k.futexes.wake(futex_key(t.process, t.clear_child_tid), 1)
        except GuestError:
            pass
    k.threads.pop(t.tid, None)
    if t.process.engine_owner is t:
        t.process.engine_owner = None
    t.ctx = None


def exit_thread(k: VKernel, t: Thread, code: int) -> None:
    """exit(2): end one thread; the last one ends the process with its code."""
    reap_thread(k, t)
    if not t.process.live_threads:
        process_exit(k, t.process, (code & 0xFF) << 8)


def kill_group(k: VKernel, p: Process, sig: int, core: bool = False) -> None:
    """Terminate every thread of p as the default action of sig does."""
    exit_group(k, p, sig | (WCOREFLAG if core else 0))


def exit_group(k: VKernel, p: Process, status: int) -> None:
    """End all threads of p and make it a zombie with wait status `status`."""
    if p.zombie or p.exiting:
        return
    p.exiting = True
    for t in p.live_threads:
        reap_thread(k, t)
    process_exit(k, p, status)


def process_exit(k: VKernel, p: Process, status: int) -> None:
    """Release p's resources, hand its children to init, and tell its parent."""
    p.exiting = True
    p.fds.close_all()
    p.itimers.stop()
    p.ptimers.clear()
    k.retire(p.vm, p.engine)  # the engine may be inside emu_start: release it after the stop
    p.engine_owner = None
    p.zombie = True
    p.wait_status = status
    k.statuses[p.pid] = status
    init = k.procs.get(k.init_pid)
    heir = k.init_pid if init is not None and not init.zombie and p.pid != k.init_pid else 0
    for cpid in p.children:
        child = k.procs.get(cpid)
        if child is not None:
            child.ppid = heir
            if heir:
                init.children.append(cpid)
            elif child.zombie:
                del k.procs[cpid]
    if heir and any(k.procs[c].zombie for c in p.children if c in k.procs):
        init.child_wait.wake_all()
    p.children = []
    if p.pid == k.init_pid:
        k.exit_status = status
    vfork_release(k, p)
    _notify_parent(k, p)


def _notify_parent(k: VKernel, p: Process) -> None:
    parent = k.procs.get(p.ppid)
    if parent is None or parent.zombie:
        del k.procs[p.pid]  # the vkernel itself reaps its own children
        return
    act = parent.actions.get(S.SIGCHLD)
    if act.handler == S.SIG_IGN or act.flags & S.SA_NOCLDWAIT:
        parent.children.remove(p.pid)
        del k.procs[p.pid]
    elif p.exit_signal == S.SIGKILL:  # clone(2) allows it: the parent dies of the news
        kill_group(k, parent, S.SIGKILL)
        k.resched = True
    elif p.exit_signal:
        code, st = _chld_code(p.wait_status)
        send.queue_to_process(k, parent, SigInfo(p.exit_signal, code, pid=p.pid, status=st))
    parent.child_wait.wake_all()


def _chld_code(status: int) -> tuple[int, int]:
    if status & 0x7F == 0:
        return S.CLD_EXITED, status >> 8
    return (S.CLD_DUMPED if status & WCOREFLAG else S.CLD_KILLED), status & 0x7F


def _matches(k: VKernel, p: Process, child: Process, idtype: int, ident: int) -> bool:
    if idtype == P_PID:
        return child.pid == ident
    if idtype == P_PGID:
        return child.pgid == (ident or p.pgid)
    return True


def find_child(k: VKernel, t: Thread, idtype: int, ident: int, options: int
               ) -> tuple[Process, int] | None:
    """A reportable child event as (child, wait status), or None (Block / ECHILD raised)."""
    p = t.process
    kids = [k.procs[c] for c in p.children if c in k.procs]
    kids = [c for c in kids if _matches(k, p, c, idtype, ident)]
    if not kids:
        raise GuestError(E.ECHILD)
    for c in kids:
        if c.zombie and options & WEXITED:
            return c, c.wait_status
        if c.stop_report is not None:
            rep = c.stop_report
            if (rep == 0xFFFF and options & WCONTINUED) or (rep != 0xFFFF and
                                                            options & WUNTRACED):
                if not options & WNOWAIT:
                    c.stop_report = None
                return c, rep
    if options & WNOHANG:
        return None
    raise Block(p.child_wait)


def reap(k: VKernel, t: Thread, child: Process) -> None:
    """Remove a zombie child for good."""
    if child.zombie:
        t.process.children.remove(child.pid)
        del k.procs[child.pid]


def wait4(k: VKernel, t: Thread, pid: int, status_addr: int, options: int, rusage: int) -> int:
    """Implement wait4(2)."""
    if options & ~(WNOHANG | WUNTRACED | WCONTINUED | 0x40000000 | 0x80000000 | 0x20000000):
        raise GuestError(E.EINVAL)
    if pid < -1:
        idtype, ident = P_PGID, -pid
    elif pid == -1:
        idtype, ident = P_ALL, 0
    elif pid == 0:
        idtype, ident = P_PGID, 0
    else:
        idtype, ident = P_PID, pid
    found = find_child(k, t, idtype, ident, options | WEXITED)
    if found is None:
        return 0
    child, status = found
    if status_addr:
        t.process.vm.write(status_addr, struct.pack("<i", status if status <= 0x7FFFFFFF
                                                     else status - (1 << 32)))
    if rusage:
        t.process.vm.write(rusage, bytes(144))
    reap(k, t, child) if child.zombie else None
    return child.pid


def waitid(k: VKernel, t: Thread, idtype: int, ident: int, infop: int, options: int) -> int:
    """Implement waitid(2)."""
    if idtype not in (P_ALL, P_PID, P_PGID) or not options & (WEXITED | WUNTRACED | WCONTINUED):
        raise GuestError(E.EINVAL)
    found = find_child(k, t, idtype, ident, options)
    if found is None:
        if infop:
            t.process.vm.write(infop, bytes(128))
        return 0
    child, status = found
    if child.zombie:
        code, st = _chld_code(status)
    elif status == 0xFFFF:
        code, st = S.CLD_CONTINUED, S.SIGCONT
    else:
        code, st = S.CLD_STOPPED, status >> 8
    if infop:
        t.process.vm.write(infop, SigInfo(S.SIGCHLD, code, pid=child.pid, status=st).pack())
    if child.zombie and not options & WNOWAIT:
        reap(k, t, child)
    return 0
