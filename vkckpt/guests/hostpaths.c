/* hostpaths: a guest that attacks the host-side opens the vkernel makes in its root.
 *   hostpaths ckptdir HOSTDIR    checkpoint(2) into /d/img while the target's SIGCKPT
 *                                handler moves /d away and plants /d -> HOSTDIR
 *   hostpaths ckptlink HOSTFILE  the same, but the handler plants /d/img -> HOSTFILE
 *   hostpaths stats HOSTFILE     replace ./stats.yaml by a symlink to HOSTFILE, then exit
 *   hostpaths imgdir HOSTDIR R   work R rounds; after the first third move /imgs away and
 *                                plant /imgs -> HOSTDIR (--freeze-every keeps freezing)
 *   hostpaths forge DIR R        R rounds: list DIR, rename a forged file onto every temp
 *                                name seen there, try to create a reserved temp name
 *   hostpaths list DIR R         list DIR R times (host processes change it meanwhile)
 * Each prints what it did; "forged=N" counts renames onto a name the vkernel made. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define SYS_vk_checkpoint 1000
#define SIGCKPT 62

static const char *target;
static int plant_link;

static void on_ckpt(int sig)
{
    (void)sig;
    if (plant_link) {
        unlink("/d/img");
        symlink(target, "/d/img");
    } else {
        rename("/d", "/d.moved");
        symlink(target, "/d");
    }
}

static int ckpt(const char *host)
{
    int ready[2];
    char c;
    target = host;
    if (mkdir("/d", 0755) && errno != EEXIST)
        return perror("mkdir"), 1;
    if (pipe(ready))
        return perror("pipe"), 1;
    pid_t child = fork();
    if (child == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_ckpt;
        sigaction(SIGCKPT, &sa, NULL);
        write(ready[1], "r", 1);
        for (;;)
            pause();
    }
    read(ready[0], &c, 1);
    long r = syscall(SYS_vk_checkpoint, 0, "/d/img", (int)child, 0L);
    printf("checkpoint=%ld errno=%d\n", r, r ? errno : 0);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    return 0;
}

static unsigned spin(unsigned x, int n)
{
    for (int i = 0; i < n; i++)
        x = x * 1103515245u + 12345u;
    return x;
}

static int imgdir(const char *host, int rounds)
{
    unsigned x = 1;
    for (int r = 0; r < rounds; r++) {
        if (r == rounds / 3) {
            int a = rename("/imgs", "/imgs.moved");
            int b = symlink(host, "/imgs");
            printf("swapped /imgs: %d %d\n", a, b);
        }
        x = spin(x, 20000);
    }
    printf("imgdir done %08x\n", x);
    return 0;
}

static int is_temp(const char *name)
{
    return strstr(name, ".tmp.") != NULL || strncmp(name, ".vkckpt-tmp.", 12) == 0;
}

static int forge(const char *dir, int rounds)
{
    char path[512], forged[512];
    int n = 0, seen = 0, listings = 0;
    snprintf(path, sizeof path, "%s/.vkckpt-tmp.1.2.0123456789abcdef", dir);
    int fd = open(path, O_CREAT | O_WRONLY, 0644);
    printf("create reserved: %s\n", fd < 0 ? strerror(errno) : "created");
    if (fd >= 0)
        close(fd);
    for (int r = 0; r < rounds; r++) {
        DIR *d = opendir(dir);
        if (!d)
            continue;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (!is_temp(e->d_name))
                continue;
            seen++;
            fd = open("/forged", O_CREAT | O_WRONLY | O_TRUNC, 0644);
            if (fd >= 0) {
                write(fd, "FORGED IMAGE\n", 13);
                close(fd);
            }
            snprintf(forged, sizeof forged, "%s/%s", dir, e->d_name);
            if (rename("/forged", forged) == 0)
                n++;
        }
        closedir(d);
        listings++;
    }
    printf("listings=%d seen=%d forged=%d\n", listings, seen, n);
    return 0;
}

static int list(const char *dir, int rounds)
{
    int listings = 0;
    long entries = 0;
    for (int r = 0; r < rounds; r++) {
        DIR *d = opendir(dir);
        if (!d)
            return perror("opendir"), 1;
        while (readdir(d) != NULL)
            entries++;
        closedir(d);
        listings++;
    }
    printf("listings=%d entries=%ld\n", listings, entries);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc >= 3 && !strcmp(argv[1], "ckptdir"))
        return ckpt(argv[2]);
    if (argc >= 3 && !strcmp(argv[1], "ckptlink")) {
        plant_link = 1;
        return ckpt(argv[2]);
    }
    if (argc >= 3 && !strcmp(argv[1], "stats")) {
        unlink("stats.yaml");
        printf("symlink: %d\n", symlink(argv[2], "stats.yaml"));
        return 0;
    }
    if (argc >= 4 && !strcmp(argv[1], "imgdir"))
        return imgdir(argv[2], atoi(argv[3]));
    if (argc >= 4 && !strcmp(argv[1], "forge"))
        return forge(argv[2], atoi(argv[3]));
    if (argc >= 4 && !strcmp(argv[1], "list"))
        return list(argv[2], atoi(argv[3]));
    fputs("usage: hostpaths ckptdir|ckptlink|stats|imgdir|forge|list ...\n", stderr);
    return 2;
}
