/* ptimers: POSIX timers -- SIGEV_SIGNAL with sigev_value and si_overrun counted over missed
 * periods, timer_getoverrun/gettime, SIGEV_THREAD_ID to one thread, the C library's
 * SIGEV_THREAD callbacks, SIGEV_NONE, a fork's child without its parent's timers and the
 * EINVAL cases.  Prints counts and booleans only. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SIGEV_THREAD_ID
#define SIGEV_THREAD_ID 4
#endif
#define MS 1000000L

static void nap(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * MS};
    nanosleep(&ts, NULL);
}

static int arm(timer_t t, long value_ms, long interval_ms)
{
    struct itimerspec its = {{interval_ms / 1000, (interval_ms % 1000) * MS},
                             {value_ms / 1000, (value_ms % 1000) * MS}};
    return timer_settime(t, 0, &its, NULL) < 0 ? errno : 0;
}

static long long ns_of(struct timespec ts)
{
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int wait_for(int sig, siginfo_t *si)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    return sigwaitinfo(&s, si);
}

static void errors(void)
{
    timer_t t;
    struct sigevent bad = {.sigev_notify = 99, .sigev_signo = SIGUSR1};
    struct sigevent badsig = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = 99};
    printf("bad clock=%d bad notify=%d bad signal=%d\n",
           timer_create(99, NULL, &t) < 0 ? errno : 0,
           timer_create(CLOCK_MONOTONIC, &bad, &t) < 0 ? errno : 0,
           timer_create(CLOCK_MONOTONIC, &badsig, &t) < 0 ? errno : 0);
}

static void signals(void)
{
    timer_t t;
    struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1,
                          .sigev_value.sival_int = 42};
    timer_create(CLOCK_MONOTONIC, &ev, &t);
    printf("first id=%ld\n", (long)(intptr_t)t);
    arm(t, 20, 0);
    siginfo_t si;
    int sig = wait_for(SIGUSR1, &si);
    printf("one-shot: sig=%d code=%d value=%d overrun=%d timerid-ok=%d\n", sig, si.si_code,
           si.si_value.sival_int, si.si_overrun, si.si_timerid == (int)(intptr_t)t);

    struct sigevent ev2 = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR2,
                           .sigev_value.sival_int = 7};
    timer_t p;
    timer_create(CLOCK_REALTIME, &ev2, &p);
    arm(p, 50, 50);
    nap(275);  /* five expirations: one signal, four overruns */
    sig = wait_for(SIGUSR2, &si);
    printf("periodic: sig=%d overrun=%d getoverrun=%d\n", sig, si.si_overrun,
           timer_getoverrun(p));
    struct itimerspec cur;
    timer_gettime(p, &cur);
    printf("gettime: left in (0,50ms]=%d interval=%lld\n",
           ns_of(cur.it_value) > 0 && ns_of(cur.it_value) <= 50 * MS, ns_of(cur.it_interval));
    timer_delete(p);
    printf("deleted: gettime=%d delete again=%d\n", timer_gettime(p, &cur) < 0 ? errno : 0,
           timer_delete(p) < 0 ? errno : 0);
    timer_delete(t);

    struct sigevent none = {.sigev_notify = SIGEV_NONE};
    timer_t n;
    timer_create(CLOCK_MONOTONIC, &none, &n);
    arm(n, 10, 0);
    nap(30);
    timer_gettime(n, &cur);
    printf("SIGEV_NONE expired quietly: left=%lld\n", ns_of(cur.it_value));
    timer_delete(n);

    /* a timer's signal read through a signalfd: ssi_tid, ssi_overrun, ssi_int */
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR2);
    int sfd = signalfd(-1, &m, 0);
    struct sigevent ev3 = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR2,
                           .sigev_value.sival_int = 9};
    timer_t q;
    timer_create(CLOCK_MONOTONIC, &ev3, &q);
    arm(q, 40, 40);
    nap(100);  /* two expirations: one signal, one overrun */
    struct signalfd_siginfo ssi;
    ssize_t got = read(sfd, &ssi, sizeof ssi);
    printf("signalfd: n=%zd signo=%u code=%d int=%d tid-ok=%d overrun=%u\n", got,
           ssi.ssi_signo, ssi.ssi_code, ssi.ssi_int, ssi.ssi_tid == (unsigned)(intptr_t)q,
           ssi.ssi_overrun);
    timer_delete(q);
    close(sfd);
}

static volatile int target_tid;

static void *thread_target(void *arg)
{
    (void)arg;
    target_tid = syscall(SYS_gettid);
    siginfo_t si;
    int sig = wait_for(SIGUSR1, &si);
    printf("SIGEV_THREAD_ID: the target thread took sig=%d code=%d\n", sig, si.si_code);
    return NULL;
}

static void thread_id(void)
{
    pthread_t th;
    pthread_create(&th, NULL, thread_target, NULL);
    while (!target_tid)
        nap(1);
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = SIGUSR1;
    ev.sigev_notify_thread_id = target_tid;
    timer_t t;
    printf("create for a thread=%d\n", timer_create(CLOCK_MONOTONIC, &ev, &t));
    arm(t, 20, 0);
    pthread_join(th, NULL);
    timer_delete(t);
}

static volatile int calls;

static void callback(union sigval v)
{
    calls += v.sival_int;
}

static void thread_callbacks(void)
{
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD;
    ev.sigev_notify_function = callback;
    ev.sigev_value.sival_int = 1;
    timer_t t;
    timer_create(CLOCK_MONOTONIC, &ev, &t);
    arm(t, 30, 30);
    while (calls < 3)
        nap(5);
    timer_delete(t);
    printf("SIGEV_THREAD callbacks: %d\n", calls >= 3);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    sigaddset(&s, SIGUSR2);
    sigprocmask(SIG_BLOCK, &s, NULL);
    errors();
    signals();
    thread_id();
    thread_callbacks();

    timer_t t;
    timer_create(CLOCK_MONOTONIC, NULL, &t);
    pid_t kid = fork();
    if (kid == 0) {
        struct itimerspec cur;
        printf("child: parent's timer=%d\n", timer_gettime(t, &cur) < 0 ? errno : 0);
        _exit(0);
    }
    waitpid(kid, NULL, 0);
    printf("ptimers done\n");
    return 0;
}
