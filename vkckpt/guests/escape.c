/* escape: tries every way out of the guest root it knows and reports what it reached.
 * Usage: escape SECRET_NAME   (the test plants a file of that name next to the root and
 * symlinks inside the root that point at it; under vkckpt none may be readable). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *secret;
static int leaks;

static void try_read(const char *what, int dirfd, const char *path)
{
    char buf[64] = {0};
    int fd = openat(dirfd, path, O_RDONLY);
    if (fd < 0) {
        printf("%s: %s\n", what, strerror(errno));
        return;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n > 0 && strstr(buf, "TOP-SECRET")) {
        printf("%s: LEAKED\n", what);
        leaks++;
    } else {
        printf("%s: opened something harmless\n", what);
    }
}

int main(int argc, char **argv)
{
    char path[512];
    secret = argc > 1 ? argv[1] : "secret.txt";
    snprintf(path, sizeof path, "../%s", secret);
    try_read("dotdot", AT_FDCWD, path);
    snprintf(path, sizeof path, "/../../../../%s", secret);
    try_read("deep dotdot", AT_FDCWD, path);
    snprintf(path, sizeof path, "/tmp/../../%s", secret);
    try_read("through /tmp", AT_FDCWD, path);
    try_read("relative link", AT_FDCWD, "link_rel");
    try_read("absolute link", AT_FDCWD, "link_abs");
    try_read("link to a dir outside", AT_FDCWD, "link_dir/secret.txt");
    int root = open("/", O_RDONLY | O_DIRECTORY);
    snprintf(path, sizeof path, "../../%s", secret);
    try_read("openat from /", root, path);
    try_read("/proc/self/root", AT_FDCWD, "/proc/self/root/etc/passwd");
    if (chdir("/..") == 0) {
        char cwd[256];
        printf("chdir /..: cwd=%s\n", getcwd(cwd, sizeof cwd) ? cwd : "?");
    }
    try_read("after chdir", AT_FDCWD, secret);
    /* create, rename and link outward */
    snprintf(path, sizeof path, "../%s.new", secret);
    int fd = open(path, O_CREAT | O_WRONLY, 0644);
    printf("create outside: %s\n", fd >= 0 ? "created (inside the root)" : strerror(errno));
    if (fd >= 0)
        close(fd);
    fd = open("mine", O_CREAT | O_WRONLY, 0644);
    close(fd);
    printf("rename out: %s\n", rename("mine", "link_dir/moved") == 0 ? "done" : strerror(errno));
    printf("symlink out then read: ");
    if (symlink("../../../../etc/hostname", "mylink") == 0)
        try_read("", AT_FDCWD, "mylink");
    else
        printf("%s\n", strerror(errno));
    printf("leaks=%d\n", leaks);
    return leaks ? 1 : 0;
}
