/* A small file tool for the static-program tests (test/shim/static.spec.ts),
 * built with `gcc -static`: the shim cannot see it, so on a mount it runs in
 * vrift's private mount namespace. Each argument is one operation:
 *   cat:F  write:F=TEXT  append:F=TEXT  rm:F  rmdir:D  mkdir:D  ln:TARGET=LINK
 *   mv:A=B  chmodx:F  ls:D  exit:N  kill:SIG */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(const char *op, const char *arg)
{
    fprintf(stderr, "static-fs: %s %s: ", op, arg);
    perror(NULL);
    return 1;
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        char *op = argv[i], *arg = strchr(op, ':');
        if (!arg)
            return fail("bad operation", op);
        *arg++ = '\0';
        char *eq = strchr(arg, '=');
        if (eq)
            *eq++ = '\0';
        if (!strcmp(op, "cat")) {
            FILE *f = fopen(arg, "r");
            if (!f)
                return fail(op, arg);
            char buf[4096];
            size_t n;
            while ((n = fread(buf, 1, sizeof buf, f)) > 0)
                fwrite(buf, 1, n, stdout);
            fclose(f);
        } else if (!strcmp(op, "write") || !strcmp(op, "append")) {
            FILE *f = fopen(arg, op[0] == 'w' ? "w" : "a");
            if (!f || fprintf(f, "%s\n", eq ? eq : "") < 0 || fclose(f) != 0)
                return fail(op, arg);
        } else if (!strcmp(op, "rm")) {
            if (unlink(arg) != 0)
                return fail(op, arg);
        } else if (!strcmp(op, "rmdir")) {
            if (rmdir(arg) != 0)
                return fail(op, arg);
        } else if (!strcmp(op, "mkdir")) {
            if (mkdir(arg, 0755) != 0)
                return fail(op, arg);
        } else if (!strcmp(op, "ln")) {
            if (!eq || symlink(arg, eq) != 0)
                return fail(op, arg);
        } else if (!strcmp(op, "mv")) {
            if (!eq || rename(arg, eq) != 0)
                return fail(op, arg);
        } else if (!strcmp(op, "chmodx")) {
            if (chmod(arg, 0755) != 0)
                return fail(op, arg);
        } else if (!strcmp(op, "ls")) {
            DIR *d = opendir(arg);
            if (!d)
                return fail(op, arg);
            char *names[1024];
            int n = 0;
            struct dirent *e;
            while ((e = readdir(d)) && n < 1024)
                if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                    names[n++] = strdup(e->d_name);
            closedir(d);
            qsort(names, (size_t)n, sizeof names[0], cmp);
            for (int k = 0; k < n; k++)
                printf("%s\n", names[k]);
        } else if (!strcmp(op, "exit")) {
            fflush(stdout);
            return atoi(arg);
        } else if (!strcmp(op, "kill")) {
            fflush(stdout);
            raise(atoi(arg));
        } else
            return fail("unknown operation", op);
    }
    return 0;
}
