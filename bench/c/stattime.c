/*
 * stattime — an independent stat() timer (issue 11): no help from the
 * bench's own loops. stat() every absolute path of a list file, <iters>
 * times, with clock_gettime around the whole loop.
 *
 *   stattime <list-file> <iters> [shuffle]
 *
 * "shuffle" visits the paths in a fixed pseudo-random order (the same
 * order on both sides) instead of the list's order. Prints
 *   stattime <calls> <ns total> <ns per call> first-pass <ns> pass-min <ns>
 *            pass-median <ns> minflt <page faults in the loop>
 * (ns per call of the first pass, the fastest and the median pass); exits
 * 1 if a stat fails.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: stattime <list-file> <iters> [shuffle]\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    size_t cap = 1024, n = 0;
    char **v = malloc(cap * sizeof *v);
    char *line = NULL;
    size_t ll = 0;
    ssize_t r;
    while ((r = getline(&line, &ll, f)) > 0) {
        if (line[r - 1] == '\n')
            line[--r] = '\0';
        if (r == 0)
            continue;
        if (n == cap)
            v = realloc(v, (cap *= 2) * sizeof *v);
        v[n++] = strdup(line);
    }
    fclose(f);
    if (argc > 3 && strcmp(argv[3], "shuffle") == 0) {
        unsigned long long s = 88172645463325252ULL;
        for (size_t i = n; i > 1; i--) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            size_t j = (size_t)(s % i);
            char *t = v[i - 1];
            v[i - 1] = v[j];
            v[j] = t;
        }
    }
    long iters = atol(argv[2]);
    struct stat st;
    if (iters < 1)
        iters = 1;
    long long *pass = malloc((size_t)iters * sizeof *pass);
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    long long t0 = now_ns(), tp = t0;
    for (long it = 0; it < iters; it++) {
        for (size_t i = 0; i < n; i++)
            if (stat(v[i], &st) != 0) {
                perror(v[i]);
                return 1;
            }
        long long t = now_ns();
        pass[it] = t - tp;
        tp = t;
    }
    long long dt = tp - t0;
    getrusage(RUSAGE_SELF, &ru1);
    long long first = pass[0];
    qsort(pass, (size_t)iters, sizeof *pass, cmp_ll);
    size_t calls = n * (size_t)iters;
    printf("stattime %zu %lld %.1f first-pass %.1f pass-min %.1f pass-median %.1f minflt %ld\n", calls, dt,
           (double)dt / (double)calls, (double)first / (double)n, (double)pass[0] / (double)n,
           (double)pass[iters / 2] / (double)n, ru1.ru_minflt - ru0.ru_minflt);
    return 0;
}
