/* hello: print argv[1..] and the HELLO_* / VKCKPT_TEST_* environment variables; exit 0.
 * Only those prefixes are printed (sorted) since the rest of the environment is host-dependent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    static char *vars[256];
    int n = 0;

    puts("hello from guest");
    printf("argc=%d\n", argc);
    for (int i = 1; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    for (char **e = environ; *e && n < 256; e++)
        if (strncmp(*e, "HELLO_", 6) == 0 || strncmp(*e, "VKCKPT_TEST_", 12) == 0)
            vars[n++] = *e;
    qsort(vars, n, sizeof vars[0], cmp);
    for (int i = 0; i < n; i++)
        printf("env %s\n", vars[i]);
    const char *g = getenv("HELLO_GREETING");
    printf("greeting=%s\n", g ? g : "(unset)");
    printf("env count=%d\n", n);
    return 0;
}
