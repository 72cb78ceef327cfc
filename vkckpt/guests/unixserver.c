/* unixserver: a server bound to a path and to an abstract name, three forked clients, an
 * epoll loop with accept4, names (getsockname/getpeername), SO_PEERCRED against the forked
 * pids, the socket inode (stat, EADDRINUSE, ECONNREFUSED once closed, ENOENT unlinked) and
 * non-blocking connects to a full backlog.  Children print nothing: the server reports
 * what it saw per client in client order, so the output is deterministic. */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define NCLIENTS 3

static socklen_t plen, alen; /* the listeners' name lengths (the abstract one has our pid) */

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

static socklen_t abstract_addr(struct sockaddr_un *a, const char *name)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    memcpy(a->sun_path + 1, name, strlen(name));
    return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name);
}

static int client(int i, struct sockaddr_un *a, socklen_t len)
{
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(s, (struct sockaddr *)a, len) < 0)
        return 10;
    char msg[32], buf[64];
    int n = snprintf(msg, sizeof msg, "%d hello", i);
    if (write(s, msg, n) != n)
        return 11;
    n = read(s, buf, sizeof buf - 1);
    if (n <= 0)
        return 12;
    buf[n] = 0;
    struct ucred cr;
    socklen_t cl = sizeof cr;
    getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cr, &cl);
    if (cr.pid != getppid())
        return 13;
    struct sockaddr_un peer;
    socklen_t pl = sizeof peer;
    getpeername(s, (struct sockaddr *)&peer, &pl);
    if (pl != len || memcmp(&peer, a, len))
        return 14;
    return strncmp(buf, "welcome ", 8) ? 15 : 0;
}

struct seen {
    int accepted, ok_pid, peer_len, name_len, nonblock_cloexec;
    char text[32];
};

static void serve(int l1, int l2, pid_t *pids)
{
    struct seen seen[NCLIENTS] = {0};
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {EPOLLIN, {.fd = l1}};
    epoll_ctl(ep, EPOLL_CTL_ADD, l1, &ev);
    ev.data.fd = l2;
    epoll_ctl(ep, EPOLL_CTL_ADD, l2, &ev);
    int done = 0, conn_of[64] = {0};
    while (done < NCLIENTS) {
        struct epoll_event got[4];
        int n = epoll_wait(ep, got, 4, 5000);
        if (n <= 0) {
            printf("epoll_wait: %d\n", res(n));
            return;
        }
        for (int k = 0; k < n; k++) {
            int fd = got[k].data.fd;
            if (fd == l1 || fd == l2) {
                struct sockaddr_un peer;
                socklen_t pl = sizeof peer;
                int c = accept4(fd, (struct sockaddr *)&peer, &pl, SOCK_NONBLOCK | SOCK_CLOEXEC);
                conn_of[c] = 1000 + (int)pl; /* remember the peer name length until it talks */
                ev.events = EPOLLIN | EPOLLRDHUP;
                ev.data.fd = c;
                epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                continue;
            }
            char buf[64];
            int r = read(fd, buf, sizeof buf - 1);
            if (r > 0) {
                buf[r] = 0;
                int i = buf[0] - '0';
                struct seen *s = &seen[i];
                s->accepted = 1;
                s->peer_len = conn_of[fd] - 1000;
                snprintf(s->text, sizeof s->text, "%s", buf);
                struct ucred cr;
                socklen_t cl = sizeof cr;
                getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl);
                s->ok_pid = cr.pid == pids[i];
                struct sockaddr_un me;
                socklen_t ml = sizeof me;
                getsockname(fd, (struct sockaddr *)&me, &ml);
                s->name_len = ml == (i == 2 ? alen : plen);
                s->nonblock_cloexec = (fcntl(fd, F_GETFL) & O_NONBLOCK) &&
                                      (fcntl(fd, F_GETFD) & FD_CLOEXEC);
                write(fd, "welcome client", 14);
            } else if (r == 0 || (got[k].events & EPOLLRDHUP)) {
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                close(fd);
                done++;
            }
        }
    }
    for (int i = 0; i < NCLIENTS; i++)
        printf("client %d: '%s' peer pid ok %d, peer name len %d, local name is the listener's %d, "
               "nonblock+cloexec %d\n", i, seen[i].text, seen[i].ok_pid, seen[i].peer_len,
               seen[i].name_len, seen[i].nonblock_cloexec);
    close(ep);
}

static void backlog_full(void)
{
    struct sockaddr_un a;
    socklen_t len = path_addr(&a, "work/full.sock");
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    bind(l, (struct sockaddr *)&a, len);
    listen(l, 0);
    int ok = 0, c[8], err = 0;
    for (int i = 0; i < 8; i++) {
        c[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (connect(c[i], (struct sockaddr *)&a, len) == 0)
            ok++;
        else if (!err)
            err = errno;
    }
    struct pollfd pf = {l, POLLIN, 0};
    printf("backlog 0: %d connected, then errno %d; listener revents %#x\n", ok, err,
           poll(&pf, 1, 0) == 1 ? pf.revents : 0);
    int acc = accept(l, NULL, NULL);
    int again = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    printf("after one accept: connect %d\n", res(connect(again, (struct sockaddr *)&a, len)));
    close(acc);
    close(again);
    for (int i = 0; i < 8; i++)
        close(c[i]);
    close(l);
    unlink("work/full.sock");
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    struct sockaddr_un pa, aa;
    plen = path_addr(&pa, "work/srv.sock");
    char abs_name[64];
    snprintf(abs_name, sizeof abs_name, "vkckpt-unixserver-%d", (int)getpid());
    alen = abstract_addr(&aa, abs_name);

    int l1 = socket(AF_UNIX, SOCK_STREAM, 0);
    printf("bind path: %d\n", res(bind(l1, (struct sockaddr *)&pa, plen)));
    struct stat st;
    stat("work/srv.sock", &st);
    printf("socket inode: sock=%d mode=%o\n", S_ISSOCK(st.st_mode), st.st_mode & 0777);
    int dup_ = socket(AF_UNIX, SOCK_STREAM, 0);
    printf("bind it again: %d\n", res(bind(dup_, (struct sockaddr *)&pa, plen)));
    printf("connect before listen: %d\n", res(connect(dup_, (struct sockaddr *)&pa, plen)));
    close(dup_);
    printf("listen: %d\n", res(listen(l1, 8)));
    int l2 = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    printf("bind abstract: %d\n", res(bind(l2, (struct sockaddr *)&aa, alen)));
    listen(l2, 8);
    int acc = 0;
    socklen_t al = sizeof acc;
    getsockopt(l1, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al);
    printf("SO_ACCEPTCONN=%d\n", acc);
    struct sockaddr_un me;
    socklen_t ml = sizeof me;
    getsockname(l1, (struct sockaddr *)&me, &ml);
    printf("getsockname: '%s' len %d\n", me.sun_path, (int)ml);
    ml = sizeof me;
    getsockname(l2, (struct sockaddr *)&me, &ml);
    printf("abstract getsockname: same=%d\n", ml == alen && !memcmp(&me, &aa, alen));

    pid_t pids[NCLIENTS];
    for (int i = 0; i < NCLIENTS; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            close(l1);
            close(l2);
            _exit(i == 2 ? client(i, &aa, alen) : client(i, &pa, plen));
        }
    }
    serve(l1, l2, pids);
    for (int i = 0; i < NCLIENTS; i++) {
        int stt;
        waitpid(pids[i], &stt, 0);
        printf("client %d exited %d\n", i, WEXITSTATUS(stt));
    }
    close(l1);
    close(l2);
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    printf("connect after close: %d\n", res(connect(c, (struct sockaddr *)&pa, plen)));
    printf("abstract after close: %d\n", res(connect(c, (struct sockaddr *)&aa, alen)));
    unlink("work/srv.sock");
    printf("connect after unlink: %d\n", res(connect(c, (struct sockaddr *)&pa, plen)));
    close(c);
    backlog_full();
    printf("done\n");
    return 0;
}
