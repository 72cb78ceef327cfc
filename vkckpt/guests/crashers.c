/* crashers: die (or survive) in one chosen way.  argv[1] selects the mode; every mode first
 * prints "crashers: MODE" and flushes, so a missing line means the program never started.
 *
 * Fatal modes (the status is the test):
 *   ill            ud2                                   -> SIGILL
 *   div            integer division by zero              -> SIGFPE
 *   stack          unbounded recursion                   -> SIGSEGV
 *   wild           jump into a readable, non-executable page -> SIGSEGV
 *   wild_unmapped  call through a pointer to unmapped memory  -> SIGSEGV
 *   abort          abort()                               -> SIGABRT
 *   int3           a breakpoint instruction              -> SIGTRAP
 *   segv_blocked   fault with SIGSEGV blocked            -> SIGSEGV (the kernel forces it)
 *   segv_ignored   fault with SIGSEGV ignored            -> SIGSEGV
 *   nested         the SIGSEGV handler itself faults     -> SIGSEGV
 *   priv           a privileged instruction (cli)        -> SIGSEGV (#GP in user mode)
 *   misaligned_sse movaps from a misaligned address      -> SIGSEGV (#GP)
 *   bad_sigreturn  rt_sigreturn on a frame of 0x41 bytes (no signal was delivered) -> SIGSEGV
 *
 * Surviving modes (exit 0, output is the test):
 *   handled        SIGSEGV handler + siglongjmp, three faults (NULL store, PROT_NONE load,
 *                  store to a read-only page), prints the count
 *   handled_info   as handled, and prints si_signo/si_code/si_addr of each fault
 *   fpe_handled    SIGFPE handler + siglongjmp, three divisions by zero, count and si_code
 *   stack_handled  stack overflow caught by a SIGSEGV handler on an alternate stack */
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile int zero;
static volatile long sink;

static long recurse(long depth)
{
    volatile char pad[1024];
    pad[0] = (char)depth;
    pad[sizeof pad - 1] = (char)depth;
    long r = recurse(depth + 1);
    return r + pad[0] + pad[sizeof pad - 1]; /* not a tail call */
}

static void die_ill(void)
{
    __asm__ volatile("ud2");
}

/* idiv by b: in asm so that no compiler can turn the division into something else */
static long divide(long a, long b)
{
    __asm__ volatile("cqto\n\tidivq %[d]" : "+a"(a) : [d] "r"(b) : "rdx", "cc");
    return a;
}

static void die_div(void)
{
    sink = divide(42, zero);
}

static void die_wild(void)
{
    unsigned char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                               -1, 0);
    if (page == MAP_FAILED)
        exit(3);
    page[0] = 0xc3; /* ret: would "work" if the page were executable */
    ((void (*)(void))page)();
}

static void die_wild_unmapped(void)
{
    void (*volatile fn)(void) = (void (*)(void))0x10;
    fn();
}

static void die_priv(void)
{
    __asm__ volatile("cli");
}

static void die_misaligned_sse(void)
{
    static char buf[64] __attribute__((aligned(16)));
    __asm__ volatile("movaps 1(%0), %%xmm0" : : "r"(buf) : "xmm0");
}

static void die_bad_sigreturn(void)
{
    __asm__ volatile("sub $2048, %%rsp\n\t"
                     "mov %%rsp, %%rdi\n\t"
                     "mov $0x4141414141414141, %%rax\n\t"
                     "mov $256, %%ecx\n\t"
                     "rep stosq\n\t"
                     "mov $15, %%eax\n\t" /* SYS_rt_sigreturn */
                     "syscall\n\t"
                     "add $2048, %%rsp"
                     :
                     :
                     : "rax", "rcx", "rdi", "r11", "memory");
}

static void die_int3(void)
{
    __asm__ volatile("int3");
}

static void die_segv_blocked(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGSEGV);
    sigprocmask(SIG_BLOCK, &s, NULL);
    *(volatile int *)0 = 1;
}

static void die_segv_ignored(void)
{
    signal(SIGSEGV, SIG_IGN);
    *(volatile int *)0 = 1;
}

static void nested_handler(int sig)
{
    (void)sig;
    static const char msg[] = "in handler, faulting again\n";
    write(1, msg, sizeof msg - 1);
    *(volatile int *)8 = 2;
}

static void die_nested(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = nested_handler;
    sigaction(SIGSEGV, &sa, NULL);
    *(volatile int *)0 = 1;
}

/* ---- surviving modes ---- */

static sigjmp_buf env;
static volatile sig_atomic_t caught;
static volatile int last_signo, last_code;
static void *volatile last_addr;

static void jump_handler(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    caught++;
    last_signo = sig;
    last_code = si->si_code;
    last_addr = si->si_addr;
    siglongjmp(env, 1);
}

static void install(int sig, int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = jump_handler;
    sa.sa_flags = SA_SIGINFO | flags;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
}

static int survive_segv(int info)
{
    char *area = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED)
        return 3;
    char *none = area, *ro = area + 4096;
    mprotect(none, 4096, PROT_NONE);
    mprotect(ro, 4096, PROT_READ);
    struct {
        const char *what;
        char *addr;
    } faults[3] = {{"store NULL", NULL}, {"load PROT_NONE", none + 16}, {"store read-only", ro + 32}};
    install(SIGSEGV, 0);
    for (int i = 0; i < 3; i++) {
        if (sigsetjmp(env, 1) == 0) {
            if (i == 1)
                sink = *(volatile char *)faults[i].addr;
            else
                *(volatile char *)faults[i].addr = 1;
            printf("%s: no fault?!\n", faults[i].what);
        } else if (info) {
            printf("%s: signo=%d code=%d addr_ok=%d\n", faults[i].what, last_signo, last_code,
                   last_addr == faults[i].addr);
        }
    }
    /* the mask was restored by siglongjmp: SIGSEGV is not blocked any more */
    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    printf("caught %d SIGSEGV, blocked after=%d\n", (int)caught, sigismember(&cur, SIGSEGV));
    return caught == 3 ? 0 : 1;
}

static int survive_fpe(void)
{
    install(SIGFPE, 0);
    for (int i = 0; i < 3; i++) {
        if (sigsetjmp(env, 1) == 0) {
            sink = divide(i + 1, zero);
            printf("division %d: no fault?!\n", i);
        }
    }
    printf("caught %d SIGFPE, code=%d (FPE_INTDIV=%d)\n", (int)caught, last_code, FPE_INTDIV);
    return caught == 3 ? 0 : 1;
}

static int survive_stack(void)
{
    static char alt[64 * 1024];
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0)
        return 3;
    install(SIGSEGV, SA_ONSTACK);
    if (sigsetjmp(env, 1) == 0) {
        sink = recurse(0);
        printf("recursion ended?!\n");
        return 1;
    }
    char here;
    int on_alt = (uintptr_t)&here >= (uintptr_t)alt && (uintptr_t)&here < (uintptr_t)alt + sizeof alt;
    printf("caught stack overflow: signo=%d, back on the main stack=%d\n", last_signo, !on_alt);
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    printf("crashers: %s\n", mode);
    fflush(stdout);
    if (!strcmp(mode, "ill"))
        die_ill();
    else if (!strcmp(mode, "div"))
        die_div();
    else if (!strcmp(mode, "stack"))
        sink = recurse(0);
    else if (!strcmp(mode, "wild"))
        die_wild();
    else if (!strcmp(mode, "wild_unmapped"))
        die_wild_unmapped();
    else if (!strcmp(mode, "abort"))
        abort();
    else if (!strcmp(mode, "int3"))
        die_int3();
    else if (!strcmp(mode, "segv_blocked"))
        die_segv_blocked();
    else if (!strcmp(mode, "segv_ignored"))
        die_segv_ignored();
    else if (!strcmp(mode, "nested"))
        die_nested();
    else if (!strcmp(mode, "bad_sigreturn"))
        die_bad_sigreturn();
    else if (!strcmp(mode, "priv"))
        die_priv();
    else if (!strcmp(mode, "misaligned_sse"))
        die_misaligned_sse();
    else if (!strcmp(mode, "handled"))
        return survive_segv(0);
    else if (!strcmp(mode, "handled_info"))
        return survive_segv(1);
    else if (!strcmp(mode, "fpe_handled"))
        return survive_fpe();
    else if (!strcmp(mode, "stack_handled"))
        return survive_stack();
    else {
        printf("unknown mode\n");
        return 2;
    }
    printf("still alive?!\n");
    return 1;
}
