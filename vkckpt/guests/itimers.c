/* itimers: alarm(2) with pause, setitimer/getitimer on ITIMER_REAL (periodic SIGALRM over a
 * busy loop that ends by a count), ITIMER_VIRTUAL and ITIMER_PROF, the EINVAL cases, a fork's
 * child starting with no timers and execve keeping them.  Prints counts and booleans. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t alrm, vtalrm, prof;

static void on_signal(int sig)
{
    if (sig == SIGALRM)
        alrm++;
    else if (sig == SIGVTALRM)
        vtalrm++;
    else if (sig == SIGPROF)
        prof++;
}

static long alarm_sys(unsigned s)
{
    return syscall(SYS_alarm, s);
}

static void set(int which, long value_us, long interval_us)
{
    struct itimerval it = {{interval_us / 1000000, interval_us % 1000000},
                           {value_us / 1000000, value_us % 1000000}};
    setitimer(which, &it, NULL);
}

static long long us_of(struct timeval tv)
{
    return tv.tv_sec * 1000000LL + tv.tv_usec;
}

static void spin_until(volatile sig_atomic_t *count, int want)
{
    volatile unsigned long x = 0;
    while (*count < want)
        x++;
}

static void errors_and_values(void)
{
    struct itimerval it, bad = {{0, 0}, {0, 1000000}};
    printf("getitimer bad which=%d setitimer bad usec=%d\n",
           getitimer(7, &it) < 0 ? errno : 0, setitimer(ITIMER_REAL, &bad, NULL) < 0 ? errno : 0);
    getitimer(ITIMER_REAL, &it);
    printf("disarmed: %lld/%lld\n", us_of(it.it_value), us_of(it.it_interval));
    printf("alarm(0)=%ld alarm(5)=%ld alarm(3)=%ld alarm(0)=%ld\n", alarm_sys(0), alarm_sys(5),
           alarm_sys(3), alarm_sys(0));
    set(ITIMER_REAL, 2700000, 0);
    printf("alarm over 2.7s left=%ld\n", alarm_sys(0));
    set(ITIMER_REAL, 400000, 0);
    printf("alarm over 0.4s left=%ld\n", alarm_sys(0));
    set(ITIMER_REAL, 300000, 100000);
    getitimer(ITIMER_REAL, &it);
    printf("armed: left in (0,300ms]=%d interval=%lld\n",
           us_of(it.it_value) > 0 && us_of(it.it_value) <= 300000, us_of(it.it_interval));
    struct itimerval zero = {{0, 0}, {0, 0}}, old;
    setitimer(ITIMER_REAL, &zero, &old);
    printf("old: left in (0,300ms]=%d interval=%lld\n",
           us_of(old.it_value) > 0 && us_of(old.it_value) <= 300000, us_of(old.it_interval));
    getitimer(ITIMER_REAL, &it);
    printf("after disarm: %lld interval kept=%lld\n", us_of(it.it_value), us_of(it.it_interval));
}

static void alarm_and_pause(void)
{
    alarm_sys(1);
    int r = pause();
    printf("pause=%d errno=%s alrm=%d\n", r, errno == EINTR ? "EINTR" : strerror(errno),
           (int)alrm);
}

static void periodic(void)
{
    alrm = 0;
    set(ITIMER_REAL, 10000, 10000);
    spin_until(&alrm, 5);
    set(ITIMER_REAL, 0, 0);
    printf("periodic SIGALRM over a busy loop: %d\n", (int)alrm);

    set(ITIMER_VIRTUAL, 10000, 10000);
    spin_until(&vtalrm, 3);
    set(ITIMER_VIRTUAL, 0, 0);
    printf("SIGVTALRM: %d\n", (int)vtalrm);

    set(ITIMER_PROF, 20000, 5000);
    spin_until(&prof, 4);
    struct itimerval it;
    getitimer(ITIMER_PROF, &it);
    printf("SIGPROF: %d interval=%lld left in (0,5ms]=%d\n", (int)prof, us_of(it.it_interval),
           us_of(it.it_value) > 0 && us_of(it.it_value) <= 5000);
    set(ITIMER_PROF, 0, 0);
}

static void fork_and_exec(const char *self)
{
    set(ITIMER_REAL, 50000000, 0);
    pid_t kid = fork();
    if (kid == 0) {
        struct itimerval it;
        getitimer(ITIMER_REAL, &it);
        printf("child: ITIMER_REAL %lld\n", us_of(it.it_value));
        fflush(stdout);
        _exit(0);
    }
    waitpid(kid, NULL, 0);
    struct itimerval it;
    getitimer(ITIMER_REAL, &it);
    printf("parent still armed=%d\n", us_of(it.it_value) > 0);
    fflush(stdout);
    execl(self, self, "after-exec", (char *)NULL);
    printf("exec failed\n");
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "after-exec") == 0) {
        long left = alarm_sys(0);
        printf("after exec: alarm left=%ld\n", left);
        printf("itimers done\n");
        return 0;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGALRM, &sa, NULL);
    sigaction(SIGVTALRM, &sa, NULL);
    sigaction(SIGPROF, &sa, NULL);
    errors_and_values();
    alarm_and_pause();
    periodic();
    fork_and_exec(argv[0]);
    return 1;
}
