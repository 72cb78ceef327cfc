"""fork(2), vfork(2) and clone(2): new processes and new threads."""

from __future__ import annotations

from vkckpt.abi import errno as E
from vkckpt.abi import signals as S
from vkckpt.engine import regs as R
from vkckpt.engine.engine import Engine
from vkckpt.errors import GuestError
from vkckpt.process import Process
from vkckpt.threads.thread import Thread
from vkckpt.threads.wait import Block

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel

CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND = 0x100, 0x200, 0x400, 0x800
CLONE_PIDFD, CLONE_PTRACE, CLONE_VFORK, CLONE_PARENT = 0x1000, 0x2000, 0x4000, 0x8000
CLONE_THREAD, CLONE_NEWNS, CLONE_SYSVSEM, CLONE_SETTLS = 0x10000, 0x20000, 0x40000, 0x80000
CLONE_PARENT_SETTID, CLONE_CHILD_CLEARTID, CLONE_DETACHED = 0x100000, 0x200000, 0x400000
CLONE_UNTRACED, CLONE_CHILD_SETTID = 0x800000, 0x1000000
CLONE_NEW_ANY = 0x7E020000 & ~CLONE_SETTLS & ~CLONE_SYSVSEM  # namespaces: refused
MAX_THREADS = 4096


def fork(k: VKernel, t: Thread, flags: int = S.SIGCHLD, child_tid: int = 0) -> int:
    """Copy t's process (called inside the syscall hook); returns the child's pid."""
    p = t.process
    if len(k.procs) >= k.config.max_processes:
        raise GuestError(E.EAGAIN, "process limit")
    state = p.engine.get_state()
    state["rip"] += 2
    state["rax"] = 0
    eng = Engine(k.syscall_entry, preempt=k.config.preempt)
    try:
        vm = p.vm.fork(eng)
    except BaseException:
        eng.close()
        raise
    pid = k.ids.pid()
    child = Process(pid, p.pid, vm, eng, p.fds.copy(), p.actions.copy(), cwd=p.cwd, exe=p.exe,
                    argv=list(p.argv), pgid=p.pgid, sid=p.sid, umask=p.umask,
                    exit_signal=flags & 0xFF, root=p.root, ioprio=p.ioprio, comm=p.comm,
                    rlimits=p.rlimits.copy())
    ct = Thread(pid, child, sigmask=t.sigmask, altstack=t.altstack)
    eng.set_state(state)
    if flags & CLONE_CHILD_SETTID:
        vm.write(child_tid, pid.to_bytes(4, "little"))
    if flags & CLONE_CHILD_CLEARTID:
        ct.clear_child_tid = child_tid
    ct.ctx = eng.context_new()
    child.engine_owner = ct
    child.threads.append(ct)
    p.children.append(pid)
    k.add_process(child)
    k.add_thread(ct)
    k.sched.enqueue(ct)
    return pid


def clone(k: VKernel, t: Thread, flags: int, stack: int, ptid: int, ctid: int, tls: int) -> int:
    """Implement clone(2): a thread (CLONE_THREAD|CLONE_VM|CLONE_SIGHAND) or a fork."""
    if flags & CLONE_NEW_ANY:
        raise GuestError(E.EINVAL, "namespaces are not supported")
    if flags & CLONE_VM and flags & CLONE_THREAD:
        need = CLONE_THREAD | CLONE_SIGHAND
        if flags & need != need:
            raise GuestError(E.EINVAL)
        return new_thread(k, t, flags, stack, ptid, ctid, tls)
    if flags & CLONE_VM and not flags & CLONE_VFORK:
        raise GuestError(E.EINVAL, "CLONE_VM without CLONE_THREAD needs CLONE_VFORK")
    if flags & (CLONE_THREAD | CLONE_SIGHAND):
        raise GuestError(E.EINVAL)
    pid = fork(k, t, flags, ctid)
    child = k.procs[pid]
    if stack:
        child.engine.set_reg("rsp", stack)
        child.threads[0].ctx = child.engine.context_new()
    if flags & CLONE_PARENT_SETTID:
        t.process.vm.write(ptid, pid.to_bytes(4, "little"))
    if flags & CLONE_VFORK:
        return vfork_wait(k, t, child)
    return pid


def vfork_wait(k: VKernel, t: Thread, child: Process) -> int:
    """vfork semantics on a copied address space: the parent sleeps until the child execs or
    exits (CLONE_VM|CLONE_VFORK, as posix_spawn uses, runs the child on a copy: the child
    only reads what the parent prepared before exec)."""
    child.vfork_parent = t.tid
    raise Block(child.vfork_done, restartable=False)


def vfork_release(k: VKernel, child: Process) -> None:
    """The vfork child exec'ed or exited: wake its parent with the child's pid."""
    if child.vfork_parent:
        parent = k.threads.get(child.vfork_parent)
        child.vfork_parent = 0
        if parent is not None and parent.sleep is not None and \
                parent.sleep.queue is child.vfork_done:
            parent.wake(child.pid)


def new_thread(k: VKernel, t: Thread, flags: int, stack: int, ptid: int, ctid: int,
               tls: int) -> int:
    """A new thread in t's process sharing everything; starts after the syscall with rax 0."""
    p = t.process
    if len(p.live_threads) >= MAX_THREADS or len(k.threads) >= k.config.max_threads:
        raise GuestError(E.EAGAIN, "thread limit")
    tid = k.ids.pid()
    if flags & CLONE_PARENT_SETTID:
        p.vm.write(ptid, tid.to_bytes(4, "little"))
    if flags & CLONE_CHILD_SETTID:
        p.vm.write(ctid, tid.to_bytes(4, "little"))
    ctx = p.engine.context_new()
    rip = p.engine.reg("rip")
    ctx.reg_write(R.REG_ID["rax"], 0)
    ctx.reg_write(R.REG_ID["rip"], rip + 2)
    if stack:
        ctx.reg_write(R.REG_ID["rsp"], stack)
    if flags & CLONE_SETTLS:
        ctx.reg_write(R.REG_ID["fs_base"], tls)
    nt = Thread(tid, p, ctx=ctx, sigmask=t.sigmask)
    if flags & CLONE_CHILD_CLEARTID:
        nt.clear_child_tid = ctid
    p.threads.append(nt)
    k.add_thread(nt)
    k.sched.enqueue(nt)
    return tid
