/* checkpoint(2) from inside a guest.
 *   ckpt_self self IMAGE      checkpoint this process; 0 in the frozen run, 42 when thawed
 *   ckpt_self external IMAGE  fork a worker and checkpoint it from the parent
 * On a host kernel the call fails with ENOSYS and the program says so. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SYS_vk_checkpoint 1000
#define CKPT_FREEZE 0

static long checkpoint(const char *path, int pid, long retval)
{
    return syscall(SYS_vk_checkpoint, CKPT_FREEZE, path, pid, retval);
}

static unsigned work(unsigned seed, int n)
{
    for (int i = 0; i < n; i++)
        seed = seed * 1103515245u + 12345u + (unsigned)i;
    return seed;
}

static int self_mode(const char *image)
{
    unsigned acc = work(1, 100000);
    long r = checkpoint(image, 0, 42);
    if (r == 0)
        printf("checkpointed acc=%08x\n", acc);
    else if (r == 42)
        printf("resumed from the image acc=%08x\n", acc);
    else
        printf("checkpoint failed: %s\n", strerror(errno));
    acc = work(acc, 100000);
    printf("after acc=%08x\n", acc);
    return r == 42 ? 3 : 0;
}

static int external_mode(const char *image)
{
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        unsigned acc = 7;
        for (int round = 0; round < 6; round++) {
            acc = work(acc, 200000);
            printf("worker round %d acc=%08x\n", round, acc);
            fflush(stdout);
        }
        printf("worker done\n");
        return 4;
    }
    struct timespec ts = {0, 200000};  /* let the worker get going (virtual time) */
    nanosleep(&ts, NULL);
    long r = checkpoint(image, child, 0);
    printf("parent: checkpoint of the worker returned %ld%s%s\n", r, r ? " " : "",
           r ? strerror(errno) : "");
    fflush(stdout);
    int status;
    waitpid(child, &status, 0);
    printf("parent: worker exited %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}

static volatile int ckpt_signals;

static void on_ckpt(int sig)
{
    (void)sig;
    ckpt_signals++;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: ckpt_self self|external IMAGE\n");
        return 2;
    }
    if (strcmp(argv[1], "selfsig") == 0) {  /* with a SIGCKPT handler: the caller gets none */
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_ckpt;
        sigaction(62, &sa, NULL);
        int r = self_mode(argv[2]);
        printf("SIGCKPT handled %d times\n", ckpt_signals);
        return r;
    }
    if (strcmp(argv[1], "self") == 0)
        return self_mode(argv[2]);
    return external_mode(argv[2]);
}
