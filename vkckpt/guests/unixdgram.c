/* unixdgram: datagram and seqpacket sockets.  Datagrams sent to a bound path (recvfrom
 * names the sender; an unbound one is nameless, an autobound one has a 5-digit abstract
 * name), connected datagram sockets (EPERM from a third party, ECONNREFUSED once the peer
 * is gone), ENOENT and ECONNREFUSED names, a full queue, EMSGSIZE, SCM_CREDENTIALS with
 * SO_PASSCRED, sendmmsg/recvmmsg, and seqpacket records with MSG_TRUNC across a listen/
 * accept pair and a fork.  Prints what it sees. */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static int res(long n)
{
    return n < 0 ? -errno : (int)n;
}

static socklen_t path_addr(struct sockaddr_un *a, const char *path)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    strcpy(a->sun_path, path);
    return offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1;
}

static void to_path(void)
{
    struct sockaddr_un a, from;
    socklen_t len = path_addr(&a, "work/d.sock"), fl;
    int srv = socket(AF_UNIX, SOCK_DGRAM, 0);
    printf("bind: %d\n", res(bind(srv, (struct sockaddr *)&a, len)));
    int cli = socket(AF_UNIX, SOCK_DGRAM, 0);
    printf("sendto path: %d\n", res(sendto(cli, "first", 5, 0, (struct sockaddr *)&a, len)));
    char buf[32];
    fl = sizeof from;
    int n = res(recvfrom(srv, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl));
    printf("recvfrom: %d '%.*s' from unbound: addrlen %d\n", n, n > 0 ? n : 0, buf, (int)fl);

    struct sockaddr_un any = {.sun_family = AF_UNIX};
    printf("autobind: %d\n", res(bind(cli, (struct sockaddr *)&any, sizeof(sa_family_t))));
    sendto(cli, "second", 6, 0, (struct sockaddr *)&a, len);
    fl = sizeof from;
    n = res(recvfrom(srv, buf, 3, 0, (struct sockaddr *)&from, &fl));
    printf("recvfrom autobound: %d '%.*s' addrlen %d abstract %d\n", n, n > 0 ? n : 0, buf,
           (int)fl, from.sun_path[0] == 0);
    printf("reply to it: %d\n", res(sendto(srv, "back", 4, 0, (struct sockaddr *)&from, fl)));
    n = res(recv(cli, buf, sizeof buf, 0));
    printf("reply: %d '%.*s'\n", n, n > 0 ? n : 0, buf);

    int third = socket(AF_UNIX, SOCK_DGRAM, 0);
    int full = 0;
    while (sendto(third, "q", 1, MSG_DONTWAIT, (struct sockaddr *)&a, len) == 1 && full < 100)
        full++;
    printf("queue full after %d datagrams: errno %d\n", full, errno);
    while (recv(srv, buf, sizeof buf, MSG_DONTWAIT) > 0)
        ;

    printf("connect: %d\n", res(connect(cli, (struct sockaddr *)&a, len)));
    printf("send connected: %d\n", res(send(cli, "c", 1, 0)));
    printf("srv connects to cli: %d\n", res(connect(srv, (struct sockaddr *)&from, fl)));
    printf("third party to srv: %d\n",
           res(sendto(third, "x", 1, 0, (struct sockaddr *)&a, len)));
    static char big[300000];
    printf("too big: %d\n", res(send(cli, big, sizeof big, 0)));
    close(srv);
    printf("peer gone: %d, then %d\n", res(send(cli, "c", 1, 0)), res(send(cli, "c", 1, 0)));
    printf("path after close: %d\n",
           res(sendto(third, "x", 1, 0, (struct sockaddr *)&a, len)));
    unlink("work/d.sock");
    printf("path unlinked: %d\n", res(sendto(third, "x", 1, 0, (struct sockaddr *)&a, len)));
    close(cli);
    close(third);
}

static void credentials(void)
{
    int sv[2], on = 1;
    socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
    setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &on, sizeof on);
    pid_t pid = fork();
    if (pid == 0) {
        send(sv[0], "cred", 4, 0);
        _exit(0);
    }
    char buf[8], ctl[CMSG_SPACE(sizeof(struct ucred))];
    struct iovec iov = {buf, sizeof buf};
    struct msghdr mh = {0};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl;
    mh.msg_controllen = sizeof ctl;
    int n = res(recvmsg(sv[1], &mh, 0));
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    struct ucred cr = {0};
    if (c && c->cmsg_type == SCM_CREDENTIALS)
        memcpy(&cr, CMSG_DATA(c), sizeof cr);
    printf("SCM_CREDENTIALS: %d bytes, type %d, pid is the child's %d, uid ok %d\n", n,
           c ? c->cmsg_type : -1, cr.pid == pid, cr.uid == getuid());
    waitpid(pid, NULL, 0);
    close(sv[0]);
    close(sv[1]);
}

static void mmsg(void)
{
    int sv[2];
    socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
    struct mmsghdr out[3] = {0}, in[4] = {0};
    struct iovec oi[3] = {{"a", 1}, {"bb", 2}, {"ccc", 3}}, ii[4];
    char bufs[4][8];
    for (int i = 0; i < 3; i++) {
        out[i].msg_hdr.msg_iov = &oi[i];
        out[i].msg_hdr.msg_iovlen = 1;
    }
    printf("sendmmsg: %d\n", res(sendmmsg(sv[0], out, 3, 0)));
    for (int i = 0; i < 4; i++) {
        ii[i].iov_base = bufs[i];
        ii[i].iov_len = 8;
        in[i].msg_hdr.msg_iov = &ii[i];
        in[i].msg_hdr.msg_iovlen = 1;
    }
    int n = res(recvmmsg(sv[1], in, 4, MSG_DONTWAIT, NULL));
    printf("recvmmsg: %d:", n);
    for (int i = 0; i < n; i++)
        printf(" %u'%.*s'", in[i].msg_len, (int)in[i].msg_len, bufs[i]);
    printf("\n");
    close(sv[0]);
    close(sv[1]);
}

static void seqpacket(void)
{
    struct sockaddr_un a;
    socklen_t len = path_addr(&a, "work/seq.sock");
    int l = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    bind(l, (struct sockaddr *)&a, len);
    printf("seqpacket listen: %d\n", res(listen(l, 4)));
    int dg = socket(AF_UNIX, SOCK_STREAM, 0);
    printf("stream to seqpacket listener: %d\n",
           res(connect(dg, (struct sockaddr *)&a, len)));
    close(dg);
    pid_t pid = fork();
    if (pid == 0) {
        int c = socket(AF_UNIX, SOCK_SEQPACKET, 0);
        if (connect(c, (struct sockaddr *)&a, len) < 0)
            _exit(1);
        send(c, "record one", 10, 0);
        send(c, "two", 3, 0);
        send(c, "", 0, 0);
        char b[4];
        _exit(recv(c, b, sizeof b, 0) == 2 ? 0 : 2);
    }
    int s = accept(l, NULL, NULL);
    char buf[16];
    struct iovec iov = {buf, 6};
    struct msghdr mh = {0};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    int n = res(recvmsg(s, &mh, 0));
    printf("seqpacket 1: %d '%.*s' trunc=%d\n", n, n > 0 ? n : 0, buf,
           !!(mh.msg_flags & MSG_TRUNC));
    n = res(recv(s, buf, sizeof buf, MSG_PEEK));
    printf("seqpacket peek: %d '%.*s'\n", n, n > 0 ? n : 0, buf);
    n = res(recv(s, buf, sizeof buf, 0));
    printf("seqpacket 2: %d '%.*s'\n", n, n > 0 ? n : 0, buf);
    printf("seqpacket empty record: %d\n", res(recv(s, buf, sizeof buf, 0)));
    send(s, "ok", 2, 0);
    int st;
    waitpid(pid, &st, 0);
    printf("seqpacket child exited %d\n", WEXITSTATUS(st));
    printf("seqpacket after peer exit: %d\n", res(recv(s, buf, sizeof buf, 0)));
    int u = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    printf("seqpacket unconnected send: %d\n", res(send(u, "x", 1, 0)));
    close(u);
    close(s);
    close(l);
    unlink("work/seq.sock");
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    struct sockaddr_un a;
    socklen_t len = path_addr(&a, "work/none.sock");
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    printf("sendto missing path: %d\n", res(sendto(s, "x", 1, 0, (struct sockaddr *)&a, len)));
    len = path_addr(&a, "work");
    printf("sendto a directory: %d\n", res(sendto(s, "x", 1, 0, (struct sockaddr *)&a, len)));
    printf("send unconnected: %d\n", res(send(s, "x", 1, 0)));
    close(s);
    to_path();
    credentials();
    mmsg();
    seqpacket();
    printf("done\n");
    return 0;
}
