/*
 * poll and ppoll over several pipes: a parent multiplexes three children that write at
 * different times, then checks revents for hang-ups and dead readers, and ppoll's
 * temporary signal mask (EINTR by a signal it unblocks, the caller's mask back after).
 * Output is the same natively and under vkckpt: the children's writes are 40 ms apart and
 * each child waits 20 ms before its exit closes the pipe.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t got_usr1;

static void on_usr1(int sig)
{
    (void)sig;
    got_usr1 = 1;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

static void multiplex(void)
{
    static const long delay_ms[3] = {120, 40, 80};
    struct pollfd pfd[3];
    pid_t kids[3];
    int open_fds = 3;

    for (int i = 0; i < 3; i++) {
        int p[2];
        if (pipe(p) != 0)
            return;
        kids[i] = fork();
        if (kids[i] == 0) {
            char msg[32];
            close(p[0]);
            sleep_ms(delay_ms[i]);
            int n = snprintf(msg, sizeof msg, "child %d says hi", i);
            if (write(p[1], msg, (size_t)n) != n)
                _exit(1);
            sleep_ms(20); /* the parent reads before the hang-up, natively too */
            _exit(10 + i);
        }
        close(p[1]);
        pfd[i].fd = p[0];
        pfd[i].events = POLLIN;
    }
    while (open_fds > 0) {
        int n = poll(pfd, 3, -1);
        if (n <= 0) {
            printf("poll failed: %d %s\n", n, strerror(errno));
            return;
        }
        for (int i = 0; i < 3; i++) {
            if (pfd[i].fd < 0 || !pfd[i].revents)
                continue;
            char buf[64];
            ssize_t got = read(pfd[i].fd, buf, sizeof buf - 1);
            if (got > 0) {
                buf[got] = 0;
                printf("pipe %d: \"%s\" (revents %#x)\n", i, buf, pfd[i].revents);
            } else {
                printf("pipe %d: end of file (revents %#x)\n", i, pfd[i].revents);
                close(pfd[i].fd);
                pfd[i].fd = -1;
                open_fds--;
            }
        }
    }
    for (int i = 0; i < 3; i++) {
        int st;
        waitpid(kids[i], &st, 0);
        printf("child %d exited %d\n", i, WEXITSTATUS(st));
    }
}

static void revents(void)
{
    int p[2];
    struct pollfd pfd[2];

    if (pipe(p) != 0)
        return;
    pfd[0] = (struct pollfd){.fd = p[0], .events = POLLIN};
    pfd[1] = (struct pollfd){.fd = p[1], .events = POLLOUT};
    printf("empty pipe: poll=%d read %#x write %#x\n", poll(pfd, 2, 0), pfd[0].revents,
           pfd[1].revents);
    if (write(p[1], "x", 1) != 1)
        return;
    close(p[1]);
    printf("data, no writer: poll=%d read %#x\n", poll(pfd, 1, 0), pfd[0].revents);
    close(p[0]);

    if (pipe(p) != 0)
        return;
    close(p[0]);
    pfd[0] = (struct pollfd){.fd = p[1], .events = POLLOUT};
    pfd[1] = (struct pollfd){.fd = 99, .events = POLLIN};
    printf("no reader, bad fd: poll=%d write %#x bad %#x\n", poll(pfd, 2, 0), pfd[0].revents,
           pfd[1].revents);
    close(p[1]);
}

static void temporary_mask(void)
{
    int p[2];
    sigset_t block, during, now;
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, NULL);
    if (pipe(p) != 0)
        return;
    pid_t kid = fork();
    if (kid == 0) {
        sleep_ms(30);
        kill(getppid(), SIGUSR1);
        _exit(0);
    }
    struct pollfd pfd = {.fd = p[0], .events = POLLIN};
    sigemptyset(&during);
    int r = ppoll(&pfd, 1, NULL, &during);
    int err = errno;
    sigprocmask(SIG_BLOCK, NULL, &now);
    printf("ppoll=%d errno=%s handler=%d usr1 still blocked=%d\n", r, r < 0 ? strerror(err) : "-",
           (int)got_usr1, sigismember(&now, SIGUSR1));
    waitpid(kid, NULL, 0);

    struct timespec ten_ms = {0, 10000000L};
    got_usr1 = 0;
    r = ppoll(&pfd, 1, &ten_ms, &during);
    sigprocmask(SIG_BLOCK, NULL, &now);
    printf("ppoll timeout=%d handler=%d usr1 still blocked=%d\n", r, (int)got_usr1,
           sigismember(&now, SIGUSR1));
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    multiplex();
    revents();
    temporary_mask();
    return 0;
}
