/* procread: /proc/self as programs read it -- status, stat, statm, maps, cmdline, fd/,
 * fdinfo, task/, thread-self and a few system files -- checked for structure and for
 * agreement with getpid, getppid, the thread count and the descriptors the program holds.
 * Prints only what is the same on any Linux host (no pids, addresses or sizes).
 * Works in directory argv[1] (default "."). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char buf[1 << 16];

static int slurp(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    int n = 0, r;
    while ((r = read(fd, buf + n, sizeof buf - 1 - n)) > 0)
        n += r;
    close(fd);
    buf[n] = 0;
    return n;
}

static long field(const char *name)  /* a "Name:\tvalue" line of the last file read */
{
    char key[64];
    snprintf(key, sizeof key, "\n%s:", name);
    char *at = strstr(buf, key);
    return at ? strtol(at + strlen(key), NULL, 10) : -1;
}

static int count_dir(const char *path, int *saw_self)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    char me[16];
    snprintf(me, sizeof me, "%d", getpid());
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        n++;
        if (saw_self && (!strcmp(e->d_name, me) || !strcmp(e->d_name, "self")))
            (*saw_self)++;
    }
    closedir(d);
    return n;
}

static int gate[2];
static char comm[32];  /* what Linux names this task: argv[0]'s base name, 15 bytes */

static void *waiter(void *arg)
{
    char c;
    (void)arg;
    return read(gate[0], &c, 1) == 1 ? NULL : (void *)1;
}

static void status_and_stat(int threads)
{
    slurp("/proc/self/status");
    printf("status[%d]: tgid=%d pid=%d ppid=%d threads=%d state=%s name=%d\n", threads,
           field("Tgid") == getpid(), field("Pid") == getpid(), field("PPid") == getppid(),
           field("Threads") == threads, strstr(buf, "\nState:\tR (running)\n") ? "R" : "?",
           strncmp(buf + 6, comm, strlen(comm)) == 0 && buf[6 + strlen(comm)] == '\n');
    printf("status[%d]: sigsets=%d vmsize=%d vmrss=%d\n", threads,
           strstr(buf, "\nSigBlk:\t") && strstr(buf, "\nSigCgt:\t") &&
           strstr(buf, "\nShdPnd:\t"), field("VmSize") > 0, field("VmRSS") > 0);

    int n = slurp("/proc/self/stat");
    char *close_paren = strrchr(buf, ')');
    int fields = 2;
    for (char *p = close_paren + 1; p < buf + n; p++)
        fields += *p == ' ';
    char state;
    int ppid, pgrp, nthreads;
    long pid = strtol(buf, NULL, 10);
    sscanf(close_paren + 2, "%c %d %d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d "
           "%*d %d", &state, &ppid, &pgrp, &nthreads);
    printf("stat[%d]: fields=%d pid=%d comm=%d state=%c ppid=%d pgrp=%d threads=%d\n",
           threads, fields, pid == getpid(), !strncmp(strchr(buf, '(') + 1, comm,
           strlen(comm)) && strchr(buf, '(')[1 + strlen(comm)] == ')', state,
           ppid == getppid(), pgrp == getpgrp(), nthreads == threads);
}

int main(int argc, char **argv)
{
    if (argc > 1 && chdir(argv[1]) != 0)
        return 2;
    const char *base = strrchr(argv[0], '/');
    snprintf(comm, 16, "%s", base ? base + 1 : argv[0]);
    status_and_stat(1);

    if (pipe(gate) != 0)
        return 2;
    pthread_t th;
    pthread_create(&th, NULL, waiter, NULL);
    int spins = 0;
    while (spins++ < 1000) {  /* until the thread exists for /proc (it does at once) */
        if (count_dir("/proc/self/task", NULL) == 2)
            break;
        usleep(1000);
    }
    status_and_stat(2);
    printf("task entries: %d\n", count_dir("/proc/self/task", NULL));
    char path[128], link[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/comm", getpid());
    slurp(path);
    printf("task comm: %d\n", !strncmp(buf, comm, strlen(comm)) && buf[strlen(comm)] == '\n');
    slurp("/proc/thread-self/comm");
    printf("thread-self comm: %d\n", !strncmp(buf, comm, strlen(comm)) &&
           buf[strlen(comm)] == '\n');
    if (write(gate[1], "x", 1) != 1 || pthread_join(th, NULL) != 0)
        return 2;

    int n = slurp("/proc/self/statm");
    int words = 0;
    for (char *p = buf; p < buf + n; p++)
        words += *p == ' ' || *p == '\n';
    printf("statm: fields=%d\n", words);

    n = slurp("/proc/self/cmdline");
    int same = 1, at = 0;
    for (int i = 0; i < argc; i++) {
        same &= strcmp(buf + at, argv[i]) == 0;
        at += strlen(argv[i]) + 1;
    }
    printf("cmdline: args=%d same=%d\n", argc, same && at == n);

    ssize_t ln = readlink("/proc/self/exe", link, sizeof link - 1);
    link[ln > 0 ? ln : 0] = 0;
    slurp("/proc/self/maps");
    int lines = 0, stack = 0, self = 0, formed = 1;
    for (char *line = buf; *line; ) {
        char *end = strchr(line, '\n');
        if (!end)
            break;
        *end = 0;
        char perms[8];
        unsigned long lo, hi;
        formed &= sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) == 3 && lo < hi;
        stack += strstr(line, " [stack]") != NULL;
        self += ln > 0 && strlen(line) > (size_t)ln && !strcmp(line + strlen(line) - ln, link);
        lines++;
        line = end + 1;
    }
    printf("maps: lines>3=%d formed=%d stack=%d exe=%d\n", lines > 3, formed, stack, self > 0);

    int saw = 0;
    printf("proc lists self and pid: %d\n", count_dir("/proc", &saw) > 2 && saw == 2);
    snprintf(path, sizeof path, "%d", getpid());
    ln = readlink("/proc/self", link, sizeof link - 1);
    printf("readlink /proc/self is the pid: %d\n", ln > 0 && !strncmp(link, path, ln));

    int p[2];
    if (pipe(p) != 0 || write(p[1], "piped", 5) != 5)
        return 2;
    int fd = open("procread.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "abcdef", 6) != 6 || lseek(fd, 3, SEEK_SET) != 3)
        return 2;
    int want[] = {0, 1, 2, p[0], p[1], fd}, found = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        for (int i = 0; i < 6; i++)
            found += e->d_name[0] != '.' && atoi(e->d_name) == want[i];
        found += e->d_name[0] != '.' && atoi(e->d_name) == dirfd(d) ? 10 : 0;
    }
    if (d)
        closedir(d);
    printf("fd entries: stdio, pipe, file and the directory itself: %d\n", found == 16);
    snprintf(path, sizeof path, "/proc/self/fd/%d", p[0]);
    ln = readlink(path, link, sizeof link - 1);
    printf("pipe link: %.6s\n", ln > 6 ? link : "?");
    int q = open(path, O_RDONLY);
    char data[16] = "";
    n = q >= 0 ? read(q, data, sizeof data) : -1;
    printf("read through /proc/self/fd: %.*s\n", n > 0 ? n : 0, data);
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ln = readlink(path, link, sizeof link - 1);
    link[ln > 0 ? ln : 0] = 0;
    struct stat a, b;
    printf("file link: ends=%d same inode=%d\n", ln > 13 && !strcmp(link + ln - 13,
           "/procread.txt"), stat(path, &a) == 0 && fstat(fd, &b) == 0 &&
           a.st_ino == b.st_ino && a.st_dev == b.st_dev);
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    slurp(path);
    printf("fdinfo: pos=%ld flags=%d\n", strtol(buf + 5, NULL, 10),
           strstr(buf, "\nflags:\t0") != NULL);
    errno = 0;
    printf("closed descriptor's link: %s\n", open("/proc/self/fd/999", O_RDONLY) < 0 &&
           errno == ENOENT ? "ENOENT" : "opened");

    int w = open("/proc/self/status", O_WRONLY);
    printf("write refused: %d\n", w < 0 || write(w, "x", 1) < 0);

    slurp("/proc/sys/kernel/ostype");
    printf("ostype: %s", buf);
    n = slurp("/proc/sys/kernel/random/uuid");
    printf("uuid: len=%d dashes=%d\n", n, buf[8] == '-' && buf[13] == '-' && buf[18] == '-');
    double up = -1, idle = -1;
    slurp("/proc/uptime");
    printf("uptime: two=%d\n", sscanf(buf, "%lf %lf", &up, &idle) == 2 && up >= 0);
    slurp("/proc/meminfo");
    printf("meminfo: %.9s total>0=%d\n", buf, strtol(buf + 9, NULL, 10) > 0);
    slurp("/proc/cpuinfo");
    printf("cpuinfo: processor=%d flags=%d\n", !strncmp(buf, "processor\t: 0\n", 14),
           strstr(buf, "\nflags\t\t: ") != NULL);
    slurp("/proc/version");
    printf("version: %.14s\n", buf);
    close(fd);
    unlink("procread.txt");
    return 0;
}
