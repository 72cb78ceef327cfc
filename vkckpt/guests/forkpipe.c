/* forkpipe: pipe + fork (child writes 100 lines, exits 7; parent checksums them), a child
 * killed by SIGTERM, and a chain of 3 nested forks whose exit statuses propagate upward.
 * Exit 0 iff every check passed. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NLINES 100

static int failures;

#define CHECK(cond, ...)                        \
    do {                                        \
        if (!(cond)) {                          \
            printf("FAIL: " __VA_ARGS__);       \
            putchar('\n');                      \
            failures++;                         \
        }                                       \
    } while (0)

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void print_status(const char *who, int st)
{
    printf("%s: exited=%d", who, WIFEXITED(st) ? 1 : 0);
    if (WIFEXITED(st))
        printf(" status=%d", WEXITSTATUS(st));
    printf(" signaled=%d", WIFSIGNALED(st) ? 1 : 0);
    if (WIFSIGNALED(st))
        printf(" sig=%d", WTERMSIG(st));
    putchar('\n');
}

static void test_pipe(void)
{
    int fds[2];
    CHECK(pipe(fds) == 0, "pipe");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        char line[128];
        close(fds[0]);
        for (int i = 0; i < NLINES; i++) {
            int n = snprintf(line, sizeof line, "line %03d value %d\n", i, i * i * 37 % 1009);
            if (write_all(fds[1], line, (size_t)n) != 0)
                _exit(99);
        }
        close(fds[1]);
        _exit(7);
    }
    CHECK(pid > 0, "fork");
    close(fds[1]);

    char buf[512];
    uint32_t hash = 2166136261u; /* FNV-1a */
    long total = 0, lines = 0;
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            hash = (hash ^ (uint8_t)buf[i]) * 16777619u;
            lines += buf[i] == '\n';
        }
        total += n;
    }
    close(fds[0]);
    int st = 0;
    pid_t w = waitpid(pid, &st, 0);
    printf("pipe: bytes=%ld lines=%ld fnv=%08x\n", total, lines, hash);
    print_status("child1", st);
    CHECK(w == pid, "waitpid child1");
    CHECK(lines == NLINES, "line count");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 7, "child1 status");
}

static void test_signaled(void)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGTERM, SIG_DFL);
        raise(SIGTERM);
        _exit(1); /* not reached */
    }
    int st = 0;
    pid_t w = waitpid(pid, &st, 0);
    print_status("child2", st);
    CHECK(w == pid && WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "child2 killed by SIGTERM");

    /* Parent kills a child that is blocked reading an empty pipe. */
    int fds[2];
    CHECK(pipe(fds) == 0, "pipe2");
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        char c;
        close(fds[1]);
        (void)!read(fds[0], &c, 1);       /* blocks until killed (or EOF) */
        _exit(2);
    }
    close(fds[0]);
    kill(pid, SIGKILL);
    w = waitpid(pid, &st, 0);
    close(fds[1]);
    print_status("child3", st);
    CHECK(w == pid && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "child3 killed by SIGKILL");
}

/* Level d forks level d+1 (up to 3) and returns the child's exit status + 1; level 3 returns 30. */
static int chain(int depth)
{
    int status = depth * 10;
    if (depth < 3) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0)
            _exit(chain(depth + 1) & 0xff);
        int st = 0;
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
            return 200;
        status = WEXITSTATUS(st) + 1;
    }
    printf("chain depth %d: status=%d\n", depth, status);
    fflush(stdout);
    return status;
}

int main(void)
{
    puts("forkpipe start");
    test_pipe();
    test_signaled();
    int s = chain(0);
    /* depth 3 -> 30, depth 2 -> 31, depth 1 -> 32, depth 0 -> 33 */
    printf("chain result=%d\n", s);
    CHECK(s == 33, "chain result");
    int st;
    CHECK(waitpid(-1, &st, WNOHANG) == -1, "no children left");
    printf("%s\n", failures ? "forkpipe FAILED" : "forkpipe OK");
    return failures ? 1 : 0;
}
