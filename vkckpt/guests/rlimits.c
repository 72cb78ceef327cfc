/* rlimits: getrlimit/setrlimit/prlimit64 keep per-process limits that fork and execve
 * inherit, and a lowered RLIMIT_NOFILE bounds new descriptors (open, dup2, F_DUPFD).
 * Prints only what a root process sees the same everywhere (not the limits' values). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *err(int r)
{
    return r == 0 ? "ok" : errno == EINVAL ? "EINVAL" : errno == EPERM ? "EPERM"
         : errno == EBADF ? "EBADF" : errno == EMFILE ? "EMFILE" : errno == ESRCH ? "ESRCH"
         : strerror(errno);
}

/* Open /dev/null until it fails; close what was opened; return how many opened. */
static int fill(void)
{
    int fds[64], n = 0;
    while (n < 64) {
        int fd = open("/dev/null", O_RDONLY);
        if (fd < 0) {
            printf("open after %d: %s\n", n, err(-1));
            break;
        }
        fds[n++] = fd;
    }
    for (int i = 0; i < n; i++)
        close(fds[i]);
    return n;
}

static void report(const char *who)
{
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    printf("%s: nofile soft=%llu\n", who, (unsigned long long)r.rlim_cur);
    getrlimit(RLIMIT_CORE, &r);
    printf("%s: core soft=%llu hard=%llu\n", who, (unsigned long long)r.rlim_cur,
           (unsigned long long)r.rlim_max);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "exec") == 0) {
        report("after exec");
        printf("after exec: opened %d\n", fill());
        return 0;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    struct rlimit orig, r;
    printf("getrlimit: %s\n", err(getrlimit(RLIMIT_NOFILE, &orig)));
    r = orig;
    r.rlim_cur = r.rlim_max + 1;
    printf("soft above hard: %s\n", err(setrlimit(RLIMIT_NOFILE, &r)));
    printf("bad resource: %s\n", err(syscall(SYS_getrlimit, 99, &r)));
    printf("prlimit no such pid: %s\n", err(prlimit(99999, RLIMIT_NOFILE, NULL, &r)));

    r.rlim_cur = 12;
    r.rlim_max = orig.rlim_max;
    printf("set nofile 12: %s\n", err(setrlimit(RLIMIT_NOFILE, &r)));
    struct rlimit core = {1 << 20, 2 << 20};
    printf("set core: %s\n", err(setrlimit(RLIMIT_CORE, &core)));
    report("self");
    printf("opened %d\n", fill());
    printf("dup2 to 12: %s\n", err(dup2(0, 12) < 0 ? -1 : 0));
    printf("dup2 to 11: %s\n", err(dup2(0, 11) < 0 ? -1 : 0));
    close(11);
    printf("F_DUPFD from 12: %s\n", err(fcntl(0, F_DUPFD, 12) < 0 ? -1 : 0));

    struct rlimit old, nw = {10, orig.rlim_max};
    printf("prlimit self: %s\n", err(prlimit(0, RLIMIT_NOFILE, &nw, &old)));
    printf("prlimit old soft=%llu\n", (unsigned long long)old.rlim_cur);

    pid_t c = fork();
    if (c == 0) {
        report("child");
        printf("child: opened %d\n", fill());
        _exit(0);
    }
    int st;
    waitpid(c, &st, 0);
    c = fork();
    if (c == 0) {
        execl(argv[0], argv[0], "exec", (char *)NULL);
        _exit(127);
    }
    waitpid(c, &st, 0);
    printf("exec child: %d\n", WEXITSTATUS(st));
    printf("restore: %s\n", err(setrlimit(RLIMIT_NOFILE, &orig)));
    printf("opened after restore >= 20: %d\n", fill() >= 20);
    return 0;
}
