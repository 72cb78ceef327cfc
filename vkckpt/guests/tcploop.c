/* tcploop: TCP over loopback.  A listener on 127.0.0.1 (port chosen by the kernel), three
 * forked clients served by an epoll accept loop that echoes until each half-closes; a
 * non-blocking connect (EINPROGRESS, POLLOUT, SO_ERROR 0); ECONNREFUSED from a bound port
 * that does not listen; RST on close with unread data and with SO_LINGER {1,0}; names,
 * options, MSG_PEEK, FIONREAD, MSG_WAITALL and a dual-stack v6 listener reached from v4.
 * Ports differ between hosts and vkernels, so only "ephemeral>=32768" is printed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define NCLIENTS 3

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

static int port_of(int fd)
{
    struct sockaddr_in a;
    socklen_t n = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &n);
    return ntohs(a.sin_port);
}

static int getint(int fd, int level, int opt)
{
    int v = -1;
    socklen_t n = sizeof v;
    return getsockopt(fd, level, opt, &v, &n) < 0 ? -errno : v;
}

static int client(int port, int i)
{
    int fd = socket(AF_INET, SOCK_STREAM | (i == 1 ? SOCK_NONBLOCK : 0), 0);
    struct sockaddr_in a = loop4(port);
    int r = res(connect(fd, (struct sockaddr *)&a, sizeof a));
    if (i == 1) {
        if (r != -EINPROGRESS && r != 0)
            return 10;
        struct pollfd p = {fd, POLLOUT, 0};
        if (poll(&p, 1, 5000) != 1 || !(p.revents & POLLOUT) || getint(fd, SOL_SOCKET, SO_ERROR))
            return 11;
        fcntl(fd, F_SETFL, 0);
    } else if (r) {
        return 12;
    }
    char msg[64], back[64];
    int n = snprintf(msg, sizeof msg, "hello from client %d", i);
    for (int k = 0; k < n; k += 5)
        if (write(fd, msg + k, n - k < 5 ? n - k : 5) < 0)
            return 13;
    shutdown(fd, SHUT_WR);
    int got = 0, m;
    while ((m = read(fd, back + got, sizeof back - got)) > 0)
        got += m;
    return m == 0 && got == n && !memcmp(msg, back, n) ? 0 : 14;
}

static int cmp(const void *a, const void *b) { return strcmp(a, b); }

static void serve(int lfd)
{
    int ep = epoll_create1(0);
    struct epoll_event ev = {EPOLLIN, {.fd = lfd}}, evs[8];
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    char seen[NCLIENTS][64] = {{0}}, buf[64][64];
    int lens[64] = {0}, done = 0, accepted = 0;
    memset(buf, 0, sizeof buf);
    while (done < NCLIENTS) {
        int n = epoll_wait(ep, evs, 8, 5000);
        if (n <= 0) {
            printf("epoll_wait: %d\n", res(n));
            return;
        }
        for (int e = 0; e < n; e++) {
            int fd = evs[e].data.fd;
            if (fd == lfd) {
                int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                struct epoll_event ce = {EPOLLIN | EPOLLRDHUP, {.fd = c}};
                epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                accepted++;
                continue;
            }
            char tmp[64];
            int m = read(fd, tmp, sizeof tmp);
            if (m > 0) {
                write(fd, tmp, m);
                memcpy(buf[fd % 64] + lens[fd], tmp, m);
                lens[fd] += m;
            } else if (m == 0) {
                strcpy(seen[done++], buf[fd % 64]);
                memset(buf[fd % 64], 0, 64);
                lens[fd] = 0;
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                close(fd);
            }
        }
    }
    qsort(seen, NCLIENTS, sizeof seen[0], cmp);
    printf("accepted %d\n", accepted);
    for (int i = 0; i < NCLIENTS; i++)
        printf("echoed: %s\n", seen[i]);
    close(ep);
}

static void rst_cases(int lfd, int port)
{
    for (int linger = 0; linger < 2; linger++) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = loop4(port);
        connect(c, (struct sockaddr *)&a, sizeof a);
        int s = accept(lfd, NULL, NULL);
        if (linger) {
            struct linger l = {1, 0};
            printf("SO_LINGER {1,0}: %d\n", res(setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof l)));
            socklen_t n = sizeof l;
            getsockopt(c, SOL_SOCKET, SO_LINGER, &l, &n);
            printf("linger reads {%d,%d} len %d\n", l.l_onoff, l.l_linger, (int)n);
            close(c);
            char b[8];
            printf("peer of a lingering close reads: %d\n", res(read(s, b, sizeof b)));
            printf("then: %d\n", res(read(s, b, sizeof b)));
            close(s);
            continue;
        }
        write(c, "unread", 6);
        usleep(1000);
        close(s);
        struct pollfd p = {c, POLLIN, 0};
        poll(&p, 1, 1000);
        printf("after RST: POLLIN %d POLLERR %d POLLHUP %d\n", !!(p.revents & POLLIN),
               !!(p.revents & POLLERR), !!(p.revents & POLLHUP));
        char b[8];
        printf("read after RST: %d\n", res(read(c, b, sizeof b)));
        printf("read again: %d\n", res(read(c, b, sizeof b)));
        printf("send after RST: %d\n", res(send(c, "x", 1, MSG_NOSIGNAL)));
        close(c);
    }
}

static void stream_cases(int lfd, int port)
{
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = loop4(port), me, peer, local;
    connect(c, (struct sockaddr *)&a, sizeof a);
    socklen_t n = sizeof peer;
    int s = accept(lfd, (struct sockaddr *)&peer, &n);
    socklen_t m = sizeof me;
    getsockname(c, (struct sockaddr *)&me, &m);
    socklen_t l = sizeof local;
    getsockname(s, (struct sockaddr *)&local, &l);
    printf("accept name len %d family %d, names match %d, sin_zero clear %d\n", (int)n,
           peer.sin_family, peer.sin_port == me.sin_port && peer.sin_addr.s_addr == me.sin_addr.s_addr,
           !memcmp(peer.sin_zero, "\0\0\0\0\0\0\0\0", 8));
    printf("client port ephemeral>=32768: %d, server side port is the listener's: %d\n",
           ntohs(me.sin_port) >= 32768, ntohs(local.sin_port) == port);
    printf("client addr %s\n", inet_ntoa(me.sin_addr));
    int one = 1, small = 4096;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(c, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(c, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    int idle = 30;
    setsockopt(c, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    printf("TCP_NODELAY %d SO_KEEPALIVE %d SO_RCVBUF %d TCP_KEEPIDLE %d\n",
           getint(c, IPPROTO_TCP, TCP_NODELAY), getint(c, SOL_SOCKET, SO_KEEPALIVE),
           getint(c, SOL_SOCKET, SO_RCVBUF), getint(c, IPPROTO_TCP, TCP_KEEPIDLE));
    printf("SO_TYPE %d SO_DOMAIN %d SO_PROTOCOL %d SO_ACCEPTCONN %d/%d\n",
           getint(c, SOL_SOCKET, SO_TYPE), getint(c, SOL_SOCKET, SO_DOMAIN),
           getint(c, SOL_SOCKET, SO_PROTOCOL), getint(lfd, SOL_SOCKET, SO_ACCEPTCONN),
           getint(c, SOL_SOCKET, SO_ACCEPTCONN));
    send(c, "peekaboo", 8, 0);
    usleep(1000);
    int q = -1;
    ioctl(s, FIONREAD, &q);
    char b[16] = {0};
    int r = res(recv(s, b, 4, MSG_PEEK));
    printf("FIONREAD %d, peek %d '%.4s'\n", q, r, b);
    r = res(recv(s, b, 8, MSG_DONTWAIT));
    int again = res(recv(s, b + 8, sizeof b - 8, MSG_DONTWAIT));
    printf("recv %d '%.*s', then DONTWAIT %d\n", r, r, b, again);
    if (fork() == 0) {
        usleep(2000);
        send(c, "wait", 4, 0);
        usleep(2000);
        send(c, "all!", 4, 0);
        _exit(0);
    }
    r = res(recv(s, b, 8, MSG_WAITALL));
    printf("MSG_WAITALL %d '%.*s'\n", r, r, b);
    wait(NULL);
    shutdown(c, SHUT_WR);
    r = res(read(s, b, sizeof b));
    printf("after peer SHUT_WR: read %d, write back %d\n", r, res(write(s, "bye", 3)));
    printf("half-closed side reads %d\n", res(read(c, b, 3)));
    close(s);
    printf("after close: read %d\n", res(read(c, b, sizeof b)));
    printf("write to a closed peer: %d\n", res(send(c, "x", 1, MSG_NOSIGNAL)));
    close(c);
}

static void dual_stack(void)
{
    int l6 = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 any;
    memset(&any, 0, sizeof any);
    any.sin6_family = AF_INET6;
    any.sin6_addr = in6addr_any;
    printf("v6 bind any: %d, V6ONLY %d\n", res(bind(l6, (struct sockaddr *)&any, sizeof any)),
           getint(l6, IPPROTO_IPV6, IPV6_V6ONLY));
    listen(l6, 4);
    socklen_t n = sizeof any;
    getsockname(l6, (struct sockaddr *)&any, &n);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = loop4(ntohs(any.sin6_port));
    printf("v4 connect to a dual-stack listener: %d\n", res(connect(c, (struct sockaddr *)&a, sizeof a)));
    struct sockaddr_in6 peer;
    n = sizeof peer;
    int s = accept(l6, (struct sockaddr *)&peer, &n);
    char txt[64];
    inet_ntop(AF_INET6, &peer.sin6_addr, txt, sizeof txt);
    printf("accepted from %s len %d flowinfo %u scope %u\n", txt, (int)n, peer.sin6_flowinfo,
           peer.sin6_scope_id);
    int c6 = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 to = any;
    to.sin6_addr = in6addr_loopback;
    printf("v6 connect ::1: %d\n", res(connect(c6, (struct sockaddr *)&to, sizeof to)));
    int s6 = accept(l6, (struct sockaddr *)&peer, &n);
    inet_ntop(AF_INET6, &peer.sin6_addr, txt, sizeof txt);
    printf("accepted from %s\n", txt);
    close(s6), close(c6), close(s), close(c), close(l6);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = loop4(0);
    printf("bind: %d\n", res(bind(lfd, (struct sockaddr *)&a, sizeof a)));
    printf("bind again: %d\n", res(bind(lfd, (struct sockaddr *)&a, sizeof a)));
    printf("listen: %d\n", res(listen(lfd, 8)));
    int port = port_of(lfd);
    printf("listener port ephemeral>=32768: %d\n", port >= 32768);
    int other = socket(AF_INET, SOCK_STREAM, 0);
    a = loop4(port);
    printf("bind the listening port: %d\n", res(bind(other, (struct sockaddr *)&a, sizeof a)));
    setsockopt(other, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    printf("with SO_REUSEADDR too: %d\n", res(bind(other, (struct sockaddr *)&a, sizeof a)));
    close(other);
    int idle = socket(AF_INET, SOCK_STREAM, 0);
    a = loop4(0);
    bind(idle, (struct sockaddr *)&a, sizeof a);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    a = loop4(port_of(idle));
    printf("connect to a port nobody listens on: %d\n", res(connect(c, (struct sockaddr *)&a, sizeof a)));
    close(c), close(idle);
    int u = socket(AF_INET, SOCK_STREAM, 0);
    printf("shutdown of an unconnected socket: %d\n", res(shutdown(u, SHUT_WR)));
    printf("getpeername of it: %d\n", res(getpeername(u, (struct sockaddr *)&a, &(socklen_t){sizeof a})));
    close(u);
    pid_t kids[NCLIENTS];
    for (int i = 0; i < NCLIENTS; i++)
        if ((kids[i] = fork()) == 0)
            _exit(client(port, i));
    serve(lfd);
    for (int i = 0; i < NCLIENTS; i++) {
        int st;
        waitpid(kids[i], &st, 0);
        printf("client %d exit %d\n", i, WEXITSTATUS(st));
    }
    stream_cases(lfd, port);
    rst_cases(lfd, port);
    dual_stack();
    close(lfd);
    return 0;
}
