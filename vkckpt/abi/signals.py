"""Linux x86-64 signal numbers, default actions, sigaction flags and siginfo codes."""

from __future__ import annotations

SIGHUP, SIGINT, SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE = 1, 2, 3, 4, 5, 6, 7, 8
SIGKILL, SIGUSR1, SIGSEGV, SIGUSR2, SIGPIPE, SIGALRM, SIGTERM = 9, 10, 11, 12, 13, 14, 15
SIGSTKFLT, SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU = 16, 17, 18, 19, 20, 21, 22
SIGURG, SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGWINCH, SIGIO = 23, 24, 25, 26, 27, 28, 29
SIGPWR, SIGSYS = 30, 31
SIGRTMIN_KERNEL = 32
NSIG = 64
#: vkernel signals: delivered before a freeze (quiesce) and after a thaw (reconnect).
#: musl reserves 32-34 for itself; 62 and 63 sit at the top of the RT range, default ignore.
SIGCKPT = 62
SIGTHAW = 63

NAMES = {v: k for k, v in list(globals().items()) if k.startswith("SIG") and isinstance(v, int)
         and k not in ("SIGRTMIN_KERNEL",)}

SIG_DFL, SIG_IGN = 0, 1
SA_NOCLDSTOP, SA_NOCLDWAIT, SA_SIGINFO = 0x1, 0x2, 0x4
SA_RESTORER, SA_ONSTACK, SA_RESTART = 0x04000000, 0x08000000, 0x10000000
SA_NODEFER, SA_RESETHAND = 0x40000000, 0x80000000
SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2
SS_ONSTACK, SS_DISABLE, MINSIGSTKSZ = 1, 2, 2048

# si_code values
SI_USER, SI_KERNEL, SI_QUEUE, SI_TIMER, SI_TKILL = 0, 0x80, -1, -2, -6
#: struct sigevent's sigev_notify (SIGEV_THREAD is the C library's: the kernel sees
#: SIGEV_THREAD_ID from it).
SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD, SIGEV_THREAD_ID = 0, 1, 2, 4
SEGV_MAPERR, SEGV_ACCERR = 1, 2
ILL_ILLOPN = 2
FPE_INTDIV = 1
TRAP_BRKPT = 1
CLD_EXITED, CLD_KILLED, CLD_DUMPED, CLD_STOPPED, CLD_CONTINUED = 1, 2, 3, 5, 6
BUS_ADRERR = 2

TERM, IGNORE, CORE, STOP, CONT = "term", "ignore", "core", "stop", "cont"
_CORE = {SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, SIGXCPU, SIGXFSZ, SIGSYS}
_IGNORE = {SIGCHLD, SIGURG, SIGWINCH, SIGCKPT, SIGTHAW}
_STOP = {SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU}


def default_action(sig: int) -> str:
    """The action SIG_DFL takes for sig: term, ignore, core, stop or cont."""
    if sig in _CORE:
        return CORE
    if sig in _IGNORE:
        return IGNORE
    if sig in _STOP:
        return STOP
    if sig == SIGCONT:
        return CONT
    return TERM


def sigbit(sig: int) -> int:
    """The bit of sig in a 64-bit kernel sigset."""
    return 1 << (sig - 1)


UNBLOCKABLE = sigbit(SIGKILL) | sigbit(SIGSTOP)
SYNCHRONOUS = sigbit(SIGSEGV) | sigbit(SIGBUS) | sigbit(SIGILL) | sigbit(SIGTRAP) | sigbit(SIGFPE)


def signame(sig: int) -> str:
    """SIGSEGV, SIGRT5, ... for messages."""
    if sig in NAMES:
        return NAMES[sig]
    return f"SIGRT{sig - SIGRTMIN_KERNEL}" if SIGRTMIN_KERNEL <= sig <= NSIG else f"signal {sig}"
