/* dynelf: what a program learns from execve about itself, built static (the bundled musl
 * guest) and dynamically (glibc, tests/test_dynelf.py): the auxiliary vector's relations
 * (AT_ENTRY is _start, AT_PHDR holds this program's headers, AT_BASE is the interpreter's
 * load address or 0), the PT_INTERP path seen in memory, dlopen of libm (dynamic only),
 * execve of itself (a dynamic program started from inside the guest) and of a copy whose
 * interpreter is missing (ENOENT, as on Linux).  Works in directory argv[1] (default "."). */
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char _start[];

static const char *interp_of(void)
{
    const Elf64_Phdr *ph = (const Elf64_Phdr *)getauxval(AT_PHDR);
    unsigned long n = getauxval(AT_PHNUM), bias = 0;
    for (unsigned long i = 0; i < n; i++)
        if (ph[i].p_type == PT_PHDR)
            bias = (unsigned long)ph - ph[i].p_vaddr;
    for (unsigned long i = 0; i < n; i++)
        if (ph[i].p_type == PT_INTERP)
            return (const char *)(bias + ph[i].p_vaddr);
    return NULL;
}

static void report(const char *who)
{
    const char *interp = interp_of();
    const char *fn = (const char *)getauxval(AT_EXECFN);
    const char *slash = fn ? strrchr(fn, '/') : NULL;
    printf("%s: entry is _start: %d\n", who, getauxval(AT_ENTRY) == (unsigned long)_start);
    printf("%s: phent %lu, phnum > 0: %d\n", who, getauxval(AT_PHENT), getauxval(AT_PHNUM) > 0);
    printf("%s: interp %s, base set: %d\n", who, interp ? interp : "(none)",
           getauxval(AT_BASE) != 0);
    printf("%s: base below the stack, above entry: %d\n", who, !interp ||
           (getauxval(AT_BASE) > getauxval(AT_ENTRY) &&
            getauxval(AT_BASE) < (unsigned long)&interp));
    printf("%s: execfn %s, secure %lu, random given: %d, pagesz %lu\n", who,
           slash ? slash + 1 : "?", getauxval(AT_SECURE), getauxval(AT_RANDOM) != 0,
           getauxval(AT_PAGESZ));
}

/* A copy of this program at path whose PT_INTERP names a file that does not exist. */
static int bad_copy(const char *self, const char *path)
{
    static char img[16 << 20];
    int fd = open(self, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, img, sizeof img) : -1;
    close(fd);
    if (n < (ssize_t)sizeof(Elf64_Ehdr))
        return -1;
    Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
    Elf64_Phdr *ph = (Elf64_Phdr *)(img + eh->e_phoff);
    for (int i = 0; i < eh->e_phnum; i++)
        if (ph[i].p_type == PT_INTERP && ph[i].p_filesz > 16)
            memcpy(img + ph[i].p_offset, "/nowhere/ld.so", 15);
    fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0755);
    if (fd < 0 || write(fd, img, n) != n)
        return -1;
    return close(fd);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "child") == 0) {
        report("child");
        return 7;
    }
    report("parent");
    void *m = dlopen("libm.so.6", RTLD_NOW);
    double (*cosine)(double) = m ? (double (*)(double))dlsym(m, "cos") : NULL;
    printf("dlopen libm: %s\n", cosine ? (cosine(0.0) == 1.0 ? "cos(0) = 1" : "wrong") :
           "unavailable");
    fflush(stdout);

    char self[256];
    snprintf(self, sizeof self, "%s", argv[0]);
    pid_t pid = fork();
    if (pid == 0) {
        execl(self, self, "child", (char *)NULL);
        _exit(99);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    printf("child exited %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);

    if (interp_of()) {
        char bad[512];
        snprintf(bad, sizeof bad, "%s/badinterp", argc > 1 ? argv[1] : ".");
        if (bad_copy(self, bad) != 0)
            return 2;
        errno = 0;
        pid = fork();
        if (pid == 0) {
            execl(bad, bad, (char *)NULL);
            _exit(errno == ENOENT ? 40 : 41);
        }
        waitpid(pid, &st, 0);
        printf("missing interpreter: %s\n", WEXITSTATUS(st) == 40 ? "ENOENT" : "other");
        unlink(bad);
    }
    return 0;
}
