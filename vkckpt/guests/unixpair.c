#define _GNU_SOURCE
/* unixpair: AF_UNIX socketpairs across fork.  A stream pair (messages both ways, MSG_PEEK,
 * FIONREAD, SO_PEERCRED, fstat), a datagram pair (record boundaries, MSG_TRUNC), SCM_RIGHTS
 * passing a pipe's read end to a child (and MSG_CTRUNC when the control buffer is short),
 * shutdown (EOF, poll bits) and writes to a closed peer (EPIPE with SIGPIPE ignored, blocked,
 * or suppressed by MSG_NOSIGNAL).  Prints what it sees. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int res(long n)
{
    return n < 0 ? -errno : (int)n;
}

static void reap(const char *what)
{
    int st;
    wait(&st);
    printf("%s: child exited %d\n", what, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

static void stream_pair(void)
{
    int sv[2];
    char buf[64];
    printf("socketpair: %d\n", socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    struct stat st;
    fstat(sv[0], &st);
    printf("fstat: sock=%d\n", S_ISSOCK(st.st_mode));
    int type = 0;
    socklen_t len = sizeof type;
    getsockopt(sv[0], SOL_SOCKET, SO_TYPE, &type, &len);
    printf("SO_TYPE=%d len=%d\n", type, (int)len);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        struct ucred cr;
        len = sizeof cr;
        getsockopt(sv[1], SOL_SOCKET, SO_PEERCRED, &cr, &len);
        int n = res(read(sv[1], buf, sizeof buf));
        printf("child: read %d '%.*s' peer pid is parent: %d\n", n, n > 0 ? n : 0, buf,
               cr.pid == getppid());
        write(sv[1], "pong!", 5);
        _exit(0);
    }
    close(sv[1]);
    send(sv[0], "ping", 4, 0);
    int n = res(recv(sv[0], buf, 3, MSG_PEEK));
    printf("parent: peek %d '%.*s'\n", n, n > 0 ? n : 0, buf);
    int avail = 0;
    ioctl(sv[0], FIONREAD, &avail);
    printf("parent: FIONREAD=%d\n", avail);
    n = res(recv(sv[0], buf, sizeof buf, MSG_WAITALL));
    printf("parent: recv %d '%.*s'\n", n, n > 0 ? n : 0, buf);
    n = res(read(sv[0], buf, sizeof buf));
    printf("parent: read after child exit %d\n", n);
    reap("stream");
    close(sv[0]);
}

static void dgram_pair(void)
{
    int sv[2];
    char buf[16];
    socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
    send(sv[0], "one", 3, 0);
    send(sv[0], "two-long-datagram", 17, 0);
    send(sv[0], "", 0, 0);
    int avail = 0;
    ioctl(sv[1], FIONREAD, &avail);
    printf("dgram: FIONREAD=%d\n", avail);
    for (int i = 0; i < 3; i++) {
        struct iovec iov = {buf, 8};
        struct msghdr mh = {0};
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        int n = res(recvmsg(sv[1], &mh, i == 1 ? MSG_TRUNC : 0));
        printf("dgram %d: %d '%.*s' trunc=%d\n", i, n, n > 8 ? 8 : (n > 0 ? n : 0), buf,
               !!(mh.msg_flags & MSG_TRUNC));
    }
    printf("dgram: empty %d\n", res(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT)));
    close(sv[0]);
    close(sv[1]);
}

static int send_fds(int s, int *fds, int nfds)
{
    char ctl[CMSG_SPACE(4 * sizeof(int))];
    memset(ctl, 0, sizeof ctl);
    struct iovec iov = {"F", 1};
    struct msghdr mh = {0};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl;
    mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    return res(sendmsg(s, &mh, 0));
}

static int recv_fd(int s, size_t room, int *flags)
{
    char ctl[CMSG_SPACE(4 * sizeof(int))];
    char b;
    struct iovec iov = {&b, 1};
    struct msghdr mh = {0};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl;
    mh.msg_controllen = room;
    if (recvmsg(s, &mh, 0) < 0)
        return -errno;
    *flags = mh.msg_flags;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    if (!c || c->cmsg_type != SCM_RIGHTS)
        return -1000;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

static void pass_fds(void)
{
    int sv[2], p[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    pipe(p);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        close(p[0]);
        close(p[1]);
        int flags = 0;
        int fd = recv_fd(sv[1], CMSG_SPACE(sizeof(int)), &flags);
        char buf[32];
        int n = res(read(fd, buf, sizeof buf));
        printf("child: got a fd: %d, read %d '%.*s'\n", fd >= 0, n, n > 0 ? n : 0, buf);
        n = res(read(fd, buf, sizeof buf));
        printf("child: then %d (writer closed)\n", n);
        _exit(0);
    }
    close(sv[1]);
    printf("sendmsg SCM_RIGHTS: %d\n", send_fds(sv[0], &p[0], 1));
    close(p[0]); /* the message keeps the read end open */
    write(p[1], "through the socket", 18);
    close(p[1]);
    reap("pass");
    close(sv[0]);

    /* two descriptors, room for one: MSG_CTRUNC, the other closed */
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    pipe(p);
    int two[2] = {p[0], p[0]};
    send_fds(sv[0], two, 2);
    close(p[0]);
    int flags = 0;
    int fd = recv_fd(sv[1], CMSG_LEN(sizeof(int)), &flags);
    printf("short control: got fd %d ctrunc=%d\n", fd >= 0, !!(flags & MSG_CTRUNC));
    close(fd);
    signal(SIGPIPE, SIG_IGN);
    printf("write with every reader gone: %d\n", res(write(p[1], "x", 1)));
    signal(SIGPIPE, SIG_DFL);
    close(p[1]);
    close(sv[0]);
    close(sv[1]);
}

static void shutdowns(void)
{
    int sv[2];
    char buf[8];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    send(sv[0], "bye", 3, 0);
    shutdown(sv[0], SHUT_WR);
    struct pollfd pf = {sv[1], POLLIN | POLLOUT | POLLRDHUP, 0};
    poll(&pf, 1, 0);
    printf("after SHUT_WR: peer revents=%#x\n", pf.revents);
    printf("read %d, then %d\n", res(read(sv[1], buf, sizeof buf)),
           res(read(sv[1], buf, sizeof buf)));
    printf("write after SHUT_WR (MSG_NOSIGNAL): %d\n",
           res(send(sv[0], "x", 1, MSG_NOSIGNAL)));
    printf("shutdown bad how: %d\n", res(shutdown(sv[0], 7)));
    close(sv[1]);
    pf.fd = sv[0];
    poll(&pf, 1, 0);
    printf("peer closed: revents=%#x\n", pf.revents);
    close(sv[0]);
}

static void epipe(void)
{
    int sv[2];
    sigset_t set, pend;
    signal(SIGPIPE, SIG_IGN);
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    close(sv[1]);
    printf("ignored SIGPIPE: write %d\n", res(write(sv[0], "x", 1)));
    signal(SIGPIPE, SIG_DFL);
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigprocmask(SIG_BLOCK, &set, NULL);
    printf("MSG_NOSIGNAL: send %d", res(send(sv[0], "x", 1, MSG_NOSIGNAL)));
    sigpending(&pend);
    printf(" pending=%d\n", sigismember(&pend, SIGPIPE));
    printf("blocked SIGPIPE: send %d", res(send(sv[0], "x", 1, 0)));
    sigpending(&pend);
    printf(" pending=%d\n", sigismember(&pend, SIGPIPE));
    signal(SIGPIPE, SIG_IGN); /* discards the pending one */
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    close(sv[0]);
    socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv);
    close(sv[1]);
    signal(SIGPIPE, SIG_DFL);
    printf("seqpacket to a closed peer: %d (no signal)\n", res(write(sv[0], "x", 1)));
    close(sv[0]);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    stream_pair();
    dgram_pair();
    pass_fds();
    shutdowns();
    epipe();
    printf("socket(AF_UNIX, SOCK_RDM): %d\n", res(socket(AF_UNIX, SOCK_RDM, 0)));
    printf("socket(46, SOCK_STREAM): %d\n", res(socket(46, SOCK_STREAM, 0)));
    int s = socket(AF_UNIX, SOCK_RAW, 0), type = 0;
    socklen_t len = sizeof type;
    getsockopt(s, SOL_SOCKET, SO_TYPE, &type, &len);
    printf("SOCK_RAW is a datagram socket: %d\n", type == SOCK_DGRAM);
    close(s);
    printf("done\n");
    return 0;
}
