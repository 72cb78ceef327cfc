/* segfault: print a line, flush, then store through NULL -> killed by SIGSEGV. */
#include <stdio.h>

int main(void)
{
    puts("about to segfault");
    fflush(stdout);
    volatile int *p = (volatile int *)0;
    *p = 42;
    puts("still alive?!");
    return 3;
}
