/* goruntime: the system calls Go's runtime makes at start-up and while it runs, with the
 * edge cases it may hit (sched_getaffinity, madvise, sigaltstack, rt_sigaction, tgkill,
 * mmap hints, nanosleep), each printed as its result or errno name. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static const char *name(long r)
{
    if (r >= 0)
        return "ok";
    switch (errno) {
    case EINVAL: return "EINVAL";
    case ENOMEM: return "ENOMEM";
    case ESRCH: return "ESRCH";
    case EFAULT: return "EFAULT";
    case EPERM: return "EPERM";
    case EAGAIN: return "EAGAIN";
    default: return strerror(errno);
    }
}

#define SHOW(what, call) do { errno = 0; long r_ = (call); \
        printf("%-34s %s\n", what, name(r_)); } while (0)

static volatile int got;
static void on_urg(int sig) { got = sig; }

int main(void)
{
    unsigned long mask[16];
    long n = syscall(SYS_sched_getaffinity, 0, sizeof mask, mask);
    printf("%-34s %s cpu0=%lu\n", "sched_getaffinity", n > 0 ? "ok" : "fail", mask[0] & 1);
    SHOW("sched_getaffinity size 12", syscall(SYS_sched_getaffinity, 0, 12, mask));
    SHOW("sched_getaffinity no such pid", syscall(SYS_sched_getaffinity, 999999, 64, mask));

    char *p = mmap(NULL, 8 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    SHOW("madvise HUGEPAGE", madvise(p, 4 << 20, MADV_HUGEPAGE));
    SHOW("madvise NOHUGEPAGE", madvise(p, 4 << 20, MADV_NOHUGEPAGE));
    SHOW("madvise FREE", madvise(p, 4096, MADV_FREE));
    SHOW("madvise unknown advice", madvise(p, 4096, 9999));
    SHOW("madvise unaligned", madvise(p + 1, 4096, MADV_DONTNEED));
    SHOW("madvise length 0", madvise(p, 0, MADV_DONTNEED));
    p[0] = 7;
    SHOW("madvise DONTNEED", madvise(p, 4096, MADV_DONTNEED));
    printf("%-34s %d\n", "after DONTNEED", p[0]);
    munmap(p + (4 << 20), 4 << 20);
    SHOW("madvise past the end", madvise(p, 8 << 20, MADV_NOHUGEPAGE));

    stack_t ss = {0}, old;
    static char altstack[1 << 16];
    ss.ss_sp = altstack;
    ss.ss_size = 1024;
    SHOW("sigaltstack too small", sigaltstack(&ss, NULL));
    ss.ss_size = sizeof altstack;
    ss.ss_flags = 12345;
    SHOW("sigaltstack bad flags", sigaltstack(&ss, NULL));
    ss.ss_flags = 0;
    SHOW("sigaltstack", sigaltstack(&ss, &old));
    ss.ss_flags = SS_DISABLE;
    SHOW("sigaltstack disable", sigaltstack(&ss, &old));
    printf("%-34s %d\n", "old size matches", old.ss_size == sizeof altstack);

    struct sigaction sa = {0};
    sa.sa_handler = on_urg;
    sa.sa_flags = SA_ONSTACK | SA_RESTART | SA_SIGINFO;
    SHOW("rt_sigaction SIGKILL", sigaction(SIGKILL, &sa, NULL));
    SHOW("rt_sigaction SIGSTOP", sigaction(SIGSTOP, &sa, NULL));
    SHOW("rt_sigaction 65", syscall(SYS_rt_sigaction, 65, NULL, &sa, 8));
    SHOW("rt_sigaction sigsetsize 4", syscall(SYS_rt_sigaction, SIGURG, NULL, &sa, 4));
    SHOW("rt_sigaction SIGURG", sigaction(SIGURG, &sa, NULL));
    pid_t pid = getpid();
    long tid = syscall(SYS_gettid);
    SHOW("tgkill SIGURG", syscall(SYS_tgkill, pid, tid, SIGURG));
    printf("%-34s %d\n", "handler saw", got);
    SHOW("tgkill wrong tgid", syscall(SYS_tgkill, pid + 100, tid, SIGURG));
    SHOW("tgkill tid 0", syscall(SYS_tgkill, pid, 0, SIGURG));
    SHOW("tgkill signal 0", syscall(SYS_tgkill, pid, tid, 0));
    SHOW("tgkill signal 65", syscall(SYS_tgkill, pid, tid, 65));

    void *hint = (void *)0xc000000000UL;
    void *q = mmap(hint, 1 << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("%-34s %d\n", "mmap hint honoured", q == hint);
    SHOW("mprotect reserve rw", mprotect(q, 1 << 16, PROT_READ | PROT_WRITE));
    void *q2 = mmap(hint, 1 << 16, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    printf("%-34s %d\n", "mmap fixed over reserve", q2 == hint);
    SHOW("mincore", mincore(q, 4096, (unsigned char *)mask));

    struct timespec ts = {0, -1};
    SHOW("nanosleep negative nsec", nanosleep(&ts, NULL));
    ts.tv_nsec = 1000000000;
    SHOW("nanosleep nsec 1e9", nanosleep(&ts, NULL));
    ts.tv_nsec = 1000;
    SHOW("nanosleep 1us", nanosleep(&ts, NULL));
    SHOW("clock_gettime bad clock", clock_gettime(12345, &ts));
    SHOW("clock_getres MONOTONIC", clock_getres(CLOCK_MONOTONIC, &ts));
    printf("%-34s %d\n", "resolution under 1us", ts.tv_sec == 0 && ts.tv_nsec < 1000);
    SHOW("sched_yield", sched_yield());
    return 0;
}
