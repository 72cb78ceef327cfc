/* fdlinks: /dev/fd/N, /dev/stdout and friends, as shells use them (process substitution,
 * `cat /dev/stdin`): reading a pipe through /dev/fd/N, stat of it, a regular file reopened
 * through its link (a new offset, as on Linux), writing through /dev/stdout, and a closed
 * descriptor's link (ENOENT).  Works in directory argv[1] (default "."). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    char path[64], buf[32];
    if (argc > 1 && chdir(argv[1]) != 0)
        return 2;

    int p[2];
    if (pipe(p) != 0 || write(p[1], "through the pipe", 16) != 16)
        return 2;
    snprintf(path, sizeof path, "/dev/fd/%d", p[0]);
    struct stat st;
    printf("stat %s: fifo=%d\n", "/dev/fd/<pipe>", stat(path, &st) == 0 && S_ISFIFO(st.st_mode));
    int q = open(path, O_RDONLY);
    ssize_t n = q >= 0 ? read(q, buf, sizeof buf) : -1;
    printf("read via /dev/fd: %.*s\n", (int)(n > 0 ? n : 0), buf);

    int fd = open("fdlinks.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "abc", 3) != 3)
        return 2;
    snprintf(path, sizeof path, "/dev/fd/%d", fd);
    printf("stat /dev/fd/<file>: regular=%d size=%lld\n", stat(path, &st) == 0 &&
           S_ISREG(st.st_mode), (long long)st.st_size);
    int again = open(path, O_RDONLY);
    n = again >= 0 ? read(again, buf, sizeof buf) : -1;
    printf("reopened file reads from its start: %.*s\n", (int)(n > 0 ? n : 0), buf);

    fflush(stdout);
    int out = open("/dev/stdout", O_WRONLY);
    if (out >= 0)
        dprintf(out, "written to /dev/stdout\n");
    close(out);

    close(again);
    snprintf(path, sizeof path, "/dev/fd/%d", again);
    errno = 0;
    printf("closed descriptor's link: %s\n", open(path, O_RDONLY) < 0 && errno == ENOENT ?
           "ENOENT" : "opened");
    close(fd);
    unlink("fdlinks.txt");
    return 0;
}
