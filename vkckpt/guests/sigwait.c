/*
 * sigwait, sigwaitinfo and sigtimedwait: signals taken synchronously, as a daemon's signal
 * thread does; and nanosleep's time left when a handler interrupts it. Each case's sender is a child or a thread that waits 30 ms first, so the
 * output is the same natively and under vkckpt.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t handled[NSIG];

static void on_signal(int sig)
{
    handled[sig]++;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

static pid_t send_later(int sig)
{
    pid_t kid = fork();
    if (kid == 0) {
        sleep_ms(30);
        kill(getppid(), sig);
        _exit(0);
    }
    return kid;
}

static void *signal_thread(void *arg)
{
    sigset_t *set = arg;
    int sig = 0;
    int r = sigwait(set, &sig);
    printf("thread: sigwait=%d got %s\n", r, strsignal(sig));
    return NULL;
}

int main(void)
{
    sigset_t set, none;
    siginfo_t si;
    struct sigaction sa;
    struct timespec second = {1, 0}, short_wait = {0, 30000000L};

    setvbuf(stdout, NULL, _IONBF, 0);
    sigemptyset(&none);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGUSR2, &sa, NULL);

    /* a blocked signal sent later is taken by sigwait */
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    pid_t kid = send_later(SIGUSR1);
    int sig = 0;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    printf("sigwait=%d got %s\n", sigwait(&set, &sig), strsignal(sig));
    waitpid(kid, NULL, 0);

    /* SIGCHLD keeps its default (ignore) action but is blocked: sigwaitinfo gets it */
    struct timespec zero = {0, 0};
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    while (sigtimedwait(&set, NULL, &zero) > 0) /* the first child's, already pending */
        ;
    kid = fork();
    if (kid == 0) {
        sleep_ms(30);
        _exit(7);
    }
    int r = sigwaitinfo(&set, &si);
    printf("sigwaitinfo=%s pid matches=%d code exited=%d status=%d\n", strsignal(r),
           si.si_pid == kid, si.si_code == CLD_EXITED, si.si_status);
    waitpid(kid, NULL, 0);

    /* nothing arrives: the timeout ends the wait with EAGAIN */
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    r = sigtimedwait(&set, &si, &short_wait);
    printf("sigtimedwait=%d errno=%s\n", r, r < 0 ? strerror(errno) : "-");

    /* a handled signal outside the set ends the wait with EINTR and its handler runs
     * (musl's sigtimedwait then waits again, so the call still ends by its timeout) */
    kid = send_later(SIGUSR2);
    r = sigtimedwait(&set, &si, &second);
    printf("sigtimedwait=%d errno=%s usr2 handled=%d\n", r, r < 0 ? strerror(errno) : "-",
           (int)handled[SIGUSR2]);
    waitpid(kid, NULL, 0);

    /* nanosleep ended by a handled signal reports the time left */
    kid = send_later(SIGUSR2);
    struct timespec rem = {0, 0};
    r = nanosleep(&second, &rem);
    printf("nanosleep=%d errno=%s rem in (0.9 s, 1 s)=%d usr2 handled=%d\n", r,
           r < 0 ? strerror(errno) : "-", rem.tv_sec == 0 && rem.tv_nsec > 900000000L,
           (int)handled[SIGUSR2]);
    waitpid(kid, NULL, 0);

    /* a waited signal with a handler, unblocked: taken by the call, the handler never runs */
    sigaction(SIGUSR1, &sa, NULL);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    kid = send_later(SIGUSR1);
    r = sigtimedwait(&set, &si, &second);
    printf("sigtimedwait=%s code user=%d usr1 handled=%d\n", r > 0 ? strsignal(r) : "error",
           si.si_code == SI_USER, (int)handled[SIGUSR1]);
    waitpid(kid, NULL, 0);

    /* a process-directed signal reaches the thread waiting for it */
    sigprocmask(SIG_BLOCK, &set, NULL);
    pthread_t th;
    pthread_create(&th, NULL, signal_thread, &set);
    sleep_ms(30);
    kill(getpid(), SIGUSR1);
    pthread_join(th, NULL);
    printf("usr1 handled=%d\n", (int)handled[SIGUSR1]);
    return 0;
}
