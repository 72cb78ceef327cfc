/* cpufacts: print every CPU and host fact a guest can observe, so that two runs (and a run
 * frozen anywhere and thawed) can be compared byte for byte.
 *
 * rdtsc: deltas over a long loop (many time slices), a pair inside one basic block, across a
 * thread and a forked child, and against CLOCK_MONOTONIC; rdtscp's TSC_AUX; CPUID leaves 0,
 * 1, 7 and 0x80000000-0x80000004; rdrand/rdseed (values, or the SIGILL a CPU without them
 * raises, checked against CPUID); auxv, uname, sysinfo, CPU counts, clock_getres, times. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/random.h>
#include <sys/sysinfo.h>
#include <sys/times.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef AT_MINSIGSTKSZ
#define AT_MINSIGSTKSZ 51
#endif

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}

static inline uint64_t rdtscp(uint32_t *aux)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(*aux));
    return (uint64_t)hi << 32 | lo;
}

static void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
                     : "a"(leaf), "c"(sub));
}

static void show_cpuid(uint32_t leaf, uint32_t sub)
{
    uint32_t r[4];
    cpuid(leaf, sub, r);
    printf("cpuid %08x.%u: %08x %08x %08x %08x\n", leaf, sub, r[0], r[1], r[2], r[3]);
}

static volatile uint64_t shared_tsc;

static void *reader(void *arg)
{
    uint64_t before = *(uint64_t *)arg, now = rdtsc();
    shared_tsc = now;
    printf("thread: tsc after main's: %d\n", now > before);
    return NULL;
}

static sigjmp_buf on_ill;

static void ill(int sig)
{
    (void)sig;
    siglongjmp(on_ill, 1);
}

/* Run rdrand (seed=0) or rdseed (seed=1) into a 64-bit, a 32-bit and a 16-bit register. */
static void random_insn(const char *name, int seed, int advertised)
{
    uint64_t r64 = 0, r32 = 0, r16 = 0xffffffffffffffffull;
    unsigned char cf = 0;

    if (sigsetjmp(on_ill, 1)) {
        printf("%s: cpuid=%d SIGILL\n", name, advertised);
        return;
    }
    if (seed) {
        __asm__ volatile("rdseed %0; setc %1" : "=r"(r64), "=q"(cf) : : "cc");
        __asm__ volatile("rdseed %k0" : "+r"(r32) : : "cc");
        __asm__ volatile("rdseed %w0" : "+r"(r16) : : "cc");
    } else {
        __asm__ volatile("rdrand %0; setc %1" : "=r"(r64), "=q"(cf) : : "cc");
        __asm__ volatile("rdrand %k0" : "+r"(r32) : : "cc");
        __asm__ volatile("rdrand %w0" : "+r"(r16) : : "cc");
    }
    printf("%s: cpuid=%d cf=%d %016llx %016llx %016llx\n", name, advertised, cf,
           (unsigned long long)r64, (unsigned long long)r32, (unsigned long long)r16);
}

static void tsc_facts(long loops)
{
    uint64_t first = rdtsc(), prev = first, a, b;
    long back = 0, equal = 0;
    uint32_t aux = 0xdead;

    for (long i = 0; i < loops; i++) {
        uint64_t now = rdtsc();
        back += now < prev;
        equal += now == prev;
        prev = now;
    }
    printf("rdtsc: first=%llu after %ld reads +%llu, backwards=%ld equal=%ld\n",
           (unsigned long long)first, loops, (unsigned long long)(prev - first), back, equal);
    /* Two reads in one basic block, no branch between them. */
    __asm__ volatile("rdtsc; shl $32, %%rdx; or %%rdx, %%rax; mov %%rax, %%rsi;"
                     "rdtsc; shl $32, %%rdx; or %%rdx, %%rax"
                     : "=a"(b), "=S"(a) : : "rdx");
    printf("rdtsc: same block pair increases: %d\n", b > a);
    uint64_t t = rdtscp(&aux);
    printf("rdtscp: aux=%u after rdtsc: %d\n", aux, t > b);

    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t ns = (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec, tsc = rdtsc();
    printf("rdtsc: 3 GHz on CLOCK_MONOTONIC: %d\n", tsc >= 3 * ns && tsc - 3 * ns < 3000);

    pthread_t th;
    uint64_t before = rdtsc();
    pthread_create(&th, NULL, reader, &before);
    pthread_join(th, NULL);
    printf("main: tsc after thread's: %d\n", rdtsc() > shared_tsc);

    before = rdtsc();
    pid_t pid = fork();
    if (pid == 0) {
        printf("child: tsc after parent's: %d\n", rdtsc() > before);
        fflush(stdout);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    printf("parent: child exited %d\n", WEXITSTATUS(st));
}

static void host_facts(void)
{
    struct utsname u;
    uname(&u);
    printf("uname: %s %s %s %s %s\n", u.sysname, u.nodename, u.release, u.version, u.machine);
    const unsigned char *r = (const unsigned char *)getauxval(AT_RANDOM);
    printf("auxv: hwcap=%#lx hwcap2=%#lx platform=%s minsigstksz=%lu sysinfo_ehdr=%#lx "
           "execfn=%s random=", getauxval(AT_HWCAP), getauxval(AT_HWCAP2),
           (const char *)getauxval(AT_PLATFORM), getauxval(AT_MINSIGSTKSZ),
           getauxval(AT_SYSINFO_EHDR), (const char *)getauxval(AT_EXECFN));
    for (int i = 0; i < 16; i++)
        printf("%02x", r ? r[i] : 0);
    printf("\n");
    cpu_set_t set;
    CPU_ZERO(&set);
    sched_getaffinity(0, sizeof set, &set);
    printf("cpus: affinity=%d onln=%ld conf=%ld getcpu=%d\n", CPU_COUNT(&set),
           sysconf(_SC_NPROCESSORS_ONLN), sysconf(_SC_NPROCESSORS_CONF), sched_getcpu());
    struct sysinfo si;
    memset(&si, 0, sizeof si);
    int rc = sysinfo(&si);
    printf("sysinfo: rc=%d uptime=%ld totalram=%lu freeram=%lu procs=%u unit=%u\n", rc,
           si.uptime, si.totalram, si.freeram, si.procs, si.mem_unit);
    struct timespec res;
    clock_getres(CLOCK_MONOTONIC, &res);
    printf("clock_getres: %ld ns\n", res.tv_nsec);
    struct tms tm;
    clock_t c = times(&tm);
    printf("times: %ld %ld\n", (long)c, (long)tm.tms_utime);
    unsigned char buf[8];
    getrandom(buf, sizeof buf, 0);
    printf("getrandom: %02x%02x%02x%02x%02x%02x%02x%02x\n", buf[0], buf[1], buf[2], buf[3],
           buf[4], buf[5], buf[6], buf[7]);
}

int main(int argc, char **argv)
{
    uint32_t r[4];
    long loops = argc > 1 ? atol(argv[1]) : 20000;

    setvbuf(stdout, NULL, _IONBF, 0);
    signal(SIGILL, ill);
    show_cpuid(0, 0);
    show_cpuid(1, 0);
    show_cpuid(7, 0);
    for (uint32_t leaf = 0x80000000u; leaf <= 0x80000004u; leaf++)
        show_cpuid(leaf, 0);
    char brand[49] = {0};
    for (uint32_t i = 0; i < 3; i++) {
        cpuid(0x80000002u + i, 0, r);
        memcpy(brand + 16 * i, r, 16);
    }
    cpuid(0, 0, r);
    char vendor[13] = {0};
    memcpy(vendor, &r[1], 4);
    memcpy(vendor + 4, &r[3], 4);
    memcpy(vendor + 8, &r[2], 4);
    printf("vendor: %s brand: %s\n", vendor, brand);
    cpuid(1, 0, r);
    int has_rdrand = r[2] >> 30 & 1;
    cpuid(7, 0, r);
    int has_rdseed = r[1] >> 18 & 1;
    random_insn("rdrand", 0, has_rdrand);
    random_insn("rdseed", 1, has_rdseed);
    tsc_facts(loops);
    host_facts();
    return 0;
}
