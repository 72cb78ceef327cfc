/* stuck: programs a kernel must handle without hanging or crashing itself.
 *   stuck deadlock   two threads each wait for the other forever (futex waits)
 *   stuck pipe       the only thread reads a pipe whose write end it holds
 *   stuck enosys     calls a syscall vkckpt does not implement (acct) twice */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static pthread_mutex_t a = PTHREAD_MUTEX_INITIALIZER, b = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t both;

static void *other(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&b);
    pthread_barrier_wait(&both);
    pthread_mutex_lock(&a);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "deadlock";
    if (strcmp(mode, "enosys") == 0) {
        for (int i = 0; i < 2; i++) {
            long r = syscall(SYS_acct, NULL);
            printf("acct: %ld %s\n", r, r < 0 ? strerror(errno) : "ok");
        }
        return 0;
    }
    if (strcmp(mode, "pipe") == 0) {
        int fds[2];
        char c;
        pipe(fds);
        puts("reading my own empty pipe");
        fflush(stdout);
        return (int)read(fds[0], &c, 1);
    }
    pthread_t t;
    pthread_barrier_init(&both, NULL, 2);
    pthread_mutex_lock(&a);
    pthread_create(&t, NULL, other, NULL);
    pthread_barrier_wait(&both);
    puts("about to deadlock");
    fflush(stdout);
    pthread_mutex_lock(&b);
    return 0;
}
