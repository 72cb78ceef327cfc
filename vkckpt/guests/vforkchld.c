/* vforkchld: SIGCHLD arriving while the parent waits in vfork (xargs -P does this).  Linux
 * holds the handler until the vfork child has exited or exec'ed, and vfork returns the
 * child's pid; it never fails with EINTR.  Each round forks a child that exits at once,
 * then vforks one that spins a while before _exit, so the first child's SIGCHLD comes
 * during the vfork.  Prints how many vforks returned their child and how many children
 * were reaped. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define ROUNDS 5

static volatile sig_atomic_t chld;

static void on_chld(int sig)
{
    (void)sig;
    chld++;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_chld;  /* no SA_RESTART: an interrupted call would fail */
    sigaction(SIGCHLD, &sa, NULL);
    int good = 0, reaped = 0;
    for (int r = 0; r < ROUNDS; r++) {
        pid_t quick = fork();
        if (quick == 0)
            _exit(0);
        pid_t slow = vfork();
        if (slow == 0) {
            for (volatile long i = 0; i < 3000000; i++)
                ;
            _exit(0);
        }
        if (slow > 0)
            good++;
        else
            printf("vfork failed: %s\n", strerror(errno));
        for (;;) {
            pid_t w = wait(NULL);
            if (w > 0)
                reaped++;
            else if (errno != EINTR)
                break;
        }
    }
    printf("vfork returned its child: %d/%d; reaped %d\n", good, ROUNDS, reaped);
    return 0;
}
