/* bombs: resource exhaustion the kernel must survive.  argv[1] selects the mode; each prints
 * "ok" (and exits 0) only when it cleaned up everything it made.  Counts that depend on the
 * host's limits are never printed.
 *
 *   forks     fork until EAGAIN or 200 live children (each waits on a pipe), reap them all
 *   threads   up to 300 threads waiting on one condition variable, released and joined
 *   mem       16 MiB chunks (malloc) until failure or 64 chunks, every page touched, freed
 *   spin      a thread spins forever while main does 20 sched_yield + nanosleep rounds and
 *             exits with exit_group: only preemption lets main run
 *   sigstorm  a child sends 10000 SIGUSR1 to its parent, which counts them in a handler
 *             while blocking and unblocking the signal */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CHILDREN 200
#define MAX_THREADS 300
#define CHUNK (16u << 20)
#define MAX_CHUNKS 64
#define STORM 10000

static int forks(void)
{
    int gate[2];
    if (pipe(gate) != 0)
        return 3;
    int made = 0, err = 0;
    fflush(stdout);
    while (made < MAX_CHILDREN) {
        pid_t pid = fork();
        if (pid < 0) {
            err = errno;
            break;
        }
        if (pid == 0) {
            char c;
            close(gate[1]);
            while (read(gate[0], &c, 1) < 0 && errno == EINTR) {
            }
            _exit(7);
        }
        made++;
    }
    if (err && err != EAGAIN && err != ENOMEM) {
        printf("fork failed: %s\n", strerror(err));
        return 1;
    }
    close(gate[1]); /* every child sees EOF and exits */
    close(gate[0]);
    int reaped = 0, bad = 0, st;
    pid_t w;
    while ((w = wait(&st)) > 0) {
        reaped++;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 7)
            bad++;
    }
    if (errno != ECHILD || reaped != made || bad || made == 0) {
        printf("made %d reaped %d bad %d\n", made, reaped, bad);
        return 1;
    }
    printf("ok\n");
    return 0;
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static pthread_cond_t all_waiting = PTHREAD_COND_INITIALIZER;
static int released, waiting;

static void *waiter(void *arg)
{
    pthread_mutex_lock(&mu);
    waiting++;
    pthread_cond_signal(&all_waiting);
    while (!released)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    return arg;
}

static int threads(void)
{
    static pthread_t tids[MAX_THREADS];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    int made = 0;
    while (made < MAX_THREADS) {
        int e = pthread_create(&tids[made], &attr, waiter, (void *)(long)made);
        if (e != 0) {
            if (e != EAGAIN && e != ENOMEM) {
                printf("pthread_create: %s\n", strerror(e));
                return 1;
            }
            break;
        }
        made++;
    }
    pthread_mutex_lock(&mu);
    while (waiting < made)
        pthread_cond_wait(&all_waiting, &mu);
    released = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    int joined = 0;
    for (int i = 0; i < made; i++) {
        void *ret;
        if (pthread_join(tids[i], &ret) == 0 && ret == (void *)(long)i)
            joined++;
    }
    if (joined != made || made == 0) {
        printf("made %d joined %d\n", made, joined);
        return 1;
    }
    printf("ok\n");
    return 0;
}

static int mem(void)
{
    static unsigned char *chunks[MAX_CHUNKS];
    int n = 0;
    while (n < MAX_CHUNKS) {
        unsigned char *p = malloc(CHUNK);
        if (p == NULL)
            break;
        for (size_t off = 0; off < CHUNK; off += 4096)
            p[off] = (unsigned char)(n + off / 4096);
        chunks[n++] = p;
    }
    int bad = 0;
    for (int i = 0; i < n; i++) {
        for (size_t off = 0; off < CHUNK; off += 4096)
            bad += chunks[i][off] != (unsigned char)(i + off / 4096);
        free(chunks[i]);
    }
    /* after freeing, memory is usable again */
    unsigned char *again = malloc(CHUNK);
    if (again == NULL || bad || n == 0) {
        printf("chunks %d bad %d again %d\n", n, bad, again != NULL);
        return 1;
    }
    again[CHUNK - 1] = 1;
    free(again);
    printf("ok\n");
    return 0;
}

static volatile unsigned long spins;

static void *spinner(void *arg)
{
    for (;;)
        spins++;
    return arg;
}

static int spin(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, spinner, NULL) != 0)
        return 3;
    struct timespec ms = {0, 1000000};
    for (int i = 0; i < 20; i++) {
        sched_yield();
        nanosleep(&ms, NULL);
    }
    printf("ok\n");
    fflush(stdout);
    syscall(SYS_exit_group, 0);
    return 1;
}

static volatile sig_atomic_t storm_count;

static void on_usr1(int sig)
{
    (void)sig;
    storm_count++;
}

static int sigstorm(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pid_t parent = getpid();
    fflush(stdout);
    pid_t child = fork();
    if (child < 0)
        return 3;
    if (child == 0) {
        for (int i = 0; i < STORM; i++)
            if (kill(parent, SIGUSR1) != 0)
                _exit(1);
        _exit(0);
    }
    int st = 0, rounds = 0;
    for (;;) {
        sigprocmask(SIG_BLOCK, &usr1, NULL);
        pid_t w = waitpid(child, &st, WNOHANG);
        sigprocmask(SIG_UNBLOCK, &usr1, NULL);
        rounds++;
        if (w == child)
            break;
        if (w < 0 && errno != EINTR) {
            printf("waitpid: %s\n", strerror(errno));
            return 1;
        }
    }
    /* anything still pending was delivered on the last unblock */
    sigset_t pend;
    sigpending(&pend);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || storm_count < 1 ||
        sigismember(&pend, SIGUSR1)) {
        printf("child status %#x, handled %d, pending %d\n", st, (int)storm_count,
               sigismember(&pend, SIGUSR1));
        return 1;
    }
    printf("ok\n");
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "forks"))
        return forks();
    if (!strcmp(mode, "threads"))
        return threads();
    if (!strcmp(mode, "mem"))
        return mem();
    if (!strcmp(mode, "spin"))
        return spin();
    if (!strcmp(mode, "sigstorm"))
        return sigstorm();
    printf("unknown mode %s\n", mode);
    return 2;
}
