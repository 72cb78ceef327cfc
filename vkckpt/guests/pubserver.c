/* pubserver: a TCP echo server for published ports (vkckpt run --publish).  Listens on
 * 127.0.0.1:PORT (argv[1]), serves N connections (argv[2]) one at a time: each chunk it
 * reads comes back uppercased; a connection ends at end of file or an error, which it
 * names (ECONNRESET after a thaw reset an external connection).  Counts SIGTHAWs. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SIGTHAW
#define SIGTHAW 63
#endif

static volatile sig_atomic_t thaws;

static void on_thaw(int sig) {
    (void)sig;
    thaws++;
}

static const char *err_name(int e) {
    switch (e) {
    case ECONNRESET: return "ECONNRESET";
    case EPIPE: return "EPIPE";
    default: return "other";
    }
}

static void serve(int c, int i) {
    char buf[4096];
    long total = 0;
    for (;;) {
        ssize_t n = recv(c, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            printf("conn %d: recv: %s after %ld bytes\n", i, err_name(errno), total);
            return;
        }
        if (n == 0)
            break;
        for (ssize_t k = 0; k < n; k++)
            buf[k] = (char)toupper((unsigned char)buf[k]);
        for (ssize_t off = 0; off < n;) {
            ssize_t w = send(c, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                printf("conn %d: send: %s\n", i, err_name(errno));
                return;
            }
            off += w;
        }
        total += n;
    }
    printf("conn %d: %ld bytes echoed\n", i, total);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: pubserver PORT N\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_thaw;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTHAW, &sa, NULL);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)atoi(argv[1]));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 8)) {
        perror("bind/listen");
        return 1;
    }
    printf("listening on %s\n", argv[1]);
    int n = atoi(argv[2]);
    for (int i = 0; i < n; i++) {
        int c = accept(s, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR) {
                i--;
                continue;
            }
            perror("accept");
            return 1;
        }
        serve(c, i);
        close(c);
    }
    close(s);
    printf("served %d connections, %d thaws\n", n, (int)thaws);
    return 0;
}
