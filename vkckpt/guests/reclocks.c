/* reclocks: advisory locks between processes, printed so a run can be diffed against the
 * host's.  The parent locks, forked children try: POSIX record locks (F_SETLK conflicts,
 * F_GETLK naming the first lock in the way, unlocking the middle of a range splits it,
 * locking it again merges, downgrades, close of any descriptor releases them, exit too),
 * OFD locks (owned by the description: shared by fork, l_pid -1, released at its last
 * close), flock (LOCK_NB, conversions that drop the old lock first), a blocking F_SETLKW
 * the parent releases, one interrupted by a signal, and a deadlock (EDEADLK).  Works in
 * directory argv[1] (default "."), in a file it removes at the end. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FILE_NAME "vkckpt-reclocks.f"

static pid_t parent;

static void nap(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static const char *err(int r)
{
    if (r == 0)
        return "0";
    switch (errno) {
    case EAGAIN: return "EAGAIN";
    case EACCES: return "EACCES";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case EDEADLK: return "EDEADLK";
    case EINTR: return "EINTR";
    case EOVERFLOW: return "EOVERFLOW";
    default: return strerror(errno);
    }
}

static int lk(int fd, int cmd, short type, off_t start, off_t len)
{
    struct flock l;
    memset(&l, 0, sizeof l);
    l.l_type = type;
    l.l_whence = SEEK_SET;
    l.l_start = start;
    l.l_len = len;
    return fcntl(fd, cmd, &l);
}

static const char *who(pid_t pid)
{
    static char buf[32];
    if (pid == parent)
        return "parent";
    if (pid == -1)
        return "-1";
    snprintf(buf, sizeof buf, "%s", pid == getpid() ? "self" : "other");
    return buf;
}

/* F_GETLK-style query: prints what is in the way of (type, start, len). */
static void query(const char *what, int fd, int cmd, short type, off_t start, off_t len)
{
    struct flock l;
    memset(&l, 0, sizeof l);
    l.l_type = type;
    l.l_whence = SEEK_SET;
    l.l_start = start;
    l.l_len = len;
    int r = fcntl(fd, cmd, &l);
    if (r != 0)
        printf("%s: %s\n", what, err(r));
    else if (l.l_type == F_UNLCK)
        printf("%s: unlocked (start=%lld len=%lld kept)\n", what, (long long)l.l_start,
               (long long)l.l_len);
    else
        printf("%s: %s start=%lld len=%lld pid=%s\n", what, l.l_type == F_WRLCK ? "WR" : "RD",
               (long long)l.l_start, (long long)l.l_len, who(l.l_pid));
}

/* Run fn in a child with its own descriptor of the file; wait for it. */
static void in_child(void (*fn)(int own))
{
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        int own = open(FILE_NAME, O_RDWR);
        fn(own);
        fflush(stdout);
        _exit(0);
    }
    int st;
    waitpid(c, &st, 0);
}

static int fd;     /* the parent's descriptor, inherited by every child */
static int ofd;    /* a description holding OFD locks */
static int flk;    /* a description holding flock locks */

static void probe_posix(int own)
{
    printf("child SETLK WR 5+1: %s\n", err(lk(own, F_SETLK, F_WRLCK, 5, 1)));
    query("child GETLK WR 0+100", own, F_GETLK, F_WRLCK, 0, 100);
    query("child GETLK RD 20+5", own, F_GETLK, F_RDLCK, 20, 5);
    query("child GETLK WR 20+5", own, F_GETLK, F_WRLCK, 20, 5);
    query("child GETLK WR 40+0 (to EOF)", own, F_GETLK, F_WRLCK, 40, 0);
    query("child inherited fd GETLK WR 0+1", fd, F_GETLK, F_WRLCK, 0, 1);
    printf("child SETLK RD 25+5 (shared): %s\n", err(lk(own, F_SETLK, F_RDLCK, 25, 5)));
    query("child OFD_GETLK WR 0+100", own, F_OFD_GETLK, F_WRLCK, 0, 100);
    struct flock l = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1,
                      .l_pid = 1};
    printf("child OFD_SETLK l_pid=1: %s\n", err(fcntl(own, F_OFD_SETLK, &l)));
    int ro = open(FILE_NAME, O_RDONLY);
    printf("child SETLK WR on O_RDONLY: %s\n", err(lk(ro, F_SETLK, F_WRLCK, 90, 1)));
    printf("child SETLK UN on O_RDONLY: %s\n", err(lk(ro, F_SETLK, F_UNLCK, 90, 1)));
    l.l_whence = 7;
    l.l_pid = 0;
    printf("child SETLK bad whence: %s\n", err(fcntl(own, F_SETLK, &l)));
    printf("child GETLK F_UNLCK: %s\n", err(lk(own, F_GETLK, F_UNLCK, 0, 1)));
    printf("child SETLK start -1: %s\n", err(lk(own, F_SETLK, F_RDLCK, -1, 1)));
    printf("child SETLK negative len 5-10: %s\n", err(lk(own, F_SETLK, F_RDLCK, 5, -10)));
    printf("child SETLK overflow: %s\n", err(lk(own, F_SETLK, F_RDLCK, 10, 0x7fffffffffffffffLL)));
}

static void probe_split(int own)
{
    query("split: GETLK WR 3+2", own, F_GETLK, F_WRLCK, 3, 2);
    query("split: GETLK WR 0+100", own, F_GETLK, F_WRLCK, 0, 100);
    query("split: GETLK WR 4+100", own, F_GETLK, F_WRLCK, 4, 100);
}

static void probe_whole(int own)
{
    query("whole: GETLK WR 0+100", own, F_GETLK, F_WRLCK, 0, 100);
    query("whole: GETLK RD 0+100", own, F_GETLK, F_RDLCK, 0, 100);
}

static void probe_ofd(int own)
{
    query("ofd: inherited OFD_GETLK WR", ofd, F_OFD_GETLK, F_WRLCK, 0, 100);
    query("ofd: own OFD_GETLK WR", own, F_OFD_GETLK, F_WRLCK, 0, 100);
    query("ofd: own GETLK WR", own, F_GETLK, F_WRLCK, 0, 100);
    printf("ofd: inherited OFD_SETLK WR 50+1: %s\n", err(lk(ofd, F_OFD_SETLK, F_WRLCK, 50, 1)));
    printf("ofd: own SETLK WR 50+1: %s\n", err(lk(own, F_SETLK, F_WRLCK, 50, 1)));
    close(ofd); /* not its last descriptor: the lock stays */
}

static void probe_flock(int own)
{
    printf("flock: own SH|NB: %s\n", err(flock(own, LOCK_SH | LOCK_NB)));
    printf("flock: inherited EX|NB: %s\n", err(flock(flk, LOCK_EX | LOCK_NB)));
    printf("flock: fcntl WR beside it: %s\n", err(lk(own, F_SETLK, F_WRLCK, 0, 1)));
}

static void probe_flock_shared(int own)
{
    printf("flock: own SH|NB beside SH: %s\n", err(flock(own, LOCK_SH | LOCK_NB)));
    printf("flock: own EX|NB (drops SH): %s\n", err(flock(own, LOCK_EX | LOCK_NB)));
    printf("flock: own SH|NB again: %s\n", err(flock(own, LOCK_SH | LOCK_NB)));
    printf("flock: unlock: %s\n", err(flock(own, LOCK_UN)));
    printf("flock: bad op: %s\n", err(flock(own, LOCK_SH | LOCK_EX)));
    printf("flock: bad fd, bad op: %s\n", err(flock(-1, LOCK_SH | LOCK_EX)));
    printf("flock: bad fd: %s\n", err(flock(-1, LOCK_SH)));
}

static int wake_pipe[2];

static void probe_block(int own)
{
    int r = lk(own, F_SETLKW, F_WRLCK, 0, 10);
    char c;
    int released = read(wake_pipe[0], &c, 1) == 1;
    printf("block: SETLKW WR 0+10: %s, parent released first=%d\n", err(r), released);
}

static volatile sig_atomic_t handled;

static void on_usr1(int sig)
{
    (void)sig;
    handled++;
}

static void probe_restart(int own)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    int r = lk(own, F_SETLKW, F_WRLCK, 0, 10);
    char c;
    int released = read(wake_pipe[0], &c, 1) == 1;
    printf("restart: SETLKW WR 0+10 under SA_RESTART: %s, handled=%d, released first=%d\n",
           err(r), (int)handled, released);
}

static void probe_intr(int own)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    printf("intr: SETLKW WR 0+10: %s\n", err(lk(own, F_SETLKW, F_WRLCK, 0, 10)));
}

static int ready[2];

static void probe_deadlock(int own)
{
    (void)own;
    lk(fd, F_SETLK, F_WRLCK, 1, 1); /* B, the child's (a POSIX lock through any fd) */
    write(ready[1], "r", 1);
    printf("deadlock: child SETLKW 0+1: %s\n", err(lk(fd, F_SETLKW, F_WRLCK, 0, 1)));
}

static void concurrent(void (*fn)(int own), void (*parent_side)(pid_t child))
{
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        int own = open(FILE_NAME, O_RDWR);
        fn(own);
        fflush(stdout);
        _exit(0);
    }
    parent_side(c);
    int st;
    waitpid(c, &st, 0);
}

static void release_after_nap(pid_t c)
{
    (void)c;
    nap(150);
    write(wake_pipe[1], "w", 1);
    lk(fd, F_SETLK, F_UNLCK, 0, 0);
}

static void signal_after_nap(pid_t c)
{
    nap(150);
    kill(c, SIGUSR1);
}

static void signal_then_release(pid_t c)
{
    nap(150);
    kill(c, SIGUSR1);
    nap(150);
    write(wake_pipe[1], "w", 1);
    lk(fd, F_SETLK, F_UNLCK, 0, 0);
}

static void deadlock_parent(pid_t c)
{
    (void)c;
    char ch;
    read(ready[0], &ch, 1);
    nap(150);
    printf("deadlock: parent SETLKW 1+1: %s\n", err(lk(fd, F_SETLKW, F_WRLCK, 1, 1)));
    fflush(stdout);
    lk(fd, F_SETLK, F_UNLCK, 0, 1); /* let the child have A */
}

int main(int argc, char **argv)
{
    if (argc > 1 && chdir(argv[1]) != 0)
        return 2;
    parent = getpid();
    fd = open(FILE_NAME, O_CREAT | O_RDWR | O_TRUNC, 0644);
    char zero[100] = {0};
    if (fd < 0 || write(fd, zero, sizeof zero) != sizeof zero)
        return 2;

    printf("parent SETLK WR 0+10: %s\n", err(lk(fd, F_SETLK, F_WRLCK, 0, 10)));
    printf("parent SETLK RD 20+10: %s\n", err(lk(fd, F_SETLK, F_RDLCK, 20, 10)));
    query("parent GETLK own lock", fd, F_GETLK, F_WRLCK, 0, 10);
    in_child(probe_posix);

    printf("parent unlock 3+2: %s\n", err(lk(fd, F_SETLK, F_UNLCK, 3, 2)));
    in_child(probe_split);
    printf("parent relock WR 3+2 (merges): %s\n", err(lk(fd, F_SETLK, F_WRLCK, 3, 2)));
    printf("parent SETLK WR 10+10 (adjacent): %s\n", err(lk(fd, F_SETLK, F_WRLCK, 10, 10)));
    in_child(probe_whole);
    printf("parent downgrade RD 0+20: %s\n", err(lk(fd, F_SETLK, F_RDLCK, 0, 20)));
    in_child(probe_whole);

    int other = open(FILE_NAME, O_RDONLY);
    close(other);
    printf("parent closed another descriptor of the file\n");
    in_child(probe_whole);

    ofd = open(FILE_NAME, O_RDWR);
    printf("parent OFD_SETLK WR 0+10: %s\n", err(lk(ofd, F_OFD_SETLK, F_WRLCK, 0, 10)));
    printf("parent SETLK WR 0+1 (its own POSIX lock): %s\n", err(lk(fd, F_SETLK, F_WRLCK, 0, 1)));
    lk(fd, F_SETLK, F_UNLCK, 0, 0);
    in_child(probe_ofd);
    in_child(probe_whole);
    close(ofd);
    printf("parent closed the OFD description\n");
    in_child(probe_whole);

    flk = open(FILE_NAME, O_RDONLY);
    printf("flock: parent EX: %s\n", err(flock(flk, LOCK_EX)));
    in_child(probe_flock);
    printf("flock: parent SH (converts): %s\n", err(flock(flk, LOCK_SH)));
    in_child(probe_flock_shared);
    printf("flock: parent EX|NB: %s\n", err(flock(flk, LOCK_EX | LOCK_NB)));
    close(flk);

    pipe(wake_pipe);
    fcntl(wake_pipe[0], F_SETFL, O_NONBLOCK);
    lk(fd, F_SETLK, F_WRLCK, 0, 10);
    concurrent(probe_block, release_after_nap);
    lk(fd, F_SETLK, F_WRLCK, 0, 10);
    concurrent(probe_intr, signal_after_nap);
    lk(fd, F_SETLK, F_WRLCK, 0, 10);
    concurrent(probe_restart, signal_then_release);
    lk(fd, F_SETLK, F_UNLCK, 0, 0);

    pipe(ready);
    lk(fd, F_SETLK, F_WRLCK, 0, 1); /* A, the parent's */
    concurrent(probe_deadlock, deadlock_parent);
    in_child(probe_whole); /* the child's locks went with it */

    close(fd);
    unlink(FILE_NAME);
    printf("reclocks done\n");
    return 0;
}
