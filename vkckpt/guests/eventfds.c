/* eventfds: eventfd counters (plain, EFD_SEMAPHORE, EFD_NONBLOCK; reads blocking at 0 and
 * writes at overflow, each woken by a child) and select/pselect6 over pipes and eventfds
 * (fd_set results, EBADF, the timeout left written back, pselect6's signal mask).  Prints
 * what it sees. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
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

static long long rd(int fd)
{
    uint64_t v = 0;
    ssize_t n = read(fd, &v, sizeof v);
    return n < 0 ? -errno : (long long)v;
}

static int wr(int fd, uint64_t v)
{
    ssize_t n = write(fd, &v, sizeof v);
    return n < 0 ? -errno : (int)n;
}

static void counters(void)
{
    printf("bad flags=%d\n", eventfd(0, 0x7) < 0 ? errno : 0);
    int e = eventfd(3, EFD_NONBLOCK);
    struct stat st;
    fstat(e, &st);
    printf("fstat type bits=%o\n", st.st_mode & S_IFMT);
    printf("read=%lld then=%lld\n", rd(e), rd(e));
    printf("write=%d %d read=%lld\n", wr(e, 5), wr(e, 7), rd(e));
    char small[4];
    printf("short read=%d short write=%d max write=%d\n", read(e, small, 4) < 0 ? errno : 0,
           write(e, small, 4) < 0 ? errno : 0, wr(e, UINT64_MAX));
    printf("to max=%d overflow=%d\n", wr(e, UINT64_MAX - 1), wr(e, 1));
    struct pollfd pf = {.fd = e, .events = POLLIN | POLLOUT};
    printf("poll at max=%d revents=%#x\n", poll(&pf, 1, 0), pf.revents);
    printf("drain=%lld\n", rd(e));
    printf("poll empty=%d revents=%#x\n", poll(&pf, 1, 0), pf.revents);
    close(e);

    int s = eventfd(2, EFD_SEMAPHORE | EFD_NONBLOCK);
    printf("semaphore: %lld %lld %lld\n", rd(s), rd(s), rd(s));
    close(s);
}

static void blocking(void)
{
    int e = eventfd(0, 0);
    pid_t kid = fork();
    if (kid == 0) {
        nap(20);
        wr(e, 42);
        _exit(0);
    }
    printf("blocked read=%lld\n", rd(e));
    waitpid(kid, NULL, 0);
    wr(e, UINT64_MAX - 1);
    kid = fork();
    if (kid == 0) {
        nap(20);
        printf("child took %lld\n", rd(e));
        fflush(stdout);
        _exit(0);
    }
    int blocked = wr(e, 9);  /* returns once the child has read: print after it has */
    waitpid(kid, NULL, 0);
    printf("blocked write=%d\n", blocked);
    printf("after=%lld\n", rd(e));

    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = 9}, out[2];
    epoll_ctl(ep, EPOLL_CTL_ADD, e, &ev);
    printf("epoll idle=%d\n", epoll_wait(ep, out, 2, 0));
    wr(e, 1);
    printf("epoll=%d data=%llu\n", epoll_wait(ep, out, 2, 0), (unsigned long long)out[0].data.u64);
    printf("epoll et again=%d\n", epoll_wait(ep, out, 2, 0));
    wr(e, 0);
    printf("epoll after write 0=%d\n", epoll_wait(ep, out, 2, 0));
    close(ep), close(e);
}

static void show_set(const char *what, fd_set *s, int n)
{
    printf(" %s{", what);
    for (int i = 0; i < n; i++)
        if (FD_ISSET(i, s))
            printf(" %d", i);
    printf(" }");
}

static void on_usr1(int sig) { (void)sig; }

static void selects(void)
{
    int p[2], e = eventfd(0, 0);
    pipe(p);
    fd_set r, w;
    FD_ZERO(&r);
    FD_ZERO(&w);
    FD_SET(p[0], &r), FD_SET(e, &r), FD_SET(p[1], &w), FD_SET(e, &w);
    int top = p[1] + 1;
    int n = select(top, &r, &w, NULL, &(struct timeval){0, 0});
    printf("select idle=%d", n);
    show_set("r", &r, top), show_set("w", &w, top);
    printf("\n");
    write(p[1], "x", 1), wr(e, 1);
    FD_ZERO(&r);
    FD_ZERO(&w);
    FD_SET(p[0], &r), FD_SET(e, &r), FD_SET(p[1], &w);
    n = select(top, &r, &w, NULL, NULL);
    printf("select ready=%d", n);
    show_set("r", &r, top), show_set("w", &w, top);
    printf("\n");
    FD_ZERO(&r);
    FD_SET(60, &r);
    printf("select closed fd=%d\n", select(61, &r, NULL, NULL, NULL) < 0 ? errno : 0);
    struct timeval bad = {0, -1};
    printf("select bad timeout=%d\n", select(0, NULL, NULL, NULL, &bad) < 0 ? errno : 0);
    rd(e);
    char c;
    read(p[0], &c, 1);

    struct timeval tv = {0, 30000};
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    n = syscall(SYS_select, p[0] + 1, &r, NULL, NULL, &tv);  /* musl's select copies tv */
    printf("select timed out=%d left=%ld.%06ld set=%d\n", n, (long)tv.tv_sec, (long)tv.tv_usec,
           FD_ISSET(p[0], &r));
    pid_t kid = fork();
    if (kid == 0) {
        nap(20);
        write(p[1], "y", 1);
        _exit(0);
    }
    tv = (struct timeval){5, 0};
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    n = syscall(SYS_select, p[0] + 1, &r, NULL, NULL, &tv);
    printf("select woken=%d left<5s=%d set=%d\n", n, tv.tv_sec < 5, FD_ISSET(p[0], &r));
    waitpid(kid, NULL, 0);
    read(p[0], &c, 1);

    struct timespec ts = {0, 10000000};
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    n = pselect(p[0] + 1, &r, NULL, NULL, &ts, NULL);
    printf("pselect timed out=%d\n", n);
    sigset_t usr1, none;
    sigemptyset(&usr1), sigemptyset(&none);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, NULL);
    signal(SIGUSR1, on_usr1);
    kill(getpid(), SIGUSR1);
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    n = pselect(p[0] + 1, &r, NULL, NULL, NULL, &none);
    printf("pselect unblocked=%d errno=%s\n", n, n < 0 && errno == EINTR ? "EINTR" : "-");
    close(p[0]), close(p[1]), close(e);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    counters();
    blocking();
    selects();
    return 0;
}
