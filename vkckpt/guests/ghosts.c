/* ghosts: files held open after their last name is gone, printed so a run can be diffed
 * against the host's.  tmpfile(); a file opened twice (one description O_APPEND), dup'ed,
 * then unlinked and written through each; a forked child writing through the shared
 * description; reads back after lseek, fstat's link count and size; a private mapping of
 * the unlinked file.  Short sleeps between steps give freezes places to land.  Works in
 * directory argv[1] (default "."). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void nap(void)
{
    struct timespec ts = {0, 2000000L};
    nanosleep(&ts, NULL);
}

static void show(const char *what, int fd)
{
    struct stat st;
    char buf[128];
    off_t here = lseek(fd, 0, SEEK_CUR);
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    fstat(fd, &st);
    buf[n < 0 ? 0 : n] = 0;
    printf("%s: nlink=%ld size=%ld off=%ld mode=%o data=\"%s\"\n", what, (long)st.st_nlink,
           (long)st.st_size, (long)here, (unsigned)(st.st_mode & 07777), buf);
}

int main(int argc, char **argv)
{
    char path[512];
    snprintf(path, sizeof path, "%s/vkckpt-ghost.f", argc > 1 ? argv[1] : ".");

    mkdir("tmp", 0777); /* the guest root is the cwd: tmpfile()'s /tmp under the vkernel */
    FILE *t = tmpfile();
    if (!t) {
        perror("tmpfile");
        return 1;
    }
    fputs("tmpfile line one\n", t);
    fflush(t);
    nap();
    fputs("tmpfile two\n", t);
    rewind(t);
    char line[64];
    while (fgets(line, sizeof line, t))
        printf("tmpfile read: %s", line);

    int a = open(path, O_RDWR | O_CREAT | O_TRUNC, 0640);
    fchmod(a, 0640); /* not the umask's */
    int b = open(path, O_WRONLY | O_APPEND);
    int c = dup(a);
    write(a, "head-", 5);
    unlink(path);
    printf("unlinked: access=%d\n", access(path, F_OK));
    nap();
    write(b, "app1-", 5);
    write(c, "dup-", 4);
    show("after writes a", a);
    show("after writes b", b);
    struct stat sa, sb;
    fstat(a, &sa);
    fstat(b, &sb);
    printf("same inode: %d\n", sa.st_ino == sb.st_ino);
    nap();

    pid_t pid = fork();
    if (pid == 0) {
        nap();
        write(a, "child-", 6);
        write(b, "capp-", 5);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    printf("child exited %d\n", WEXITSTATUS(status));
    show("after child a", a);
    nap();

    char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, a, 0);
    printf("private map: \"%.9s\"\n", m);
    m[0] = 'H';
    nap();
    printf("private map after write: \"%.9s\"\n", m);
    show("file unchanged by the map", a);

    lseek(a, 2, SEEK_SET);
    write(a, "AD", 2);
    nap();
    lseek(a, 0, SEEK_SET);
    char buf[64] = {0};
    read(a, buf, 10);
    printf("read back: \"%s\"\n", buf);
    ftruncate(a, 8192);
    write(b, "tail", 4);
    nap();
    show("after truncate+append", a);
    close(c);
    close(b);
    nap();
    show("last description", a);
    close(a);
    fclose(t);
    printf("ghosts done\n");
    return 0;
}
