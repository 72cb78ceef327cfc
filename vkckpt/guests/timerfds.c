/* timerfds: timerfd on CLOCK_MONOTONIC and CLOCK_REALTIME -- one-shot and periodic timers
 * (missed expirations counted), TFD_TIMER_ABSTIME, the old value returned, gettime, poll and
 * epoll readiness, a thread blocked in read, non-blocking EAGAIN and the EINVAL cases.
 * Prints counts and booleans only (periods are long enough that native runs agree). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MS 1000000L

static void nap(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * MS};
    nanosleep(&ts, NULL);
}

static long long rd(int fd)
{
    uint64_t v = 0;
    ssize_t n = read(fd, &v, sizeof v);
    return n < 0 ? -errno : (long long)v;
}

static int arm(int fd, int flags, long value_ms, long interval_ms)
{
    struct itimerspec its = {{interval_ms / 1000, (interval_ms % 1000) * MS},
                             {value_ms / 1000, (value_ms % 1000) * MS}};
    return timerfd_settime(fd, flags, &its, NULL) < 0 ? errno : 0;
}

static long long ns_of(struct timespec ts)
{
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void errors(void)
{
    int e = eventfd(0, 0);
    struct itimerspec bad = {{0, 0}, {0, 1000000000L}}, ok = {{0, 0}, {1, 0}};
    printf("create bad clock=%d bad flags=%d\n", timerfd_create(99, 0) < 0 ? errno : 0,
           timerfd_create(CLOCK_MONOTONIC, 0x1) < 0 ? errno : 0);
    int t = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    printf("settime bad nsec=%d bad flags=%d not a timerfd=%d\n",
           timerfd_settime(t, 0, &bad, NULL) < 0 ? errno : 0,
           timerfd_settime(t, 0x10, &ok, NULL) < 0 ? errno : 0,
           timerfd_settime(e, 0, &ok, NULL) < 0 ? errno : 0);
    struct stat st;
    fstat(t, &st);
    char small[4];
    printf("fstat type bits=%o disarmed read=%lld short read=%d\n", st.st_mode & S_IFMT, rd(t),
           read(t, small, 4) < 0 ? errno : 0);
    struct itimerspec cur;
    timerfd_gettime(t, &cur);
    printf("disarmed gettime=%lld/%lld\n", ns_of(cur.it_value), ns_of(cur.it_interval));
    close(t);
    close(e);
}

static void oneshot_and_periodic(void)
{
    int t = timerfd_create(CLOCK_MONOTONIC, 0);
    arm(t, 0, 30, 0);
    printf("one-shot read=%lld\n", rd(t));
    struct itimerspec cur;
    timerfd_gettime(t, &cur);
    printf("expired gettime=%lld/%lld\n", ns_of(cur.it_value), ns_of(cur.it_interval));

    arm(t, 0, 50, 50);
    nap(225);
    printf("periodic after 4.5 periods: read=%lld\n", rd(t));
    timerfd_gettime(t, &cur);
    printf("periodic gettime: left in (0,50ms]=%d interval=%lld\n",
           ns_of(cur.it_value) > 0 && ns_of(cur.it_value) <= 50 * MS, ns_of(cur.it_interval));
    printf("next blocking read=%lld\n", rd(t));

    arm(t, 0, 10, 10);
    nap(35);
    arm(t, TFD_TIMER_ABSTIME, 0, 0);  /* disarm: the unread expirations go too */
    struct pollfd pf = {.fd = t, .events = POLLIN};
    printf("after re-set: poll=%d\n", poll(&pf, 1, 0));

    struct itimerspec its = {{0, 0}, {1, 0}}, old;
    timerfd_settime(t, 0, &its, NULL);
    its.it_value.tv_sec = 0;
    timerfd_settime(t, 0, &its, &old);
    printf("old value in (0,1s]=%d old interval=%lld\n",
           ns_of(old.it_value) > 0 && ns_of(old.it_value) <= 1000 * MS, ns_of(old.it_interval));
    close(t);
}

static void absolute(void)
{
    int t = timerfd_create(CLOCK_MONOTONIC, 0);
    struct timespec now, after;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long target = ns_of(now) + 40 * MS;
    struct itimerspec its = {{0, 0}, {target / 1000000000LL, target % 1000000000LL}};
    timerfd_settime(t, TFD_TIMER_ABSTIME, &its, NULL);
    printf("abstime read=%lld", rd(t));
    clock_gettime(CLOCK_MONOTONIC, &after);
    printf(" woke after target=%d\n", ns_of(after) >= target);
    close(t);

    t = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK);
    clock_gettime(CLOCK_REALTIME, &now);
    target = ns_of(now) - 1000 * MS;  /* a second ago, every 100 ms: 11 expirations */
    struct itimerspec past = {{0, 100 * MS}, {target / 1000000000LL, target % 1000000000LL}};
    timerfd_settime(t, TFD_TIMER_ABSTIME, &past, NULL);
    printf("realtime abstime in the past: read=%lld then=%lld\n", rd(t), rd(t));
    close(t);
}

static void readiness(void)
{
    int t = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    arm(t, 0, 30, 0);
    struct pollfd pf = {.fd = t, .events = POLLIN | POLLOUT};
    printf("poll before=%d", poll(&pf, 1, 0));
    int n = poll(&pf, 1, -1);
    printf(" poll waited=%d revents=%#x read=%lld\n", n, pf.revents, rd(t));

    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 77};
    epoll_ctl(ep, EPOLL_CTL_ADD, t, &ev);
    arm(t, 0, 40, 40);
    for (int i = 0; i < 3; i++) {
        struct epoll_event got = {0};
        n = epoll_wait(ep, &got, 1, -1);
        printf("epoll wait %d: n=%d events=%#x data=%llu read=%lld\n", i, n, got.events,
               (unsigned long long)got.data.u64, rd(t));
    }
    arm(t, 0, 0, 0);
    struct epoll_event got;
    printf("disarmed epoll=%d read=%lld\n", epoll_wait(ep, &got, 1, 60), rd(t));
    close(ep);
    close(t);
}

static void *reader(void *arg)
{
    int t = *(int *)arg;
    long long got = rd(t);
    printf("thread read=%lld\n", got);
    return NULL;
}

static void threaded(void)
{
    int t = timerfd_create(CLOCK_BOOTTIME, 0);
    arm(t, 0, 120, 0);
    pthread_t th;
    pthread_create(&th, NULL, reader, &t);
    pthread_join(th, NULL);
    close(t);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    errors();
    oneshot_and_periodic();
    absolute();
    readiness();
    threaded();
    printf("timerfds done\n");
    return 0;
}
