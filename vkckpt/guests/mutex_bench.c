/* mutex_bench: 4 threads x 100000 lock/increment/unlock of one mutex; prints the total. */
#include <pthread.h>
#include <stdio.h>

#define NTHREADS 4
#define ITERS 100000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;

static void *worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < ITERS; i++) {
        pthread_mutex_lock(&lock);
        counter++;
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

int main(void)
{
    pthread_t t[NTHREADS];

    for (int i = 0; i < NTHREADS; i++)
        if (pthread_create(&t[i], NULL, worker, NULL) != 0) {
            puts("FAIL: pthread_create");
            return 1;
        }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    printf("total=%ld\n", counter);
    return counter == (long)NTHREADS * ITERS ? 0 : 1;
}
