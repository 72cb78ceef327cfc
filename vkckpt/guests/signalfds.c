/* signalfds: signalfd with SIGUSR1/SIGUSR2/SIGCHLD blocked -- reads after kill, tgkill and a
 * child's exit, the thread's queue read before the process's, several records in one read,
 * a read blocked until another process signals, poll and epoll readiness, a mask update,
 * non-blocking EAGAIN and the EINVAL cases.  Prints what it reads. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void nap(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static sigset_t set_of(int a, int b)
{
    sigset_t s;
    sigemptyset(&s);
    if (a)
        sigaddset(&s, a);
    if (b)
        sigaddset(&s, b);
    return s;
}

/* One record: "signo code from-me/from-child status" (pids compared, never printed). */
static void show(const char *what, struct signalfd_siginfo *si, pid_t from)
{
    printf("%s: signo=%u code=%d pid-ok=%d", what, si->ssi_signo, si->ssi_code,
           (pid_t)si->ssi_pid == from);
    if (si->ssi_signo == SIGCHLD)
        printf(" status=%d", si->ssi_status);
    printf("\n");
}

static int rd1(int fd, struct signalfd_siginfo *si)
{
    ssize_t n = read(fd, si, sizeof *si);
    return n < 0 ? -errno : (int)n;
}

static void errors(int sfd)
{
    sigset_t s = set_of(SIGUSR1, 0);
    char small[64];
    printf("bad flags=%d bad size=%d not a signalfd=%d short read=%d\n",
           syscall(SYS_signalfd4, -1, &s, 8, 0x1) < 0 ? errno : 0,
           syscall(SYS_signalfd4, -1, &s, 4, 0) < 0 ? errno : 0,
           signalfd(1, &s, 0) < 0 ? errno : 0, read(sfd, small, sizeof small) < 0 ? errno : 0);
    struct stat st;
    fstat(sfd, &st);
    printf("fstat type bits=%o\n", st.st_mode & S_IFMT);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    pid_t me = getpid();
    sigset_t blocked = set_of(SIGUSR1, SIGUSR2);
    sigaddset(&blocked, SIGCHLD);
    sigprocmask(SIG_BLOCK, &blocked, NULL);

    sigset_t s = set_of(SIGUSR1, 0);
    int sfd = signalfd(-1, &s, SFD_NONBLOCK | SFD_CLOEXEC);
    errors(sfd);
    struct signalfd_siginfo si;
    printf("empty read=%d\n", rd1(sfd, &si));

    kill(me, SIGUSR1);
    struct pollfd pf = {.fd = sfd, .events = POLLIN | POLLOUT};
    printf("poll after kill=%d revents=%#x\n", poll(&pf, 1, 0), pf.revents);
    if (rd1(sfd, &si) > 0)
        show("kill", &si, me);
    syscall(SYS_tgkill, me, syscall(SYS_gettid), SIGUSR1);
    if (rd1(sfd, &si) > 0)
        show("tgkill", &si, me);
    kill(me, SIGUSR2);
    printf("USR2 outside the mask: poll=%d read=%d\n", poll(&pf, 1, 0), rd1(sfd, &si));

    s = set_of(SIGUSR1, SIGUSR2);
    printf("mask update returns the fd=%d\n", signalfd(sfd, &s, 0) == sfd);
    printf("poll after update=%d revents=%#x\n", poll(&pf, 1, 0), pf.revents);
    kill(me, SIGUSR1);
    syscall(SYS_tgkill, me, syscall(SYS_gettid), SIGUSR2);
    struct signalfd_siginfo many[4];
    ssize_t n = read(sfd, many, sizeof many);
    printf("one read, %zd records:", n / (ssize_t)sizeof si);
    for (int i = 0; i < n / (ssize_t)sizeof si; i++)
        printf(" %u/%d", many[i].ssi_signo, many[i].ssi_code);
    printf("\n");

    /* a blocking signalfd for SIGCHLD: the child's exit is read as a record */
    sigset_t c = set_of(SIGCHLD, 0);
    int cfd = signalfd(-1, &c, 0);
    pid_t kid = fork();
    if (kid == 0) {
        nap(20);
        _exit(7);
    }
    if (rd1(cfd, &si) > 0)
        show("child exit", &si, kid);
    waitpid(kid, NULL, 0);

    /* blocked in read until another process sends SIGUSR2 */
    s = set_of(SIGUSR2, 0);
    int ufd = signalfd(-1, &s, 0);
    kid = fork();
    if (kid == 0) {
        nap(30);
        kill(getppid(), SIGUSR2);
        _exit(0);
    }
    if (rd1(ufd, &si) > 0)
        show("woken by a child", &si, kid);
    waitpid(kid, NULL, 0);
    if (rd1(cfd, &si) > 0)
        show("second child exit", &si, kid);

    /* epoll: the signalfd becomes ready when a signal of its mask arrives */
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 5};
    epoll_ctl(ep, EPOLL_CTL_ADD, ufd, &ev);
    struct epoll_event got = {0};
    printf("epoll before=%d\n", epoll_wait(ep, &got, 1, 0));
    kid = fork();
    if (kid == 0) {
        nap(30);
        kill(getppid(), SIGUSR2);
        _exit(0);
    }
    n = epoll_wait(ep, &got, 1, -1);
    printf("epoll waited=%zd events=%#x data=%llu\n", n, got.events,
           (unsigned long long)got.data.u64);
    if (rd1(ufd, &si) > 0)
        show("after epoll", &si, kid);
    waitpid(kid, NULL, 0);
    if (rd1(cfd, &si) > 0)
        show("third child exit", &si, kid);
    printf("signalfds done\n");
    return 0;
}
