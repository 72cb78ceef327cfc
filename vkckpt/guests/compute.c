/* compute: deterministic integer work (~50M simple ops at scale 1), prints checksums.
 * Usage: compute [SCALE]   (SCALE multiplies the iteration count; default 1). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define N 4096

static uint32_t arr[N];

int main(int argc, char **argv)
{
    long scale = argc > 1 ? strtol(argv[1], NULL, 10) : 1;
    if (scale < 0)
        scale = 1;
    long iters = 5000000L * scale;
    uint64_t x = 0x9e3779b97f4a7c15ULL, acc = 0;
    uint32_t mix = 1;

    for (int i = 0; i < N; i++)
        arr[i] = (uint32_t)i * 2654435761u;
    for (long i = 0; i < iters; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint32_t idx = (uint32_t)(x >> 20) & (N - 1);
        arr[idx] += (uint32_t)x ^ mix;
        mix = mix * 1664525u + 1013904223u;
        acc += arr[(idx + 1) & (N - 1)];
    }
    uint64_t sum = 0;
    for (int i = 0; i < N; i++)
        sum = sum * 31 + arr[i];
    printf("iterations=%ld\n", iters);
    printf("acc=%016llx\n", (unsigned long long)acc);
    printf("checksum=%016llx\n", (unsigned long long)sum);
    return 0;
}
