/* spawn: posix_spawn (clone with CLONE_VM|CLONE_VFORK in musl) and vfork+exec.
 * Usage: spawn HELLO_PATH   (a path to the hello guest) */
#include <spawn.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
    const char *hello = argc > 1 ? argv[1] : "./hello";
    char *args[] = {"hello", "spawned", NULL};
    pid_t pid;
    int status;
    int r = posix_spawn(&pid, hello, NULL, NULL, args, environ);
    if (r == 0 && waitpid(pid, &status, 0) == pid)  /* print only after the child is done */
        printf("posix_spawn: %d\nspawned child exited %d\n", r, WEXITSTATUS(status));
    r = posix_spawn(&pid, "./does-not-exist", NULL, NULL, args, environ);
    printf("posix_spawn of a missing file: %s\n", r ? "error" : "ok?");
    fflush(stdout);
    pid = vfork();
    if (pid == 0) {
        char *a2[] = {"hello", "vforked", NULL};
        execv(hello, a2);
        _exit(127);
    }
    waitpid(pid, &status, 0);
    printf("vforked child exited %d\n", WEXITSTATUS(status));
    return 0;
}
