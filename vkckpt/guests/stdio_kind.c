/* stdio_kind: what stdout and stderr look like to a program, as C libraries decide their
 * buffering from it: file type (fstat), whether isatty() says terminal, and st_blksize.
 * Run with both redirected to pipes, the output must equal the host's. */
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kind(mode_t m)
{
    return S_ISFIFO(m) ? "fifo" : S_ISCHR(m) ? "chr" : S_ISREG(m) ? "reg" : "other";
}

int main(void)
{
    for (int fd = 1; fd <= 2; fd++) {
        struct stat st;
        if (fstat(fd, &st) != 0) {
            printf("fd %d: fstat failed\n", fd);
            return 1;
        }
        printf("fd %d: %s tty=%d blksize=%ld\n", fd, kind(st.st_mode), isatty(fd),
               (long)st.st_blksize);
    }
    return 0;
}
