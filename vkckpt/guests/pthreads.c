/* pthreads: mutex-protected counter, condvar bounded-buffer producer/consumer, __thread TLS
 * and pthread_join return values.  Prints totals; exit 0 iff every check passed. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#define NTHREADS 4
#define INCS 20000
#define NITEMS 1000
#define QCAP 8

static int failures;

#define CHECK(cond, ...)                        \
    do {                                        \
        if (!(cond)) {                          \
            printf("FAIL: " __VA_ARGS__);       \
            putchar('\n');                      \
            failures++;                         \
        }                                       \
    } while (0)

/* ---- counter under a mutex, plus per-thread TLS ---- */

static pthread_mutex_t counter_lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;

static __thread long tls_value = 1000; /* initialised TLS (.tdata) */
static __thread long tls_zero;         /* zero TLS (.tbss) */

struct worker_arg {
    int id;
    int tls_ok; /* written by the worker, read by main after join */
};

static void *counter_worker(void *p)
{
    struct worker_arg *a = p;
    int ok = tls_value == 1000 && tls_zero == 0;

    tls_value = a->id * 1000003L;
    tls_zero = a->id;
    for (int i = 0; i < INCS; i++) {
        pthread_mutex_lock(&counter_lock);
        counter++;
        pthread_mutex_unlock(&counter_lock);
        tls_zero += 2; /* other threads must never see this */
    }
    ok = ok && tls_value == a->id * 1000003L && tls_zero == a->id + 2L * INCS;
    a->tls_ok = ok;
    return (void *)(intptr_t)(100 + a->id);
}

/* ---- bounded buffer ---- */

static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_not_empty = PTHREAD_COND_INITIALIZER;
static pthread_cond_t q_not_full = PTHREAD_COND_INITIALIZER;
static int q_buf[QCAP];
static int q_head, q_len;

static void q_put(int v)
{
    pthread_mutex_lock(&q_lock);
    while (q_len == QCAP)
        pthread_cond_wait(&q_not_full, &q_lock);
    q_buf[(q_head + q_len) % QCAP] = v;
    q_len++;
    pthread_cond_signal(&q_not_empty);
    pthread_mutex_unlock(&q_lock);
}

static int q_get(void)
{
    pthread_mutex_lock(&q_lock);
    while (q_len == 0)
        pthread_cond_wait(&q_not_empty, &q_lock);
    int v = q_buf[q_head];
    q_head = (q_head + 1) % QCAP;
    q_len--;
    pthread_cond_signal(&q_not_full);
    pthread_mutex_unlock(&q_lock);
    return v;
}

static void *producer(void *p)
{
    (void)p;
    for (int i = 1; i <= NITEMS; i++)
        q_put(i);
    q_put(-1); /* end marker */
    return (void *)(intptr_t)NITEMS;
}

struct consumer_result {
    long count;
    uint64_t sum, weighted;
    int in_order;
};

static void *consumer(void *p)
{
    struct consumer_result *r = p;
    int expect = 1;

    r->in_order = 1;
    for (;;) {
        int v = q_get();
        if (v < 0)
            break;
        if (v != expect)
            r->in_order = 0;
        expect++;
        r->count++;
        r->sum += (uint64_t)v;
        r->weighted = r->weighted * 31 + (uint64_t)v * (uint64_t)v;
    }
    return r;
}

int main(void)
{
    pthread_t t[NTHREADS];
    struct worker_arg args[NTHREADS];
    long ret_sum = 0;

    tls_value = 7; /* main's TLS must not leak into threads */
    for (int i = 0; i < NTHREADS; i++) {
        args[i].id = i + 1;
        args[i].tls_ok = 0;
        CHECK(pthread_create(&t[i], NULL, counter_worker, &args[i]) == 0, "create %d", i);
    }
    for (int i = 0; i < NTHREADS; i++) {
        void *rv = NULL;
        CHECK(pthread_join(t[i], &rv) == 0, "join %d", i);
        CHECK((intptr_t)rv == 100 + i + 1, "thread %d returned %ld", i + 1, (long)(intptr_t)rv);
        CHECK(args[i].tls_ok, "thread %d saw wrong TLS values", i + 1);
        ret_sum += (long)(intptr_t)rv;
    }
    CHECK(tls_value == 7 && tls_zero == 0, "main TLS clobbered");
    printf("counter=%ld (expected %d)\n", counter, NTHREADS * INCS);
    CHECK(counter == (long)NTHREADS * INCS, "counter");
    printf("join return sum=%ld\n", ret_sum);
    printf("tls ok=%d\n", args[0].tls_ok && args[1].tls_ok && args[2].tls_ok && args[3].tls_ok);

    pthread_t prod, cons;
    struct consumer_result res = {0};
    void *prv = NULL, *crv = NULL;
    CHECK(pthread_create(&cons, NULL, consumer, &res) == 0, "create consumer");
    CHECK(pthread_create(&prod, NULL, producer, NULL) == 0, "create producer");
    pthread_join(prod, &prv);
    pthread_join(cons, &crv);
    CHECK((intptr_t)prv == NITEMS, "producer return");
    CHECK(crv == &res, "consumer return");
    printf("queue items=%ld sum=%llu checksum=%016llx in_order=%d\n", res.count,
           (unsigned long long)res.sum, (unsigned long long)res.weighted, res.in_order);
    CHECK(res.count == NITEMS, "item count");
    CHECK(res.sum == (uint64_t)NITEMS * (NITEMS + 1) / 2, "item sum");
    CHECK(res.in_order, "items out of order");

    printf("%s\n", failures ? "pthreads FAILED" : "pthreads OK");
    return failures ? 1 : 0;
}
