#define _GNU_SOURCE
/* bigwrite: blocking writes larger than the buffer they go through wait until all is
 * written (Linux's pipe_write, unix_stream_sendmsg and tcp_sendmsg loops); they return
 * short only when non-blocking, when the reader goes away, or when a signal interrupts
 * them after some bytes went (then the count, not EINTR, with or without SA_RESTART).
 *   pipe, unix, tcp: one write/send of more than the buffer while a child reads it all;
 *   fds:       one 1 MiB sendmsg carrying a descriptor: the reader gets it once;
 *   interrupt: SIGALRM during a write nobody reads (pipe: exactly its capacity);
 *   closed:    the reader closes in the middle: the count, no SIGPIPE; then EPIPE;
 *   nonblock:  a non-blocking one returns short. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB (1L << 20)

static char *buf;
static volatile int alarms, pipes;

static void on_alarm(int sig) { (void)sig; alarms++; }
static void on_pipe(int sig) { (void)sig; pipes++; }

static void fill(long n) {
    buf = malloc(n);
    for (long i = 0; i < n; i++)
        buf[i] = (char)(i * 7 + (i >> 12));
}

/* Read fd to its end in chunks of 4 KiB; prints the count and a checksum of the bytes. */
static void drain(const char *what, int fd) {
    char chunk[4096];
    long got = 0;
    unsigned long sum = 0;
    ssize_t n;
    while ((n = read(fd, chunk, sizeof chunk)) > 0) {
        for (ssize_t i = 0; i < n; i++)
            sum = (sum ^ (unsigned char)chunk[i]) * 0x100000001b3UL;
        got += n;
    }
    printf("%s reader: %ld bytes, sum %lx, end %zd\n", what, got, sum, n);
}

static unsigned long checksum(long n) {
    unsigned long sum = 0;
    for (long i = 0; i < n; i++)
        sum = (sum ^ (unsigned char)buf[i]) * 0x100000001b3UL;
    return sum;
}

/* Write n bytes from buf to wfd in one call while a child drains rfd. */
static void through(const char *what, int rfd, int wfd, long n, int use_send) {
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        close(wfd);
        drain(what, rfd);
        fflush(stdout);
        _exit(0);
    }
    close(rfd);
    long r = use_send ? send(wfd, buf, n, 0) : write(wfd, buf, n);
    close(wfd);
    int st;
    waitpid(c, &st, 0);
    printf("%s write of %ld: %ld (sum %lx), child %d\n", what, n, r, checksum(n),
           WEXITSTATUS(st));
}

static void tcp_pair(int *server, int *client) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    bind(l, (struct sockaddr *)&a, sizeof a);
    listen(l, 1);
    getsockname(l, (struct sockaddr *)&a, &len);
    *client = socket(AF_INET, SOCK_STREAM, 0);
    connect(*client, (struct sockaddr *)&a, sizeof a);
    *server = accept(l, NULL, NULL);
    close(l);
}

static void with_fds(void) {
    int sv[2], q[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    pipe(q);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        close(sv[0]);
        close(q[0]);
        close(q[1]);
        char chunk[4096];
        union { struct cmsghdr h; char b[CMSG_SPACE(4 * sizeof(int))]; } ctl;
        long got = 0;
        int files = 0;
        for (;;) {
            struct iovec iov = {chunk, sizeof chunk};
            struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
                               .msg_controllen = sizeof ctl.b};
            ssize_t n = recvmsg(sv[1], &m, 0);
            if (n <= 0)
                break;
            got += n;
            for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h))
                if (h->cmsg_type == SCM_RIGHTS) {
                    int fd;
                    memcpy(&fd, CMSG_DATA(h), sizeof fd);
                    files++;
                    write(fd, "!", 1);
                    close(fd);
                }
        }
        printf("fds reader: %ld bytes, %d descriptor(s)\n", got, files);
        fflush(stdout);
        _exit(0);
    }
    close(sv[1]);
    struct iovec iov = {buf, MiB};
    union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
                       .msg_controllen = sizeof ctl.b};
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(h), &q[1], sizeof(int));
    long r = sendmsg(sv[0], &m, 0);
    close(q[1]);
    close(sv[0]);
    int st;
    waitpid(c, &st, 0);
    char got[8];
    long n = read(q[0], got, sizeof got);
    printf("fds sendmsg of %ld: %ld; the passed pipe carried %ld byte(s)\n", MiB, r, n);
    close(q[0]);
}

static void arm(long usec) {
    struct itimerval it = {.it_value = {.tv_sec = 0, .tv_usec = usec}};
    setitimer(ITIMER_REAL, &it, NULL);
}

static void interrupted(int restart) {
    struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = restart ? SA_RESTART : 0};
    sigaction(SIGALRM, &sa, NULL);
    int p[2], sv[2];
    pipe(p);
    alarms = 0;
    arm(100000);
    errno = 0;
    long r = write(p[1], buf, MiB);
    printf("interrupted pipe write (SA_RESTART %d): %ld errno %d alarms %d\n", restart, r,
           errno, alarms);
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    arm(100000);
    errno = 0;
    r = write(sv[0], buf, MiB);
    printf("interrupted unix write (SA_RESTART %d): short %d errno %d alarms %d\n", restart,
           r > 0 && r < MiB, errno, alarms);
    close(p[0]), close(p[1]), close(sv[0]), close(sv[1]);
}

static void closed(void) {
    signal(SIGPIPE, on_pipe);
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        char chunk[1000];
        close(sv[0]);
        long n = read(sv[1], chunk, sizeof chunk);
        _exit(n == sizeof chunk ? 0 : 1);
    }
    close(sv[1]);
    long r = write(sv[0], buf, MiB);
    int st;
    waitpid(c, &st, 0);
    printf("reader closed mid-write: short %d, SIGPIPE %d, child %d\n", r > 0 && r < MiB,
           pipes, WEXITSTATUS(st));
    errno = 0;
    r = write(sv[0], buf, 10);
    printf("next write: %ld errno EPIPE %d, SIGPIPE %d\n", r, errno == EPIPE, pipes);
    close(sv[0]);
}

static void nonblock(void) {
    int sv[2], p[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
    long r = write(sv[0], buf, MiB);
    printf("non-blocking unix write: short %d\n", r > 0 && r < MiB);
    pipe2(p, O_NONBLOCK);
    r = write(p[1], buf, MiB);
    printf("non-blocking pipe write: %ld\n", r);
    close(sv[0]), close(sv[1]), close(p[0]), close(p[1]);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    fill(4 * MiB);
    int p[2], sv[2], s, c;
    pipe(p);
    through("pipe", p[0], p[1], 300000, 0);
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    through("unix", sv[1], sv[0], MiB, 1);
    tcp_pair(&s, &c);
    through("tcp", s, c, 4 * MiB, 1);
    with_fds();
    interrupted(0);
    interrupted(1);
    closed();
    nonblock();
    return 0;
}
