/* badptr: every syscall family called through syscall() with bad pointers; prints one line per
 * call, "name[kind]: ret=R errno=NAME", exactly as the kernel answered (the native kernel is the
 * oracle).  The output is deterministic: no pids, addresses or host paths are printed.
 *
 *   badptr [GROUP...]    GROUP: null one high none ro edge (default: all of them)
 *   badptr fuzz [N [SEED]]  N (default 20000) pseudo-random calls of the harmless syscalls with
 *                        hostile arguments; prints only "fuzz done".  Meant for vkckpt only:
 *                        natively it would be at the mercy of the host kernel's answers.
 *
 * Pointer kinds: null (0), one (0x1), high (an unmapped address far above every mapping vkckpt
 * or Linux makes, below the stack), none (a PROT_NONE page), ro (a read-only page, used only
 * where the kernel must write).  "edge" checks what a failed call leaves behind: partial copies
 * up to a PROT_NONE page, state changed before the EFAULT, descriptors, reaped children.
 * Files live in work/badptr.d (removed at the end).  Exits 0 when it ran to the end. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DIR_ "work/badptr.d"
#define FILE_ DIR_ "/data"
#define PAGE 4096
#define HIGH_ADDR 0x7ff000000000UL /* 64 GiB below the lowest randomized stack top */
#define ARCH_GET_FS 0x1003

static char *area; /* page 0 RW, 1 PROT_NONE, 2 read-only, 3 RW, 4 PROT_NONE (a guard) */
#define RW0 (area)
#define NONE_PAGE (area + PAGE)
#define RO_PAGE (area + 2 * PAGE)
#define RW3 (area + 3 * PAGE)

static const char *errname(int e)
{
    switch (e) {
    case 0: return "0";
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EINTR: return "EINTR";
    case EBADF: return "EBADF";
    case ECHILD: return "ECHILD";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case ERANGE: return "ERANGE";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENOSYS: return "ENOSYS";
    case ETIMEDOUT: return "ETIMEDOUT";
    default: return "other";
    }
}

static const char *kind_name;

/* Print one result; errno is only meaningful (and printed) when ret == -1. */
static void show(const char *name, long ret)
{
    int e = errno;
    printf("%s[%s]: ret=%ld errno=%s\n", name, kind_name, ret, ret == -1 ? errname(e) : "0");
    errno = 0;
}

#define CALL(name, ...) show(name, (errno = 0, syscall(__VA_ARGS__)))

static int data_fd = -1;

static long pos(void)
{
    return lseek(data_fd, 0, SEEK_CUR);
}

static void reset_pos(void)
{
    lseek(data_fd, 0, SEEK_SET);
}

/* ---- pointers the kernel only reads ------------------------------------------------------ */

static void io_calls(void *p)
{
    struct iovec iov = {p, 16};
    reset_pos();
    CALL("read", SYS_read, data_fd, p, 16);
    printf("  pos=%ld\n", pos());
    CALL("readv-iov", SYS_readv, data_fd, p, 1);
    CALL("readv-base", SYS_readv, data_fd, &iov, 1);
    CALL("pread", SYS_pread64, data_fd, p, 16, 0);
    printf("  pos=%ld\n", pos());
    if (p == (void *)RO_PAGE)
        return; /* the kernel may read a read-only page: not a bad pointer for writes */
    CALL("write", SYS_write, data_fd, p, 16);
    CALL("writev-iov", SYS_writev, data_fd, p, 1);
    CALL("writev-base", SYS_writev, data_fd, &iov, 1);
    CALL("pwrite", SYS_pwrite64, data_fd, p, 16, 0);
    CALL("write-stdout", SYS_write, 1, p, 16);
    printf("  pos=%ld\n", pos());
}

static void path_calls(void *p)
{
    char *argv[] = {"badptr", NULL};
    char *bad_argv[] = {"badptr", p, NULL};
    CALL("open", SYS_open, p, O_RDONLY);
    CALL("openat", SYS_openat, AT_FDCWD, p, O_RDONLY);
    CALL("creat", SYS_creat, p, 0644);
    CALL("stat-path", SYS_stat, p, RW3);
    CALL("lstat-path", SYS_lstat, p, RW3);
    CALL("newfstatat-path", SYS_newfstatat, AT_FDCWD, p, RW3, 0);
    CALL("access", SYS_access, p, F_OK);
    CALL("mkdir", SYS_mkdir, p, 0755);
    CALL("rmdir", SYS_rmdir, p);
    CALL("unlink", SYS_unlink, p);
    CALL("rename-old", SYS_rename, p, DIR_ "/renamed");
    CALL("rename-new", SYS_rename, FILE_, p);
    CALL("link-new", SYS_link, FILE_, p);
    CALL("symlink-target", SYS_symlink, p, DIR_ "/sym");
    CALL("readlink-path", SYS_readlink, p, RW3, 64);
    CALL("chmod", SYS_chmod, p, 0644);
    CALL("truncate", SYS_truncate, p, 0);
    CALL("chdir", SYS_chdir, p);
    CALL("statfs-path", SYS_statfs, p, RW3);
    CALL("execve-path", SYS_execve, p, argv, NULL);
    if (p == NULL)
        return; /* NULL argv/envp mean empty lists: the exec would succeed */
    CALL("execve-argv", SYS_execve, "./badptr", p, NULL);
    CALL("execve-argv-elem", SYS_execve, "./badptr", bad_argv, NULL);
    CALL("execve-envp", SYS_execve, "./badptr", argv, p);
}

static void time_calls(void *p)
{
    CALL("nanosleep-req", SYS_nanosleep, p, NULL);
    CALL("clock_nanosleep-req", SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, p, NULL);
    if (p != NULL) /* NULL would mean "no timeout": wait forever */
        CALL("futex-wait-timeout", SYS_futex, RW0, FUTEX_WAIT_PRIVATE, 0, p, NULL, 0);
}

static void signal_in_calls(void *p)
{
    CALL("rt_sigaction-act", SYS_rt_sigaction, SIGUSR1, p, NULL, 8);
    CALL("rt_sigprocmask-set", SYS_rt_sigprocmask, SIG_BLOCK, p, NULL, 8);
    CALL("sigaltstack-ss", SYS_sigaltstack, p, NULL);
    CALL("rt_sigsuspend", SYS_rt_sigsuspend, p, 8);
    CALL("rt_sigtimedwait-set", SYS_rt_sigtimedwait, p, NULL, NULL, 8);
    CALL("poll-fds", SYS_poll, p, 1, 0);
    CALL("futex-wait", SYS_futex, p, FUTEX_WAIT_PRIVATE, 1, NULL, NULL, 0);
    CALL("futex-wait-shared", SYS_futex, p, FUTEX_WAIT, 1, NULL, NULL, 0);
    CALL("futex-wake-shared", SYS_futex, p, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* ---- pointers the kernel writes through --------------------------------------------------- */

static void out_calls(void *p)
{
    int dfd;
    CALL("fstat", SYS_fstat, data_fd, p);
    CALL("stat-buf", SYS_stat, FILE_, p);
    CALL("newfstatat-buf", SYS_newfstatat, AT_FDCWD, FILE_, p, 0);
    CALL("statfs-buf", SYS_statfs, DIR_, p);
    CALL("clock_gettime", SYS_clock_gettime, CLOCK_MONOTONIC, p);
    CALL("clock_gettime-realtime", SYS_clock_gettime, CLOCK_REALTIME, p);
    CALL("clock_getres", SYS_clock_getres, CLOCK_MONOTONIC, p);
    CALL("gettimeofday", SYS_gettimeofday, p, NULL);
    if (p != NULL) /* time(NULL) returns the (varying) time */
        CALL("time", SYS_time, p);
    CALL("rt_sigaction-oact", SYS_rt_sigaction, SIGUSR1, NULL, p, 8);
    CALL("rt_sigprocmask-oset", SYS_rt_sigprocmask, SIG_BLOCK, NULL, p, 8);
    CALL("rt_sigpending", SYS_rt_sigpending, p, 8);
    CALL("sigaltstack-old", SYS_sigaltstack, NULL, p);
    CALL("uname", SYS_uname, p);
    CALL("getcwd", SYS_getcwd, p, 256);
    CALL("getrandom", SYS_getrandom, p, 16, 0);
    CALL("arch_prctl-get_fs", SYS_arch_prctl, ARCH_GET_FS, p);
    CALL("getrlimit", SYS_getrlimit, RLIMIT_NOFILE, p);
    CALL("prlimit64-old", SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, p);
    CALL("getrusage", SYS_getrusage, RUSAGE_SELF, p);
    CALL("sched_getaffinity", SYS_sched_getaffinity, 0, 128, p);
    CALL("readlink-buf", SYS_readlink, DIR_ "/link", p, 64);
    dfd = open(DIR_, O_RDONLY | O_DIRECTORY);
    CALL("getdents64", SYS_getdents64, dfd, p, 4096);
    close(dfd);
}

/* pipe/pipe2 into a bad array: EFAULT and no descriptor left behind. */
static void pipe_calls(void *p)
{
    CALL("pipe", SYS_pipe, p);
    CALL("pipe2", SYS_pipe2, p, O_CLOEXEC);
    int fd = open(FILE_, O_RDONLY);
    printf("  next fd=%d\n", fd);
    close(fd);
}

/* wait4/waitid reporting through a bad pointer: Linux reaps the child, then says EFAULT. */
static void wait_calls(void *p)
{
    static const struct {
        const char *name;
        int which; /* 0 status, 1 rusage, 2 waitid infop */
    } cases[] = {{"wait4-status", 0}, {"wait4-rusage", 1}, {"waitid-infop", 2}};
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0)
            _exit(3);
        siginfo_t si;
        /* wait until the child is a zombie without reaping it */
        waitid(P_PID, pid, &si, WEXITED | WNOWAIT);
        long r;
        errno = 0;
        if (cases[i].which == 0)
            r = syscall(SYS_wait4, pid, p, 0, NULL);
        else if (cases[i].which == 1)
            r = syscall(SYS_wait4, pid, NULL, 0, p);
        else
            r = syscall(SYS_waitid, P_PID, pid, p, WEXITED, NULL);
        if (r == pid)
            r = 1000;
        show(cases[i].name, r);
        int st = 0;
        errno = 0;
        r = waitpid(pid, &st, WNOHANG);
        printf("  again: %s%s\n", r == pid ? "reaped-now" : r == 0 ? "running" : "gone:",
               r == -1 ? errname(errno) : "");
    }
}

static void run_kind(const char *name, void *p)
{
    kind_name = name;
    int ro = p == (void *)RO_PAGE;
    printf("== %s\n", name);
    io_calls(p);
    if (!ro) {
        path_calls(p);
        time_calls(p);
        signal_in_calls(p);
    }
    out_calls(p);
    pipe_calls(p);
    wait_calls(p);
    fflush(stdout);
}

/* ---- edge: partial copies and what a failed call leaves behind ----------------------------- */

static void edge(void)
{
    kind_name = "edge";
    printf("== edge\n");
    /* read/write straddling into the PROT_NONE page: a partial transfer, not EFAULT */
    char *tail = NONE_PAGE - 100;
    reset_pos();
    CALL("read-straddle", SYS_read, data_fd, tail, 300);
    printf("  pos=%ld\n", pos());
    reset_pos();
    CALL("pread-straddle", SYS_pread64, data_fd, tail, 300, 0);
    memset(tail, 'w', 100);
    CALL("write-straddle", SYS_write, data_fd, tail, 300);
    printf("  pos=%ld\n", pos());
    CALL("pwrite-straddle", SYS_pwrite64, data_fd, tail, 300, 0);
    struct iovec two[2] = {{RW3, 10}, {NONE_PAGE, 10}};
    reset_pos();
    CALL("readv-second-bad", SYS_readv, data_fd, two, 2);
    printf("  pos=%ld\n", pos());
    CALL("writev-second-bad", SYS_writev, data_fd, two, 2);
    printf("  pos=%ld\n", pos());
    CALL("getrandom-straddle", SYS_getrandom, NONE_PAGE - 8, 16, 0);

    /* a path running into the PROT_NONE page without a NUL */
    memset(NONE_PAGE - 8, 'a', 8);
    CALL("open-unterminated", SYS_open, NONE_PAGE - 8, O_RDONLY);
    /* a path in a read-only page is fine to read */
    CALL("open-ro-path", SYS_open, RO_PAGE, O_RDONLY);
    CALL("stat-ro-path", SYS_stat, RO_PAGE, RW3);
    struct timespec *ts = (struct timespec *)(RO_PAGE + 64);
    CALL("nanosleep-ro-req", SYS_nanosleep, ts, NULL);
    CALL("futex-wait-ro", SYS_futex, RO_PAGE, FUTEX_WAIT_PRIVATE, 1, NULL, NULL, 0);

    /* bad pointers the kernel never dereferences */
    CALL("futex-wake-null", SYS_futex, NULL, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    CALL("futex-wake-none", SYS_futex, NONE_PAGE, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    CALL("futex-wait-one", SYS_futex, (void *)1, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
    CALL("gettimeofday-null", SYS_gettimeofday, NULL, NULL);
    printf("time-null: positive=%d\n", syscall(SYS_time, NULL) > 0);
    CALL("read-zero-len", SYS_read, data_fd, NULL, 0);
    CALL("write-zero-len", SYS_write, data_fd, NULL, 0);
    int null_fd = open("/dev/null", O_RDWR);
    CALL("read-devnull", SYS_read, null_fd, NULL, 16);
    CALL("write-devnull", SYS_write, null_fd, NULL, 16);
    close(null_fd);
    CALL("clock_gettime-badclock", SYS_clock_gettime, 12345, NULL);
    CALL("getcwd-size0", SYS_getcwd, RW3, 0);
    CALL("getcwd-null-size0", SYS_getcwd, NULL, 0);
    CALL("rt_sigaction-badsize", SYS_rt_sigaction, SIGUSR1, NULL, NULL, 4);
    CALL("rt_sigaction-sigkill", SYS_rt_sigaction, SIGKILL, NULL, (void *)1, 8);
    CALL("rt_sigaction-sig0", SYS_rt_sigaction, 0, (void *)1, NULL, 8);

    /* the order of checks: rename/link read both paths before looking anything up */
    CALL("rename-missing-bad", SYS_rename, DIR_ "/missing", NULL);
    CALL("link-missing-bad", SYS_link, DIR_ "/missing", NULL);
    CALL("symlink-bad-missingdir", SYS_symlink, NULL, DIR_ "/missing/x");
    CALL("execve-missing-badargv", SYS_execve, "./missing", (void *)1, NULL);

    /* rt_sigaction with a valid act and a bad oact: the action IS installed */
    struct sigaction cur;
    struct {
        void *handler;
        unsigned long flags;
        void *restorer;
        unsigned long mask;
    } ign = {SIG_IGN, 0, NULL, 0};
    CALL("rt_sigaction-act-badoact", SYS_rt_sigaction, SIGUSR2, &ign, (void *)1, 8);
    sigaction(SIGUSR2, NULL, &cur);
    printf("  SIGUSR2 now ignored=%d\n", cur.sa_handler == SIG_IGN);
    signal(SIGUSR2, SIG_DFL);
    /* rt_sigprocmask with a valid set and a bad oset: the mask IS changed */
    sigset_t block, now;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR2);
    CALL("rt_sigprocmask-set-badoset", SYS_rt_sigprocmask, SIG_BLOCK, &block, (void *)1, 8);
    sigprocmask(SIG_SETMASK, NULL, &now);
    printf("  SIGUSR2 now blocked=%d\n", sigismember(&now, SIGUSR2));
    sigprocmask(SIG_UNBLOCK, &block, NULL);
    /* sigaltstack with a valid ss and a bad old: the stack IS installed */
    static char alt[65536];
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt, .ss_flags = 0}, os;
    CALL("sigaltstack-ss-badold", SYS_sigaltstack, &ss, (void *)1);
    sigaltstack(NULL, &os);
    printf("  altstack enabled=%d\n", !(os.ss_flags & SS_DISABLE));
    ss.ss_flags = SS_DISABLE;
    sigaltstack(&ss, NULL);

    /* a directory read into a bad buffer loses no entries */
    int dfd = open(DIR_, O_RDONLY | O_DIRECTORY);
    CALL("getdents64-null", SYS_getdents64, dfd, NULL, 4096);
    long n = syscall(SYS_getdents64, dfd, RW3, PAGE);
    int names = 0;
    for (long off = 0; off < n;) {
        unsigned short reclen = *(unsigned short *)(RW3 + off + 16);
        names++;
        off += reclen;
    }
    printf("  entries after EFAULT=%d\n", names);
    close(dfd);

    /* a pipe's data stays in the pipe when the reader's buffer is bad */
    int pfd[2];
    pipe2(pfd, O_NONBLOCK);
    write(pfd[1], "hello", 5);
    CALL("read-pipe-null", SYS_read, pfd[0], NULL, 16);
    CALL("read-pipe-straddle", SYS_read, pfd[0], NONE_PAGE - 2, 16);
    char buf[16];
    long got = read(pfd[0], buf, sizeof buf);
    printf("  pipe then held %ld bytes\n", got);
    close(pfd[0]);
    close(pfd[1]);
    fflush(stdout);
}

/* ---- read-only page where the kernel must write, with the same after-effects ---------------- */

static void ro_effects(void)
{
    /* a pipe read into a read-only page must not consume the data */
    int pfd[2];
    pipe2(pfd, O_NONBLOCK);
    write(pfd[1], "hello", 5);
    kind_name = "ro";
    CALL("read-pipe-ro", SYS_read, pfd[0], RO_PAGE, 16);
    char buf[16];
    long got = read(pfd[0], buf, sizeof buf);
    printf("  pipe then held %ld bytes\n", got);
    close(pfd[0]);
    close(pfd[1]);
    /* RW then RO: a partial read */
    reset_pos();
    CALL("read-straddle-ro", SYS_read, data_fd, RO_PAGE - 100, 300);
    printf("  pos=%ld\n", pos());
    printf("  ro page intact=%d\n", memcmp(RO_PAGE, DIR_ "/ro-path", 17) == 0);
    fflush(stdout);
}

/* ---- fuzz: hostile arguments to every call that cannot end, replace or hang the process ---- */

static unsigned long long rng = 0x9E3779B97F4A7C15ULL;

static unsigned long long next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Everything the fuzzer points at lives in the RW3 page, between PROT_NONE guards, and is
 * rebuilt before every call: the calls scribble on their buffers (a huge getrandom fills
 * the page), and must not reach the program's own data.  Nothing points at read-only data
 * or code either, so a vkernel that wrongly writes read-only pages cannot corrupt them. */
struct fuzzmem {
    char paths[7][40];
    struct timespec times[6];
    struct iovec iov[4];
};
#define fz (*(struct fuzzmem *)(RW3 + 2048))

static void fuzz_reset(void)
{
    static const char *const paths[7] = {DIR_ "/fuzz.d/a", DIR_ "/fuzz.d/b/c",
                                         DIR_ "/fuzz.d/file", "", "/", "..", "/dev/null"};
    for (int i = 0; i < 7; i++)
        strcpy(fz.paths[i], paths[i]);
    fz.times[0] = (struct timespec){0, 1};
    fz.times[1] = (struct timespec){0, 999999999};
    fz.times[2] = (struct timespec){1, 0};
    fz.times[3] = (struct timespec){-1, 0};
    fz.times[4] = (struct timespec){0, 1000000000};
    fz.times[5] = (struct timespec){1000, 0};
}

static int fuzz(long n)
{
    /* no exit/exec/fork/sigreturn/suspend, nothing that unmaps or re-protects memory or sets
     * FS (musl needs its TLS), no pipes (a read could sleep forever), no chmod (the guest
     * root must stay removable); the calls that can sleep or signal get tame arguments below */
    static const int nrs[] = {
        SYS_read, SYS_write, SYS_open, SYS_close, SYS_stat, SYS_fstat, SYS_lstat, SYS_lseek,
        SYS_pread64, SYS_pwrite64, SYS_readv, SYS_writev, SYS_access, SYS_sched_yield, SYS_dup,
        SYS_dup2, SYS_getpid, SYS_uname, SYS_fcntl, SYS_fsync, SYS_fdatasync, SYS_truncate,
        SYS_ftruncate, SYS_getdents64, SYS_getcwd, SYS_chdir, SYS_fchdir, SYS_rename, SYS_mkdir,
        SYS_rmdir, SYS_creat, SYS_link, SYS_unlink, SYS_symlink, SYS_readlink, SYS_umask,
        SYS_gettimeofday, SYS_getrlimit, SYS_getrusage, SYS_times, SYS_getppid, SYS_getpgrp,
        SYS_setpgid, SYS_getpgid, SYS_getsid, SYS_rt_sigaction, SYS_rt_sigprocmask,
        SYS_rt_sigpending, SYS_sigaltstack, SYS_statfs, SYS_prctl, SYS_gettid, SYS_time,
        SYS_sched_getaffinity, SYS_set_tid_address, SYS_clock_gettime, SYS_clock_getres,
        SYS_nanosleep, SYS_clock_nanosleep, SYS_wait4, SYS_waitid, SYS_openat, SYS_mkdirat,
        SYS_newfstatat, SYS_unlinkat, SYS_renameat, SYS_linkat, SYS_symlinkat, SYS_readlinkat,
        SYS_faccessat, SYS_dup3, SYS_prlimit64, SYS_getrandom, SYS_renameat2, SYS_ioctl,
        SYS_set_robust_list, SYS_getuid, SYS_setsid, SYS_poll, SYS_ppoll, SYS_futex, SYS_kill,
        SYS_tkill, SYS_tgkill, SYS_rt_sigtimedwait, SYS_mmap, SYS_arch_prctl,
        400, 423, 0x7fffffff, -1, /* no such system calls */
    };
    const unsigned nnrs = sizeof nrs / sizeof nrs[0];
    struct iovec *iov = fz.iov;
    mkdir(DIR_ "/fuzz.d", 0755);
    int fd3 = open(DIR_ "/fuzz.d/file", O_RDWR | O_CREAT, 0644);
    int fd4 = open(DIR_ "/fuzz.d", O_RDONLY | O_DIRECTORY);
    int fd5 = open("/dev/null", O_RDWR);
    int fd6 = open("/dev/zero", O_RDONLY);
    unsigned long pool[] = {
        0, 1, 2, (unsigned long)-1, (unsigned long)fd3, (unsigned long)fd4, (unsigned long)fd5,
        (unsigned long)fd6, 8, 16, 100, 4096, 0x7fffffff, 0x80000000UL, 1UL << 32,
        (unsigned long)-4096, 1UL << 63, (unsigned long)-100 /* AT_FDCWD */,
        (unsigned long)RW3, (unsigned long)(NONE_PAGE - 3), (unsigned long)NONE_PAGE,
        (unsigned long)RO_PAGE, HIGH_ADDR, 0xffffffff81000000UL, (unsigned long)iov,
        0, 0, 0, 0, 0, 0, 0, /* the paths */
        0, 0, 0, 0, /* timespecs */
    };
    const unsigned npool = sizeof pool / sizeof pool[0];
    for (int i = 0; i < 7; i++)
        pool[npool - 11 + i] = (unsigned long)fz.paths[i];
    for (int i = 0; i < 4; i++)
        pool[npool - 4 + i] = (unsigned long)&fz.times[i + 2];
    for (long i = 0; i < n; i++) {
        fuzz_reset();
        iov[0] = (struct iovec){RW3, 16};
        iov[1] = (struct iovec){NONE_PAGE - 8, 64};
        iov[2] = (struct iovec){(void *)1, 8};
        iov[3] = (struct iovec){RW0, (size_t)-1};
        int nr = nrs[next_rand() % nnrs];
        unsigned long a[6];
        for (int j = 0; j < 6; j++)
            a[j] = pool[next_rand() % npool];
        if (nr == SYS_rt_sigaction && (a[0] == SIGSEGV || a[0] == SIGBUS))
            continue; /* a random handler for a real fault would not return */
        /* a timespec from random bytes could mean centuries: Linux would sleep them too */
        if (nr == SYS_nanosleep)
            a[0] = (unsigned long)&fz.times[next_rand() % 6];
        if (nr == SYS_clock_nanosleep)
            a[2] = (unsigned long)&fz.times[next_rand() % 6];
        if (nr == SYS_poll)
            a[2] = 0; /* no timeout: return at once */
        if (nr == SYS_ppoll || nr == SYS_rt_sigtimedwait)
            a[2] = (unsigned long)&fz.times[next_rand() % 3];
        if (nr == SYS_futex && ((a[1] & 127) == FUTEX_WAIT || (a[1] & 127) == FUTEX_WAIT_BITSET))
            a[3] = (unsigned long)&fz.times[next_rand() % 3];
        if (nr == SYS_kill)
            a[1] = 0; /* only probe */
        if (nr == SYS_tkill)
            a[1] = 0;
        if (nr == SYS_tgkill)
            a[2] = 0;
        if (nr == SYS_mmap) /* never over existing memory */
            a[3] = (a[3] & ~(unsigned long)(MAP_FIXED | MAP_FIXED_NOREPLACE)) | MAP_ANONYMOUS;
        if (nr == SYS_arch_prctl)
            a[0] = 0x1003 + (next_rand() & 1); /* ARCH_GET_FS or ARCH_GET_GS */
        syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    }
    return 0;
}

static void setup(void)
{
    mkdir("work", 0755);
    mkdir(DIR_, 0755);
    data_fd = open(FILE_, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (data_fd < 0) {
        perror("open " FILE_);
        exit(1);
    }
    char block[1024];
    for (int i = 0; i < 8; i++) {
        memset(block, 'a' + i, sizeof block);
        write(data_fd, block, sizeof block);
    }
    symlink("data", DIR_ "/link");
    area = mmap(NULL, 5 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    strcpy(RO_PAGE, DIR_ "/ro-path"); /* does not exist */
    struct timespec one_ns = {0, 1};
    memcpy(RO_PAGE + 64, &one_ns, sizeof one_ns);
    mprotect(NONE_PAGE, PAGE, PROT_NONE);
    mprotect(RO_PAGE, PAGE, PROT_READ);
    mprotect(RW3 + PAGE, PAGE, PROT_NONE);
}

static void cleanup(void)
{
    close(data_fd);
    unlink(DIR_ "/link");
    unlink(DIR_ "/sym");
    unlink(DIR_ "/renamed");
    unlink(FILE_);
    rmdir(DIR_);
}

int main(int argc, char **argv)
{
    static const char *all[] = {"null", "one", "high", "none", "ro", "edge"};
    const char **groups = all;
    int ngroups = sizeof all / sizeof all[0];
    if (argc > 1) {
        groups = (const char **)argv + 1;
        ngroups = argc - 1;
    }
    setup();
    if (argc > 1 && strcmp(argv[1], "fuzz") == 0) {
        fflush(stdout);
        int out = dup2(1, 900); /* the fuzzer may close or redirect stdout; 900 is not in its pool */
        if (argc > 3)
            rng ^= strtoull(argv[3], NULL, 0) * 0x2545F4914F6CDD1DULL;
        fuzz(argc > 2 ? atol(argv[2]) : 20000);
        dprintf(out, "fuzz done\n");
        return 0;
    }
    for (int i = 0; i < ngroups; i++) {
        const char *g = groups[i];
        if (strcmp(g, "null") == 0)
            run_kind(g, NULL);
        else if (strcmp(g, "one") == 0)
            run_kind(g, (void *)1);
        else if (strcmp(g, "high") == 0)
            run_kind(g, (void *)HIGH_ADDR);
        else if (strcmp(g, "none") == 0)
            run_kind(g, NONE_PAGE);
        else if (strcmp(g, "ro") == 0) {
            run_kind(g, RO_PAGE);
            ro_effects();
        } else if (strcmp(g, "edge") == 0)
            edge();
        else {
            fprintf(stderr, "badptr: unknown group %s\n", g);
            cleanup();
            return 2;
        }
    }
    cleanup();
    printf("badptr done\n");
    return 0;
}
