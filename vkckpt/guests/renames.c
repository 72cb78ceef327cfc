/* rename(2) of open files and of the working directory: /proc/self/fd/N and getcwd name what
 * they name by its new path, as Linux's dentries do.  Run in a directory it may write (argv[1]). */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

static void link_of(const char *what, int fd, const char *base) {
    char p[64], buf[512];
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(p, buf, sizeof buf - 1);
    buf[n < 0 ? 0 : n] = 0;
    const char *rel = strncmp(buf, base, strlen(base)) == 0 ? buf + strlen(base) : buf;
    printf("%s: %s\n", what, n < 0 ? "(none)" : rel);
}

int main(int argc, char **argv) {
    if (argc < 2 || chdir(argv[1]) != 0)
        return 2;
    char base[512];
    if (!getcwd(base, sizeof base))
        return 3;
    mkdir("rn", 0755);
    mkdir("rn/d", 0755);
    int f = open("rn/a.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
    int d = open("rn/d", O_RDONLY | O_DIRECTORY);
    int g = open("rn/d/in.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
    link_of("file before", f, base);
    rename("rn/a.txt", "rn/b.txt");
    link_of("file after rename", f, base);
    rename("rn/d", "rn/e");
    link_of("dir after rename", d, base);
    link_of("file in renamed dir", g, base);
    chdir("rn/e");
    rename("../e", "../f");
    char cwd[512];
    printf("cwd after renaming it: %s\n", getcwd(cwd, sizeof cwd) ?
           cwd + (strncmp(cwd, base, strlen(base)) ? 0 : strlen(base)) : "(error)");
    printf("write through the renamed file: %zd\n", write(f, "x", 1));
    chdir(base);
    unlink("rn/b.txt");
    unlink("rn/f/in.txt");
    rmdir("rn/f");
    rmdir("rn");
    close(f);
    close(d);
    close(g);
    puts("renames done");
    return 0;
}
