/* epolls: epoll's rules as Linux keeps them -- epoll_ctl's errors, level- and edge-triggered
 * and one-shot items, the ready list's order and its fair rotation when maxevents is small,
 * registrations that belong to the open file (dup'ed descriptors), epoll inside epoll, an
 * epoll fd in poll(2), EPOLLHUP, and waits that sleep (woken by a child, timed out, ended
 * by a signal under epoll_pwait's mask).  Prints what it sees; works in directory argv[1]. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int err(int rc) { return rc < 0 ? errno : 0; }

static void nap(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int add(int ep, int fd, unsigned events, unsigned long data)
{
    struct epoll_event ev = {.events = events, .data.u64 = data};
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

/* One wait; prints "label: n [data:events ...]". */
static int show(const char *label, int ep, int max, int timeout)
{
    struct epoll_event evs[16];
    int n = epoll_wait(ep, evs, max, timeout);
    printf("%s: %d", label, n < 0 ? -errno : n);
    for (int i = 0; i < n; i++)
        printf(" %llu:%#x", (unsigned long long)evs[i].data.u64, evs[i].events);
    printf("\n");
    return n;
}

static void errors(const char *dir)
{
    int ep = epoll_create1(0), p[2];
    pipe(p);
    struct epoll_event ev = {.events = EPOLLIN};
    printf("create(0)=%d create1(bad)=%d\n", err(epoll_create(0)),
           err(epoll_create1(EPOLL_CLOEXEC << 1)));
    int reg = open(dir, O_RDONLY | O_DIRECTORY);
    int file = open("epolls.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
    int null = open("/dev/null", O_RDWR);
    printf("add dir=%d file=%d null=%d self=%d non-epoll=%d\n", err(add(ep, reg, EPOLLIN, 0)),
           err(add(ep, file, EPOLLIN, 0)), err(add(ep, null, EPOLLIN, 0)),
           err(add(ep, ep, EPOLLIN, 0)), err(add(p[0], p[1], EPOLLIN, 0)));
    printf("add=%d again=%d ", err(add(ep, p[0], EPOLLIN, 0)), err(add(ep, p[0], EPOLLIN, 0)));
    printf("mod-missing=%d del-missing=%d bad-op=%d badfd=%d\n",
           err(epoll_ctl(ep, EPOLL_CTL_MOD, p[1], &ev)), err(epoll_ctl(ep, EPOLL_CTL_DEL, p[1], NULL)),
           err(epoll_ctl(ep, 99, p[0], &ev)), err(epoll_ctl(ep, EPOLL_CTL_ADD, 999, &ev)));
    ev.events = EPOLLIN | EPOLLEXCLUSIVE;
    printf("exclusive add=%d mod=%d excl-with-oneshot=%d\n", err(epoll_ctl(ep, EPOLL_CTL_ADD, p[1], &ev)),
           err(epoll_ctl(ep, EPOLL_CTL_MOD, p[1], &ev)), err(add(ep, null, EPOLLIN | EPOLLEXCLUSIVE | EPOLLONESHOT, 0)));
    int a = epoll_create1(0), b = epoll_create1(0);
    printf("nest a<-b=%d loop b<-a=%d\n", err(add(a, b, EPOLLIN, 0)), err(add(b, a, EPOLLIN, 0)));
    struct epoll_event evs[1];
    printf("wait max0=%d on-pipe=%d\n", err(epoll_wait(ep, evs, 0, 0)), err(epoll_wait(p[0], evs, 1, 0)));
    unlink("epolls.txt");
    close(a), close(b), close(reg), close(file), close(null), close(p[0]), close(p[1]), close(ep);
}

static void order(void)
{
    int ep = epoll_create1(0), p[3][2];
    for (int i = 0; i < 3; i++) {
        pipe(p[i]);
        add(ep, p[i][0], EPOLLIN, 10 + i);
    }
    show("empty", ep, 8, 0);
    write(p[2][1], "x", 1), write(p[0][1], "x", 1), write(p[1][1], "x", 1);
    show("ready order", ep, 8, 0);
    for (int i = 0; i < 4; i++)
        show("rotate max1", ep, 1, 0);
    show("rotate max2", ep, 2, 0);
    char c;
    read(p[0][0], &c, 1);
    show("one drained", ep, 8, 0);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u64 = 12};
    printf("mod=%d\n", epoll_ctl(ep, EPOLL_CTL_MOD, p[2][0], &ev));
    show("after mod", ep, 8, 0);
    epoll_ctl(ep, EPOLL_CTL_DEL, p[1][0], NULL);
    show("after del", ep, 8, 0);
    add(ep, p[1][1], EPOLLOUT, 21);
    show("write end", ep, 8, 0);
    close(p[2][1]);
    show("writer closed", ep, 8, 0);
    for (int i = 0; i < 3; i++)
        close(p[i][0]), close(p[i][1]);
    close(ep);
}

static void edge_oneshot(void)
{
    int ep = epoll_create1(0), p[2], q[2];
    pipe(p), pipe(q);
    add(ep, p[0], EPOLLIN | EPOLLET, 1);
    add(ep, q[0], EPOLLIN | EPOLLONESHOT, 2);
    write(p[1], "ab", 2), write(q[1], "ab", 2);
    show("et+oneshot", ep, 8, 0);
    show("again", ep, 8, 0);
    write(p[1], "c", 1), write(q[1], "c", 1);
    show("more data", ep, 8, 0);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.u64 = 3};
    epoll_ctl(ep, EPOLL_CTL_MOD, q[0], &ev);
    show("rearmed", ep, 8, 0);
    show("disarmed", ep, 8, 0);
    close(p[0]), close(p[1]), close(q[0]), close(q[1]), close(ep);
}

static void dups(void)
{
    int ep = epoll_create1(0), p[2];
    pipe(p);
    int d = dup(p[0]);
    printf("add fd=%d dup=%d\n", add(ep, p[0], EPOLLIN, 1), add(ep, d, EPOLLIN, 2));
    write(p[1], "x", 1);
    show("both fds", ep, 8, 0);
    close(p[0]);
    show("first closed", ep, 8, 0);
    struct epoll_event ev = {.events = EPOLLIN};
    printf("del closed fd=%d\n", err(epoll_ctl(ep, EPOLL_CTL_DEL, p[0], &ev)));
    close(d);
    int r[2];
    pipe(r);  /* reuses the numbers: a new file, not the old registration */
    write(r[1], "y", 1);
    show("file closed", ep, 8, 0);
    printf("add reused=%d\n", err(add(ep, r[0], EPOLLIN, 3)));
    show("reused", ep, 8, 0);
    close(r[0]), close(r[1]), close(p[1]), close(ep);
}

static void nested(void)
{
    int outer = epoll_create1(0), inner = epoll_create1(0), p[2];
    pipe(p);
    add(inner, p[0], EPOLLIN, 5);
    add(outer, inner, EPOLLIN, 6);
    show("outer idle", outer, 8, 0);
    struct pollfd pf = {.fd = inner, .events = POLLIN | POLLOUT};
    printf("poll epoll idle=%d revents=%#x\n", poll(&pf, 1, 0), pf.revents);
    write(p[1], "z", 1);
    show("outer", outer, 8, 0);
    printf("poll epoll=%d revents=%#x\n", poll(&pf, 1, 0), pf.revents);
    show("inner", inner, 8, 0);
    char c;
    read(p[0], &c, 1);
    show("outer drained", outer, 8, 0);
    close(p[0]), close(p[1]), close(inner), close(outer);
}

static void on_usr1(int sig) { (void)sig; }

static void sleeping(void)
{
    int ep = epoll_create1(0), p[2];
    pipe(p);
    add(ep, p[0], EPOLLIN, 7);
    show("timeout 20ms", ep, 8, 20);
    pid_t kid = fork();
    if (kid == 0) {
        nap(30);
        write(p[1], "w", 1);
        _exit(0);
    }
    show("woken", ep, 8, -1);
    waitpid(kid, NULL, 0);
    char c;
    read(p[0], &c, 1);

    sigset_t usr1, none;
    sigemptyset(&usr1), sigemptyset(&none);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, NULL);
    signal(SIGUSR1, on_usr1);
    pid_t me = getpid();
    kid = fork();
    if (kid == 0) {
        kill(me, SIGUSR1);
        _exit(0);
    }
    waitpid(kid, NULL, 0);  /* SIGUSR1 is pending, blocked */
    struct epoll_event evs[4];
    int n = epoll_pwait(ep, evs, 4, -1, &none);
    printf("pwait unblocked: %d errno=%s\n", n, n < 0 && errno == EINTR ? "EINTR" : "-");
    sigset_t now;
    sigprocmask(SIG_BLOCK, NULL, &now);
    printf("mask restored: %d\n", sigismember(&now, SIGUSR1));
    close(p[0]), close(p[1]), close(ep);
}

int main(int argc, char **argv)
{
    if (argc > 1 && chdir(argv[1]) != 0)
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    errors(".");
    order();
    edge_oneshot();
    dups();
    nested();
    sleeping();
    return 0;
}
