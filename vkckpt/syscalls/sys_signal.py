"""Signals: sigaction, masks, sending, waiting, alternate stacks and rt_sigreturn."""

from __future__ import annotations

import struct

from vkckpt import task_signals
from vkckpt.abi import errno as E
from vkckpt.abi import signals as S
from vkckpt.errors import GuestError
from vkckpt.signals.actions import SigAction
from vkckpt.signals.pending import SigInfo
from vkckpt.syscalls.args import (
    s32,
    sigset_arg,
    timespec_arg,
    under_temporary_mask,
    wait_deadline,
)
from vkckpt.threads.wait import Block

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel
    from vkckpt.threads.thread import Thread

_ALL = (1 << S.NSIG) - 1


def _check_sig(sig: int) -> int:
    if not 1 <= sig <= S.NSIG:
        raise GuestError(E.EINVAL)
    return sig


def sys_rt_sigaction(k: VKernel, t: Thread, sig: int, act: int, oact: int, size: int) -> int:
    """Implement rt_sigaction(2) (struct k_sigaction: handler, flags, restorer, mask).

    Linux's order: the size, reading act (EFAULT), the signal number, installing the new
    action, and only then writing oact, so a bad oact fails after the action has changed."""
    if size != 8:
        raise GuestError(E.EINVAL)
    raw = t.process.vm.read(act, 32) if act else None
    sig = _check_sig(s32(sig))
    if raw is not None and sig in (S.SIGKILL, S.SIGSTOP):
        raise GuestError(E.EINVAL)
    acts = t.process.actions
    old = acts.get(sig)
    if raw is not None:
        h, flags, restorer, mask = struct.unpack("<QQQQ", raw)
        acts.set(sig, SigAction(h, flags & 0xFFFFFFFF, restorer, mask & ~S.UNBLOCKABLE))
        if acts.ignored(sig):  # POSIX: setting SIG_IGN discards pending instances
            t.process.pending.discard(sig)
            for th in t.process.live_threads:
                th.pending.discard(sig)
    if oact:
        t.process.vm.write(oact, struct.pack("<QQQQ", old.handler, old.flags, old.restorer,
                                             old.mask))
    return 0


def sys_rt_sigprocmask(k: VKernel, t: Thread, how: int, nset: int, oset: int,
                       size: int) -> int:
    """Implement rt_sigprocmask(2) on the calling thread's mask."""
    if size != 8:
        raise GuestError(E.EINVAL)
    old = t.sigmask
    if nset:
        new = sigset_arg(t, nset, size)
        if how == S.SIG_BLOCK:
            mask = old | new
        elif how == S.SIG_UNBLOCK:
            mask = old & ~new
        elif how == S.SIG_SETMASK:
            mask = new
        else:
            raise GuestError(E.EINVAL)
        t.sigmask = mask & ~S.UNBLOCKABLE & _ALL
    if oset:
        t.process.vm.write(oset, struct.pack("<Q", old))
    return 0


def sys_rt_sigpending(k: VKernel, t: Thread, addr: int, size: int) -> int:
    if size > 8:
        raise GuestError(E.EINVAL)
    pend = (t.pending.mask | t.process.pending.mask) & t.sigmask
    t.process.vm.write(addr, struct.pack("<Q", pend)[:size])
    return 0


def sys_rt_sigsuspend(k: VKernel, t: Thread, addr: int, size: int) -> int:
    """Implement rt_sigsuspend(2): sleep with a temporary mask until a handler runs."""
    if t.saved_sigmask is None:
        mask = sigset_arg(t, addr, size)
        t.saved_sigmask = t.sigmask
        t.sigmask = mask & ~S.UNBLOCKABLE
    raise Block(None, restartable=False)


def sys_pause(k: VKernel, t: Thread) -> int:
    raise Block(None, restartable=False)


def sys_rt_sigreturn(k: VKernel, t: Thread) -> object:
    return k.defer(lambda: task_signals.sigreturn(k, t))


def sys_sigaltstack(k: VKernel, t: Thread, ss: int, old: int) -> int:
    """Implement sigaltstack(2)."""
    sp, flags, size = t.altstack
    rsp = t.process.engine.reg("rsp")
    on = flags != S.SS_DISABLE and sp < rsp <= sp + size
    if ss:
        nsp, nflags, nsize = struct.unpack("<Qi4xQ", t.process.vm.read(ss, 24))
        if on:
            raise GuestError(E.EPERM)
        if nflags & ~(S.SS_DISABLE | (1 << 31)):
            raise GuestError(E.EINVAL)
        if nflags & S.SS_DISABLE:
            t.altstack = (0, S.SS_DISABLE, 0)
        else:
            if nsize < S.MINSIGSTKSZ:
                raise GuestError(E.ENOMEM)
            t.altstack = (nsp, 0, nsize)
    if old:
        t.process.vm.write(old, struct.pack("<Qi4xQ", sp, S.SS_ONSTACK if on else flags, size))
    return 0


def kill(k: VKernel, t: Thread, pid: int, sig: int) -> int:
    """Implement kill(2): a process, the caller's group, a group, or everyone."""
    if sig and not 1 <= sig <= S.NSIG:
        raise GuestError(E.EINVAL)
    me = t.process
    if pid > 0:
        targets = [k.procs.get(pid)]
    elif pid == 0:
        targets = [p for p in k.procs.values() if p.pgid == me.pgid]
    elif pid == -1:
        targets = [p for p in k.procs.values() if p.pid not in (1, me.pid)]
    else:
        targets = [p for p in k.procs.values() if p.pgid == -pid]
    targets = [p for p in targets if p is not None and not p.zombie]
    if not targets:
        raise GuestError(E.ESRCH)
    if sig:
        for p in targets:
            task_signals.send_to_process(k, p, SigInfo(sig, S.SI_USER, pid=me.pid))
    return 0


def sys_tgkill(k: VKernel, t: Thread, tgid: int, tid: int, sig: int) -> int:
    return _tkill(k, t, s32(tgid), s32(tid), s32(sig))


def sys_tkill(k: VKernel, t: Thread, tid: int, sig: int) -> int:
    return _tkill(k, t, -1, s32(tid), s32(sig))


def _tkill(k: VKernel, t: Thread, tgid: int, tid: int, sig: int) -> int:
    if tid <= 0 or (sig and not 1 <= sig <= S.NSIG):
        raise GuestError(E.EINVAL)
    target = k.threads.get(tid)
    if target is None or not target.alive or (tgid > 0 and target.process.pid != tgid):
        raise GuestError(E.ESRCH)
    if sig:
        task_signals.send_to_thread(k, target, SigInfo(sig, S.SI_TKILL, pid=t.process.pid))
    return 0


def sys_rt_sigtimedwait(k: VKernel, t: Thread, set_addr: int, info: int, timeout: int,
                        size: int) -> int:
    """Implement rt_sigtimedwait(2) as Linux does: take a pending signal of the set, else
    wait with the set unblocked (a temporary mask kept like ppoll's) and run again when a
    signal arrives: a waited one is taken (its handler does not run), any other ends the
    call with EINTR; the timeout ends it with EAGAIN."""
    return under_temporary_mask(t, lambda: _sigtimedwait(k, t, set_addr, info, timeout, size))


def _sigtimedwait(k: VKernel, t: Thread, set_addr: int, info: int, timeout: int,
                  size: int) -> int:
    want = sigset_arg(t, set_addr, size) & ~S.UNBLOCKABLE
    tmo_ns = timespec_arg(t, timeout) if timeout else None
    got = t.pending.take(want) or t.process.pending.take(want)
    if got is not None:
        if info:
            t.process.vm.write(info, got.pack())
        return got.signo
    if t.saved_sigmask is None:  # the first run: unblock the set for the wait
        if tmo_ns == 0:
            raise GuestError(E.EAGAIN)
        t.saved_sigmask, t.sigmask = t.sigmask, t.sigmask & ~want
    elif t.deliverable():  # run again after a signal outside the set arrived
        raise GuestError(E.EINTR)
    raise Block(None, wait_deadline(k, t, tmo_ns), -E.EAGAIN, restartable=False)
