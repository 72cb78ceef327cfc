/* compute_mt: NTHREADS (default 4) threads each run the compute loop (xorshift, stores into a
 * per-thread array, loads) for SCALE x 2.5M iterations, with no system calls while they work.
 * Usage: compute_mt [NTHREADS=4] [SCALE=1].  Prints each thread's checksum. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define N 4096
#define MAXT 64

struct work {
    long iters;
    uint64_t seed;
    uint64_t acc;
    uint32_t arr[N];
};

static struct work works[MAXT];

static void *worker(void *p)
{
    struct work *w = p;
    uint64_t x = w->seed, acc = 0;
    uint32_t mix = 1;

    for (int i = 0; i < N; i++)
        w->arr[i] = (uint32_t)i * 2654435761u;
    for (long i = 0; i < w->iters; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint32_t idx = (uint32_t)(x >> 20) & (N - 1);
        w->arr[idx] += (uint32_t)x ^ mix;
        mix = mix * 1664525u + 1013904223u;
        acc += w->arr[(idx + 1) & (N - 1)];
    }
    w->acc = acc;
    return NULL;
}

int main(int argc, char **argv)
{
    long nthreads = argc > 1 ? strtol(argv[1], NULL, 10) : 4;
    long scale = argc > 2 ? strtol(argv[2], NULL, 10) : 1;
    pthread_t t[MAXT];

    if (nthreads < 1 || nthreads > MAXT || scale < 0) {
        puts("usage: compute_mt [NTHREADS<=64] [SCALE]");
        return 2;
    }
    for (long i = 0; i < nthreads; i++) {
        works[i].iters = 2500000L * scale;
        works[i].seed = 0x9e3779b97f4a7c15ULL + (uint64_t)i * 0x632be59bd9b4e019ULL;
        if (pthread_create(&t[i], NULL, worker, &works[i]) != 0) {
            puts("FAIL: pthread_create");
            return 1;
        }
    }
    uint64_t all = 0;
    for (long i = 0; i < nthreads; i++) {
        pthread_join(t[i], NULL);
        printf("thread %ld acc=%016llx\n", i, (unsigned long long)works[i].acc);
        all = all * 31 + works[i].acc;
    }
    printf("threads=%ld iterations=%ld total=%016llx\n", nthreads, works[0].iters,
           (unsigned long long)all);
    return 0;
}
