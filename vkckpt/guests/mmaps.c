/* mmaps: anonymous mmap + patterns, munmap of a middle page, mprotect read-only and back
 * (faults caught with a SIGSEGV handler and siglongjmp), MAP_FIXED over an existing mapping,
 * a file-backed MAP_PRIVATE mapping of a file written in argv[1] (default "."), raw brk, and
 * malloc of small and large blocks.  Exit 0 iff every check passed. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static int failures;

#define CHECK(cond, ...)                        \
    do {                                        \
        if (!(cond)) {                          \
            printf("FAIL: " __VA_ARGS__);       \
            putchar('\n');                      \
            failures++;                         \
        }                                       \
    } while (0)

static long PG;

/* ---- fault probing ---- */

static sigjmp_buf probe_env;
static volatile int fault_code;
static void *volatile fault_addr;

static void segv_handler(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    fault_code = si->si_code;
    fault_addr = si->si_addr;
    siglongjmp(probe_env, 1);
}

/* Returns 0 if the access succeeded, else the SIGSEGV si_code (checking si_addr). */
static int probe(volatile char *p, int write)
{
    fault_code = 0;
    fault_addr = NULL;
    if (sigsetjmp(probe_env, 1) == 0) {
        if (write)
            *p = 1;
        else
            (void)*p;
        return 0;
    }
    CHECK(fault_addr == (void *)p, "si_addr matches the faulting address");
    return fault_code;
}

static const char *segv_name(int code)
{
    return code == 0 ? "ok" : code == SEGV_MAPERR ? "MAPERR" : code == SEGV_ACCERR ? "ACCERR"
                                                                                  : "other";
}

static uint32_t page_sum(const unsigned char *p)
{
    uint32_t s = 0;
    for (long i = 0; i < PG; i++)
        s = s * 33 + p[i];
    return s;
}

static void fill_page(unsigned char *p, int seed)
{
    for (long i = 0; i < PG; i++)
        p[i] = (unsigned char)(seed * 7 + i * 13);
}

static void test_anon(void)
{
    enum { NP = 16 };
    unsigned char *m = mmap(NULL, NP * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                            -1, 0);
    CHECK(m != MAP_FAILED, "mmap anon");
    if (m == MAP_FAILED)
        return;
    int zero = 1;
    for (long i = 0; i < NP * PG; i++)
        zero &= m[i] == 0;
    CHECK(zero, "fresh anonymous memory is zero");
    uint32_t sums[NP], total = 0;
    for (int p = 0; p < NP; p++) {
        fill_page(m + p * PG, p);
        sums[p] = page_sum(m + p * PG);
        total ^= sums[p];
    }
    printf("anon: pages=%d zero=%d xor=%08x\n", NP, zero, total);

    CHECK(munmap(m + 8 * PG, PG) == 0, "munmap middle page");
    int intact = 1;
    for (int p = 0; p < NP; p++)
        if (p != 8)
            intact &= page_sum(m + p * PG) == sums[p];
    int code = probe((volatile char *)(m + 8 * PG + 5), 0);
    printf("munmap middle: others_intact=%d hole=%s\n", intact, segv_name(code));
    CHECK(intact, "pages around the hole");
    CHECK(code == SEGV_MAPERR, "hole faults with SEGV_MAPERR");

    CHECK(mprotect(m, 4 * PG, PROT_READ) == 0, "mprotect RO");
    int rd = probe((volatile char *)(m + PG), 0);
    int wr = probe((volatile char *)(m + PG + 3), 1);
    CHECK(page_sum(m + PG) == sums[1], "RO contents");
    CHECK(mprotect(m, 4 * PG, PROT_READ | PROT_WRITE) == 0, "mprotect RW");
    int wr2 = probe((volatile char *)(m + PG + 3), 1);
    printf("mprotect: ro_read=%s ro_write=%s rw_write=%s\n", segv_name(rd), segv_name(wr),
           segv_name(wr2));
    CHECK(rd == 0 && wr == SEGV_ACCERR && wr2 == 0, "mprotect semantics");
    CHECK(m[PG + 3] == 1, "write after mprotect RW landed");

    CHECK(munmap(m, NP * PG) == 0, "munmap all (with hole)");
    code = probe((volatile char *)m, 0);
    CHECK(code == SEGV_MAPERR, "unmapped region faults");
}

static void test_fixed(void)
{
    unsigned char *m = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                            -1, 0);
    CHECK(m != MAP_FAILED, "mmap for MAP_FIXED");
    if (m == MAP_FAILED)
        return;
    memset(m, 0xAA, 4 * PG);
    unsigned char *f = mmap(m + PG, 2 * PG, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    CHECK(f == m + PG, "MAP_FIXED address");
    int outer = 1, inner = 1;
    for (long i = 0; i < PG; i++) {
        outer &= m[i] == 0xAA && m[3 * PG + i] == 0xAA;
        inner &= m[PG + i] == 0 && m[2 * PG + i] == 0;
    }
    printf("map_fixed: replaced_zeroed=%d neighbours_kept=%d\n", inner, outer);
    CHECK(inner && outer, "MAP_FIXED semantics");
    munmap(m, 4 * PG);
}

static void test_file(const char *dir)
{
    char path[512];
    enum { FSIZE = 10000 };
    static unsigned char data[FSIZE];

    snprintf(path, sizeof path, "%s/vkckpt-mmaps.dat", dir);
    int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
    CHECK(fd >= 0, "create data file");
    if (fd < 0)
        return;
    for (int i = 0; i < FSIZE; i++)
        data[i] = (unsigned char)(i * 31 + (i >> 8));
    CHECK(write(fd, data, FSIZE) == FSIZE, "write data file");

    long len = (FSIZE + PG - 1) / PG * PG;
    unsigned char *m = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    CHECK(m != MAP_FAILED, "mmap file");
    if (m != MAP_FAILED) {
        int same = memcmp(m, data, FSIZE) == 0, tail_zero = 1;
        for (long i = FSIZE; i < len; i++)
            tail_zero &= m[i] == 0;
        m[0] ^= 0xFF; /* private copy-on-write: the file must not change */
        m[FSIZE - 1] ^= 0xFF;
        unsigned char b0 = 0, b1 = 0;
        CHECK(pread(fd, &b0, 1, 0) == 1 && pread(fd, &b1, 1, FSIZE - 1) == 1, "pread");
        int file_unchanged = b0 == data[0] && b1 == data[FSIZE - 1];
        uint32_t s = 0;
        for (int i = 0; i < FSIZE; i++)
            s = s * 131 + m[i];
        printf("file map: contents_match=%d tail_zero=%d private=%d sum=%08x\n", same, tail_zero,
               file_unchanged, s);
        CHECK(same && tail_zero && file_unchanged, "MAP_PRIVATE file mapping");
        munmap(m, (size_t)len);
    }
    /* An offset mapping of the second page. */
    m = mmap(NULL, (size_t)PG, PROT_READ, MAP_PRIVATE, fd, PG);
    CHECK(m != MAP_FAILED && memcmp(m, data + PG, (size_t)PG) == 0, "offset file mapping");
    if (m != MAP_FAILED)
        munmap(m, (size_t)PG);
    close(fd);
    CHECK(unlink(path) == 0, "unlink data file");
}

static void test_brk_malloc(void)
{
    /* musl's sbrk() only supports 0, so use the raw syscall. */
    uintptr_t cur = (uintptr_t)syscall(SYS_brk, 0);
    uintptr_t want = cur + 16 * PG;
    uintptr_t got = (uintptr_t)syscall(SYS_brk, want);
    int grew = got == want;
    if (grew) {
        memset((void *)cur, 0x5A, 16 * PG);
        CHECK(((unsigned char *)cur)[16 * PG - 1] == 0x5A, "brk memory writable");
    }
    uintptr_t back = (uintptr_t)syscall(SYS_brk, cur);
    printf("brk: grew=%d shrank=%d\n", grew, back == cur);
    CHECK(grew && back == cur, "brk");

    enum { NSMALL = 2000 };
    static unsigned char *small[NSMALL];
    uint64_t sum = 0;
    for (int i = 0; i < NSMALL; i++) {
        size_t sz = 16 + (size_t)(i * 37 % 200);
        small[i] = malloc(sz);
        CHECK(small[i] != NULL, "malloc small");
        memset(small[i], i & 0xff, sz);
    }
    for (int i = 0; i < NSMALL; i += 2)
        free(small[i]);
    for (int i = 1; i < NSMALL; i += 2)
        sum += small[i][0] + small[i][16 + (size_t)(i * 37 % 200) - 1];
    for (int i = 1; i < NSMALL; i += 2)
        free(small[i]);

    size_t big_sizes[] = {1 << 20, 3 << 20, 8 << 20};
    uint64_t bigsum = 0;
    for (int k = 0; k < 3; k++) {
        unsigned char *p = malloc(big_sizes[k]);
        CHECK(p != NULL, "malloc large");
        if (!p)
            continue;
        for (size_t i = 0; i < big_sizes[k]; i += 4096)
            p[i] = (unsigned char)(i >> 12);
        for (size_t i = 0; i < big_sizes[k]; i += 4096)
            bigsum += p[i];
        p = realloc(p, big_sizes[k] * 2);
        CHECK(p != NULL && p[4096] == 1, "realloc large");
        free(p);
    }
    printf("malloc: small_sum=%llu large_sum=%llu\n", (unsigned long long)sum,
           (unsigned long long)bigsum);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    struct sigaction sa;

    PG = sysconf(_SC_PAGESIZE);
    printf("page size ok=%d\n", PG == 4096);
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = segv_handler;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGSEGV, &sa, NULL) == 0, "sigaction SIGSEGV");

    test_anon();
    test_fixed();
    test_file(dir);
    test_brk_malloc();
    printf("%s\n", failures ? "mmaps FAILED" : "mmaps OK");
    return failures ? 1 : 0;
}
