/* metacalls: the file metadata calls of issue 14 as programs use them, printed so a run can
 * be diffed against the host's (run as root, on a file system with user xattrs): owners
 * (chown, lchown, fchown, fchownat), statx against stat, extended attributes, named FIFOs
 * (mknod, fifo_open's blocking and O_NONBLOCK rules), fallocate, ioprio, sysinfo and chroot.
 * Prints nothing host-specific (no inode numbers, times or host paths).  Works in directory
 * argv[1] (default "."), in a subdirectory it removes at the end.  Exit 0 iff it could run. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#define SUBDIR "vkckpt-metacalls.d"

static const char *errname(int e)
{
    switch (e) {
    case ENODATA: return "ENODATA";
    case EEXIST: return "EEXIST";
    case ERANGE: return "ERANGE";
    case EPERM: return "EPERM";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EINVAL: return "EINVAL";
    case ENXIO: return "ENXIO";
    case ENOENT: return "ENOENT";
    case EBADF: return "EBADF";
    case ESPIPE: return "ESPIPE";
    default: return "E?";
    }
}

static const char *err(long r)
{
    return r < 0 ? errname(errno) : "ok";
}

static void owners(void)
{
    struct stat st;
    chown("f", 1234, 5678);
    stat("f", &st);
    printf("chown: uid=%u gid=%u\n", (unsigned)st.st_uid, (unsigned)st.st_gid);
    chown("f", -1, 42);
    stat("f", &st);
    printf("chown -1: uid=%u gid=%u\n", (unsigned)st.st_uid, (unsigned)st.st_gid);
    printf("lchown: %s", err(lchown("l", 7, 8)));
    lstat("l", &st);
    printf(" link uid=%u", (unsigned)st.st_uid);
    stat("l", &st);
    printf(" target uid=%u\n", (unsigned)st.st_uid);
    int fd = open("f", O_RDONLY);
    printf("fchown: %s", err(fchown(fd, 99, -1)));
    fstat(fd, &st);
    printf(" uid=%u gid=%u\n", (unsigned)st.st_uid, (unsigned)st.st_gid);
    printf("fchownat empty path: %s", err(fchownat(fd, "", 0, 0, AT_EMPTY_PATH)));
    fstat(fd, &st);
    printf(" uid=%u gid=%u\n", (unsigned)st.st_uid, (unsigned)st.st_gid);
    printf("fchownat bad flags: %s\n", err(fchownat(AT_FDCWD, "f", 0, 0, 0x4)));
    close(fd);
}

static void statxes(void)
{
    struct statx sx;
    struct stat st;
    stat("f", &st);
    long r = statx(AT_FDCWD, "f", 0, STATX_BASIC_STATS, &sx);
    printf("statx: %s basic=%d size=%llu mode=%o uid=%u same ino=%d nlink=%u blocks=%llu\n",
           err(r), (sx.stx_mask & STATX_BASIC_STATS) == STATX_BASIC_STATS,
           (unsigned long long)sx.stx_size, sx.stx_mode & 07777, sx.stx_uid,
           sx.stx_ino == st.st_ino, sx.stx_nlink, (unsigned long long)sx.stx_blocks);
    printf("statx regular=%d dev matches=%d mtime matches=%d\n", S_ISREG(sx.stx_mode),
           makedev(sx.stx_dev_major, sx.stx_dev_minor) == st.st_dev,
           sx.stx_mtime.tv_sec == st.st_mtime);
    statx(AT_FDCWD, "l", AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &sx);
    printf("statx nofollow: link=%d size=%llu\n", S_ISLNK(sx.stx_mode),
           (unsigned long long)sx.stx_size);
    int fd = open("f", O_RDONLY);
    r = statx(fd, "", AT_EMPTY_PATH, STATX_SIZE, &sx);
    printf("statx empty path: %s size=%llu\n", err(r), (unsigned long long)sx.stx_size);
    close(fd);
    printf("statx bad flags: %s\n", err(statx(AT_FDCWD, "f", 0x1, STATX_BASIC_STATS, &sx)));
    printf("statx reserved mask: %s\n", err(statx(AT_FDCWD, "f", 0, 0x80000000u, &sx)));
    printf("statx missing: %s\n", err(statx(AT_FDCWD, "nope", 0, STATX_BASIC_STATS, &sx)));
}

static void xattrs(void)
{
    char buf[64];
    printf("lgetxattr none: %s\n", err(lgetxattr("f", "user.none", buf, sizeof buf)));
    printf("listxattr empty: %ld\n", (long)listxattr("f", buf, sizeof buf));
    printf("setxattr: %s", err(setxattr("f", "user.a", "1", 1, 0)));
    printf(" create again: %s", err(setxattr("f", "user.a", "2", 1, XATTR_CREATE)));
    printf(" replace absent: %s\n", err(setxattr("f", "user.b", "2", 1, XATTR_REPLACE)));
    setxattr("f", "user.b", "hello", 5, 0);
    printf("getxattr size: %ld", (long)getxattr("f", "user.b", NULL, 0));
    printf(" small: %s", err(getxattr("f", "user.b", buf, 2)));
    long n = getxattr("f", "user.b", buf, sizeof buf);
    printf(" value: %.*s\n", (int)(n > 0 ? n : 0), buf);
    n = listxattr("f", buf, sizeof buf);
    printf("listxattr: %ld", n);
    for (long i = 0; i < n; i += strlen(buf + i) + 1)
        printf(" %s", buf + i);
    printf(" size=%ld small=%s\n", (long)listxattr("f", NULL, 0), err(listxattr("f", buf, 3)));
    printf("removexattr: %s", err(removexattr("f", "user.a")));
    printf(" again: %s", err(removexattr("f", "user.a")));
    printf(" left=%ld\n", (long)listxattr("f", buf, sizeof buf));
    printf("lsetxattr on symlink: %s\n", err(lsetxattr("l", "user.x", "1", 1, 0)));
    printf("bad namespace: %s", err(getxattr("f", "bogus.x", buf, sizeof buf)));
    printf(" bare prefix: %s", err(getxattr("f", "user.", buf, sizeof buf)));
    printf(" empty: %s\n", err(getxattr("f", "", buf, sizeof buf)));
    int fd = open("f", O_RDONLY);
    printf("fsetxattr: %s", err(fsetxattr(fd, "user.c", "xyz", 3, 0)));
    n = fgetxattr(fd, "user.c", buf, sizeof buf);
    printf(" fgetxattr: %.*s", (int)(n > 0 ? n : 0), buf);
    printf(" flist=%ld", (long)flistxattr(fd, buf, sizeof buf));
    printf(" fremove: %s\n", err(fremovexattr(fd, "user.c")));
    close(fd);
    removexattr("f", "user.b");
}

static void fifos(void)
{
    struct stat st;
    char buf[64];
    printf("mkfifo: %s", err(mkfifo("p", 0640)));
    stat("p", &st);
    printf(" fifo=%d mode=%o size=%lld", S_ISFIFO(st.st_mode), (unsigned)(st.st_mode & 07777),
           (long long)st.st_size);
    printf(" again: %s\n", err(mkfifo("p", 0640)));
    printf("mknod regular: %s", err(mknod("r", S_IFREG | 0600, 0)));
    stat("r", &st);
    printf(" regular=%d size=%lld\n", S_ISREG(st.st_mode), (long long)st.st_size);
    unlink("r");
    printf("write-only nonblocking, no reader: %s\n", err(open("p", O_WRONLY | O_NONBLOCK)));
    int r = open("p", O_RDONLY | O_NONBLOCK);
    printf("read nonblocking: %s", err(r));
    printf(" empty read=%ld", (long)read(r, buf, sizeof buf));
    int w = open("p", O_WRONLY | O_NONBLOCK);
    printf(" writer: %s wrote=%ld", err(w), (long)write(w, "abc", 3));
    long n = read(r, buf, sizeof buf);
    printf(" read=%.*s", (int)(n > 0 ? n : 0), buf);
    fstat(r, &st);
    printf(" fstat fifo=%d", S_ISFIFO(st.st_mode));
    close(w);
    printf(" after close=%ld\n", (long)read(r, buf, sizeof buf));
    close(r);
    pid_t pid = fork();
    if (pid == 0) {
        int cw = open("p", O_WRONLY);  /* sleeps until the parent opens for reading */
        write(cw, "from the child", 14);
        _exit(cw < 0);
    }
    r = open("p", O_RDONLY);  /* sleeps until the child opens for writing */
    size_t got = 0;
    while ((n = read(r, buf + got, sizeof buf - got)) > 0)
        got += n;
    int status;
    waitpid(pid, &status, 0);
    printf("blocking opens: %.*s status=%d\n", (int)got, buf, status);
    close(r);
    int rw = open("p", O_RDWR);
    write(rw, "self", 4);
    n = read(rw, buf, sizeof buf);
    printf("O_RDWR: %s read=%.*s\n", err(rw), (int)(n > 0 ? n : 0), buf);
    close(rw);
    printf("mknod directory: %s\n", err(mknod("c", S_IFDIR | 0600, 0)));
    printf("truncate fifo: %s", err(truncate("p", 0)));
    DIR *d = opendir(".");
    struct dirent *e;
    int dtype = -1;
    while (d && (e = readdir(d)) != NULL)
        if (strcmp(e->d_name, "p") == 0)
            dtype = e->d_type == DT_FIFO;
    closedir(d);
    printf(" readdir dt_fifo=%d", dtype);
    int keep = open("p", O_RDWR);
    unlink("p");
    fstat(keep, &st);
    printf(" unlinked open still fifo=%d links=%d\n", S_ISFIFO(st.st_mode), (int)st.st_nlink);
    close(keep);
}

static void fallocates(void)
{
    struct stat st;
    char buf[4];
    int fd = open("g", O_CREAT | O_RDWR | O_TRUNC, 0644);
    printf("fallocate: %s", err(fallocate(fd, 0, 0, 8192)));
    fstat(fd, &st);
    printf(" size=%lld", (long long)st.st_size);
    printf(" keep size: %s", err(fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 100000)));
    fstat(fd, &st);
    printf(" size=%lld\n", (long long)st.st_size);
    pwrite(fd, "xyz", 3, 0);
    printf("punch hole: %s",
           err(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 2)));
    pread(fd, buf, 3, 0);
    fstat(fd, &st);
    printf(" bytes=%d,%d,%c size=%lld\n", buf[0], buf[1], buf[2], (long long)st.st_size);
    printf("punch without keep: %s", err(fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 2)));
    printf(" zero length: %s\n", err(fallocate(fd, 0, 0, 0)));
    close(fd);
    fd = open("g", O_RDONLY);
    printf("read-only: %s", err(fallocate(fd, 0, 0, 10)));
    close(fd);
    int p[2];
    pipe(p);
    printf(" pipe: %s\n", err(fallocate(p[1], 0, 0, 10)));
    close(p[0]);
    close(p[1]);
    unlink("g");
}

static void priorities(void)
{
    long v = (2 << 13) | 3;
    printf("ioprio_set: %s", err(syscall(SYS_ioprio_set, 1, 0, v)));
    printf(" get=%ld", syscall(SYS_ioprio_get, 1, 0));
    printf(" bad class: %s", err(syscall(SYS_ioprio_set, 1, 0, 4 << 13)));
    printf(" bad which: %s\n", err(syscall(SYS_ioprio_get, 9, 0)));
    pid_t pid = fork();
    if (pid == 0)
        _exit(syscall(SYS_ioprio_get, 1, 0) == v ? 0 : 1);
    int status;
    waitpid(pid, &status, 0);
    printf("ioprio inherited: %d\n", WIFEXITED(status) && WEXITSTATUS(status) == 0);
    struct sysinfo si;
    int r = sysinfo(&si);
    printf("sysinfo: %s ram=%d unit=%d procs=%d\n", err(r), si.totalram > 0, si.mem_unit >= 1,
           si.procs >= 1);
}

static void jail(void)
{
    mkdir("jail", 0755);
    mkdir("jail/sub", 0755);
    int fd = open("jail/inside", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    write(fd, "jailed", 6);
    close(fd);
    symlink("/inside", "jail/sub/abs");
    pid_t pid = fork();
    if (pid == 0) {
        char buf[64];
        printf("chroot: %s", err(chroot("jail")));
        printf(" chdir: %s", err(chdir("/sub")));
        printf(" cwd=%s", getcwd(buf, sizeof buf) ? buf : "?");
        int f = open("/../../inside", O_RDONLY);
        long n = f >= 0 ? read(f, buf, sizeof buf) : 0;
        printf(" dotdot: %.*s", (int)(n > 0 ? n : 0), buf);
        close(f);
        f = open("abs", O_RDONLY);
        printf(" symlink: %s", err(f));
        close(f);
        printf(" outside: %s\n", err(open("/f", O_RDONLY)));
        fflush(stdout);
        pid_t g = fork();
        if (g == 0)
            _exit(access("/inside", F_OK) == 0 ? 0 : 1);
        int st;
        waitpid(g, &st, 0);
        printf("chroot inherited: %d\n", WIFEXITED(st) && WEXITSTATUS(st) == 0);
        printf("chroot missing: %s\n", err(chroot("/nope")));
        fflush(stdout);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    printf("chroot child: %d\n", status);
    unlink("jail/sub/abs");
    rmdir("jail/sub");
    unlink("jail/inside");
    rmdir("jail");
}

int main(int argc, char **argv)
{
    if (argc > 1 && chdir(argv[1]) != 0)
        return 2;
    umask(022);
    if (mkdir(SUBDIR, 0755) != 0 || chdir(SUBDIR) != 0)
        return 2;
    int fd = open("f", O_CREAT | O_RDWR | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "0123456789", 10) != 10 || symlink("f", "l") != 0)
        return 2;
    close(fd);
    setvbuf(stdout, NULL, _IONBF, 0);
    owners();
    statxes();
    xattrs();
    fifos();
    fallocates();
    priorities();
    jail();
    unlink("l");
    unlink("f");
    chdir("..");
    rmdir(SUBDIR);
    return 0;
}
