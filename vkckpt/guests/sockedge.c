/* sockedge: socket edge cases whose results Linux defines, printed for a differential test.
 *   inode:   a bound AF_UNIX path stats as a socket, lists as DT_SOCK, opens with ENXIO,
 *            truncates with EINVAL, execs with EACCES, stays a socket renamed and is gone
 *            once a regular file is renamed over it;
 *   epipe:   TCP sends after the peer closed (the first is accepted, then the reset shows);
 *   unixpipe: AF_UNIX stream send after the peer closed (EPIPE at once);
 *   refused: connect to a loopback port nobody listens on;
 *   backlog: a listener closed with a connection it never accepted (the client is reset);
 *   nbclose: the same for a non-blocking connect, seen through poll and SO_ERROR;
 *   synclose: a non-blocking connect waiting on a full backlog when the listener closes;
 *   cmsgs:   SCM_RIGHTS on TCP and UDP (ignored: the reader gets no descriptor), a control
 *            message of another level (skipped), an unknown SOL_SOCKET one (EINVAL).
 * argv[1]: a writable directory for the socket path. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static const char *en(int e) {
    switch (e) {
    case 0: return "0";
    case EPIPE: return "EPIPE";
    case ECONNRESET: return "ECONNRESET";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ENXIO: return "ENXIO";
    case EINVAL: return "EINVAL";
    case EACCES: return "EACCES";
    case EINPROGRESS: return "EINPROGRESS";
    case EAGAIN: return "EAGAIN";
    case ENOTCONN: return "ENOTCONN";
    default: return "other";
    }
}

static void result(const char *what, long r) {
    if (r < 0)
        printf("%s: -1 %s\n", what, en(errno));
    else
        printf("%s: %ld\n", what, r);
}

static void inode(const char *dir) {
    char path[256];
    snprintf(path, sizeof path, "%s/s.sock", dir);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    result("inode bind", bind(s, (struct sockaddr *)&a, sizeof a));
    struct stat st;
    stat(path, &st);
    printf("inode stat: sock %d size %ld mode %o\n", S_ISSOCK(st.st_mode), (long)st.st_size,
           (unsigned)(st.st_mode & 0777) != 0);
    DIR *d = opendir(dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, "s.sock") == 0)
            printf("inode d_type: %d (DT_SOCK %d)\n", e->d_type, DT_SOCK);
    closedir(d);
    result("inode open", open(path, O_RDONLY));
    result("inode truncate", truncate(path, 0));
    char *argv[] = {path, NULL};
    result("inode execve", execve(path, argv, argv + 1));
    char moved[256], plain[256];
    snprintf(moved, sizeof moved, "%s/t.sock", dir);
    snprintf(plain, sizeof plain, "%s/plain", dir);
    result("inode rename", rename(path, moved));
    stat(moved, &st);
    printf("inode renamed: sock %d\n", S_ISSOCK(st.st_mode));
    close(open(plain, O_CREAT | O_WRONLY, 0644));
    result("inode replaced", rename(plain, moved));
    stat(moved, &st);
    printf("inode replaced: sock %d reg %d\n", S_ISSOCK(st.st_mode), S_ISREG(st.st_mode));
    result("inode unlink", unlink(moved));
    close(s);
}

static int listener(int backlog, int *port) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(l, (struct sockaddr *)&a, sizeof a);
    listen(l, backlog);
    socklen_t n = sizeof a;
    getsockname(l, (struct sockaddr *)&a, &n);
    *port = ntohs(a.sin_port);
    return l;
}

static int connect_to(int port, int nonblock, long *r) {
    int c = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    *r = connect(c, (struct sockaddr *)&a, sizeof a);
    return c;
}

static void epipe(void) {
    int port;
    long r;
    int l = listener(4, &port);
    int c = connect_to(port, 0, &r);
    int s = accept(l, NULL, NULL);
    close(s);
    usleep(10000);
    char buf[8];
    result("epipe recv", recv(c, buf, sizeof buf, 0));
    for (int i = 1; i <= 3; i++) {
        char what[32];
        snprintf(what, sizeof what, "epipe send %d", i);
        usleep(10000);
        result(what, send(c, "x", 1, MSG_NOSIGNAL));
    }
    result("epipe recv after", recv(c, buf, sizeof buf, MSG_DONTWAIT));
    close(c);
    close(l);
}

static void unixpipe(void) {
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    close(sv[1]);
    result("unixpipe send 1", send(sv[0], "x", 1, MSG_NOSIGNAL));
    result("unixpipe send 2", send(sv[0], "x", 1, MSG_NOSIGNAL));
    close(sv[0]);
}

static void refused(void) {
    int port;
    long r;
    int l = listener(1, &port);
    close(l);  /* the port is free again: nobody listens there */
    int c = connect_to(port, 0, &r);
    result("refused connect", r);
    close(c);
    c = connect_to(port, 1, &r);
    result("refused nonblocking connect", r);
    struct pollfd p = {.fd = c, .events = POLLIN | POLLOUT};
    poll(&p, 1, 1000);
    printf("refused poll: in %d out %d err %d hup %d\n", !!(p.revents & POLLIN),
           !!(p.revents & POLLOUT), !!(p.revents & POLLERR), !!(p.revents & POLLHUP));
    int err = 0;
    socklen_t n = sizeof err;
    getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &n);
    printf("refused SO_ERROR: %s\n", en(err));
    close(c);
}

static void backlog(void) {
    int port;
    long r;
    int l = listener(4, &port);
    int c = connect_to(port, 0, &r);
    result("backlog connect", r);
    usleep(10000);
    close(l);
    usleep(10000);
    char buf[8];
    result("backlog recv", recv(c, buf, sizeof buf, 0));
    result("backlog send", send(c, "x", 1, MSG_NOSIGNAL));
    close(c);
}

static void nbclose(void) {
    int port;
    long r;
    int l = listener(4, &port);
    int c = connect_to(port, 1, &r);
    result("nbclose connect", r);
    struct pollfd p = {.fd = c, .events = POLLOUT};
    poll(&p, 1, 1000);
    printf("nbclose poll before: out %d err %d\n", !!(p.revents & POLLOUT),
           !!(p.revents & POLLERR));
    close(l);
    usleep(10000);
    p.events = POLLIN | POLLOUT;
    poll(&p, 1, 1000);
    printf("nbclose poll after: in %d out %d err %d hup %d\n", !!(p.revents & POLLIN),
           !!(p.revents & POLLOUT), !!(p.revents & POLLERR), !!(p.revents & POLLHUP));
    int err = 0;
    socklen_t n = sizeof err;
    getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &n);
    printf("nbclose SO_ERROR: %s\n", en(err));
    char buf[8];
    result("nbclose recv", recv(c, buf, sizeof buf, 0));
    close(c);
}

static void synclose(void) {
    int port;
    long r;
    int l = listener(0, &port);
    int c1 = connect_to(port, 0, &r);
    result("synclose first connect", r);
    int c2 = connect_to(port, 1, &r);
    result("synclose second connect", r);
    struct pollfd p = {.fd = c2, .events = POLLOUT};
    printf("synclose poll before: %d\n", poll(&p, 1, 50));
    close(l);
    p.events = POLLIN | POLLOUT;
    int n = poll(&p, 1, 5000);
    printf("synclose poll after: %d in %d out %d err %d hup %d\n", n, !!(p.revents & POLLIN),
           !!(p.revents & POLLOUT), !!(p.revents & POLLERR), !!(p.revents & POLLHUP));
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c2, SOL_SOCKET, SO_ERROR, &err, &len);
    printf("synclose SO_ERROR: %s\n", en(err));
    char buf[8];
    result("synclose first recv", recv(c1, buf, sizeof buf, 0));
    close(c1);
    close(c2);
}

/* sendmsg with one control message of level/type; the result (and errno). */
static long cmsg_send(int s, int level, int type, int fd) {
    union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = {"c", 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
                       .msg_controllen = sizeof ctl.b};
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = level;
    h->cmsg_type = type;
    h->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(h), &fd, sizeof fd);
    return sendmsg(s, &m, MSG_DONTWAIT);
}

/* Control messages: SCM_RIGHTS is AF_UNIX's only; another level's message is skipped. */
static void cmsgs(void) {
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    result("cmsg unix SOL_IP", cmsg_send(sv[0], IPPROTO_IP, 1, 0));
    result("cmsg unix SOL_SOCKET 99", cmsg_send(sv[0], SOL_SOCKET, 99, 0));
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    bind(l, (struct sockaddr *)&a, sizeof a);
    listen(l, 1);
    getsockname(l, (struct sockaddr *)&a, &len);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    connect(c, (struct sockaddr *)&a, sizeof a);
    result("cmsg tcp SCM_RIGHTS", cmsg_send(c, SOL_SOCKET, SCM_RIGHTS, sv[1]));
    result("cmsg tcp SCM_CREDENTIALS", cmsg_send(c, SOL_SOCKET, SCM_CREDENTIALS, 0));
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    connect(u, (struct sockaddr *)&a, sizeof a);
    result("cmsg udp SCM_RIGHTS", cmsg_send(u, SOL_SOCKET, SCM_RIGHTS, sv[1]));
    int s = accept(l, NULL, NULL);
    char got[4];
    union { struct cmsghdr h; char b[CMSG_SPACE(4 * sizeof(int))]; } ctl;
    struct iovec iov = {got, sizeof got};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
                       .msg_controllen = sizeof ctl.b};
    long n = recvmsg(s, &m, MSG_DONTWAIT);
    printf("cmsg tcp reader: %ld bytes, control %ld\n", n, (long)m.msg_controllen);
    close(s), close(u), close(c), close(l), close(sv[0]), close(sv[1]);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    signal(SIGPIPE, SIG_IGN);
    inode(argc > 1 ? argv[1] : ".");
    epipe();
    unixpipe();
    refused();
    backlog();
    nbclose();
    synclose();
    cmsgs();
    return 0;
}
