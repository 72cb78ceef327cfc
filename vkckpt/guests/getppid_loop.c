/* getppid_loop: syscall(SYS_getppid) N times (argv[1], default 1000000); prints "done". */
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 1000000;
    long first = syscall(SYS_getppid), bad = 0;

    for (long i = 0; i < n; i++)
        if (syscall(SYS_getppid) != first)
            bad++;
    printf("calls=%ld\n", n);
    if (bad) {
        printf("FAIL: getppid changed %ld times\n", bad);
        return 1;
    }
    puts("done");
    return 0;
}
