/* netbench: loopback TCP workloads for the network bench.
 *   netbench tput MIB   a forked reader takes MIB MiB streamed in 64 KiB writes, and
 *                       prints how many bytes and a checksum of every 4096th;
 *   netbench conn N     N rounds of connect, accept and close on one listener.
 *   netbench backlog    a non-blocking connect to a listener whose backlog is full
 *                       (EINPROGRESS for TCP: the SYN waits) completes once it accepts.
 * The output never names ports or times, so it is the same on every side. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHUNK 65536

static void die(const char *what)
{
    printf("%s: errno %d\n", what, errno);
    exit(1);
}

/* A listener on 127.0.0.1 at a port the kernel picks; its address goes to *a. */
static int listener(struct sockaddr_in *a, int backlog)
{
    socklen_t n = sizeof *a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)a, sizeof *a) < 0 || listen(fd, backlog) < 0 ||
        getsockname(fd, (struct sockaddr *)a, &n) < 0)
        die("listener");
    return fd;
}

static int dial(const struct sockaddr_in *a, int flags)
{
    int fd = socket(AF_INET, SOCK_STREAM | flags, 0);
    if (fd < 0)
        die("socket");
    int r = connect(fd, (const struct sockaddr *)a, sizeof *a);
    if (r < 0 && !(flags & SOCK_NONBLOCK && errno == EINPROGRESS))
        die("connect");
    return fd;
}

static int tput(long mib)
{
    struct sockaddr_in a;
    int lfd = listener(&a, 1);
    pid_t pid = fork();
    if (pid == 0) {
        int c = dial(&a, 0);
        static unsigned char buf[CHUNK];
        unsigned long long total = 0, sum = 0;
        ssize_t n;
        while ((n = read(c, buf, sizeof buf)) > 0) {
            for (ssize_t i = (ssize_t)(-total & 4095); i < n; i += 4096)
                sum = sum * 31 + buf[i];
            total += (unsigned long long)n;
        }
        printf("read %llu bytes, sum %llu\n", total, sum);
        fflush(stdout);
        _exit(n < 0);
    }
    int s = accept(lfd, NULL, NULL);
    if (s < 0)
        die("accept");
    static unsigned char buf[CHUNK];
    for (int i = 0; i < CHUNK; i++)
        buf[i] = (unsigned char)(i * 7 + 3);
    long long left = mib << 20;
    while (left > 0) {
        ssize_t n = write(s, buf, left < CHUNK ? (size_t)left : CHUNK);
        if (n <= 0)
            die("write");
        left -= n;
    }
    close(s);
    int st;
    waitpid(pid, &st, 0);
    printf("wrote %ld MiB, reader status %d\n", mib, WEXITSTATUS(st));
    return 0;
}

static int conn(long rounds)
{
    struct sockaddr_in a;
    int lfd = listener(&a, 16), ok = 0;
    for (long i = 0; i < rounds; i++) {
        int c = dial(&a, 0);
        int s = accept(lfd, NULL, NULL);
        if (s < 0)
            die("accept");
        ok += write(c, "x", 1) == 1 && read(s, (char[1]){0}, 1) == 1;
        close(c);
        close(s);
    }
    printf("connections %ld, bytes through %d\n", rounds, ok);
    return 0;
}

static int backlog(void)
{
    struct sockaddr_in a;
    int lfd = listener(&a, 0), err = 0;
    int first = dial(&a, 0);                 /* backlog 0 still queues one connection */
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int r = connect(c, (struct sockaddr *)&a, sizeof a);
    printf("connect to a full backlog: %d errno %s\n", r,
           r < 0 && errno == EINPROGRESS ? "EINPROGRESS" : strerror(errno));
    struct pollfd p = {c, POLLOUT, 0};
    printf("writable before accept: %d\n", poll(&p, 1, 0));
    int s1 = accept(lfd, NULL, NULL);
    printf("accepted the first: %d\n", s1 >= 0);
    p.revents = 0;
    printf("writable within 10 s of accepting: %d revents %#x\n", poll(&p, 1, 10000),
           p.revents);
    socklen_t n = sizeof err;
    getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &n);
    printf("SO_ERROR %d\n", err);
    int s2 = accept(lfd, NULL, NULL);
    printf("accepted the second: %d\n", s2 >= 0);
    printf("bytes through: %d\n", write(c, "hi", 2) == 2 && read(s2, (char[2]){0}, 2) == 2);
    close(first);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argc > 1 ? argv[1] : "backlog";
    long n = argc > 2 ? atol(argv[2]) : 0;
    if (!strcmp(mode, "tput"))
        return tput(n ? n : 16);
    if (!strcmp(mode, "conn"))
        return conn(n ? n : 200);
    return backlog();
}
