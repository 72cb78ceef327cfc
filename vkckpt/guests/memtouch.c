/* memtouch: a memory-heavy guest for freeze/thaw benchmarks.
 * Usage: memtouch [MAP_MB=1024] [TOUCH_MB=256] [ROUNDS=2] [PERMILLE=10]
 * Maps MAP_MB MiB of anonymous memory and fills the first TOUCH_MB MiB (every page gets
 * non-zero, moderately compressible data), then ROUNDS times changes PERMILLE/1000 of the
 * touched pages (spread out, one word each).  Between phases it prints a line and sleeps
 * 1 ms, so a benchmark can freeze it there.  Ends with a checksum of the touched memory. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE 4096
#define WORDS (PAGE / 8)

static void pause_1ms(void)
{
    struct timespec ts = {0, 1000000};
    fflush(stdout);
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
    long map_mb = argc > 1 ? strtol(argv[1], NULL, 10) : 1024;
    long touch_mb = argc > 2 ? strtol(argv[2], NULL, 10) : 256;
    long rounds = argc > 3 ? strtol(argv[3], NULL, 10) : 2;
    long permille = argc > 4 ? strtol(argv[4], NULL, 10) : 10;
    if (map_mb < 1 || touch_mb < 0 || touch_mb > map_mb || rounds < 0 || permille < 0 ||
        permille > 1000) {
        puts("usage: memtouch [MAP_MB] [TOUCH_MB<=MAP_MB] [ROUNDS] [PERMILLE<=1000]");
        return 2;
    }
    size_t size = (size_t)map_mb << 20;
    uint64_t *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        puts("FAIL: mmap");
        return 1;
    }
    long pages = touch_mb * (1L << 20) / PAGE;
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (long p = 0; p < pages; p++) {
        uint64_t *pg = mem + p * WORDS;
        /* a quarter of the words random, a quarter small numbers, half zero */
        for (int w = 0; w < WORDS; w += 4) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            pg[w] = x;
            pg[w + 1] = (uint64_t)(p * WORDS + w) | 1;
        }
    }
    printf("touched %ld pages\n", pages);
    pause_1ms();
    long step = permille ? 1000 / permille : 0;
    for (long r = 1; r <= rounds; r++) {
        long changed = 0;
        for (long p = step ? r % step : pages; p < pages; p += step, changed++)
            mem[p * WORDS + 2] += (uint64_t)r * 0x100000001ULL;
        printf("round %ld changed %ld pages\n", r, changed);
        pause_1ms();
    }
    uint64_t sum = 0;
    for (long i = 0; i < pages * WORDS; i += 2)
        sum = sum * 31 + mem[i] + mem[i + 1];
    printf("checksum=%016llx\n", (unsigned long long)sum);
    munmap(mem, size);
    return 0;
}
