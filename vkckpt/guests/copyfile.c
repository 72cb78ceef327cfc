/* copyfile: sendfile(2) and copy_file_range(2) as programs use them, printed so a run can be
 * diffed against the host's: sendfile from a file into a pipe and into a file, with and
 * without an offset pointer (the file offset moves only without one), at end of file, a
 * pipe too small for the count; copy_file_range with and without offsets, clipped at the
 * source's end; and the error cases (bad descriptors, wrong access modes, O_APPEND,
 * directories, pipes, negative offsets, flags, overlapping ranges in one file).  Works in
 * directory argv[1] (default "."), in files it removes at the end. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *err(long r)
{
    static char buf[32];
    if (r >= 0) {
        snprintf(buf, sizeof buf, "%ld", r);
        return buf;
    }
    switch (errno) {
    case EAGAIN: return "EAGAIN";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case ESPIPE: return "ESPIPE";
    case EXDEV: return "EXDEV";
    case EISDIR: return "EISDIR";
    case EFAULT: return "EFAULT";
    case EPIPE: return "EPIPE";
    case EOVERFLOW: return "EOVERFLOW";
    default: return strerror(errno);
    }
}

static long offset_of(int fd)
{
    return (long)lseek(fd, 0, SEEK_CUR);
}

static void show(const char *what, int fd)
{
    char buf[256];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    buf[n < 0 ? 0 : n] = 0;
    printf("%s: \"%s\" (%zd bytes)\n", what, buf, n);
}

static int mkfile(const char *name, const char *text, int flags)
{
    int fd = open(name, O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (text)
        write(fd, text, strlen(text));
    close(fd);
    return open(name, flags);
}

int main(int argc, char **argv)
{
    if (argc > 1 && chdir(argv[1]) != 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    const char *text = "The quick brown fox jumps over the lazy dog.";
    int src = mkfile("cf-src", text, O_RDONLY);
    int p[2];
    pipe(p);

    /* sendfile into a pipe, no offset pointer: the source offset moves */
    long r = sendfile(p[1], src, NULL, 9);
    char buf[256];
    ssize_t n = read(p[0], buf, sizeof buf);
    printf("sendfile to pipe: %s, read %zd \"%.*s\", src offset %ld\n", err(r), n, (int)n, buf,
           offset_of(src));
    /* with an offset pointer: the pointer moves, the file offset does not */
    off_t off = 10;
    r = sendfile(p[1], src, &off, 5);
    n = read(p[0], buf, sizeof buf);
    printf("sendfile at 10: %s, read \"%.*s\", off %ld, src offset %ld\n", err(r), (int)n, buf,
           (long)off, offset_of(src));
    off = 40;
    r = sendfile(p[1], src, &off, 100);
    n = read(p[0], buf, sizeof buf);
    printf("sendfile past the end: %s, read \"%.*s\", off %ld\n", err(r), (int)n, buf,
           (long)off);
    off = 1000;
    printf("sendfile at EOF: %s, off %ld\n", err(sendfile(p[1], src, &off, 10)), (long)off);
    printf("sendfile count 0: %s\n", err(sendfile(p[1], src, NULL, 0)));
    off = 0;
    r = sendfile(p[1], src, &off, (size_t)1 << 62);
    n = read(p[0], buf, sizeof buf);
    printf("sendfile count 2^62: %s, read %zd, off %ld\n", err(r), n, (long)off);
    printf("sendfile count -1: %s\n", err(sendfile(p[1], src, &off, (size_t)-1)));

    /* into standard output (the console, a pipe natively) */
    printf("sendfile to stdout: [");
    fflush(stdout);
    off = 4;
    r = sendfile(1, src, &off, 11);
    printf("] %s\n", err(r));
    /* into a file: written at the output's offset, which moves */
    int dst = mkfile("cf-dst", "0123456789", O_RDWR);
    lseek(dst, 4, SEEK_SET);
    lseek(src, 0, SEEK_SET);
    off = 4;
    r = sendfile(dst, src, &off, 15);
    printf("sendfile to file: %s, off %ld, dst offset %ld, src offset %ld\n", err(r), (long)off,
           offset_of(dst), offset_of(src));
    show("dst", dst);

    /* a non-blocking pipe with less room than the count: a short count, then EAGAIN */
    int q[2];
    pipe(q);
    fcntl(q[1], F_SETFL, O_NONBLOCK);
    int big = mkfile("cf-big", NULL, O_RDWR);
    ftruncate(big, 200000);
    off = 0;
    r = sendfile(q[1], big, &off, 200000);
    printf("sendfile 200000 into a pipe: %s, off %ld\n", err(r), (long)off);
    printf("sendfile into the full pipe: %s\n", err(sendfile(q[1], big, &off, 10)));
    close(q[0]);
    printf("sendfile into a pipe without reader: %s\n", err(sendfile(q[1], big, &off, 10)));

    /* sendfile errors */
    int wo = open("cf-src", O_WRONLY);
    int app = open("cf-dst", O_WRONLY | O_APPEND);
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    printf("sendfile bad in fd: %s\n", err(sendfile(p[1], 99, NULL, 1)));
    printf("sendfile bad out fd: %s\n", err(sendfile(99, src, NULL, 1)));
    printf("sendfile in write-only: %s\n", err(sendfile(p[1], wo, NULL, 1)));
    printf("sendfile out read-only: %s\n", err(sendfile(src, src, NULL, 1)));
    printf("sendfile out O_APPEND: %s\n", err(sendfile(app, src, NULL, 1)));
    printf("sendfile in a directory: %s\n", err(sendfile(p[1], dir, NULL, 1)));
    write(p[1], "xy", 2);
    printf("sendfile in a pipe: %s\n", err(sendfile(dst, p[0], NULL, 1)));
    off = 0;
    printf("sendfile in a pipe with offset: %s\n", err(sendfile(dst, p[0], &off, 1)));
    read(p[0], buf, sizeof buf);
    off = -1;
    printf("sendfile negative offset: %s\n", err(sendfile(p[1], src, &off, 1)));
    printf("sendfile bad offset pointer: %s\n", err(sendfile(p[1], src, (off_t *)8, 1)));

    /* copy_file_range */
    int out = mkfile("cf-out", "abcdefghij", O_RDWR);
    lseek(src, 4, SEEK_SET);
    r = copy_file_range(src, NULL, out, NULL, 6, 0);
    printf("copy_file_range no offsets: %s, src offset %ld, out offset %ld\n", err(r),
           offset_of(src), offset_of(out));
    show("out", out);
    off_t oi = 10, oo = 20;
    r = copy_file_range(src, &oi, out, &oo, 5, 0);
    printf("copy_file_range with offsets: %s, in %ld out %ld, offsets %ld %ld\n", err(r),
           (long)oi, (long)oo, offset_of(src), offset_of(out));
    show("out", out);
    oi = 40;
    r = copy_file_range(src, &oi, out, NULL, 100, 0);
    printf("copy_file_range clipped at the end: %s, in %ld, out offset %ld\n", err(r), (long)oi,
           offset_of(out));
    oi = 500;
    printf("copy_file_range past the end: %s\n", err(copy_file_range(src, &oi, out, NULL, 5, 0)));
    oi = 0;
    off_t o2 = 30;
    r = copy_file_range(src, &oi, out, &o2, (size_t)-1, 0);
    printf("copy_file_range len -1: %s, in %ld\n", err(r), (long)oi);
    printf("copy_file_range len 0: %s\n", err(copy_file_range(src, NULL, out, NULL, 0, 0)));
    printf("copy_file_range flags: %s\n", err(copy_file_range(src, NULL, out, NULL, 1, 1)));
    printf("copy_file_range bad fd: %s\n", err(copy_file_range(99, NULL, out, NULL, 1, 0)));
    printf("copy_file_range in write-only: %s\n", err(copy_file_range(wo, NULL, out, NULL, 1, 0)));
    printf("copy_file_range out read-only: %s\n", err(copy_file_range(src, NULL, src, NULL, 1, 0)));
    printf("copy_file_range out O_APPEND: %s\n", err(copy_file_range(src, NULL, app, NULL, 1, 0)));
    printf("copy_file_range from a pipe: %s\n", err(copy_file_range(p[0], NULL, out, NULL, 1, 0)));
    printf("copy_file_range to a pipe: %s\n", err(copy_file_range(src, NULL, p[1], NULL, 1, 0)));
    printf("copy_file_range a directory: %s\n", err(copy_file_range(dir, NULL, out, NULL, 1, 0)));
    oi = -3;
    printf("copy_file_range negative offset: %s\n",
           err(copy_file_range(src, &oi, out, NULL, 1, 0)));
    oi = 0, oo = 5;
    printf("copy_file_range overlapping in one file: %s\n",
           err(copy_file_range(out, &oi, out, &oo, 10, 0)));
    oi = 0, oo = 10;
    r = copy_file_range(out, &oi, out, &oo, 10, 0);
    printf("copy_file_range apart in one file: %s\n", err(r));
    show("out", out);

    unlink("cf-src");
    unlink("cf-dst");
    unlink("cf-big");
    unlink("cf-out");
    printf("copyfile done\n");
    return 0;
}
