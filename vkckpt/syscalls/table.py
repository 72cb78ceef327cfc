"""The system call table: one line per supported number, with its level of support.

`Supported` calls follow Linux semantics; `Partial` ones document what they leave out
(reported by vkckpt-abi(7)); numbers not listed return ENOSYS and are reported once by name.
"""

from __future__ import annotations

from collections.abc import Callable

from vkckpt.abi.syscalls import NUMBERS
from vkckpt.record import Value
from vkckpt.syscalls import sys_attr as at
from vkckpt.syscalls import sys_ckpt as ck
from vkckpt.syscalls import sys_copy as cp
from vkckpt.syscalls import sys_event as ev
from vkckpt.syscalls import sys_fs as fs
from vkckpt.syscalls import sys_futex as fx
from vkckpt.syscalls import sys_io as io
from vkckpt.syscalls import sys_lock as lk
from vkckpt.syscalls import sys_meta as mt
from vkckpt.syscalls import sys_mm as mm
from vkckpt.syscalls import sys_poll as pl
from vkckpt.syscalls import sys_proc as pr
from vkckpt.syscalls import sys_signal as sg
from vkckpt.syscalls import sys_socket as so
from vkckpt.syscalls import sys_sockmsg as sm
from vkckpt.syscalls import sys_sockopt as sp
from vkckpt.syscalls import sys_time as tm
from vkckpt.syscalls import sys_timer as ptm
from vkckpt.syscalls import sys_xattr as xa


class Entry(Value):
    """One table line: handler, how many arguments it takes, support level and a note."""

    __slots__ = ("name", "handler", "nargs", "support", "note")

    def __init__(self, name: str, handler: Callable[..., object], nargs: int, support: str,
                 note: str = "") -> None:
        self.name = name
        self.handler = handler
        self.nargs = nargs
        self.support = support
        self.note = note


def _entry(name: str, fn: Callable[..., object], support: str, note: str) -> Entry:
    nargs = fn.__code__.co_argcount - 2  # minus (kernel, thread); handlers take plain positionals
    return Entry(name, fn, nargs, support, note)


def Supported(name: str, fn: Callable[..., object]) -> Entry:  # noqa: N802 - reads as data
    return _entry(name, fn, "supported", "")


def Partial(name: str, fn: Callable[..., object], note: str) -> Entry:  # noqa: N802
    return _entry(name, fn, "partial", note)


ENTRIES: list[Entry] = [
    # -- files and descriptors
    Supported("read", io.sys_read),
    Supported("write", io.sys_write),
    Supported("readv", io.sys_readv),
    Supported("writev", io.sys_writev),
    Supported("pread64", io.sys_pread64),
    Supported("pwrite64", io.sys_pwrite64),
    Supported("lseek", io.sys_lseek),
    Supported("close", io.sys_close),
    Supported("close_range", io.sys_close_range),
    Supported("dup", io.sys_dup),
    Supported("dup2", io.sys_dup2),
    Supported("dup3", io.sys_dup3),
    Partial("fcntl", io.sys_fcntl, "dup, flags, POSIX and OFD record locks; no leases, "
            "seals, owners, signals or pipe sizes (EINVAL)"),
    Supported("flock", lk.sys_flock),
    Partial("sendfile", cp.sys_sendfile, "from regular files only (EINVAL otherwise)"),
    Supported("copy_file_range", cp.sys_copy_file_range),
    Partial("ioctl", io.sys_ioctl, "FIONBIO, FIONREAD on sockets; everything else ENOTTY "
            "(no terminals)"),
    Supported("pipe", io.sys_pipe),
    Supported("pipe2", io.sys_pipe2),
    Supported("fstat", io.sys_fstat),
    Supported("getdents64", io.sys_getdents64),
    Supported("ftruncate", io.sys_ftruncate),
    Supported("fsync", io.sys_fsync),
    Supported("fdatasync", io.sys_fsync),
    Partial("poll", pl.sys_poll, "regular files, directories and devices are always ready"),
    Partial("ppoll", pl.sys_ppoll, "as poll"),
    Partial("select", pl.sys_select, "as poll"),
    Partial("pselect6", pl.sys_pselect6, "as poll"),
    Supported("epoll_create", ev.sys_epoll_create),
    Supported("epoll_create1", ev.sys_epoll_create1),
    Partial("epoll_ctl", ev.sys_epoll_ctl, "EPOLLEXCLUSIVE wakes every waiter; no "
            "max_user_watches limit"),
    Supported("epoll_wait", ev.sys_epoll_wait),
    Supported("epoll_pwait", ev.sys_epoll_pwait),
    Supported("epoll_pwait2", ev.sys_epoll_pwait2),
    Supported("eventfd", ev.sys_eventfd),
    Supported("eventfd2", ev.sys_eventfd2),
    Partial("timerfd_create", ev.sys_timerfd_create, "CLOCK_MONOTONIC, CLOCK_REALTIME and "
            "CLOCK_BOOTTIME (the *_ALARM clocks are EINVAL)"),
    Partial("timerfd_settime", ev.sys_timerfd_settime, "TFD_TIMER_CANCEL_ON_SET never "
            "cancels: the virtual clock is never set"),
    Supported("timerfd_gettime", ev.sys_timerfd_gettime),
    Supported("signalfd", ev.sys_signalfd),
    Supported("signalfd4", ev.sys_signalfd4),
    Supported("open", fs.sys_open),
    Supported("openat", fs.sys_openat),
    Supported("creat", fs.sys_creat),
    Supported("stat", fs.sys_stat),
    Supported("lstat", fs.sys_lstat),
    Supported("newfstatat", fs.sys_newfstatat),
    Partial("access", fs.sys_access, "checks existence and the x bits only"),
    Partial("faccessat", fs.sys_faccessat, "as access"),
    Partial("faccessat2", fs.sys_faccessat2, "as access; flags ignored"),
    Supported("mkdir", fs.sys_mkdir),
    Supported("mkdirat", fs.sys_mkdirat),
    Supported("unlink", fs.sys_unlink),
    Supported("unlinkat", fs.sys_unlinkat),
    Supported("rmdir", fs.sys_rmdir),
    Supported("rename", fs.sys_rename),
    Supported("renameat", fs.sys_renameat),
    Partial("renameat2", fs.sys_renameat2, "no RENAME_* flags"),
    Supported("symlink", fs.sys_symlink),
    Supported("symlinkat", fs.sys_symlinkat),
    Supported("readlink", fs.sys_readlink),
    Supported("readlinkat", fs.sys_readlinkat),
    Supported("link", fs.sys_link),
    Supported("linkat", fs.sys_linkat),
    Supported("chmod", at.sys_chmod),
    Partial("utimensat", at.sys_utimensat, "modification times only, on the virtual clock"),
    Partial("fchmod", at.sys_fchmod, "a no-op on pipes, the console and devices"),
    Supported("fchmodat", at.sys_fchmodat),
    Supported("truncate", at.sys_truncate),
    Supported("getcwd", fs.sys_getcwd),
    Supported("chdir", fs.sys_chdir),
    Supported("fchdir", fs.sys_fchdir),
    Partial("statfs", fs.sys_statfs, "fixed, plausible numbers; /proc says PROC_SUPER_MAGIC"),
    Partial("fchown", mt.sys_fchown, "owners are virtual, kept per inode (never the host's); a "
            "no-op on pipes, the console and devices"),
    Partial("chown", mt.sys_chown, "as fchown"),
    Partial("lchown", mt.sys_lchown, "as fchown"),
    Partial("fchownat", mt.sys_fchownat, "as fchown"),
    Partial("statx", mt.sys_statx, "the basic stats of stat(2); no birth time, no mount id"),
    Partial("mknod", mt.sys_mknod, "as mknodat"),
    Partial("mknodat", mt.sys_mknodat, "regular files and named FIFOs (an empty placeholder "
            "file on the host, a FIFO to guests); device and socket nodes EPERM"),
    Partial("fallocate", mt.sys_fallocate, "modes 0, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE (zeroes); "
            "others EOPNOTSUPP"),
    Partial("chroot", mt.sys_chroot, "a directory of the guest root; the vkernel's /dev "
            "devices stay reachable"),
    Partial("getxattr", xa.sys_getxattr, "virtual user./trusted./security. attributes kept per "
            "inode (never the host's); system.* (ACLs) EOPNOTSUPP"),
    Partial("lgetxattr", xa.sys_lgetxattr, "as getxattr"),
    Partial("fgetxattr", xa.sys_fgetxattr, "as getxattr"),
    Partial("setxattr", xa.sys_setxattr, "as getxattr; at most 64 attributes, 64 KiB per inode"),
    Partial("lsetxattr", xa.sys_lsetxattr, "as setxattr"),
    Partial("fsetxattr", xa.sys_fsetxattr, "as setxattr"),
    Partial("listxattr", xa.sys_listxattr, "as getxattr"),
    Partial("llistxattr", xa.sys_llistxattr, "as getxattr"),
    Partial("flistxattr", xa.sys_flistxattr, "as getxattr"),
    Partial("removexattr", xa.sys_removexattr, "as getxattr"),
    Partial("lremovexattr", xa.sys_lremovexattr, "as getxattr"),
    Partial("fremovexattr", xa.sys_fremovexattr, "as getxattr"),
    # -- sockets (AF_UNIX; AF_INET and AF_INET6 on a virtual loopback network)
    Partial("socket", so.sys_socket, "AF_UNIX, AF_INET and AF_INET6 (TCP and UDP only, "
            "SOCK_RAW EPERM); other families EAFNOSUPPORT; write(2) on an AF_UNIX socket "
            "passes its creator's credentials (SO_PASSCRED), sendmsg the caller's; each endpoint "
            "holds twice its send budget plus its receive budget of the memory limit "
            "(ENOBUFS when none is left)"),
    Partial("socketpair", so.sys_socketpair, "AF_UNIX only (AF_INET: EOPNOTSUPP); memory "
            "as socket"),
    Partial("bind", so.sys_bind, "AF_UNIX: a path makes a placeholder file that stats as a "
            "socket (and lists as DT_SOCK; open gives ENXIO); autobind names count up from "
            "00000; AF_INET/AF_INET6: loopback or wildcard addresses only (else "
            "EADDRNOTAVAIL), ephemeral ports count up from 32768 (Linux picks at random)"),
    Supported("listen", so.sys_listen),
    Supported("accept", so.sys_accept),
    Supported("accept4", so.sys_accept4),
    Partial("connect", so.sys_connect, "AF_UNIX: no write-permission check on the socket "
            "inode; AF_INET/AF_INET6: only 127.0.0.0/8 and ::1 (else ENETUNREACH), the "
            "loopback handshake completes at once (non-blocking: EINPROGRESS, then writable; "
            "to a full backlog it waits in SYN_SENT for an accept, a blocking one sleeps until "
            "one, where Linux gives ETIMEDOUT after about two minutes; refused when the "
            "listener closes: SO_ERROR ECONNREFUSED; a refused non-blocking one is "
            "EINPROGRESS, then SO_ERROR ECONNREFUSED); the accepted end's memory as socket "
            "(ENOBUFS)"),
    Supported("getsockname", so.sys_getsockname),
    Supported("getpeername", so.sys_getpeername),
    Supported("shutdown", so.sys_shutdown),
    Supported("sendto", sm.sys_sendto),
    Supported("recvfrom", sm.sys_recvfrom),
    Partial("sendmsg", sm.sys_sendmsg, "SCM_CREDENTIALS taken as given (guests run as "
            "root); AF_UNIX sockets that only in-flight SCM_RIGHTS messages queued on each "
            "other hold are garbage collected, with the files they carry, when a socket is "
            "released (Linux's unix_gc, run then rather than later from a workqueue)"),
    Supported("recvmsg", sm.sys_recvmsg),
    Supported("sendmmsg", sm.sys_sendmmsg),
    Partial("recvmmsg", sm.sys_recvmmsg, "timeout ignored (Linux checks it only after "
            "each message received)"),
    Partial("setsockopt", sp.sys_setsockopt, "SOL_SOCKET: SO_SNDBUF, SO_RCVBUF, SO_PASSCRED, "
            "SO_REUSEADDR, SO_REUSEPORT, SO_KEEPALIVE, SO_LINGER; IPPROTO_TCP: TCP_NODELAY, "
            "TCP_KEEPIDLE/INTVL/CNT (stored); IPV6_V6ONLY; others ENOPROTOOPT; a larger "
            "SO_SNDBUF/SO_RCVBUF past the memory limit is ENOBUFS"),
    Partial("getsockopt", sp.sys_getsockopt, "SOL_SOCKET: SO_TYPE, SO_DOMAIN, SO_PROTOCOL, "
            "SO_ERROR, SO_SNDBUF, SO_RCVBUF, SO_PASSCRED, SO_PEERCRED, SO_REUSEADDR, "
            "SO_ACCEPTCONN and the internet options set takes; TCP_INFO ENOPROTOOPT; an "
            "internet socket's buffers start at 212992 (Linux's TCP: tcp_wmem/tcp_rmem)"),
    # -- memory
    Partial("mmap", mm.sys_mmap, "MAP_PRIVATE file maps are copies taken at mmap time"),
    Supported("munmap", mm.sys_munmap),
    Supported("mprotect", mm.sys_mprotect),
    Supported("brk", mm.sys_brk),
    Partial("madvise", mm.sys_madvise, "MADV_DONTNEED zeroes; other valid advice ignored"),
    Partial("mincore", mm.sys_mincore, "every mapped page is reported resident"),
    Partial("mremap", mm.sys_mremap, "moves private memory by copying; no MREMAP_FIXED"),
    Supported("msync", mm.sys_msync),
    # -- processes and threads
    Supported("getpid", pr.sys_getpid),
    Supported("getppid", pr.sys_getppid),
    Supported("gettid", pr.sys_gettid),
    Partial("getuid", pr.sys_getuid, "always 0"),
    Partial("geteuid", pr.sys_getuid, "always 0"),
    Partial("getgid", pr.sys_getuid, "always 0"),
    Partial("getegid", pr.sys_getuid, "always 0"),
    Supported("exit", pr.sys_exit),
    Supported("exit_group", pr.sys_exit_group),
    Supported("fork", pr.sys_fork),
    Partial("vfork", pr.sys_vfork, "the child runs on a copy; the parent waits for exec/exit"),
    Partial("clone", pr.sys_clone, "threads, forks, CLONE_VM|CLONE_VFORK on a copy; no "
            "namespaces"),
    Supported("execve", pr.sys_execve),
    Partial("wait4", pr.sys_wait4, "rusage is zeroed"),
    Supported("waitid", pr.sys_waitid),
    Supported("set_tid_address", pr.sys_set_tid_address),
    Partial("set_robust_list", pr.sys_set_robust_list, "recorded, not walked at exit"),
    Supported("arch_prctl", pr.sys_arch_prctl),
    Supported("uname", pr.sys_uname),
    Supported("sched_yield", pr.sys_sched_yield),
    Supported("getpgid", pr.sys_getpgid),
    Supported("getpgrp", pr.sys_getpgrp),
    Supported("getsid", pr.sys_getsid),
    Supported("setpgid", pr.sys_setpgid),
    Supported("setsid", pr.sys_setsid),
    Supported("umask", pr.sys_umask),
    Partial("prlimit64", pr.sys_prlimit64, "per process, inherited; only RLIMIT_NOFILE is "
            "enforced; fs.nr_open is 1024"),
    Partial("getrlimit", pr.sys_getrlimit, "as prlimit64"),
    Partial("setrlimit", pr.sys_setrlimit, "as prlimit64"),
    Partial("getrusage", pr.sys_getrusage, "zeroed"),
    Partial("prctl", pr.sys_prctl, "PR_SET_NAME/PR_GET_NAME only"),
    Partial("sched_getaffinity", pr.sys_sched_getaffinity, "one CPU"),
    Partial("sched_setaffinity", pr.sys_sched_setaffinity, "one CPU: a mask without it "
            "is EINVAL"),
    Partial("getgroups", pr.sys_getgroups, "group 0 only"),
    Partial("getpriority", pr.sys_getpriority, "nice is always 0"),
    Partial("ioprio_get", mt.sys_ioprio_get, "virtual, per process (0 until set)"),
    Partial("ioprio_set", mt.sys_ioprio_set, "virtual: recorded, inherited by fork, "
            "schedules nothing"),
    Partial("rseq", pr.sys_nosys_quiet, "ENOSYS (musl copes)"),
    Partial("membarrier", pr.sys_nosys_quiet, "ENOSYS"),
    Supported("futex", fx.sys_futex),
    # -- signals
    Supported("rt_sigaction", sg.sys_rt_sigaction),
    Supported("rt_sigprocmask", sg.sys_rt_sigprocmask),
    Supported("rt_sigreturn", sg.sys_rt_sigreturn),
    Supported("rt_sigpending", sg.sys_rt_sigpending),
    Supported("rt_sigsuspend", sg.sys_rt_sigsuspend),
    Supported("pause", sg.sys_pause),
    Supported("sigaltstack", sg.sys_sigaltstack),
    Supported("kill", pr.sys_kill),
    Supported("tkill", sg.sys_tkill),
    Supported("tgkill", sg.sys_tgkill),
    Supported("rt_sigtimedwait", sg.sys_rt_sigtimedwait),
    # -- time and randomness
    Supported("clock_gettime", tm.sys_clock_gettime),
    Supported("clock_getres", tm.sys_clock_getres),
    Supported("gettimeofday", tm.sys_gettimeofday),
    Supported("time", tm.sys_time),
    Supported("nanosleep", tm.sys_nanosleep),
    Supported("alarm", tm.sys_alarm),
    Supported("getitimer", tm.sys_getitimer),
    Partial("setitimer", tm.sys_setitimer, "ITIMER_VIRTUAL and ITIMER_PROF count the "
            "process's blocks, checked when a slice ends; system calls take no CPU time"),
    Partial("timer_create", ptm.sys_timer_create, "CLOCK_REALTIME, CLOCK_MONOTONIC and "
            "CLOCK_BOOTTIME only (no CPU-time clocks): EINVAL for others"),
    Supported("timer_settime", ptm.sys_timer_settime),
    Supported("timer_gettime", ptm.sys_timer_gettime),
    Partial("timer_getoverrun", ptm.sys_timer_getoverrun, "the overrun of the signal last "
            "queued, counted up while it is pending"),
    Supported("timer_delete", ptm.sys_timer_delete),
    Supported("clock_nanosleep", tm.sys_clock_nanosleep),
    Supported("getrandom", tm.sys_getrandom),
    Partial("times", tm.sys_times, "user time only"),
    Supported("getcpu", tm.sys_getcpu),
    Partial("sysinfo", tm.sys_sysinfo, "the memory limit as RAM, the vkernel's memory "
            "account as used, no swap, zero load"),
    # -- vkckpt's own
    Supported("checkpoint", ck.sys_checkpoint),
]

TABLE: dict[int, Entry] = {NUMBERS[e.name]: e for e in ENTRIES}
assert len(TABLE) == len(ENTRIES), "a syscall is listed twice"

#: Sleeping calls that report something when a signal handler interrupts them (instead of a
#: bare -EINTR): fn(kernel, thread, sleep) -> the call's result.
ON_EINTR: dict[int, Callable[..., int]] = {
    NUMBERS["nanosleep"]: tm.nanosleep_interrupted,
    NUMBERS["clock_nanosleep"]: tm.clock_nanosleep_interrupted,
    NUMBERS["select"]: pl.select_interrupted,
    NUMBERS["pselect6"]: pl.pselect6_interrupted,
    NUMBERS["sendmmsg"]: sm.mmsg_interrupted,
    NUMBERS["recvmmsg"]: sm.mmsg_interrupted,
}
