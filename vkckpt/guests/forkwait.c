/* forkwait: fork N children (default 200) that exit at once with status i % 100, then wait
 * for each in order and check its status.  The bench's fork row (fork + exit + wait).
 * Usage: forkwait [N]; prints "children=N status_sum=S" and exits 0 iff every check passed. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAXN 4096

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 200;
    static pid_t pids[MAXN];
    long sum = 0;
    int bad = 0;

    if (n < 1 || n > MAXN)
        n = 200;
    for (int i = 0; i < n; i++) {
        pids[i] = fork();
        if (pids[i] < 0) {
            printf("FAIL: fork %d\n", i);
            return 1;
        }
        if (pids[i] == 0)
            _exit(i % 100);
    }
    for (int i = 0; i < n; i++) {
        int status;
        if (waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status) ||
            WEXITSTATUS(status) != i % 100) {
            printf("FAIL: child %d\n", i);
            bad++;
            continue;
        }
        sum += WEXITSTATUS(status);
    }
    printf("children=%d status_sum=%ld\n", n, sum);
    return bad != 0;
}
