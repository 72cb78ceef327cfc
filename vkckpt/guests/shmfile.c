/* shmfile: MAP_SHARED file mappings in a directory given as argv[1] (default ".").  A parent
 * and its forked child map one file read-write and exchange values through it, ordered by
 * pipes; read(2)/pread see stores through the map and write(2)/pwrite are seen through it;
 * msync; munmap then reread; SIGBUS past EOF (handled and printed); ftruncate grows (the
 * pages beyond become usable) and shrinks; mprotect and munmap of part of a mapping; mremap
 * growing one; read-only files; two mappings of one file.  Exit 0 iff every check passed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>


static int failures;
static long PG;

#define CHECK(cond, ...)                  \
    do {                                  \
        if (!(cond)) {                    \
            printf("FAIL: " __VA_ARGS__); \
            putchar('\n');                \
            failures++;                   \
        }                                 \
    } while (0)

static sigjmp_buf probe_env;
static volatile int fault_sig, fault_code;
static void *volatile fault_addr;

static void on_fault(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    fault_sig = sig;
    fault_code = si->si_code;
    fault_addr = si->si_addr;
    siglongjmp(probe_env, 1);
}

/* "ok", or the signal and code an access at p raised (si_addr checked). */
static const char *probe(volatile char *p, int write)
{
    fault_sig = 0;
    if (sigsetjmp(probe_env, 1) == 0) {
        if (write)
            *p = 7;
        else
            (void)*p;
        return "ok";
    }
    CHECK(fault_addr == (void *)p, "si_addr is the faulting address");
    if (fault_sig == SIGBUS)
        return fault_code == BUS_ADRERR ? "SIGBUS/ADRERR" : "SIGBUS/other";
    if (fault_sig == SIGSEGV)
        return fault_code == SEGV_ACCERR ? "SIGSEGV/ACCERR" : "SIGSEGV/MAPERR";
    return "other";
}

static int32_t pread32(int fd, off_t off)
{
    int32_t v = -1;
    CHECK(pread(fd, &v, 4, off) == 4, "pread at %ld", (long)off);
    return v;
}

static void pwrite32(int fd, int32_t v, off_t off)
{
    CHECK(pwrite(fd, &v, 4, off) == 4, "pwrite at %ld", (long)off);
}

/* The child's side of the exchange: answer each of n values the parent stores at word 0
 * with value*3+1 at word 16 (a store) and value+1000 at byte 128 (pwrite). */
static int child(int fd, volatile int32_t *m, int in, int out, int n)
{
    int bad = 0;
    for (int i = 0; i < n; i++) {
        char tok;
        if (read(in, &tok, 1) != 1)
            return 100;
        int32_t v = m[0];
        bad += pread32(fd, 0) != v;                 /* read(2) sees the parent's store */
        volatile uint64_t spin = 0;
        for (int j = 0; j < 20000; j++)
            spin += j;                              /* guest work: freeze points land here */
        m[16] = v * 3 + 1;
        pwrite32(fd, v + 1000, 128);
        if (write(out, "c", 1) != 1)
            return 101;
    }
    return bad;
}

static void exchange(int fd, volatile int32_t *m)
{
    int p2c[2], c2p[2], n = 24;
    CHECK(pipe(p2c) == 0 && pipe(c2p) == 0, "pipes");
    pid_t pid = fork();
    if (pid == 0) {
        close(p2c[1]);
        close(c2p[0]);
        _exit(child(fd, m, p2c[0], c2p[1], n));
    }
    close(p2c[0]);
    close(c2p[1]);
    int good = 0;
    uint32_t sum = 0;
    for (int i = 0; i < n; i++) {
        int32_t v = i * 7 + 5;
        m[0] = v;
        char tok;
        if (write(p2c[1], "p", 1) != 1 || read(c2p[0], &tok, 1) != 1)
            break;
        int32_t a = m[16], b = m[32];               /* byte 128 is word 32 */
        good += a == v * 3 + 1 && b == v + 1000;
        sum = sum * 31 + (uint32_t)a + (uint32_t)b;
    }
    int st = 0;
    waitpid(pid, &st, 0);
    printf("exchange: %d/%d rounds seen both ways, sum=%u, child exit=%d\n", good, n, sum,
           WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    close(p2c[1]);
    close(c2p[0]);
}

static void basics(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0, "open %s", path);
    CHECK(ftruncate(fd, 2 * PG) == 0, "ftruncate to two pages");
    char *p = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(p != MAP_FAILED, "mmap shared rw");
    exchange(fd, (volatile int32_t *)p);

    memcpy(p + 300, "through the map", 15);
    char buf[32] = {0};
    CHECK(pread(fd, buf, 15, 300) == 15, "pread");
    printf("read(2) sees a store: %s\n", buf);
    CHECK(pwrite(fd, "written", 7, PG + 10) == 7, "pwrite");
    printf("the map sees write(2): %.7s\n", p + PG + 10);
    lseek(fd, 500, SEEK_SET);
    CHECK(write(fd, "seq", 3) == 3, "write");
    printf("the map sees write at the offset: %.3s\n", p + 500);

    printf("msync: sync=%d async=%d invalidate=%d\n", msync(p, 2 * PG, MS_SYNC),
           msync(p, PG, MS_ASYNC), msync(p + PG, PG, MS_INVALIDATE));
    errno = 0;
    int r1 = msync(p, PG, MS_SYNC | MS_ASYNC);
    int e1 = errno;
    errno = 0;
    int r2 = msync(p + 1, PG, MS_SYNC);
    int e2 = errno;
    printf("msync bad: both=%d/%s unaligned=%d/%s\n", r1, e1 == EINVAL ? "EINVAL" : "?", r2,
           e2 == EINVAL ? "EINVAL" : "?");

    /* a store written back, then the map gone: the file keeps it */
    p[PG - 1] = 'Z';
    CHECK(munmap(p, 2 * PG) == 0, "munmap");
    char z = 0;
    CHECK(pread(fd, &z, 1, PG - 1) == 1, "pread after munmap");
    printf("after munmap the file holds: %c and %d\n", z, pread32(fd, 64));

    /* past the end of the file: SIGBUS; growth makes pages usable, shrinking takes them */
    CHECK(ftruncate(fd, PG + 100) == 0, "ftruncate to a page and 100 bytes");
    p = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(p != MAP_FAILED, "mmap past EOF");
    printf("partial page: read=%s tail=%d\n", probe(p + PG + 50, 0), p[PG + 200]);
    p[PG + 200] = 'T';                             /* in the page, past EOF: not in the file */
    struct stat_like { off_t size; } s1 = {lseek(fd, 0, SEEK_END)};
    printf("store past EOF in the last page: size=%ld\n", (long)s1.size);
    printf("past EOF: read=%s write=%s\n", probe(p + 2 * PG + 8, 0), probe(p + 3 * PG, 1));
    CHECK(ftruncate(fd, 4 * PG) == 0, "ftruncate grows");
    printf("after growing: read=%s write=%s value=%d tail=%d\n", probe(p + 3 * PG + 4, 0),
           probe(p + 3 * PG + 4, 1), p[3 * PG + 4], p[PG + 200]);
    printf("the file has the store: %d\n", (int)(pread32(fd, 3 * PG + 4) & 0xff));
    CHECK(pwrite(fd, "x", 1, 6 * PG) == 1, "pwrite grows the file");
    CHECK(ftruncate(fd, PG) == 0, "ftruncate shrinks");
    printf("after shrinking: page0=%s page1=%s\n", probe(p, 1), probe(p + PG, 0));
    CHECK(ftruncate(fd, 4 * PG) == 0, "ftruncate grows back");
    printf("grown back reads zeros: %d %d\n", p[PG + 10], p[3 * PG + 4]);

    /* part of a mapping: read-only, then gone */
    CHECK(mprotect(p + PG, PG, PROT_READ) == 0, "mprotect one page");
    printf("mprotect middle: page0=%s page1=%s page2=%s\n", probe(p, 1), probe(p + PG, 1),
           probe(p + 2 * PG, 1));
    CHECK(munmap(p, PG) == 0, "munmap the first page");
    p[2 * PG + 1] = 'M';
    printf("munmap head: page0=%s page2 in file=%c\n", probe(p, 0),
           (char)(pread32(fd, 2 * PG + 1) & 0xff));
    CHECK(munmap(p + PG, 3 * PG) == 0, "munmap the rest");

    /* mremap growing a shared file mapping keeps it the file's */
    char *q = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, PG);
    CHECK(q != MAP_FAILED, "mmap at an offset");
    q[1] = 'A';
    char *g = mremap(q, PG, 3 * PG, MREMAP_MAYMOVE);
    CHECK(g != MAP_FAILED, "mremap");
    g[2 * PG + 5] = 'B';
    printf("mremap: kept=%c file=%c\n", g[1], (char)(pread32(fd, 3 * PG + 5) & 0xff));
    CHECK(munmap(g, 3 * PG) == 0, "munmap the moved map");

    /* two mappings of one file, and read-only descriptors */
    int ro = open(path, O_RDONLY);
    errno = 0;
    void *bad = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0);
    printf("rw map of a read-only fd: %s\n", bad == MAP_FAILED && errno == EACCES ? "EACCES" : "?");
    char *r = mmap(NULL, PG, PROT_READ, MAP_SHARED, ro, 0);
    char *w = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(r != MAP_FAILED && w != MAP_FAILED, "two maps");
    w[40] = 'Q';
    CHECK(pwrite(fd, "W", 1, 41) == 1, "pwrite");
    printf("two maps: %c%c\n", r[40], r[41]);
    errno = 0;
    int mp = mprotect(r, PG, PROT_READ | PROT_WRITE);
    printf("mprotect rw of a read-only map: %d/%s\n", mp, errno == EACCES ? "EACCES" : "?");
    munmap(r, PG);
    munmap(w, PG);
    close(ro);
    close(fd);
}

static void anon_shared(void)
{
    volatile int *s = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(s != MAP_FAILED, "anonymous shared");
    pid_t pid = fork();
    if (pid == 0) {
        s[0] = 42;
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    printf("MAP_SHARED|MAP_ANONYMOUS across fork: %d\n", s[0]);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    PG = sysconf(_SC_PAGESIZE);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    char path[512];
    snprintf(path, sizeof path, "%s/shm.dat", argc > 1 ? argv[1] : ".");
    basics(path);
    CHECK(unlink(path) == 0, "unlink %s", path);
    anon_shared();
    printf(failures ? "shmfile FAILED (%d)\n" : "shmfile OK\n", failures);
    return failures != 0;
}
