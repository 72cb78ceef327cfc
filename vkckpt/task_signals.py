"""Sending signals, default actions, handler frames, rt_sigreturn and CPU exceptions: the
signal rules that may end a thread group (task_exit), above the queueing in sigsend."""

from __future__ import annotations

from vkckpt import sigsend as send
from vkckpt import task_exit
from vkckpt.abi import errno as E
from vkckpt.abi import signals as S
from vkckpt.engine.engine import Stop
from vkckpt.errors import GuestError
from vkckpt.signals import frame as FR
from vkckpt.signals.actions import SigAction
from vkckpt.signals.pending import SigInfo
from vkckpt.vmspace import filemap

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel
    from vkckpt.process import Process
    from vkckpt.threads.thread import Thread

_INIT_FPU = {"fpcw": 0x37F, "fpsw": 0, "fptag": 0xFFFF, "fop": 0, "fip": 0, "fdp": 0,
             "mxcsr": 0x1F80, **{f"xmm{i}": 0 for i in range(16)}}
_FLAGS_CLEARED = 0x400 | 0x100 | 0x40000  # DF, TF, AC


def _kill(k: VKernel, p: Process, sig: int, core: bool = False) -> None:
    """Terminate p as sig's default action does; the running slice ends after this call."""
    task_exit.kill_group(k, p, sig, core)
    k.resched = True


# -- sending ----------------------------------------------------------------------------------
def send_to_process(k: VKernel, p: Process, info: SigInfo) -> None:
    """Send info to the thread group (kill(2)): SIGKILL ends it at once, others are queued."""
    if info.signo == S.SIGKILL:
        if not (p.zombie or p.exiting):
            _kill(k, p, S.SIGKILL)
        return
    send.queue_to_process(k, p, info)


def send_to_thread(k: VKernel, t: Thread, info: SigInfo) -> None:
    """Send info to one thread (tgkill(2), faults, SIGPIPE): SIGKILL ends its group."""
    p = t.process
    if info.signo == S.SIGKILL:
        if not (p.zombie or p.exiting or not t.alive):
            _kill(k, p, S.SIGKILL)
        return
    send.queue_to_thread(k, t, info)


# -- delivery ---------------------------------------------------------------------------------
def deliver_pending(k: VKernel, t: Thread) -> None:
    """Act on t's deliverable signals; leaves at most one handler frame set up."""
    p = t.process
    while t.alive and not p.exiting:
        allowed = ~t.sigmask & ((1 << S.NSIG) - 1)
        info = t.pending.take(allowed) or p.pending.take(allowed)
        if info is None:
            return
        act = p.actions.get(info.signo)
        if act.handler == S.SIG_IGN:
            continue
        if act.handler == S.SIG_DFL:
            action = S.default_action(info.signo)
            if action in (S.TERM, S.CORE):
                _kill(k, p, info.signo, core=action == S.CORE)
                return
            if action == S.STOP:
                send.stop_group(k, p, info.signo)
                return
            continue
        setup_frame(k, t, info, act)
        return


def setup_frame(k: VKernel, t: Thread, info: SigInfo, act: SigAction) -> None:
    """Push an rt_sigframe on t's stack and point t at the handler (t is loaded)."""
    eng = t.process.engine
    regs = eng.get_state()
    ss_sp, ss_flags, ss_size = t.altstack
    on_alt = ss_flags != S.SS_DISABLE and ss_sp < regs["rsp"] <= ss_sp + ss_size
    sp = regs["rsp"] - FR.RED_ZONE
    if act.flags & S.SA_ONSTACK and ss_flags != S.SS_DISABLE and not on_alt:
        sp = ss_sp + ss_size
    frame, fp = FR.frame_address(sp)
    oldmask = t.saved_sigmask if t.saved_sigmask is not None else t.sigmask
    t.saved_sigmask = None
    alt = (ss_sp, S.SS_ONSTACK if on_alt else ss_flags, ss_size)
    body, fx = FR.build_frame(regs, info.pack(), oldmask, alt, act.restorer, frame, fp)
    try:
        if not act.flags & S.SA_RESTORER:
            raise GuestError(E.EFAULT, "handler without SA_RESTORER")
        t.process.vm.write(fp, fx)  # a stack that is not writable kills, as on Linux
        t.process.vm.write(frame, body)
    except GuestError:
        _kill(k, t.process, S.SIGSEGV, core=True)
        return
    eng.set_state({**_INIT_FPU, "rsp": frame, "rip": act.handler, "rdi": info.signo,
                   "rsi": frame + FR.INFO_OFF, "rdx": frame + FR.UC_OFF, "rax": 0,
                   "rflags": regs["rflags"] & ~_FLAGS_CLEARED})
    if info.signo == S.SIGCKPT:
        t.ckpt_frames.append(frame)
    t.sigmask |= act.mask
    if not act.flags & S.SA_NODEFER:
        t.sigmask |= S.sigbit(info.signo)
    t.sigmask &= ~S.UNBLOCKABLE
    if act.flags & S.SA_RESETHAND:
        t.process.actions.set(info.signo, SigAction())


def sigreturn(k: VKernel, t: Thread) -> None:
    """Implement rt_sigreturn(2) once the engine has stopped: restore the frame at rsp-8."""
    eng = t.process.engine
    rsp = eng.reg("rsp")
    try:
        raw = eng.read(rsp - 8, FR.FRAME_SIZE)
        fp = FR.fpstate_pointer(raw)
        fx = eng.read(fp, FR.FXSAVE_SIZE) if fp else None
    except GuestError:
        _kill(k, t.process, S.SIGSEGV, core=True)
        return
    if t.ckpt_frames and t.ckpt_frames[-1] == rsp - 8:
        t.ckpt_frames.pop()  # a SIGCKPT handler has returned
    regs, mask = FR.parse_frame(raw, fx)
    cur_flags = eng.reg("rflags")
    regs["rflags"] = (cur_flags & ~FR.RFLAGS_USER_MASK) | (regs["rflags"] & FR.RFLAGS_USER_MASK)
    eng.set_state(regs)
    t.sigmask = mask & ~S.UNBLOCKABLE
    ss_sp, ss_flags, ss_size = _uc_stack(raw)
    if ss_flags in (0, S.SS_DISABLE) and (ss_flags == S.SS_DISABLE or ss_size >= S.MINSIGSTKSZ):
        t.altstack = (ss_sp, ss_flags, ss_size)


def _uc_stack(raw: bytes) -> tuple[int, int, int]:
    sp = int.from_bytes(raw[FR.UC_OFF + 16: FR.UC_OFF + 24], "little")
    flags = int.from_bytes(raw[FR.UC_OFF + 24: FR.UC_OFF + 28], "little", signed=True)
    size = int.from_bytes(raw[FR.UC_OFF + 32: FR.UC_OFF + 40], "little")
    return sp, flags & ~S.SS_ONSTACK, size


# -- CPU exceptions ---------------------------------------------------------------------------
_INTR_SIGNALS = {0: (S.SIGFPE, S.FPE_INTDIV), 1: (S.SIGTRAP, S.TRAP_BRKPT),
                 3: (S.SIGTRAP, S.TRAP_BRKPT), 4: (S.SIGSEGV, S.SI_KERNEL),
                 5: (S.SIGSEGV, S.SI_KERNEL), 6: (S.SIGILL, S.ILL_ILLOPN),
                 13: (S.SIGSEGV, S.SI_KERNEL), 16: (S.SIGFPE, 0), 17: (S.SIGBUS, S.BUS_ADRERR),
                 19: (S.SIGFPE, 0)}


def cpu_exception(k: VKernel, t: Thread, stop: Stop) -> None:
    """Turn a fault, trap or illegal instruction into the signal Linux would force."""
    eng = t.process.engine
    if stop is Stop.FAULT:
        f = eng.fault
        mapped = filemap.file_fault(t.process.vm, f.addr)  # None: no file page; False: past EOF
        if mapped:
            return  # the file has grown over the page, now mapped: the access runs again
        # PROT_NONE VMAs are not mapped in the engine, yet Linux reports them as ACCERR.
        code = S.SEGV_MAPERR if t.process.vm.vmas.find(f.addr) is None else S.SEGV_ACCERR
        info = send.kernel_info(S.SIGSEGV, code, f.addr) if mapped is None else \
            send.kernel_info(S.SIGBUS, S.BUS_ADRERR, f.addr)
    elif stop is Stop.ILLEGAL:
        info = send.kernel_info(S.SIGILL, S.ILL_ILLOPN, eng.reg("rip"))
    else:
        sig, code = _INTR_SIGNALS.get(eng.intno, (S.SIGSEGV, S.SI_KERNEL))
        info = send.kernel_info(sig, code, eng.reg("rip"))
    force_signal(k, t, info)


def force_signal(k: VKernel, t: Thread, info: SigInfo) -> None:
    """Deliver a synchronous signal now; blocked or ignored means the process dies of it."""
    p = t.process
    bit = S.sigbit(info.signo)
    act = p.actions.get(info.signo)
    if t.sigmask & bit or act.handler == S.SIG_IGN:
        p.actions.set(info.signo, SigAction())
        t.sigmask &= ~bit
    t.pending.add(info)
    deliver_pending(k, t)
