/* fsmeta: file metadata as real programs read it, printed so a run can be diffed against
 * the host's (issue 14 grows it): a symlink's lstat (st_blocks is 0 for a short link), and
 * F_GETLK on a file nobody locks (l_type comes back F_UNLCK), fchmod, close_range,
 * getgroups, getpriority, sched_setaffinity to CPU 0, and utimensat/futimens (touch,
 * touch -d).  Works in directory argv[1]
 * (default "."), in a subdirectory it removes at the end.  Exit 0 iff it could run. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SUBDIR "vkckpt-fsmeta.d"

int main(int argc, char **argv)
{
    if (argc > 1 && chdir(argv[1]) != 0)
        return 2;
    mkdir(SUBDIR, 0755);
    int fd = open(SUBDIR "/f", O_CREAT | O_RDWR | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "0123456789", 10) != 10)
        return 2;
    if (symlink("f", SUBDIR "/l") != 0)
        return 2;

    struct stat st;
    if (lstat(SUBDIR "/l", &st) == 0)
        printf("lstat link: symlink=%d size=%lld blocks=%lld\n", S_ISLNK(st.st_mode),
               (long long)st.st_size, (long long)st.st_blocks);
    if (stat(SUBDIR "/l", &st) == 0)
        printf("stat link: regular=%d size=%lld\n", S_ISREG(st.st_mode), (long long)st.st_size);

    struct flock lk;
    memset(&lk, 0, sizeof lk);
    lk.l_type = F_WRLCK;
    lk.l_whence = SEEK_SET;
    lk.l_start = 0;
    lk.l_len = 10;
    int r = fcntl(fd, F_GETLK, &lk);
    printf("F_GETLK: ret=%d unlocked=%d start=%lld len=%lld\n", r, lk.l_type == F_UNLCK,
           (long long)lk.l_start, (long long)lk.l_len);

    printf("fchmod: ret=%d", fchmod(fd, 0600));
    printf(" mode=%o\n", fstat(fd, &st) == 0 ? (unsigned)(st.st_mode & 0777) : 0u);

    int a = dup(fd), b = dup(fd), c = dup(fd);
    long cr = syscall(SYS_close_range, (unsigned)a, ~0u, 0u);
    printf("close_range: ret=%ld closed=%d\n", cr, fcntl(a, F_GETFD) < 0 && fcntl(b, F_GETFD) < 0
           && fcntl(c, F_GETFD) < 0);
    gid_t groups[64];
    printf("getgroups: ok=%d\n", getgroups(64, groups) >= 0);
    printf("getpriority: nice=%d\n", getpriority(PRIO_PROCESS, 0));
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    printf("sched_setaffinity(cpu 0): ret=%d\n", sched_setaffinity(0, sizeof set, &set));

    struct timespec ts[2] = {{1000000000, 0}, {1234567890, 0}};
    printf("utimensat: ret=%d", utimensat(AT_FDCWD, SUBDIR "/f", ts, 0));
    printf(" mtime=%lld\n", stat(SUBDIR "/f", &st) == 0 ? (long long)st.st_mtime : -1LL);
    ts[1].tv_nsec = UTIME_OMIT;
    futimens(fd, ts);
    printf("futimens omit: mtime=%lld\n", fstat(fd, &st) == 0 ? (long long)st.st_mtime : -1LL);
    printf("utimensat now: ret=%d", utimensat(AT_FDCWD, SUBDIR "/f", NULL, 0));
    printf(" later=%d\n", stat(SUBDIR "/f", &st) == 0 && st.st_mtime > 1234567890);

    close(fd);
    unlink(SUBDIR "/l");
    unlink(SUBDIR "/f");
    rmdir(SUBDIR);
    return 0;
}
