"""Process and thread lifecycle, identity and limits."""

from __future__ import annotations

import os
import struct

from vkckpt import task_clone, task_exec, task_exit
from vkckpt.abi import errno as E
from vkckpt.abi import signals as S
from vkckpt.abi import uts
from vkckpt.abi.limits import NOFILE
from vkckpt.abi.mman import PROT_WRITE
from vkckpt.errors import GuestError
from vkckpt.fs import procpid
from vkckpt.syscalls.args import path_arg, s32, strv_arg
from vkckpt.syscalls.sys_signal import kill

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel
    from vkckpt.process import Process
    from vkckpt.threads.thread import Thread

ARCH_SET_GS, ARCH_SET_FS, ARCH_GET_FS, ARCH_GET_GS = 0x1001, 0x1002, 0x1003, 0x1004
USER_LIMIT = 0x7FFF_FFFF_F000


def sys_getpid(k: VKernel, t: Thread) -> int:
    return t.process.pid


def sys_getppid(k: VKernel, t: Thread) -> int:
    return t.process.ppid


def sys_gettid(k: VKernel, t: Thread) -> int:
    return t.tid


def sys_getuid(k: VKernel, t: Thread) -> int:
    return 0  # every guest runs as root inside its root


def sys_exit(k: VKernel, t: Thread, code: int) -> object:
    return k.defer(lambda: task_exit.exit_thread(k, t, code))


def sys_exit_group(k: VKernel, t: Thread, code: int) -> object:
    return k.defer(lambda: task_exit.exit_group(k, t.process, (code & 0xFF) << 8))


def sys_fork(k: VKernel, t: Thread) -> int:
    return task_clone.fork(k, t)


def sys_clone(k: VKernel, t: Thread, flags: int, stack: int, ptid: int, ctid: int,
              tls: int) -> int:
    return task_clone.clone(k, t, flags, stack, ptid, ctid, tls)


def sys_execve(k: VKernel, t: Thread, path: int, argv: int, envp: int) -> object:
    prog = path_arg(t, path)
    # Linux opens the file before argv/envp
    k.root.resolve(os.fsdecode(prog), t.process.cwd, top=t.process.root)
    return task_exec.execve(k, t, prog, strv_arg(t, argv), strv_arg(t, envp))


def _bad_out(t: Thread, addr: int, size: int) -> bool:
    """A non-NULL output pointer the kernel could not write size bytes through."""
    return bool(addr) and t.process.vm.user_span(addr, size, PROT_WRITE) < size


def sys_wait4(k: VKernel, t: Thread, pid: int, status: int, options: int, rusage: int) -> int:
    """wait4(2); with a bad status or rusage pointer Linux still reaps, then says EFAULT."""
    if not (_bad_out(t, status, 4) or _bad_out(t, rusage, 144)):
        return task_exit.wait4(k, t, s32(pid), status, s32(options), rusage)
    got = task_exit.wait4(k, t, s32(pid), 0, s32(options), 0)
    if got > 0:
        raise GuestError(E.EFAULT)
    return got


def sys_waitid(k: VKernel, t: Thread, idtype: int, ident: int, infop: int, options: int) -> int:
    """waitid(2); Linux writes infop last, whatever the outcome, so a bad one always fails."""
    if not _bad_out(t, infop, 128):
        return task_exit.waitid(k, t, s32(idtype), s32(ident), infop, s32(options))
    try:
        task_exit.waitid(k, t, s32(idtype), s32(ident), 0, s32(options))
    except GuestError:
        pass
    raise GuestError(E.EFAULT)


def sys_set_tid_address(k: VKernel, t: Thread, addr: int) -> int:
    t.clear_child_tid = addr
    return t.tid


def sys_set_robust_list(k: VKernel, t: Thread, head: int, size: int) -> int:
    if size != 24:
        raise GuestError(E.EINVAL)
    t.robust_list = (head, size)
    return 0


def sys_arch_prctl(k: VKernel, t: Thread, code: int, addr: int) -> int:
    """Implement arch_prctl(2): FS/GS base of the calling thread."""
    eng = t.process.engine
    if code in (ARCH_SET_FS, ARCH_SET_GS):
        if addr >= USER_LIMIT:
            raise GuestError(E.EPERM)
        eng.set_reg("fs_base" if code == ARCH_SET_FS else "gs_base", addr)
        return 0
    if code in (ARCH_GET_FS, ARCH_GET_GS):
        val = eng.reg("fs_base" if code == ARCH_GET_FS else "gs_base")
        t.process.vm.write_u64(addr, val)
        return 0
    raise GuestError(E.EINVAL)


def sys_uname(k: VKernel, t: Thread, buf: int) -> int:
    fields = [v.encode() for v in (uts.SYSNAME, uts.NODENAME, uts.RELEASE, uts.VERSION,
                                   uts.MACHINE, uts.DOMAINNAME)]
    t.process.vm.write(buf, b"".join(f.ljust(65, b"\0") for f in fields))
    return 0


def sys_sched_yield(k: VKernel, t: Thread) -> int:
    k.resched = True
    return 0


def sys_getpgid(k: VKernel, t: Thread, pid: int) -> int:
    return _proc(k, t, s32(pid)).pgid


def sys_getpgrp(k: VKernel, t: Thread) -> int:
    return t.process.pgid


def sys_getsid(k: VKernel, t: Thread, pid: int) -> int:
    return _proc(k, t, s32(pid)).sid


def sys_setpgid(k: VKernel, t: Thread, pid: int, pgid: int) -> int:
    p = _proc(k, t, s32(pid))
    pgid = s32(pgid)
    if pgid < 0:
        raise GuestError(E.EINVAL)
    p.pgid = pgid or p.pid
    return 0


def sys_setsid(k: VKernel, t: Thread) -> int:
    p = t.process
    if p.pgid == p.pid:
        raise GuestError(E.EPERM)
    p.sid = p.pgid = p.pid
    return p.pid


def _proc(k: VKernel, t: Thread, pid: int):  # noqa: ANN202
    if pid == 0:
        return t.process
    p = k.procs.get(pid)
    if p is None or p.zombie:
        raise GuestError(E.ESRCH)
    return p


def sys_umask(k: VKernel, t: Thread, mask: int) -> int:
    old, t.process.umask = t.process.umask, mask & 0o777
    return old


def _rlimit_target(k: VKernel, t: Thread, pid: int) -> Process:
    """The process prlimit64(2) means by pid (0: the caller's); ESRCH when there is none."""
    if pid == 0:
        return t.process
    p = k.procs.get(s32(pid))
    if p is None or p.zombie:
        raise GuestError(E.ESRCH)
    return p


def _set_rlimit(p: Process, res: int, soft: int, hard: int) -> None:
    p.rlimits.set(res, soft, hard)
    p.fds.limit = min(p.rlimits.nofile, NOFILE)


def sys_prlimit64(k: VKernel, t: Thread, pid: int, res: int, new: int, old: int) -> int:
    """Implement prlimit64(2): read the new limit, report the old one, then set the new."""
    p = _rlimit_target(k, t, pid)
    want = struct.unpack("<QQ", t.process.vm.read(new, 16)) if new else None
    was = p.rlimits.get(res)
    if want is not None:
        _set_rlimit(p, res, *want)
    if old:
        t.process.vm.write(old, struct.pack("<QQ", *was))
    return 0


def sys_getrlimit(k: VKernel, t: Thread, res: int, old: int) -> int:
    """Implement getrlimit(2)."""
    t.process.vm.write(old, struct.pack("<QQ", *t.process.rlimits.get(res)))
    return 0


def sys_setrlimit(k: VKernel, t: Thread, res: int, new: int) -> int:
    """Implement setrlimit(2)."""
    _set_rlimit(t.process, res, *struct.unpack("<QQ", t.process.vm.read(new, 16)))
    return 0


def sys_getrusage(k: VKernel, t: Thread, who: int, buf: int) -> int:
    t.process.vm.write(buf, bytes(144))
    return 0


def sys_prctl(k: VKernel, t: Thread, option: int, a2: int) -> int:
    if option == 15:  # PR_SET_NAME: at most 15 bytes kept, as Linux's TASK_COMM_LEN
        t.process.comm = t.process.vm.read(a2, 16).split(b"\0")[0][:15]
        return 0
    if option == 16:  # PR_GET_NAME: what /proc/PID/comm says
        t.process.vm.write(a2, procpid.comm(t.process).ljust(16, b"\0"))
        return 0
    raise GuestError(E.EINVAL)


def sys_sched_getaffinity(k: VKernel, t: Thread, pid: int, size: int, mask: int) -> int:
    """Implement sched_getaffinity(2) for one virtual CPU: the mask is whole longs, the
    thread must exist (ESRCH), and the answer is one long with CPU 0 set."""
    if size < 8 or size % 8:
        raise GuestError(E.EINVAL)
    target = k.threads.get(s32(pid)) if pid else t
    if target is None or not target.alive:
        raise GuestError(E.ESRCH)
    t.process.vm.write(mask, struct.pack("<Q", 1))
    return 8  # one virtual CPU


def sys_sched_setaffinity(k: VKernel, t: Thread, pid: int, size: int, mask: int) -> int:
    """Any mask holding the one virtual CPU (CPU 0) is accepted; others are EINVAL."""
    if size < 1:
        raise GuestError(E.EINVAL)
    if not t.process.vm.read(mask, 1)[0] & 1:
        raise GuestError(E.EINVAL)
    return 0


def sys_getgroups(k: VKernel, t: Thread, size: int, groups: int) -> int:
    """Root's supplementary groups: just group 0."""
    size = s32(size)
    if size < 0:
        raise GuestError(E.EINVAL)
    if size == 0:
        return 1
    t.process.vm.write(groups, struct.pack("<I", 0))
    return 1


PRIO_PROCESS, PRIO_USER = 0, 2


def sys_getpriority(k: VKernel, t: Thread, which: int, who: int) -> int:
    """Every process has nice 0; the raw call returns 20 - nice."""
    if s32(which) not in range(PRIO_PROCESS, PRIO_USER + 1):
        raise GuestError(E.EINVAL)
    return 20


def sys_kill(k: VKernel, t: Thread, pid: int, sig: int) -> int:
    return kill(k, t, s32(pid), s32(sig))


def sys_nosys_quiet(k: VKernel, t: Thread) -> int:
    """Calls musl probes and copes with (rseq, membarrier ...): ENOSYS without a report."""
    raise GuestError(E.ENOSYS)


def sys_vfork(k: VKernel, t: Thread) -> int:
    pid = task_clone.fork(k, t, S.SIGCHLD)
    return task_clone.vfork_wait(k, t, k.procs[pid])


