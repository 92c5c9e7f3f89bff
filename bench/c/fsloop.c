/*
 * fsloop — the timing loops of bench/shim.ts, run once under the shim (on
 * a mount) and once without it (on a materialized copy) in the same run.
 *
 *   fsloop stat <list-file> <rounds>   stat() every path of the list, <rounds> times
 *   fsloop read <list-file>            open + read + close every path once
 *   fsloop first                       exit at once (time to the first instruction)
 *   fsloop spawn <reps> <cmd> [args]   run a command <reps> times (stdout to /dev/null),
 *                                      timing each from fork to exit; prints the best
 *
 * Prints one line: "<op> <calls> <ns total> <ns per call>". Paths in the
 * list are one per line. Exits non-zero if any call fails.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static char **load(const char *file, size_t *n)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        perror(file);
        exit(2);
    }
    size_t cap = 1024, k = 0;
    char **v = malloc(cap * sizeof *v);
    char *line = NULL;
    size_t ll = 0;
    ssize_t r;
    while ((r = getline(&line, &ll, f)) > 0) {
        if (line[r - 1] == '\n')
            line[--r] = '\0';
        if (k == cap)
            v = realloc(v, (cap *= 2) * sizeof *v);
        v[k++] = strdup(line);
    }
    fclose(f);
    *n = k;
    return v;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "first") == 0)
        return 0;
    if (argc >= 4 && strcmp(argv[1], "spawn") == 0) {
        int reps = atoi(argv[2]);
        long long best = -1;
        for (int r = 0; r < reps; r++) {
            long long t0 = now_ns();
            pid_t pid = fork();
            if (pid == 0) {
                int fd = open("/dev/null", O_WRONLY);
                dup2(fd, 1);
                execvp(argv[3], argv + 3);
                _exit(127);
            }
            int status;
            waitpid(pid, &status, 0);
            long long dt = now_ns() - t0;
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return 1;
            if (best < 0 || dt < best)
                best = dt;
        }
        printf("spawn %d %lld %.1f\n", reps, best, (double)best);
        return 0;
    }
    if (argc < 3)
        return 2;
    size_t n;
    char **paths = load(argv[2], &n);
    if (strcmp(argv[1], "stat") == 0) {
        int rounds = argc > 3 ? atoi(argv[3]) : 1;
        struct stat st;
        long long t0 = now_ns();
        for (int r = 0; r < rounds; r++)
            for (size_t i = 0; i < n; i++)
                if (stat(paths[i], &st) != 0) {
                    perror(paths[i]);
                    return 1;
                }
        long long dt = now_ns() - t0;
        size_t calls = n * (size_t)rounds;
        printf("stat %zu %lld %.1f\n", calls, dt, (double)dt / (double)calls);
        return 0;
    }
    if (strcmp(argv[1], "read") == 0) {
        static char buf[1 << 16];
        long long bytes = 0;
        long long t0 = now_ns();
        for (size_t i = 0; i < n; i++) {
            int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
            if (fd < 0) {
                perror(paths[i]);
                return 1;
            }
            ssize_t r;
            while ((r = read(fd, buf, sizeof buf)) > 0)
                bytes += r;
            close(fd);
        }
        long long dt = now_ns() - t0;
        printf("read %zu %lld %.1f %lld\n", n, dt, (double)dt / (double)n, bytes);
        return 0;
    }
    return 2;
}
