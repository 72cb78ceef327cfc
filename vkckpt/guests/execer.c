/* execer: without arguments, fork and execve(argv[0], {argv[0], "child", "second arg"},
 * {"EXECER_VAR=from-parent"}); the parent waits and prints the child's status (5) and
 * exits 0.  Run as "execer child ..." it prints its arguments and EXECER_VAR and exits 5. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "child") == 0) {
        printf("child: argc=%d\n", argc);
        for (int i = 1; i < argc; i++)
            printf("child: argv[%d]=%s\n", i, argv[i]);
        const char *v = getenv("EXECER_VAR");
        printf("child: EXECER_VAR=%s\n", v ? v : "(unset)");
        const char *home = getenv("HOME");
        printf("child: HOME=%s\n", home ? "(set)" : "(unset)");
        return 5;
    }

    puts("parent: forking");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        puts("FAIL: fork");
        return 1;
    }
    if (pid == 0) {
        char *cargv[] = {argv[0], "child", "second arg", NULL};
        char *cenv[] = {"EXECER_VAR=from-parent", NULL};
        execve(argv[0], cargv, cenv);
        printf("FAIL: execve\n");
        fflush(stdout);
        _exit(127);
    }
    int st = 0;
    if (waitpid(pid, &st, 0) != pid) {
        puts("FAIL: waitpid");
        return 1;
    }
    printf("parent: child exited=%d status=%d\n", WIFEXITED(st) ? 1 : 0,
           WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return WIFEXITED(st) && WEXITSTATUS(st) == 5 ? 0 : 1;
}
