/* fsmeta: file metadata as real programs read it, printed so a run can be diffed against
 * the host's (issue 14 grows it): a symlink's lstat (st_blocks is 0 for a short link), and
 * F_GETLK on a file nobody locks (l_type comes back F_UNLCK).  Works in directory argv[1]
 * (default "."), in a subdirectory it removes at the end.  Exit 0 iff it could run. */
#include <fcntl.h>
#include <stdio.h>
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

    close(fd);
    unlink(SUBDIR "/l");
    unlink(SUBDIR "/f");
    rmdir(SUBDIR);
    return 0;
}
