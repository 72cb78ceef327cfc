#define _GNU_SOURCE
/* unixgc: AF_UNIX sockets reachable only through in-flight SCM_RIGHTS messages are garbage
 * collected (Linux's net/unix/garbage.c).  (1) A self cycle: s0 sent over s1 queues on s0,
 * with a pipe's write end; both closed, the pipe's reader sees EOF (closed s1 first, the
 * garbage waits for the next socket released).  (2) A two-socket cycle
 * (a0 queued on b0, b0 and a pipe's write end queued on a0), everything closed: EOF again.
 * (3) A listener sent to its own unaccepted connection, then closed with the client: EOF.
 * (4) A socket in flight on a queue an open descriptor still reaches is kept: received later,
 * its own queue still holds a pipe's write end and its peer still answers.  Linux collects
 * asynchronously, so the readers poll with a timeout of a few seconds.  Short sleeps give
 * freezes points with the cycles built, and with the ring reachable only through peers. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define EOF_WAIT_MS 5000 /* Linux's collector runs from a workqueue */
#define KEPT_WAIT_MS 300 /* long enough for that collector to have run */

static int res(long n)
{
    return n < 0 ? -errno : (int)n;
}

/* Send one byte with the given descriptors as SCM_RIGHTS over fd. */
static int send_fds(int fd, const int *fds, int n)
{
    char byte = 'f';
    struct iovec iov = {&byte, 1};
    char ctl[CMSG_SPACE(4 * sizeof(int))];
    memset(ctl, 0, sizeof ctl);
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                       .msg_controllen = CMSG_SPACE(n * sizeof(int))};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(n * sizeof(int));
    memcpy(CMSG_DATA(c), fds, n * sizeof(int));
    return res(sendmsg(fd, &m, 0));
}

/* Receive one byte and the first descriptor sent with it (-1 when none). */
static int recv_fd(int fd)
{
    char byte;
    struct iovec iov = {&byte, 1};
    char ctl[CMSG_SPACE(4 * sizeof(int))];
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                       .msg_controllen = sizeof ctl};
    if (recvmsg(fd, &m, 0) != 1)
        return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    if (c == NULL || c->cmsg_type != SCM_RIGHTS)
        return -1;
    int got;
    memcpy(&got, CMSG_DATA(c), sizeof got);
    return got;
}

/* Whether the pipe's reader sees EOF within ms: poll, then read returns 0. */
static void reader_eof(const char *what, int rd, int ms)
{
    struct pollfd p = {rd, POLLIN, 0};
    int ready = res(poll(&p, 1, ms));
    char c;
    int n = ready > 0 ? res(read(rd, &c, 1)) : -1;
    printf("%s: poll ready %d, read %d\n", what, ready, n);
}

/* Sleep a moment: a scheduling point (where a freeze may land) with the sockets as they are. */
static void settle(void)
{
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
}

/* A socket released while sockets are in flight: Linux runs its collector then. */
static void release_one(void)
{
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    close(sv[0]);
    close(sv[1]);
}

static void self_cycle(void)
{
    int s[2], p[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, s);
    pipe(p);
    int fds[2] = {s[0], p[1]};
    printf("self cycle: send s0 over s1: %d\n", send_fds(s[1], fds, 2));
    settle();
    close(p[1]);
    close(s[0]);
    close(s[1]);
    reader_eof("self cycle reader", p[0], EOF_WAIT_MS);
    close(p[0]);
}

/* The self cycle closed the other way round: s1's release finds s0 still open, and closing
 * s0 releases nothing, so the garbage waits (across a scheduling point) for the next
 * socket released. */
static void pending(void)
{
    int s[2], p[2];
    socketpair(AF_UNIX, SOCK_DGRAM, 0, s);
    pipe(p);
    int fds[2] = {s[0], p[1]};
    printf("pending: send s0 over s1: %d\n", send_fds(s[1], fds, 2));
    close(p[1]);
    close(s[1]);
    close(s[0]);
    settle();
    release_one();
    reader_eof("pending reader", p[0], EOF_WAIT_MS);
    close(p[0]);
}

static void two_cycle(void)
{
    int a[2], b[2], p[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, a);
    socketpair(AF_UNIX, SOCK_DGRAM, 0, b);
    pipe(p);
    int on_b0[1] = {a[0]};
    int on_a0[2] = {b[0], p[1]};
    printf("two cycle: a0 to b0 %d, b0 to a0 %d\n", send_fds(b[1], on_b0, 1),
           send_fds(a[1], on_a0, 2));
    settle();
    close(p[1]);
    close(a[0]);
    close(b[0]);
    settle(); /* the ring is reachable only through a1 and b1, their peers */
    close(a[1]);
    close(b[1]);
    reader_eof("two cycle reader", p[0], EOF_WAIT_MS);
    close(p[0]);
}

/* A listener whose own fd, with a pipe's write end, waits on its unaccepted connection's
 * queue (Linux's scan_children): once the listener and the client are closed, EOF. */
static void listener(void)
{
    int l = socket(AF_UNIX, SOCK_STREAM, 0), c = socket(AF_UNIX, SOCK_STREAM, 0), p[2];
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    socklen_t len = sizeof(sa_family_t);
    bind(l, (struct sockaddr *)&sa, len); /* autobind: an abstract name nobody else has */
    len = sizeof sa;
    getsockname(l, (struct sockaddr *)&sa, &len);
    listen(l, 4);
    pipe(p);
    int carried[2] = {l, p[1]};
    printf("listener: connect %d, send the listener to its embryo %d\n",
           res(connect(c, (struct sockaddr *)&sa, len)), send_fds(c, carried, 2));
    close(p[1]);
    close(l);
    settle();
    close(c);
    reader_eof("listener reader", p[0], EOF_WAIT_MS);
    close(p[0]);
}

static void kept(void)
{
    int c[2], d[2], p[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, c);
    socketpair(AF_UNIX, SOCK_STREAM, 0, d);
    pipe(p);
    int wr[1] = {p[1]}, carried[1] = {c[0]};
    printf("kept: pipe to c0 %d, c0 to d0 %d\n", send_fds(c[1], wr, 1),
           send_fds(d[1], carried, 1));
    close(p[1]);
    close(c[0]);
    release_one();
    reader_eof("kept reader (no EOF)", p[0], KEPT_WAIT_MS);
    int c0 = recv_fd(d[0]);
    int w = recv_fd(c0);
    printf("kept: received c0 %d, its pipe end %d\n", c0 >= 0, w >= 0);
    printf("kept: through the pipe end %d\n", res(write(w, "k", 1)));
    char buf[8];
    printf("kept: reader gets %d\n", res(read(p[0], buf, sizeof buf)));
    printf("kept: c0 to its peer %d, peer reads %d\n", res(write(c0, "hi", 2)),
           res(read(c[1], buf, sizeof buf)));
    close(w);
    reader_eof("kept reader after close", p[0], EOF_WAIT_MS);
    close(c0);
    close(c[1]);
    close(d[0]);
    close(d[1]);
    close(p[0]);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    self_cycle();
    pending();
    two_cycle();
    listener();
    kept();
    printf("unixgc OK\n");
    return 0;
}
