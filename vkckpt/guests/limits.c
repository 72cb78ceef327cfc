/* limits: a guest trying to exhaust the host through the vkernel (vkckpt-security(7),
 * RESOURCE LIMITS).  argv[1] selects the attack; each prints one line saying how far it got.
 *
 *   hog N MB       N processes (fork) each map MB MiB and touch every page, then wait:
 *                  prints "hog: K of N mapped" (fork or mmap refused with ENOMEM/EAGAIN)
 *   forkbomb       every process forks until fork fails; children wait on a pipe:
 *                  prints "forkbomb: stopped by ERRNO"
 *   pipes          pipes filled with 64 KiB each and kept with only their read end open,
 *                  until pipe() fails: prints "pipes: N pipes, ERRNO" and checks the data
 *   maps N [whole] N times: mmap 2 pages, mprotect the first read-only (a split, as
 *                  musl's stack and guard) or both (whole); prints "maps: ok"
 *   maxmap         single pages of alternating protection until mmap fails: "maxmap: ERRNO"
 *   fds IMAGE      open files until open fails, then checkpoint(2) into IMAGE: prints the
 *                  errno, then "checkpointed" (or "resumed" in the thawed run)
 *   spew N         write N numbered 16-byte lines to stdout with write(2), then "spew: done"
 *                  on stderr */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define SYS_vk_checkpoint 1000

static const char *ename(int e)
{
    switch (e) {
    case ENOMEM: return "ENOMEM";
    case EAGAIN: return "EAGAIN";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case 0: return "none";
    default: return strerror(e);
    }
}

static char map_and_touch(size_t size)
{
    unsigned char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                            -1, 0);
    if (p == MAP_FAILED)
        return 0;
    for (size_t off = 0; off < size; off += 4096)
        p[off] = 1;
    return 1;
}

static int hog(int n, long mb)
{
    int gate[2], report[2];
    if (pipe(gate) || pipe(report))
        return 3;
    size_t size = (size_t)mb << 20;
    int mapped = map_and_touch(size), forked = 0;
    fflush(stdout);
    for (int i = 1; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0)
            break;
        if (pid > 0) {
            forked++;
            continue;
        }
        char ok = map_and_touch(size), c;
        if (write(report[1], &ok, 1) != 1)
            _exit(5);
        close(gate[1]);
        while (read(gate[0], &c, 1) < 0 && errno == EINTR) {
        }
        _exit(0);
    }
    for (int i = 0; i < forked; i++) {
        char ok;
        if (read(report[0], &ok, 1) != 1)
            return 4;
        mapped += ok;
    }
    close(gate[1]);
    while (wait(NULL) > 0) {
    }
    printf("hog: %d of %d mapped\n", mapped, n);
    return 0;
}

static int forkbomb(void)
{
    int gate[2], report[2];
    if (pipe(gate) || pipe(report))
        return 3;
    fflush(stdout);
    pid_t top = getpid();
    for (;;) {
        pid_t pid = fork();
        if (pid < 0) {
            int e = errno;
            if (write(report[1], &e, sizeof e) != sizeof e)
                _exit(5);
            break;
        }
    }
    if (getpid() != top) {
        char c;
        close(gate[1]);
        while (read(gate[0], &c, 1) < 0 && errno == EINTR) {
        }
        _exit(0);
    }
    int e;
    if (read(report[0], &e, sizeof e) != sizeof e)
        return 4;
    close(gate[1]);
    while (wait(NULL) > 0) {
    }
    printf("forkbomb: stopped by %s\n", ename(e));
    return 0;
}

static int pipes(void)
{
    static char chunk[65536];
    int first = -1, n = 0, e = 0;
    for (;;) {
        int fd[2];
        if (pipe(fd)) {
            e = errno;
            break;
        }
        fcntl(fd[1], F_SETFL, O_NONBLOCK);
        memset(chunk, 'a' + n % 26, sizeof chunk);
        size_t put = 0;
        for (;;) {
            ssize_t w = write(fd[1], chunk, sizeof chunk - put);
            if (w <= 0)
                break;
            put += (size_t)w;
        }
        close(fd[1]);
        if (first < 0)
            first = fd[0];
        n++;
    }
    char buf[4096];
    ssize_t got = read(first, buf, sizeof buf);
    int good = got == (ssize_t)sizeof buf && buf[0] == 'a' && buf[sizeof buf - 1] == 'a';
    printf("pipes: %d pipes, %s, data %s\n", n, ename(e), good ? "intact" : "lost");
    return 0;
}

static int maps(int n, int whole)
{
    for (int i = 0; i < n; i++) {
        char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED || mprotect(p, whole ? 8192 : 4096, PROT_READ)) {
            printf("maps: failed at %d: %s\n", i, ename(errno));
            return 1;
        }
        if (!whole)
            p[4096] = 1;
    }
    printf("maps: ok\n");
    return 0;
}

static int maxmap(void)
{
    int e = 0;
    for (int i = 0;; i++) {
        void *p = mmap(NULL, 4096, i % 2 ? PROT_READ : PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            e = errno;
            break;
        }
    }
    printf("maxmap: %s\n", ename(e));
    return 0;
}

static int fds(const char *image)
{
    int n = 0, e = 0;
    for (;;) {
        int fd = open("/limits", O_RDONLY);
        if (fd < 0) {
            e = errno;
            break;
        }
        n++;
    }
    printf("fds: stopped by %s\n", ename(e));
    fflush(stdout);
    long r = syscall(SYS_vk_checkpoint, 0, image, 0, 42);
    if (r == 0)
        printf("checkpointed\n");
    else if (r == 42)
        printf("resumed\n");
    else
        printf("checkpoint failed: %s\n", strerror(errno));
    return 0;
}

static int spew(long n)
{
    char line[17];
    for (long i = 0; i < n; i++) {
        snprintf(line, sizeof line, "%015ld\n", i);
        if (write(1, line, 16) != 16)
            return 1;
    }
    fprintf(stderr, "spew: done\n");
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "hog") && argc > 3)
        return hog(atoi(argv[2]), atol(argv[3]));
    if (!strcmp(mode, "forkbomb"))
        return forkbomb();
    if (!strcmp(mode, "pipes"))
        return pipes();
    if (!strcmp(mode, "maps") && argc > 2)
        return maps(atoi(argv[2]), argc > 3 && !strcmp(argv[3], "whole"));
    if (!strcmp(mode, "maxmap"))
        return maxmap();
    if (!strcmp(mode, "fds") && argc > 2)
        return fds(argv[2]);
    if (!strcmp(mode, "spew") && argc > 2)
        return spew(atol(argv[2]));
    printf("usage: limits hog N MB | forkbomb | pipes | maps N [whole] | maxmap | fds IMAGE | spew N\n");
    return 2;
}
