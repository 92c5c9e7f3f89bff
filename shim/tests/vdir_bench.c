/*
 * vdir-bench: VDir lookups vs the kernel, on the same paths. Driven by
 * bench/vdir-lookup.ts, which builds the tree twice: as a VDir and as real
 * files under <real-root>.
 *
 *   vdir-bench <vdir> <real-root> <paths-file> [--rounds R]
 *
 * <paths-file> holds one relative path per line (every entry but the root).
 * Three access patterns (tree order, shuffled, a hot set; see main), each
 * the same for VDir and kernel, R rounds each; the median round is
 * reported in ns per call, as one JSON line. Exit 1 if any VDir lookup
 * disagrees with lstat().
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "vdir_reader.h"

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

struct path {
    char *rel;
    size_t len;
    int is_dir;
};

/* One access pattern: the query strings laid out contiguously in the order
 * they are asked (as a caller's path would be hot), for VDir and kernel alike. */
struct order {
    const char *name;
    size_t n;         /* queries per round */
    char **rel, **abs, **miss_rel, **miss_abs;
    size_t *len;
};

static void build_order(struct order *o, const char *name, const struct path *p, const size_t *idx, size_t n,
                        const char *root)
{
    size_t rl = strlen(root), bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += 2 * (p[idx[i]].len + 1) + 2 * (rl + p[idx[i]].len + 7) + 16;
    char *a = malloc(bytes), *w = a;
    o->name = name;
    o->n = n;
    o->rel = malloc(n * sizeof *o->rel);
    o->abs = malloc(n * sizeof *o->abs);
    o->miss_rel = malloc(n * sizeof *o->miss_rel);
    o->miss_abs = malloc(n * sizeof *o->miss_abs);
    o->len = malloc(n * sizeof *o->len);
    for (size_t i = 0; i < n; i++) {
        const struct path *q = &p[idx[i]];
        o->len[i] = q->len;
        o->rel[i] = w, w += sprintf(w, "%s", q->rel) + 1;
        o->miss_rel[i] = w, w += sprintf(w, "%s.nope", q->rel) + 1; /* same directory, absent name */
        o->abs[i] = w, w += sprintf(w, "%s/%s", root, q->rel) + 1;
        o->miss_abs[i] = w, w += sprintf(w, "%s/%s.nope", root, q->rel) + 1;
    }
}

static volatile uint64_t sink; /* keeps results live */

enum { HIT, MISS, STAT, LSTAT, STAT_MISS, NM };
static const char *names[NM] = {"vdir_hit_ns", "vdir_miss_ns", "stat_ns", "lstat_ns", "stat_miss_ns"};

/* Median ns per call of each measurement over `rounds` passes of `reps` x o. */
static int measure(vrift_vdir_reader *r, const struct order *o, int rounds, int reps, double out[NM])
{
    static struct vrift_vdir_result res;
    struct stat st;
    double t[NM][100];
    const size_t n = o->n;
    const double calls = (double)n * reps;
    for (int k = 0; k < rounds; k++) {
        double t0 = now_ns();
        for (int rep = 0; rep < reps; rep++)
            for (size_t i = 0; i < n; i++) {
                if (vrift_vdir_lookup(r, o->rel[i], o->len[i], &res) != 0)
                    return -1;
                sink += res.size;
            }
        t[HIT][k] = (now_ns() - t0) / calls;
        t0 = now_ns();
        for (int rep = 0; rep < reps; rep++)
            for (size_t i = 0; i < n; i++)
                sink += (uint64_t)vrift_vdir_lookup(r, o->miss_rel[i], o->len[i] + 5, &res);
        t[MISS][k] = (now_ns() - t0) / calls;
        t0 = now_ns();
        for (int rep = 0; rep < reps; rep++)
            for (size_t i = 0; i < n; i++) {
                stat(o->abs[i], &st);
                sink += (uint64_t)st.st_size;
            }
        t[STAT][k] = (now_ns() - t0) / calls;
        t0 = now_ns();
        for (int rep = 0; rep < reps; rep++)
            for (size_t i = 0; i < n; i++) {
                lstat(o->abs[i], &st);
                sink += (uint64_t)st.st_size;
            }
        t[LSTAT][k] = (now_ns() - t0) / calls;
        t0 = now_ns();
        for (int rep = 0; rep < reps; rep++)
            for (size_t i = 0; i < n; i++)
                sink += (uint64_t)stat(o->miss_abs[i], &st);
        t[STAT_MISS][k] = (now_ns() - t0) / calls;
    }
    for (int m = 0; m < NM; m++)
        out[m] = median(t[m], rounds);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: vdir-bench <vdir> <real-root> <paths-file> [--rounds R]\n");
        return 2;
    }
    int rounds = 5;
    for (int i = 4; i + 1 < argc; i++)
        if (strcmp(argv[i], "--rounds") == 0)
            rounds = atoi(argv[i + 1]);
    if (rounds < 1 || rounds > 100)
        rounds = 5;
    const char *root = argv[2];

    FILE *f = fopen(argv[3], "r");
    if (f == NULL) {
        perror(argv[3]);
        return 2;
    }
    size_t cap = 1024, n = 0;
    struct path *p = malloc(cap * sizeof *p);
    char line[8192];
    while (fgets(line, sizeof line, f) != NULL) {
        size_t len = strcspn(line, "\n");
        line[len] = '\0';
        if (len == 0)
            continue;
        if (n == cap)
            p = realloc(p, (cap *= 2) * sizeof *p);
        p[n].rel = strdup(line);
        p[n].len = len;
        n++;
    }
    fclose(f);
    if (n == 0)
        return 2;

    vrift_vdir_reader *r = NULL;
    int rc = vrift_vdir_open(argv[1], &r);
    if (rc != 0) {
        fprintf(stderr, "vdir-bench: open %s: %s\n", argv[1], strerror(-rc));
        return 1;
    }
    static struct vrift_vdir_result res;
    struct stat st;
    char abs[8192];
    size_t dirs = 0;
    for (size_t i = 0; i < n; i++) { /* correctness first: VDir and kernel agree */
        snprintf(abs, sizeof abs, "%s/%s", root, p[i].rel);
        rc = vrift_vdir_lookup(r, p[i].rel, p[i].len, &res);
        if (rc != 0 || lstat(abs, &st) != 0 || (st.st_mode & S_IFMT) != (res.mode & S_IFMT) ||
            (S_ISREG(st.st_mode) && (uint64_t)st.st_size != res.size)) {
            fprintf(stderr, "vdir-bench: %s: VDir (rc %d) and lstat() disagree\n", p[i].rel, rc);
            return 1;
        }
        p[i].is_dir = S_ISDIR(st.st_mode);
        dirs += (size_t)p[i].is_dir;
    }

    /* Access patterns: every path in tree order (a walk: ls -R, find, tar);
     * every path shuffled (worst case: no locality at all); and a hot set of
     * 1000 shuffled paths asked again and again (a build re-stat()ing its
     * headers and modules). */
    size_t *tree = malloc(n * sizeof *tree), *shuf = malloc(n * sizeof *shuf);
    for (size_t i = 0; i < n; i++)
        tree[i] = shuf[i] = i;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = n - 1; i > 0; i--) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t j = (size_t)(x % (i + 1)), t = shuf[i];
        shuf[i] = shuf[j];
        shuf[j] = t;
    }
    struct order orders[3];
    build_order(&orders[0], "random", p, shuf, n, root);
    build_order(&orders[1], "tree", p, tree, n, root);
    build_order(&orders[2], "hot", p, shuf, n < 1000 ? n : 1000, root);
    const int reps[3] = {1, 1, (int)(n / orders[2].n)};
    double res_ns[3][NM];
    for (int o = 0; o < 3; o++)
        if (measure(r, &orders[o], rounds, reps[o] < 1 ? 1 : reps[o], res_ns[o]) != 0)
            return 1;

    /* Listings: every directory, tree order. */
    size_t lbuf_len = 1 << 20;
    void *lbuf = malloc(lbuf_len);
    double tl[100], tr[100];
    uint64_t listed = 0, readdir_names = 0;
    for (int k = 0; k < rounds; k++) {
        listed = readdir_names = 0;
        double t0 = now_ns();
        for (size_t i = 0; i < n; i++) {
            if (!p[i].is_dir)
                continue;
            size_t needed = 0;
            uint32_t count = 0;
            if (vrift_vdir_list(r, orders[1].rel[i], p[i].len, lbuf, lbuf_len, &needed, &count) != 0)
                return 1;
            listed += count;
        }
        tl[k] = (now_ns() - t0) / (double)(dirs ? dirs : 1);
        t0 = now_ns();
        for (size_t i = 0; i < n; i++) {
            if (!p[i].is_dir)
                continue;
            DIR *d = opendir(orders[1].abs[i]);
            struct dirent *de;
            while (d != NULL && (de = readdir(d)) != NULL)
                readdir_names++;
            if (d != NULL)
                closedir(d);
        }
        tr[k] = (now_ns() - t0) / (double)(dirs ? dirs : 1);
    }
    struct vrift_vdir_info info;
    vrift_vdir_info(r, &info);
    printf("{\"paths\":%zu,\"dirs\":%zu,\"rounds\":%d,\"listed\":%llu,\"readdir_names\":%llu,\"mapped_bytes\":%llu,"
           "\"entries\":%u,\"retries\":%llu,\"vdir_list_ns\":%.1f,\"readdir_ns\":%.1f",
           n, dirs, rounds, (unsigned long long)listed, (unsigned long long)readdir_names,
           (unsigned long long)info.mapped_bytes, info.entry_count, (unsigned long long)info.retries,
           median(tl, rounds), median(tr, rounds));
    for (int o = 0; o < 3; o++) {
        printf(",\"%s\":{\"queries\":%zu", orders[o].name, orders[o].n * (size_t)reps[o]);
        for (int m = 0; m < NM; m++)
            printf(",\"%s\":%.1f", names[m], res_ns[o][m]);
        printf("}");
    }
    printf("}\n");
    vrift_vdir_close(r);
    return 0;
}
