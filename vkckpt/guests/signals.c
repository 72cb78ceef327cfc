/* signals: SA_SIGINFO (raise / kill), blocking + sigpending, sigsuspend, SIG_IGN, sigaltstack
 * with SA_ONSTACK, SA_RESETHAND, the handler's signal mask, and FP/SSE state (xmm registers and
 * MXCSR) surviving a handler that clobbers them.  No timers.  Exit 0 iff every check passed. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
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

static const char *code_name(int code)
{
    switch (code) {
    case SI_USER: return "SI_USER";
    case SI_TKILL: return "SI_TKILL";
    case SI_QUEUE: return "SI_QUEUE";
    case SI_KERNEL: return "SI_KERNEL";
    default: return "other";
    }
}

/* ---- SA_SIGINFO ---- */

static volatile sig_atomic_t usr1_count;
static volatile int last_signo, last_code, last_pid, last_uid;
static volatile int mask_has_usr1, mask_has_usr2;

static void info_handler(int sig, siginfo_t *si, void *uc)
{
    sigset_t cur;
    (void)uc;
    usr1_count++;
    last_signo = si->si_signo;
    last_code = si->si_code;
    last_pid = si->si_pid;
    last_uid = (int)si->si_uid;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    mask_has_usr1 = sigismember(&cur, sig);
    mask_has_usr2 = sigismember(&cur, SIGUSR2);
}

static void test_siginfo(void)
{
    struct sigaction sa;
    sigset_t cur;

    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = info_handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGUSR2);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction SIGUSR1");

    raise(SIGUSR1);
    printf("raise: count=%d signo=%d code=%s\n", (int)usr1_count, last_signo,
           code_name(last_code));
    CHECK(usr1_count == 1 && last_signo == SIGUSR1 && last_code == SI_TKILL, "raise siginfo");
    printf("handler mask: self=%d sa_mask=%d\n", mask_has_usr1, mask_has_usr2);
    CHECK(mask_has_usr1 == 1 && mask_has_usr2 == 1, "mask inside handler");
    sigprocmask(SIG_BLOCK, NULL, &cur);
    CHECK(!sigismember(&cur, SIGUSR1) && !sigismember(&cur, SIGUSR2), "mask restored");

    kill(getpid(), SIGUSR1);
    printf("kill: count=%d signo=%d code=%s pid_ok=%d uid_ok=%d\n", (int)usr1_count, last_signo,
           code_name(last_code), last_pid == getpid(), last_uid == (int)getuid());
    CHECK(usr1_count == 2 && last_code == SI_USER, "kill siginfo");
    CHECK(last_pid == getpid() && last_uid == (int)getuid(), "kill si_pid/si_uid");
}

/* ---- blocking, sigpending, sigsuspend, SIG_IGN ---- */

static volatile sig_atomic_t usr2_count;

static void usr2_handler(int sig)
{
    (void)sig;
    usr2_count++;
}

static void test_blocking(void)
{
    sigset_t block, old, pend, empty;
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = usr2_handler;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR2, &sa, NULL) == 0, "sigaction SIGUSR2");

    sigemptyset(&block);
    sigaddset(&block, SIGUSR2);
    sigprocmask(SIG_BLOCK, &block, &old);
    raise(SIGUSR2);
    sigpending(&pend);
    int pending = sigismember(&pend, SIGUSR2);
    int before = usr2_count;
    sigprocmask(SIG_SETMASK, &old, NULL);
    int after = usr2_count;
    sigpending(&pend);
    printf("blocked: pending=%d ran_while_blocked=%d ran_after_unblock=%d still_pending=%d\n",
           pending, before, after, sigismember(&pend, SIGUSR2));
    CHECK(pending == 1 && before == 0 && after == 1, "blocked SIGUSR2");

    /* sigsuspend with a pending blocked signal returns at once with EINTR. */
    int c0 = usr1_count;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, &old);
    raise(SIGUSR1);
    sigemptyset(&empty);
    int r = sigsuspend(&empty);
    int e = errno;
    int ran = usr1_count - c0;
    sigset_t now;
    sigprocmask(SIG_BLOCK, NULL, &now);
    sigprocmask(SIG_SETMASK, &old, NULL);
    printf("sigsuspend: ret=%d eintr=%d handled=%d mask_restored=%d\n", r, e == EINTR, ran,
           sigismember(&now, SIGUSR1));
    CHECK(r == -1 && e == EINTR && ran == 1 && sigismember(&now, SIGUSR1), "sigsuspend");

    /* An ignored signal is discarded, not left pending. */
    signal(SIGUSR2, SIG_IGN);
    int c2 = usr2_count;
    raise(SIGUSR2);
    sigpending(&pend);
    printf("ignored: handled=%d pending=%d\n", usr2_count - c2, sigismember(&pend, SIGUSR2));
    CHECK(usr2_count == c2 && !sigismember(&pend, SIGUSR2), "SIG_IGN");
}

/* ---- sigaltstack + SA_ONSTACK ---- */

#define ALTSZ (64 * 1024)
static char altstack[ALTSZ] __attribute__((aligned(64)));
static volatile int on_alt, alt_flag_onstack, alt_runs;

static void alt_handler(int sig)
{
    char local;
    stack_t cur;
    (void)sig;
    uintptr_t a = (uintptr_t)&local;
    on_alt = a >= (uintptr_t)altstack && a < (uintptr_t)altstack + ALTSZ;
    alt_flag_onstack = sigaltstack(NULL, &cur) == 0 && (cur.ss_flags & SS_ONSTACK) != 0;
    alt_runs++;
}

static void test_altstack(void)
{
    stack_t ss, cur;
    struct sigaction sa;
    char local;

    memset(&ss, 0, sizeof ss);
    ss.ss_sp = altstack;
    ss.ss_size = ALTSZ;
    CHECK(sigaltstack(&ss, NULL) == 0, "sigaltstack");
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = alt_handler;
    sa.sa_flags = SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGWINCH, &sa, NULL) == 0, "sigaction SIGWINCH");
    raise(SIGWINCH);
    sigaltstack(NULL, &cur);
    int main_on_alt = (uintptr_t)&local >= (uintptr_t)altstack &&
                      (uintptr_t)&local < (uintptr_t)altstack + ALTSZ;
    printf("altstack: runs=%d on_alt=%d ss_onstack=%d after_onstack=%d main_on_alt=%d\n",
           alt_runs, on_alt, alt_flag_onstack, (cur.ss_flags & SS_ONSTACK) != 0, main_on_alt);
    CHECK(alt_runs == 1 && on_alt && alt_flag_onstack, "handler on alternate stack");
    CHECK(!(cur.ss_flags & SS_ONSTACK) && !main_on_alt, "back on the main stack");

    /* Without SA_ONSTACK the handler runs on the normal stack. */
    sa.sa_flags = 0;
    sigaction(SIGWINCH, &sa, NULL);
    raise(SIGWINCH);
    printf("no SA_ONSTACK: runs=%d on_alt=%d\n", alt_runs, on_alt);
    CHECK(alt_runs == 2 && !on_alt, "handler on normal stack");

    ss.ss_flags = SS_DISABLE;
    CHECK(sigaltstack(&ss, NULL) == 0, "disable sigaltstack");
}

/* ---- SA_RESETHAND ---- */

static volatile sig_atomic_t reset_runs;

static void reset_handler(int sig)
{
    (void)sig;
    reset_runs++;
}

static void test_resethand(void)
{
    struct sigaction sa, now;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = reset_handler;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR2, &sa, NULL) == 0, "sigaction SA_RESETHAND");
    raise(SIGUSR2);
    sigaction(SIGUSR2, NULL, &now);
    int is_dfl = now.sa_handler == SIG_DFL;
    printf("resethand: runs=%d reset_to_default=%d\n", (int)reset_runs, is_dfl);
    CHECK(reset_runs == 1 && is_dfl, "SA_RESETHAND");
}

/* ---- floating point / SSE state across a handler ---- */

static volatile double fp_result;
static volatile int fp_runs;

static unsigned get_mxcsr(void)
{
    unsigned m;
    __asm__ volatile("stmxcsr %0" : "=m"(m));
    return m;
}

static void set_mxcsr(unsigned m)
{
    __asm__ volatile("ldmxcsr %0" : : "m"(m));
}

static void fp_handler(int sig)
{
    static const double junk[8] = {-1, -2, -3, -4, -5, -6, -7, -8};
    double s = 0.0;
    (void)sig;
    /* Handler starts with default MXCSR; set round-toward-zero and leave it set. */
    set_mxcsr((get_mxcsr() & ~0x6000u) | 0x6000u);
    for (int k = 1; k <= 1000; k++)
        s += 1.0 / ((double)k * (double)k);
    fp_result = s;
    __asm__ volatile("movsd 0(%0), %%xmm8\n\tmovsd 8(%0), %%xmm9\n\t"
                     "movsd 16(%0), %%xmm10\n\tmovsd 24(%0), %%xmm11\n\t"
                     "movsd 32(%0), %%xmm12\n\tmovsd 40(%0), %%xmm13\n\t"
                     "movsd 48(%0), %%xmm14\n\tmovsd 56(%0), %%xmm15\n\t"
                     "xorpd %%xmm0, %%xmm0\n\txorpd %%xmm1, %%xmm1"
                     :
                     : "r"(junk)
                     : "xmm0", "xmm1", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13",
                       "xmm14", "xmm15", "memory");
    fp_runs++;
}

static void test_fp(void)
{
    struct sigaction sa;
    static const double in[8] = {1.5, 2.25, 3.125, 4.0625, -0.5, 1e100, 3.141592653589793,
                                 2.718281828459045};
    double out[8];

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fp_handler;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction fp");

    unsigned mx0 = get_mxcsr();
    /* Values live in C variables across raise() ... */
    volatile double a = 1.0 / 3.0, b = 2.0 / 7.0;
    double x = a * 3.0 + b, y = a - b * 0.5;
    raise(SIGUSR1);
    double z = x * y + a / b;
    int c_ok = x == a * 3.0 + b && y == a - b * 0.5 && z == (a * 3.0 + b) * (a - b * 0.5) + a / b;

    /* ... and live in xmm8-15 across a raw tkill syscall that delivers the signal. */
    long ret = SYS_tkill;
    long tid = syscall(SYS_gettid);
    __asm__ volatile("movsd 0(%[in]), %%xmm8\n\tmovsd 8(%[in]), %%xmm9\n\t"
                     "movsd 16(%[in]), %%xmm10\n\tmovsd 24(%[in]), %%xmm11\n\t"
                     "movsd 32(%[in]), %%xmm12\n\tmovsd 40(%[in]), %%xmm13\n\t"
                     "movsd 48(%[in]), %%xmm14\n\tmovsd 56(%[in]), %%xmm15\n\t"
                     "syscall\n\t"
                     "movsd %%xmm8, 0(%[out])\n\tmovsd %%xmm9, 8(%[out])\n\t"
                     "movsd %%xmm10, 16(%[out])\n\tmovsd %%xmm11, 24(%[out])\n\t"
                     "movsd %%xmm12, 32(%[out])\n\tmovsd %%xmm13, 40(%[out])\n\t"
                     "movsd %%xmm14, 48(%[out])\n\tmovsd %%xmm15, 56(%[out])"
                     : "+a"(ret)
                     : "D"(tid), "S"((long)SIGUSR1), [in] "r"(in), [out] "r"(out)
                     : "rcx", "r11", "memory", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
                       "xmm13", "xmm14", "xmm15");
    int xmm_ok = ret == 0 && memcmp(in, out, sizeof in) == 0;
    /* Compare control bits only: main's own arithmetic sets the sticky exception flags. */
    unsigned mx1 = get_mxcsr() & ~0x3fu;
    mx0 &= ~0x3fu;

    printf("fp: handler_runs=%d result=%.12f c_values_ok=%d xmm_ok=%d mxcsr_ok=%d\n", fp_runs,
           fp_result, c_ok, xmm_ok, mx0 == mx1);
    CHECK(fp_runs == 2, "fp handler runs");
    CHECK(c_ok, "C doubles survived the handler");
    CHECK(xmm_ok, "xmm8-15 survived the handler");
    CHECK(mx0 == mx1, "MXCSR survived the handler");
}

int main(void)
{
    test_siginfo();
    test_blocking();
    test_altstack();
    test_resethand();
    test_fp();
    printf("%s\n", failures ? "signals FAILED" : "signals OK");
    return failures ? 1 : 0;
}
