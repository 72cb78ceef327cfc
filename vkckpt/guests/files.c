/* files: file-system calls inside directory argv[1] (default "."): mkdir, open/write/read,
 * pread/pwrite, lseek, fstat/stat sizes, sorted readdir, rename, unlink, dup/dup2, fcntl,
 * ftruncate, /dev/null.  Everything it creates lives in SUBDIR and is removed at the end.
 * Exit 0 iff every check passed. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SUBDIR "vkckpt-files.d"

static int failures;

#define CHECK(cond, ...)                        \
    do {                                        \
        if (!(cond)) {                          \
            printf("FAIL: " __VA_ARGS__);       \
            putchar('\n');                      \
            failures++;                         \
        }                                       \
    } while (0)

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Print the sorted entries of dir (without . and ..); return their number. */
static int list_dir(const char *dir)
{
    char *names[64];
    int n = 0;
    DIR *d = opendir(dir);
    CHECK(d != NULL, "opendir %s", dir);
    if (!d)
        return -1;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < 64) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof names[0], cmp);
    printf("ls %s:", dir);
    for (int i = 0; i < n; i++) {
        printf(" %s", names[i]);
        free(names[i]);
    }
    printf(" (%d)\n", n);
    return n;
}

static long file_size(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 ? (long)st.st_size : -1;
}

static void cleanup(void)
{
    static const char *leftovers[] = {"a.txt", "b.txt", "c.txt", "d.txt", "e.txt"};
    for (size_t i = 0; i < sizeof leftovers / sizeof leftovers[0]; i++) {
        char p[64];
        snprintf(p, sizeof p, SUBDIR "/%s", leftovers[i]);
        unlink(p);
    }
    rmdir(SUBDIR);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    char buf[256];

    if (chdir(dir) != 0) {
        printf("FAIL: chdir\n");
        return 1;
    }
    cleanup(); /* leftovers of an interrupted earlier run */

    CHECK(mkdir(SUBDIR, 0755) == 0, "mkdir");
    CHECK(mkdir(SUBDIR, 0755) == -1 && errno == EEXIST, "mkdir EEXIST");
    struct stat st;
    CHECK(stat(SUBDIR, &st) == 0 && S_ISDIR(st.st_mode), "stat dir");
    puts("mkdir ok");

    /* open/write/read/lseek */
    int fd = open(SUBDIR "/a.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
    CHECK(fd >= 0, "open a.txt");
    const char *msg = "hello, files\nsecond line\n";
    CHECK(write(fd, msg, strlen(msg)) == (ssize_t)strlen(msg), "write");
    printf("a.txt size=%ld\n", file_size(fd));
    CHECK(lseek(fd, 0, SEEK_CUR) == (off_t)strlen(msg), "lseek CUR");
    CHECK(lseek(fd, 7, SEEK_SET) == 7, "lseek SET");
    ssize_t n = read(fd, buf, 5);
    buf[n > 0 ? n : 0] = 0;
    printf("read@7: %s\n", buf);
    CHECK(n == 5 && strcmp(buf, "files") == 0, "read after lseek");
    CHECK(lseek(fd, -5, SEEK_END) == (off_t)strlen(msg) - 5, "lseek END");

    /* pread/pwrite do not move the offset */
    off_t before = lseek(fd, 0, SEEK_CUR);
    CHECK(pwrite(fd, "HELLO", 5, 0) == 5, "pwrite");
    CHECK(pwrite(fd, "tail", 4, 100) == 4, "pwrite past end");
    n = pread(fd, buf, 12, 0);
    buf[n > 0 ? n : 0] = 0;
    printf("pread@0: %s\n", buf);
    CHECK(n == 12 && strcmp(buf, "HELLO, files") == 0, "pread");
    n = pread(fd, buf, 10, 50);
    int holes_zero = n == 10;
    for (ssize_t i = 0; i < n; i++)
        holes_zero &= buf[i] == 0;
    CHECK(holes_zero, "hole reads as zeros");
    CHECK(lseek(fd, 0, SEEK_CUR) == before, "pread/pwrite kept offset");
    printf("a.txt size after pwrite=%ld\n", file_size(fd));
    CHECK(file_size(fd) == 104, "size 104");
    CHECK(ftruncate(fd, 12) == 0 && file_size(fd) == 12, "ftruncate");
    printf("a.txt size after ftruncate=%ld\n", file_size(fd));

    /* dup / dup2 share the file offset */
    int fd2 = dup(fd);
    CHECK(fd2 > fd, "dup");
    CHECK(lseek(fd, 0, SEEK_SET) == 0, "rewind");
    CHECK(lseek(fd2, 0, SEEK_CUR) == 0, "dup shares offset");
    CHECK(dup2(fd, 10) == 10, "dup2");
    CHECK(lseek(10, 6, SEEK_SET) == 6 && lseek(fd, 0, SEEK_CUR) == 6, "dup2 shares offset");
    CHECK(dup2(10, 10) == 10, "dup2 same fd");
    CHECK(close(10) == 0 && close(fd2) == 0, "close dups");
    CHECK(close(10) == -1 && errno == EBADF, "double close EBADF");
    puts("dup ok");

    /* fcntl */
    int fl = fcntl(fd, F_GETFL);
    printf("accmode rdwr=%d append=%d\n", (fl & O_ACCMODE) == O_RDWR, (fl & O_APPEND) != 0);
    CHECK(fcntl(fd, F_SETFL, fl | O_APPEND) == 0, "F_SETFL");
    fl = fcntl(fd, F_GETFL);
    CHECK((fl & O_APPEND) != 0, "O_APPEND set");
    CHECK(lseek(fd, 0, SEEK_SET) == 0 && write(fd, "!\n", 2) == 2, "append write");
    CHECK(file_size(fd) == 14, "append went to the end");
    CHECK(fcntl(fd, F_GETFD) == 0, "F_GETFD initially 0");
    CHECK(fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 && fcntl(fd, F_GETFD) == FD_CLOEXEC, "F_SETFD");
    int fd3 = fcntl(fd, F_DUPFD, 20);
    CHECK(fd3 >= 20 && fcntl(fd3, F_GETFD) == 0, "F_DUPFD clears cloexec");
    close(fd3);
    printf("fcntl ok append=%d cloexec=%d\n", (fl & O_APPEND) != 0, fcntl(fd, F_GETFD));
    CHECK(close(fd) == 0, "close a.txt");

    /* stdio round trip */
    FILE *f = fopen(SUBDIR "/b.txt", "w");
    CHECK(f != NULL, "fopen b.txt");
    for (int i = 0; i < 20; i++)
        fprintf(f, "row %d %d\n", i, i * i);
    fclose(f);
    f = fopen(SUBDIR "/b.txt", "r");
    long rows = 0, sum = 0;
    int a, b;
    while (f && fscanf(f, "row %d %d\n", &a, &b) == 2) {
        rows++;
        sum += b;
    }
    if (f)
        fclose(f);
    printf("b.txt rows=%ld sum=%ld\n", rows, sum);
    CHECK(rows == 20 && sum == 2470, "stdio round trip");
    CHECK(stat(SUBDIR "/b.txt", &st) == 0, "stat b.txt");
    printf("b.txt size=%ld\n", (long)st.st_size);

    fd = open(SUBDIR "/c.txt", O_CREAT | O_WRONLY | O_EXCL, 0600);
    CHECK(fd >= 0, "create c.txt");
    close(fd);
    CHECK(open(SUBDIR "/c.txt", O_CREAT | O_WRONLY | O_EXCL, 0600) == -1 && errno == EEXIST,
          "O_EXCL");
    CHECK(open(SUBDIR "/missing", O_RDONLY) == -1 && errno == ENOENT, "ENOENT");

    CHECK(list_dir(SUBDIR) == 3, "3 entries");
    CHECK(rename(SUBDIR "/b.txt", SUBDIR "/d.txt") == 0, "rename");
    CHECK(stat(SUBDIR "/b.txt", &st) == -1 && errno == ENOENT, "old name gone");
    CHECK(stat(SUBDIR "/d.txt", &st) == 0, "new name there");
    CHECK(unlink(SUBDIR "/c.txt") == 0, "unlink");
    CHECK(list_dir(SUBDIR) == 2, "2 entries");

    /* /dev/null */
    fd = open("/dev/null", O_RDWR);
    CHECK(fd >= 0, "open /dev/null");
    n = read(fd, buf, sizeof buf);
    ssize_t w = write(fd, "discard", 7);
    printf("/dev/null read=%ld write=%ld\n", (long)n, (long)w);
    CHECK(n == 0 && w == 7, "/dev/null");
    close(fd);

    /* clean up */
    CHECK(rmdir(SUBDIR) == -1 && errno == ENOTEMPTY, "rmdir non-empty");
    CHECK(unlink(SUBDIR "/a.txt") == 0 && unlink(SUBDIR "/d.txt") == 0, "unlink rest");
    CHECK(rmdir(SUBDIR) == 0, "rmdir");
    CHECK(stat(SUBDIR, &st) == -1 && errno == ENOENT, "dir gone");
    puts("cleanup ok");

    printf("%s\n", failures ? "files FAILED" : "files OK");
    return failures ? 1 : 0;
}
