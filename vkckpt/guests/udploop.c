/* udploop: UDP over loopback.  Datagrams both ways with their source addresses, boundaries
 * kept, MSG_TRUNC (recv's result and msg_flags), EMSGSIZE past 65507 bytes, a connected
 * socket's filter and its ECONNREFUSED after sending to a port with no socket, FIONREAD,
 * poll, and IPv6: ::1, and a dual-stack socket reached from IPv4 (v4-mapped names). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int res(long n) { return n < 0 ? -errno : (int)n; }

static struct sockaddr_in loop4(int port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static int bound4(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = loop4(0);
    bind(fd, (struct sockaddr *)&a, sizeof a);
    return fd;
}

static int port_of(int fd)
{
    struct sockaddr_in6 a;
    socklen_t n = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &n);
    return ntohs(a.sin6_port);  /* sin_port and sin6_port share their place */
}

static void v4(void)
{
    int a = bound4(), b = bound4();
    struct sockaddr_in to = loop4(port_of(b));
    sendto(a, "one", 3, 0, (struct sockaddr *)&to, sizeof to);
    sendto(a, "second", 6, 0, (struct sockaddr *)&to, sizeof to);
    int q = -1;
    ioctl(b, FIONREAD, &q);
    struct pollfd p = {b, POLLIN | POLLOUT, 0};
    int pr = poll(&p, 1, 0);
    printf("FIONREAD %d poll %d revents IN %d OUT %d\n", q, pr, !!(p.revents & POLLIN),
           !!(p.revents & POLLOUT));
    for (int i = 0; i < 2; i++) {
        char buf[16] = {0};
        struct sockaddr_in from;
        socklen_t n = sizeof from;
        int r = res(recvfrom(b, buf, sizeof buf, 0, (struct sockaddr *)&from, &n));
        printf("got %d '%s' from %s, the sender's port %d, len %d\n", r, buf,
               inet_ntoa(from.sin_addr), ntohs(from.sin_port) == port_of(a), (int)n);
    }
    struct sockaddr_in back = loop4(port_of(a));
    sendto(b, "0123456789", 10, 0, (struct sockaddr *)&back, sizeof back);
    char small[4];
    struct iovec iov = {small, sizeof small};
    struct msghdr mh = {0};
    mh.msg_iov = &iov, mh.msg_iovlen = 1;
    int r = res(recvmsg(a, &mh, MSG_TRUNC));
    printf("recvmsg with MSG_TRUNC into 4: %d, msg_flags MSG_TRUNC %d\n", r,
           !!(mh.msg_flags & MSG_TRUNC));
    sendto(b, "abcdefgh", 8, 0, (struct sockaddr *)&back, sizeof back);
    r = res(recv(a, small, 4, 0));
    printf("recv into 4 without: %d, next DONTWAIT %d\n", r, res(recv(a, small, 4, MSG_DONTWAIT)));
    static char big[65508];
    printf("send 65508: %d\n", res(sendto(a, big, sizeof big, 0, (struct sockaddr *)&to, sizeof to)));
    r = res(sendto(a, "", 0, 0, (struct sockaddr *)&to, sizeof to));
    printf("send nothing: %d, recv it %d\n", r, res(recv(b, small, 4, 0)));
    printf("send without an address: %d\n", res(send(a, "x", 1, 0)));
    /* a connected socket takes datagrams from its peer only */
    struct sockaddr_in ca = loop4(port_of(a));
    printf("connect b to a: %d\n", res(connect(b, (struct sockaddr *)&ca, sizeof ca)));
    int c = bound4();
    sendto(c, "stranger", 8, 0, (struct sockaddr *)&to, sizeof to);
    sendto(a, "friend", 6, 0, (struct sockaddr *)&to, sizeof to);
    char buf[16] = {0};
    printf("connected b gets %d '%s'\n", res(recv(b, buf, sizeof buf, 0)), buf);
    printf("and then %d\n", res(recv(b, buf, sizeof buf, MSG_DONTWAIT)));
    struct sockaddr_in peer;
    socklen_t pn = sizeof peer;
    getpeername(b, (struct sockaddr *)&peer, &pn);
    printf("getpeername is a: %d\n", ntohs(peer.sin_port) == port_of(a));
    struct sockaddr un = {AF_UNSPEC};
    r = res(connect(b, &un, sizeof un));
    printf("disconnect: %d, getpeername %d\n", r, res(getpeername(b, (struct sockaddr *)&peer, &pn)));
    close(a), close(b), close(c);
}

static void refused(void)
{
    int gone = bound4(), port = port_of(gone);
    close(gone);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = loop4(port);
    int r = res(sendto(s, "x", 1, 0, (struct sockaddr *)&to, sizeof to));
    printf("sendto a closed port, unconnected: %d, then %d\n", r,
           res(sendto(s, "x", 1, 0, (struct sockaddr *)&to, sizeof to)));
    connect(s, (struct sockaddr *)&to, sizeof to);
    printf("connected send: %d\n", res(send(s, "x", 1, 0)));
    printf("next send: %d\n", res(send(s, "x", 1, 0)));
    printf("send after that: %d\n", res(send(s, "x", 1, 0)));
    char b[4];
    printf("recv reports it: %d\n", res(recv(s, b, sizeof b, MSG_DONTWAIT)));
    printf("then: %d\n", res(recv(s, b, sizeof b, MSG_DONTWAIT)));
    close(s);
}

static void v6(void)
{
    int a = socket(AF_INET6, SOCK_DGRAM, 0), b = socket(AF_INET6, SOCK_DGRAM, 0);
    struct sockaddr_in6 lo;
    memset(&lo, 0, sizeof lo);
    lo.sin6_family = AF_INET6;
    lo.sin6_addr = in6addr_loopback;
    bind(a, (struct sockaddr *)&lo, sizeof lo);
    struct sockaddr_in6 any = lo;
    any.sin6_addr = in6addr_any;
    printf("dual-stack bind: %d\n", res(bind(b, (struct sockaddr *)&any, sizeof any)));
    struct sockaddr_in6 to = lo;
    to.sin6_port = htons(port_of(b));
    sendto(a, "over v6", 7, 0, (struct sockaddr *)&to, sizeof to);
    int c = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to4 = loop4(port_of(b));
    sendto(c, "over v4", 7, 0, (struct sockaddr *)&to4, sizeof to4);
    for (int i = 0; i < 2; i++) {
        char buf[16] = {0}, txt[64];
        struct sockaddr_in6 from;
        socklen_t n = sizeof from;
        int r = res(recvfrom(b, buf, sizeof buf, 0, (struct sockaddr *)&from, &n));
        inet_ntop(AF_INET6, &from.sin6_addr, txt, sizeof txt);
        printf("v6 got %d '%s' from %s family %d len %d flowinfo %u scope %u\n", r, buf, txt,
               from.sin6_family, (int)n, from.sin6_flowinfo, from.sin6_scope_id);
    }
    int only = socket(AF_INET6, SOCK_DGRAM, 0), one = 1;
    printf("V6ONLY set: %d\n", res(setsockopt(only, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one)));
    struct sockaddr_in6 mapped = to;
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &mapped.sin6_addr);
    printf("v6-only sendto v4-mapped: %d\n",
           res(sendto(only, "x", 1, 0, (struct sockaddr *)&mapped, sizeof mapped)));
    printf("v4 socket given a sockaddr_in6: %d\n",
           res(sendto(c, "x", 1, 0, (struct sockaddr *)&to, sizeof to)));
    close(a), close(b), close(c), close(only);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    v4();
    refused();
    v6();
    /* a datagram across fork: the child answers the parent */
    int p = bound4(), k = bound4();
    int pport = port_of(p);
    if (fork() == 0) {
        char buf[16] = {0};
        struct sockaddr_in from;
        socklen_t n = sizeof from;
        recvfrom(k, buf, sizeof buf, 0, (struct sockaddr *)&from, &n);
        buf[0] = 'P';
        sendto(k, buf, strlen(buf), 0, (struct sockaddr *)&from, n);
        _exit(0);
    }
    struct sockaddr_in to = loop4(port_of(k));
    sendto(p, "ping", 4, 0, (struct sockaddr *)&to, sizeof to);
    char buf[16] = {0};
    printf("child answered: %d '%s' (parent port kept %d)\n", res(recv(p, buf, sizeof buf, 0)),
           buf, port_of(p) == pport);
    wait(NULL);
    return 0;
}
