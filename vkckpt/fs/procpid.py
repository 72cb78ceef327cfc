"""/proc/PID and /proc/PID/task/TID files: status, stat, statm, cmdline, environ, limits.

Each generator takes the view (procfs.ProcView), the process and the thread the file
describes (the group leader, or the first live thread, for /proc/PID) and returns the
file's bytes in Linux 6.1's format.  Every value comes from vkernel state: times are virtual
(clock ticks of USER_HZ 100 from the blocks counted), memory is the vmspace's.
"""

from __future__ import annotations

import os

from vkckpt.abi import signals as S
from vkckpt.abi.limits import RLIM_INFINITY, RLIMIT_NLIMITS
from vkckpt.errors import GuestError
from vkckpt.fs.procmaps import vm_usage
from vkckpt.vclock import NS_PER_TICK

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.procfs import ProcView
    from vkckpt.process import Process
    from vkckpt.threads.thread import Thread

USER_HZ = 100
_NS_PER_CLOCK_TICK = 10**9 // USER_HZ
#: State letters and names (fs/proc/array.c's task_state_array), by ThreadState value.
_STATES = {"runnable": ("R", "running"), "blocked": ("S", "sleeping"),
           "stopped": ("T", "stopped"), "dead": ("X", "dead")}
_PF_FLAGS = 0x400100  # PF_RANDOMIZE | PF_FORKNOEXEC... what a plain task shows
_PLATFORM = b"x86_64\0"  # the string the stack holds just before argv's (vmspace/loader.py)


def comm(p: Process) -> bytes:
    """The task's name, as Linux's: the base name of the path the program was executed by
    (AT_EXECFN, read back from the stack: "sh" for /bin/sh -> busybox), else of the
    program itself, unless prctl(PR_SET_NAME) gave it another; at most 15 bytes."""
    if p.comm:
        return p.comm
    name = b""
    span = stack_strings(p)
    if span is not None:
        try:
            name = p.vm.read(span[3], span[4] - span[3]).rpartition(b"/")[2]
        except GuestError:
            name = b""
    return (name or os.fsencode(os.path.basename(p.exe)))[:15]


def _comm(p: Process) -> str:
    return comm(p).decode(errors="replace")


def state_of(p: Process, t: Thread | None) -> tuple[str, str]:
    if p.zombie or t is None:
        return "Z", "zombie"
    if p.stopped:
        return "T", "stopped"
    return _STATES.get(t.state.value, ("S", "sleeping"))


def _clock_ticks(blocks: int) -> int:
    return blocks * NS_PER_TICK // _NS_PER_CLOCK_TICK


def _kb(n: int) -> str:
    return f"{n // 1024:8d} kB"


def _queued(p: Process) -> int:
    return len(p.pending.queue) + sum(len(t.pending.queue) for t in p.live_threads)


def _sigsets(p: Process, t: Thread | None) -> tuple[int, int, int, int, int]:
    """(thread pending, shared pending, blocked, ignored, caught) as Linux's masks."""
    ign = cgt = 0
    for sig in range(1, S.NSIG + 1):
        h = p.actions.get(sig).handler
        if h == S.SIG_IGN:
            ign |= S.sigbit(sig)
        elif h != S.SIG_DFL:
            cgt |= S.sigbit(sig)
    if t is None:
        return 0, p.pending.mask, 0, ign, cgt
    return t.pending.mask, p.pending.mask, t.sigmask, ign, cgt


def status(view: ProcView, p: Process, t: Thread | None) -> bytes:
    """Implement /proc/PID/status."""
    tid = p.pid if t is None else t.tid
    letter, word = state_of(p, t)
    u = vm_usage(p)
    pnd, shd, blk, ign, cgt = _sigsets(p, t)
    threads = max(len(p.live_threads), 1)
    caps = "000001ffffffffff"
    lines = [
        f"Name:\t{_comm(p)}", f"Umask:\t{p.umask:04o}", f"State:\t{letter} ({word})",
        f"Tgid:\t{p.pid}", "Ngid:\t0", f"Pid:\t{tid}", f"PPid:\t{p.ppid}", "TracerPid:\t0",
        "Uid:\t0\t0\t0\t0", "Gid:\t0\t0\t0\t0", "FDSize:\t64", "Groups:\t0",
        f"NStgid:\t{p.pid}", f"NSpid:\t{tid}", f"NSpgid:\t{p.pgid}", f"NSsid:\t{p.sid}",
    ]
    if not p.zombie:
        lines += [
            f"VmPeak:\t{_kb(u.size)}", f"VmSize:\t{_kb(u.size)}", f"VmLck:\t{_kb(0)}",
            f"VmPin:\t{_kb(0)}", f"VmHWM:\t{_kb(u.rss)}", f"VmRSS:\t{_kb(u.rss)}",
            f"RssAnon:\t{_kb(u.anon)}", f"RssFile:\t{_kb(u.rss - u.anon)}",
            f"RssShmem:\t{_kb(0)}", f"VmData:\t{_kb(u.data)}", f"VmStk:\t{_kb(u.stack)}",
            f"VmExe:\t{_kb(u.text)}", f"VmLib:\t{_kb(u.lib)}", f"VmPTE:\t{_kb(0)}",
            f"VmSwap:\t{_kb(0)}", f"HugetlbPages:\t{_kb(0)}", "CoreDumping:\t0",
            "THP_enabled:\t1",
        ]
    lines += [
        f"Threads:\t{threads}", f"SigQ:\t{_queued(p)}/{RLIM_INFINITY}",
        f"SigPnd:\t{pnd:016x}", f"ShdPnd:\t{shd:016x}", f"SigBlk:\t{blk:016x}",
        f"SigIgn:\t{ign:016x}", f"SigCgt:\t{cgt:016x}", f"CapInh:\t{0:016x}",
        f"CapPrm:\t{caps}", f"CapEff:\t{caps}", f"CapBnd:\t{caps}", f"CapAmb:\t{0:016x}",
        "NoNewPrivs:\t0", "Seccomp:\t0", "Seccomp_filters:\t0",
        "Speculation_Store_Bypass:\tnot vulnerable", "SpeculationIndirectBranch:\tunknown",
        "Cpus_allowed:\t1", "Cpus_allowed_list:\t0", "Mems_allowed:\t1",
        "Mems_allowed_list:\t0", "voluntary_ctxt_switches:\t0",
        "nonvoluntary_ctxt_switches:\t0",
    ]
    return ("\n".join(lines) + "\n").encode()


def stat(view: ProcView, p: Process, t: Thread | None) -> bytes:
    """Implement /proc/PID/stat: its 52 fields (fs/proc/array.c's do_task_stat)."""
    tid = p.pid if t is None else t.tid
    letter, _ = state_of(p, t)
    u = vm_usage(p)
    pnd, shd, blk, ign, cgt = _sigsets(p, t)
    ticks = p.ticks if t is None or tid == p.pid and len(p.live_threads) <= 1 else t.ticks
    span = stack_strings(p)
    arg0, arg1, env0, env1 = span[:4] if span else (0, 0, 0, 0)
    sleeping = int(letter == "S")
    exit_code = p.wait_status if p.zombie else 0
    fields = [
        tid, f"({_comm(p)})", letter, p.ppid, p.pgid, p.sid, 0, -1, _PF_FLAGS, 0, 0, 0, 0,
        _clock_ticks(ticks), 0, 0, 0, 20, 0, max(len(p.live_threads), 1), 0, 0,
        u.size, u.rss // 4096, RLIM_INFINITY, u.start_code, u.end_code, u.start_stack, 0, 0,
        pnd | shd, blk, ign, cgt, sleeping, 0, 0, p.exit_signal, 0, 0, 0, 0, 0, 0,
        u.start_data, u.end_data, u.start_brk, arg0, arg1, env0, env1, exit_code,
    ]
    return (" ".join(str(f) for f in fields) + "\n").encode()


def statm(view: ProcView, p: Process, t: Thread | None) -> bytes:
    """Implement /proc/PID/statm: size resident shared text lib data dt, in pages."""
    u = vm_usage(p)
    pg = 4096
    return (f"{u.size // pg} {u.rss // pg} {(u.rss - u.anon) // pg} {u.text // pg} 0 "
            f"{(u.data + u.stack) // pg} 0\n").encode()


def cmdline(view: ProcView, p: Process, t: Thread | None) -> bytes:
    """Implement /proc/PID/cmdline: argv as the vkernel started the program, NUL-ended."""
    return b"" if p.zombie else b"".join(a + b"\0" for a in p.argv)


def stack_strings(p: Process) -> tuple[int, int, int, int, int] | None:
    """(arg_start, arg_end, env_start, env_end, exec path's end): where exec laid the
    strings at the top of the stack (vmspace/loader.py: platform, argv, envp, then the exec
    path), found by reading them back; None when they are gone (unmapped, or overwritten
    past recognition)."""
    if p.zombie or p.vm is None:
        return None
    stacks = [v for v in p.vm.vmas if v.name == "[stack]"]
    if not stacks:
        return None
    top = stacks[-1].end
    size = min(stacks[-1].size, 1 << 18)
    try:
        blob = p.vm.read(top - size, size)
    except GuestError:
        return None
    end = size - 9  # the exec path's NUL, 8 zero bytes below the top
    execfn = blob.rfind(b"\0", 0, end) + 1
    marker = _PLATFORM + b"".join(a + b"\0" for a in p.argv)
    at = blob.rfind(marker, 0, execfn)
    if at < 0:
        return None
    base = top - size
    arg0 = base + at + len(_PLATFORM)
    env0 = base + at + len(marker)
    return arg0, env0, env0, base + execfn, base + end


def environ(view: ProcView, p: Process, t: Thread | None) -> bytes:
    """Implement /proc/PID/environ: the environment strings exec put on the stack, as the
    process's memory holds them now (as Linux reads them)."""
    span = stack_strings(p)
    if span is None or span[3] <= span[2]:
        return b""
    return p.vm.read(span[2], span[3] - span[2])


def comm_file(view: ProcView, p: Process, t: Thread | None) -> bytes:
    """Implement /proc/PID/comm."""
    return comm(p) + b"\n"


_LIMIT_ROWS = [  # (name, unit) of RLIMIT_CPU .. RLIMIT_RTTIME, as fs/proc/base.c names them
    ("Max cpu time", "seconds"), ("Max file size", "bytes"), ("Max data size", "bytes"),
    ("Max stack size", "bytes"), ("Max core file size", "bytes"),
    ("Max resident set", "bytes"), ("Max processes", "processes"),
    ("Max open files", "files"), ("Max locked memory", "bytes"),
    ("Max address space", "bytes"), ("Max file locks", "locks"),
    ("Max pending signals", "signals"), ("Max msgqueue size", "bytes"),
    ("Max nice priority", ""), ("Max realtime priority", ""), ("Max realtime timeout", "us"),
]


def limits(view: ProcView, p: Process, t: Thread | None) -> bytes:
    """Implement /proc/PID/limits: the process's limits, as getrlimit(2) reports them."""
    out = [f"{'Limit':<25} {'Soft Limit':<20} {'Hard Limit':<20} {'Units':<10}"]
    for res in range(RLIMIT_NLIMITS):
        name, unit = _LIMIT_ROWS[res]
        soft, hard = p.rlimits.get(res)
        cols = ["unlimited" if v == RLIM_INFINITY else str(v) for v in (soft, hard)]
        row = f"{name:<25} {cols[0]:<20} {cols[1]:<20} "
        out.append(row + f"{unit:<10}" if unit else row)
    return ("\n".join(out) + "\n").encode()


def oom_score_adj(view: ProcView, p: Process, t: Thread | None) -> bytes:
    return b"0\n"


def oom_score(view: ProcView, p: Process, t: Thread | None) -> bytes:
    return b"0\n"
