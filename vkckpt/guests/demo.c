/* demo: 4 worker threads compute in rounds and meet at a barrier; after each round the
 * main thread prints a line (flushed at once), so a freeze lands between visible lines. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#define THREADS 4
#define ROUNDS 8

static pthread_barrier_t start, done;
static uint64_t results[THREADS];
static __thread uint64_t tls_acc;

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    tls_acc = 0x9e3779b97f4a7c15ull * (uint64_t)(id + 1);
    for (int r = 0; r < ROUNDS; r++) {
        pthread_barrier_wait(&start);
        for (int i = 0; i < 60000; i++)
            tls_acc = (tls_acc ^ (tls_acc >> 29)) * 0xbf58476d1ce4e5b9ull + (uint64_t)i;
        results[id] = tls_acc;
        pthread_barrier_wait(&done);
    }
    return NULL;
}

int main(void)
{
    pthread_t t[THREADS];
    pthread_barrier_init(&start, NULL, THREADS + 1);
    pthread_barrier_init(&done, NULL, THREADS + 1);
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
    for (int r = 0; r < ROUNDS; r++) {
        pthread_barrier_wait(&start);
        pthread_barrier_wait(&done);
        uint64_t sum = 0;
        for (int i = 0; i < THREADS; i++)
            sum = sum * 31 + results[i];
        printf("round %d: %d threads agree on %016llx\n", r, THREADS, (unsigned long long)sum);
        fflush(stdout);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    puts("demo done");
    return 0;
}
