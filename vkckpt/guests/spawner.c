/* spawner: many processes and threads at once, for scale benchmarks.
 * Usage: spawner [NPROC=200] [NTHREADS=5] [ROUNDS=20]
 * The first process forks NPROC-1 children; every process runs NTHREADS threads (itself and
 * NTHREADS-1 pthreads) that each do ROUNDS rounds of a little arithmetic and a 1 ms sleep.
 * Once every process has started all its threads it writes one byte into a pipe; the parent
 * prints "all started" when it has NPROC-1 bytes, then waits for every child and checks their
 * exit codes. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXT 64

static long rounds = 20;

static void *worker(void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ULL + 1;
    struct timespec ts = {0, 1000000};

    for (long r = 0; r < rounds; r++) {
        for (int i = 0; i < 1000; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        nanosleep(&ts, NULL);
    }
    return (void *)(uintptr_t)(x & 0xff);
}

/* Run nthreads workers (this thread is one of them); return the xor of their results. */
static int run_threads(long id, long nthreads, int ready_fd)
{
    pthread_t t[MAXT];
    uintptr_t acc = 0;

    for (long i = 1; i < nthreads; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(id * MAXT + i)) != 0)
            return -1;
    if (ready_fd >= 0 && write(ready_fd, "x", 1) != 1)
        return -1;
    acc = (uintptr_t)worker((void *)(uintptr_t)(id * MAXT));
    for (long i = 1; i < nthreads; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        acc ^= (uintptr_t)ret;
    }
    return (int)(acc & 0x7f);
}

int main(int argc, char **argv)
{
    long nproc = argc > 1 ? strtol(argv[1], NULL, 10) : 200;
    long nthreads = argc > 2 ? strtol(argv[2], NULL, 10) : 5;
    int fds[2];

    rounds = argc > 3 ? strtol(argv[3], NULL, 10) : 20;
    if (nproc < 1 || nthreads < 1 || nthreads > MAXT || rounds < 0) {
        puts("usage: spawner [NPROC>=1] [NTHREADS<=64] [ROUNDS]");
        return 2;
    }
    if (pipe(fds) != 0) {
        puts("FAIL: pipe");
        return 1;
    }
    fflush(stdout);
    for (long c = 1; c < nproc; c++) {
        pid_t pid = fork();
        if (pid < 0) {
            puts("FAIL: fork");
            return 1;
        }
        if (pid == 0) {
            close(fds[0]);
            int r = run_threads(c, nthreads, fds[1]);
            _exit(r < 0 ? 255 : r);
        }
    }
    close(fds[1]);
    char buf[256];
    long got = 0;
    while (got < nproc - 1) {
        ssize_t n = read(fds[0], buf, sizeof buf);
        if (n <= 0)
            break;
        got += n;
    }
    printf("all started: %ld processes, %ld threads\n", nproc, nproc * nthreads);
    fflush(stdout);
    int mine = run_threads(0, nthreads, -1);
    long bad = mine < 0, exited = 0;
    int status;
    while (wait(&status) > 0) {
        exited++;
        if (!WIFEXITED(status) || WEXITSTATUS(status) == 255)
            bad++;
    }
    printf("children exited=%ld bad=%ld\n", exited, bad);
    return bad ? 1 : 0;
}
