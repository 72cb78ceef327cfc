/* layers: changes to files that were in the root before the run (an overlay's lower layer):
 * append to one, truncate and chmod others, delete a file, a symlink and an empty directory,
 * rename a file and a non-empty directory, recreate a deleted name as a directory, and list
 * every directory after each step; rmdir of a non-empty directory must fail.  Expects the
 * tree tests/test_overlay.py makes in argv[1]; ROUNDS (argv[2], default 1) repeats the
 * appends so that freezes can land between them.  Prints what it sees; exit 0 (at once
 * when there is no tree). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list(const char *dir)
{
    char *names[256];
    int n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        printf("ls %s: errno %d\n", dir, errno);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) && n < 256)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, n, sizeof *names, cmp);
    printf("ls %s:", dir);
    for (int i = 0; i < n; i++) {
        char p[512];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        if (lstat(p, &st) == 0)
            printf(" %s(%o,%lld)", names[i], st.st_mode, S_ISDIR(st.st_mode) ? 0LL
                   : (long long)st.st_size);
        free(names[i]);
    }
    printf("\n");
}

static void cat(const char *path)
{
    char buf[4096];
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        printf("cat %s: errno %d\n", path, errno);
        return;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n < 0 ? 0 : n] = 0;
    printf("cat %s: %zd [%s]\n", path, n, buf);
}

static void step(const char *what, int rc)
{
    printf("%s: %d errno %d\n", what, rc, rc < 0 ? errno : 0);
}

int main(int argc, char **argv)
{
    if (argc < 2 || chdir(argv[1]) != 0)
        return 2;
    int rounds = argc > 2 ? atoi(argv[2]) : 1;
    int ro = open("keep.txt", O_RDONLY);  /* opened before its copy-up */
    if (ro < 0) {
        printf("no tree\n");  /* an empty directory: nothing to change */
        return 0;
    }
    int dfd = open("sub", O_RDONLY | O_DIRECTORY);  /* a directory opened before, too */
    int log = open("log.txt", O_CREAT | O_WRONLY, 0644);  /* held open, written once */
    step("log", (int)write(log, "start\n", 6));
    list(".");
    for (int r = 0; r < rounds; r++) {
        int fd = open("keep.txt", O_WRONLY | O_APPEND);
        char line[64];
        int n = snprintf(line, sizeof line, "round %d\n", r);
        step("append", (int)write(fd, line, n));
        close(fd);
    }
    char buf[256];
    ssize_t got = pread(ro, buf, sizeof buf - 1, 0);
    buf[got < 0 ? 0 : got] = 0;
    printf("early reader sees %zd [%s]\n", got, buf);
    close(ro);
    step("truncate", truncate("sub/big.bin", 10));
    step("chmod", chmod("sub/mode.txt", 0600));
    step("chmod dir", chmod("sub", 0700));
    struct stat dst;
    fstat(dfd, &dst);
    printf("early directory descriptor: mode %o\n", dst.st_mode);
    close(dfd);
    step("unlink", unlink("gone.txt"));
    step("unlink again", unlink("gone.txt"));
    step("unlink link", unlink("link"));
    step("rmdir empty", rmdir("empty"));
    step("rmdir full", rmdir("sub"));
    step("mkdir new", mkdir("new", 0755));
    step("rename onto full", rename("new", "full"));  /* never copied up: merged check */
    step("rename file", rename("sub/mode.txt", "moved.txt"));
    step("rename dir", rename("tree", "tree2"));
    step("mkdir over deleted", mkdir("empty", 0755));
    step("mkdir over whiteout", mkdir("gone.txt", 0700));
    int fd = open("gone.txt/new", O_CREAT | O_WRONLY, 0644);
    step("create in it", (int)write(fd, "new\n", 4));
    close(fd);
    step("symlink", symlink("keep.txt", "link2"));
    list(".");
    list("sub");
    list("tree2");
    list("tree2/deep");
    list("empty");
    list("gone.txt");
    cat("keep.txt");
    cat("moved.txt");
    cat("tree2/deep/leaf.txt");
    cat("link2");
    cat("tree/deep/leaf.txt");
    close(log);
    cat("log.txt");
    return 0;
}
