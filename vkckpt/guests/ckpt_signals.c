/* ckpt_signals: handlers for SIGCKPT (62) and SIGTHAW (63) count their invocations while a
 * deterministic work loop prints progress; at the end prints the counts.  Natively neither
 * signal fires.  Usage: ckpt_signals [ROUNDS] (default 10). */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SIGCKPT
#define SIGCKPT 62
#endif
#ifndef SIGTHAW
#define SIGTHAW 63
#endif

static volatile sig_atomic_t ckpt_count, thaw_count;

static void on_ckpt(int sig)
{
    (void)sig;
    ckpt_count++;
}

static void on_thaw(int sig)
{
    (void)sig;
    thaw_count++;
}

static int install(int sig, void (*fn)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    return sigaction(sig, &sa, NULL);
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? strtol(argv[1], NULL, 10) : 10;
    static uint32_t buf[1024];
    uint32_t x = 12345;

    if (install(SIGCKPT, on_ckpt) || install(SIGTHAW, on_thaw)) {
        puts("FAIL: sigaction");
        return 1;
    }
    printf("handlers installed for %d and %d\n", SIGCKPT, SIGTHAW);
    for (long r = 0; r < rounds; r++) {
        uint32_t sum = 0;
        for (int i = 0; i < 200000; i++) {
            x = x * 1103515245u + 12345u;
            buf[i & 1023] ^= x >> 3;
            sum += buf[(i * 7) & 1023];
        }
        printf("round %ld sum=%08x\n", r, sum);
    }
    printf("ckpt handler ran %d times\n", (int)ckpt_count);
    printf("thaw handler ran %d times\n", (int)thaw_count);
    return 0;
}
