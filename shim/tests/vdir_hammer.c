/*
 * vdir-hammer: the VDir reader under stress. Driven by test/vdir.spec.ts.
 *
 *   vdir-hammer hammer <vdir> --paths P --dirs D [--threads T] [--min-lookups N] [--timeout S]
 *       T threads look up and list random paths of the hammer universe while
 *       the daemon side rewrites it (see "payload" below); every entry read
 *       must be exactly the payload of (path, version) with a valid check.
 *       Runs until the path "done" appears and N lookups were made. Prints
 *       "ready" once mapped, then one JSON line of counts.
 *   vdir-hammer probe <vdir>            open only; prints the result
 *   vdir-hammer lookup <vdir> <path>... one JSON line per path (a file's blob ctime as a decimal string)
 *   vdir-hammer list <vdir> <dir>       one JSON line: the names
 *   vdir-hammer follow <vdir>           "ready", then one lookup per stdin line
 *   vdir-hammer fuzz <vdir> [--iterations N] [--seed S]
 *       copies <vdir> to a private /dev/shm file, then N times corrupts the
 *       copy (random bytes in random places) and reads it: every call must
 *       return a documented code and never crash. One JSON line of counts.
 *
 * Exit status: 0 = all checks passed, 1 = a check failed, 2 = usage,
 * or the errno of a failed open (e.g. 13 = EACCES) in probe mode.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vdir_reader.h"

/* ---- the hammer payload (mirrored in test/vdir.spec.ts) -------------- */
/* Universe: path i in [0, P) lives in dir "d<i % D>"; it is a symlink
 * "l<i>" when i % 5 == 4, else a file "f<i>". Version v >= 1 of path i:
 *   file:    mode S_IFREG | (v odd ? 0755 : 0644), size v * 7 + i,
 *            mtime v, flags v & 1, digest word j = mix32(i*0x9E3779B1 ^
 *            v*0x85EBCA77 ^ j*0xC2B2AE3D) (little-endian u32 words)
 *   symlink: mode S_IFLNK | 0777, mtime v, flags 0,
 *            target "t/<i>/<v>/" + "x" * (v % 13)                         */

static uint32_t mix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

static void payload_digest(uint32_t i, uint32_t v, uint8_t out[32])
{
    for (uint32_t j = 0; j < 8; j++) {
        uint32_t w = mix32(i * 0x9E3779B1u ^ v * 0x85EBCA77u ^ j * 0xC2B2AE3Du);
        memcpy(out + 4 * j, &w, 4);
    }
}

static int payload_target(uint32_t i, uint32_t v, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "t/%u/%u/", i, v);
    for (uint32_t k = 0; k < v % 13; k++)
        buf[n++] = 'x';
    buf[n] = '\0';
    return n;
}

static int path_of(uint32_t i, uint32_t dirs, char *buf, size_t cap)
{
    return snprintf(buf, cap, "d%u/%c%u", i % dirs, i % 5 == 4 ? 'l' : 'f', i);
}

/* ---- hammer ------------------------------------------------------------ */

struct hammer {
    vrift_vdir_reader *r;
    uint32_t paths, dirs;
    uint64_t min_lookups;
    double deadline;
    uint64_t seed;
    _Atomic int done;
    _Atomic uint64_t lookups, hits, misses, lists, listed, bad, eagain;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t rng(uint64_t *s)
{
    *s += 0x9E3779B97F4A7C15ull;
    uint64_t z = *s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void report_bad(struct hammer *h, const char *why, const char *path)
{
    if (atomic_fetch_add(&h->bad, 1) < 20)
        fprintf(stderr, "vdir-hammer: BAD %s: %s\n", why, path);
}

/* Checks one lookup result against the payload of (i, version). */
static void check_entry(struct hammer *h, uint32_t i, const char *path, size_t len,
                        const struct vrift_vdir_result *res, uint64_t seed, uint32_t *last_v)
{
    uint32_t v = res->mtime_sec;
    if (v == 0) {
        report_bad(h, "version 0", path);
        return;
    }
    if (v < last_v[i]) /* versions only grow; a thread must never go back in time */
        report_bad(h, "version went backwards", path);
    last_v[i] = v;
    uint64_t ph = vrift_vdir_path_hash(path, len, seed);
    const char *t = (res->mode & VRIFT_VDIR_S_IFMT) == VRIFT_VDIR_S_IFLNK ? res->target : NULL;
    if (vrift_vdir_entry_check(&res->entry, ph, t, t ? res->target_len : 0) != res->entry.check)
        report_bad(h, "check mismatch", path);
    if (res->ino != vrift_vdir_ino(res->index))
        report_bad(h, "ino", path);
    if (i % 5 == 4) {
        char want[64];
        int n = payload_target(i, v, want, sizeof want);
        if (res->mode != (VRIFT_VDIR_S_IFLNK | 0777) || res->flags != 0 || res->target_len != (uint32_t)n ||
            res->size != (uint64_t)n || memcmp(res->target, want, (size_t)n + 1) != 0)
            report_bad(h, "torn symlink", path);
    } else {
        uint8_t want[32];
        payload_digest(i, v, want);
        if (res->mode != (VRIFT_VDIR_S_IFREG | ((v & 1) ? 0755u : 0644u)) || res->size != (uint64_t)v * 7 + i ||
            res->flags != (v & 1) || memcmp(res->entry.u.digest, want, 32) != 0 || res->target[0] != '\0')
            report_bad(h, "torn file", path);
    }
}

/* Checks one vrift_vdir_stat() result against the payload of (i, version). */
static void check_stat(struct hammer *h, uint32_t i, const char *path, const struct vrift_vdir_stat *st,
                       uint32_t *last_v)
{
    uint32_t v = st->mtime_sec;
    if (v == 0) {
        report_bad(h, "stat: version 0", path);
        return;
    }
    if (v < last_v[i])
        report_bad(h, "stat: version went backwards", path);
    last_v[i] = v;
    if (st->ino != vrift_vdir_ino(st->index))
        report_bad(h, "stat: ino", path);
    if (i % 5 == 4) {
        char want[64];
        int n = payload_target(i, v, want, sizeof want);
        if (st->mode != (VRIFT_VDIR_S_IFLNK | 0777) || st->flags != 0 || st->size != (uint64_t)n)
            report_bad(h, "stat: torn symlink", path);
    } else if (st->mode != (VRIFT_VDIR_S_IFREG | ((v & 1) ? 0755u : 0644u)) || st->size != (uint64_t)v * 7 + i ||
               st->flags != (v & 1)) {
        report_bad(h, "stat: torn file", path);
    }
}

/* Checks a listing of "d<k>": only this dir's names, each at most once. */
static void check_list(struct hammer *h, uint32_t k, const unsigned char *buf, size_t needed, uint32_t count,
                       uint8_t *seen)
{
    const struct vrift_vdir_dirent *d = (const void *)buf;
    size_t used = 0;
    char dir[32];
    snprintf(dir, sizeof dir, "d%u", k);
    memset(seen, 0, h->paths);
    for (uint32_t c = 0; c < count; c++) {
        if (used + d->reclen > needed || d->reclen != VRIFT_VDIR_DIRENT_SIZE(d->namelen) ||
            d->name[d->namelen] != '\0') {
            report_bad(h, "malformed listing", dir);
            return;
        }
        char *end = NULL;
        unsigned long i = strtoul(d->name + 1, &end, 10);
        char kind = d->name[0];
        if (end != d->name + d->namelen || i >= h->paths || i % h->dirs != k || (kind == 'l') != (i % 5 == 4) ||
            (kind != 'l' && kind != 'f') || seen[i]) {
            report_bad(h, "wrong name in listing", d->name);
            return;
        }
        uint32_t type = d->mode & VRIFT_VDIR_S_IFMT;
        if (type != (kind == 'l' ? VRIFT_VDIR_S_IFLNK : VRIFT_VDIR_S_IFREG))
            report_bad(h, "wrong type in listing", d->name);
        seen[i] = 1;
        used += d->reclen;
        d = vrift_vdir_dirent_next(d);
    }
    if (used != needed)
        report_bad(h, "listing size", dir);
}

static void *hammer_thread(void *arg)
{
    struct hammer *h = arg;
    uint64_t s = h->seed ^ (uint64_t)(uintptr_t)&s;
    struct vrift_vdir_info info;
    if (vrift_vdir_info(h->r, &info) != 0) {
        report_bad(h, "info", "");
        return NULL;
    }
    const uint64_t seed = info.hash_seed; /* kept across resizes (vrift_vdir.h section 5) */
    uint32_t *last_v = calloc(h->paths, sizeof *last_v);
    uint8_t *seen = malloc(h->paths);
    size_t buflen = 1 << 16;
    unsigned char *buf = aligned_alloc(8, buflen);
    struct vrift_vdir_result res;
    char path[64];
    uint64_t n = 0, hits = 0, misses = 0, lists = 0, listed = 0, eagain = 0;
    for (;;) {
        if ((n & 1023) == 0) {
            if (atomic_load(&h->done) || now_s() > h->deadline)
                break;
            /* "done" appears after the writer's last batch. */
            if (vrift_vdir_lookup(h->r, "done", 4, &res) == 0 && atomic_load(&h->lookups) + n >= h->min_lookups) {
                atomic_store(&h->done, 1);
                break;
            }
        }
        uint64_t x = rng(&s);
        if ((x & 63) == 0) { /* a listing */
            uint32_t k = (uint32_t)((x >> 8) % h->dirs);
            int dl = snprintf(path, sizeof path, "d%u", k);
            size_t needed = 0;
            uint32_t count = 0;
            int rc = vrift_vdir_list(h->r, path, (size_t)dl, buf, buflen, &needed, &count);
            if (rc == 0) {
                check_list(h, k, buf, needed, count, seen);
                lists++;
                listed += count;
            } else if (rc == -EAGAIN) {
                eagain++;
            } else if (rc != -ENOENT) { /* d<k> exists before the reader starts; never removed */
                report_bad(h, "list error", path);
            }
            n++;
            continue;
        }
        uint32_t i = (uint32_t)((x >> 8) % h->paths);
        int len = path_of(i, h->dirs, path, sizeof path);
        /* every other read asks only for the stat fields (stat()'s fast path) */
        const int stat_only = (x >> 7) & 1;
        struct vrift_vdir_stat st;
        int rc = stat_only ? vrift_vdir_stat(h->r, path, (size_t)len, &st) : vrift_vdir_lookup(h->r, path, (size_t)len, &res);
        n++;
        if (rc == 0) {
            hits++;
            if (stat_only)
                check_stat(h, i, path, &st, last_v);
            else
                check_entry(h, i, path, (size_t)len, &res, seed, last_v);
        } else if (rc == -ENOENT) {
            misses++;
        } else if (rc == -EAGAIN) {
            eagain++;
        } else {
            char why[64];
            snprintf(why, sizeof why, "lookup error %d", rc);
            report_bad(h, why, path);
        }
    }
    atomic_fetch_add(&h->lookups, n);
    atomic_fetch_add(&h->hits, hits);
    atomic_fetch_add(&h->misses, misses);
    atomic_fetch_add(&h->lists, lists);
    atomic_fetch_add(&h->listed, listed);
    atomic_fetch_add(&h->eagain, eagain);
    free(last_v);
    free(seen);
    free(buf);
    return NULL;
}

static const char *opt(int argc, char **argv, const char *name, const char *dflt)
{
    for (int i = 0; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return dflt;
}

static int cmd_hammer(const char *vdir, int argc, char **argv)
{
    struct hammer h;
    memset(&h, 0, sizeof h);
    h.paths = (uint32_t)strtoul(opt(argc, argv, "--paths", "1000"), NULL, 10);
    h.dirs = (uint32_t)strtoul(opt(argc, argv, "--dirs", "16"), NULL, 10);
    h.min_lookups = strtoull(opt(argc, argv, "--min-lookups", "1000000"), NULL, 10);
    unsigned threads = (unsigned)strtoul(opt(argc, argv, "--threads", "2"), NULL, 10);
    h.deadline = now_s() + strtod(opt(argc, argv, "--timeout", "60"), NULL);
    h.seed = (uint64_t)time(NULL) ^ (uint64_t)getpid();
    if (h.paths == 0 || h.dirs == 0 || threads == 0 || threads > 64)
        return 2;
    int rc = vrift_vdir_open(vdir, &h.r);
    if (rc != 0) {
        fprintf(stderr, "vdir-hammer: open %s: %s\n", vdir, strerror(-rc));
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    double t0 = now_s();
    pthread_t tid[64];
    for (unsigned t = 0; t < threads; t++)
        pthread_create(&tid[t], NULL, hammer_thread, &h);
    for (unsigned t = 0; t < threads; t++)
        pthread_join(tid[t], NULL);
    double secs = now_s() - t0;
    struct vrift_vdir_info info;
    rc = vrift_vdir_info(h.r, &info);
    int finished = atomic_load(&h.done);
    printf("{\"lookups\":%llu,\"hits\":%llu,\"misses\":%llu,\"lists\":%llu,\"listed\":%llu,\"bad\":%llu,"
           "\"eagain\":%llu,\"retries\":%llu,\"remaps\":%llu,\"finished\":%s,\"seconds\":%.3f,\"gen\":%llu,"
           "\"entries\":%u,\"capacity\":%u}\n",
           (unsigned long long)h.lookups, (unsigned long long)h.hits, (unsigned long long)h.misses,
           (unsigned long long)h.lists, (unsigned long long)h.listed, (unsigned long long)h.bad,
           (unsigned long long)h.eagain, (unsigned long long)(rc == 0 ? info.retries : 0),
           (unsigned long long)(rc == 0 ? info.remaps : 0), finished ? "true" : "false", secs,
           (unsigned long long)(rc == 0 ? info.gen : 0), rc == 0 ? info.entry_count : 0,
           rc == 0 ? info.entry_cap : 0);
    vrift_vdir_close(h.r);
    return h.bad == 0 && finished && rc == 0 ? 0 : 1;
}

/* ---- small modes ------------------------------------------------------- */

static void json_str(const char *s, size_t n)
{
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static int cmd_probe(const char *vdir)
{
    vrift_vdir_reader *r = NULL;
    int rc = vrift_vdir_open(vdir, &r);
    printf("{\"open\":%d,\"error\":\"%s\"}\n", rc, rc == 0 ? "" : strerror(-rc));
    if (rc != 0)
        return -rc;
    vrift_vdir_close(r);
    return 0;
}

static int cmd_lookup(const char *vdir, int n, char **paths)
{
    vrift_vdir_reader *r = NULL;
    int rc = vrift_vdir_open(vdir, &r);
    if (rc != 0) {
        fprintf(stderr, "vdir-hammer: open %s: %s\n", vdir, strerror(-rc));
        return 1;
    }
    static struct vrift_vdir_result res;
    for (int k = 0; k < n; k++) {
        rc = vrift_vdir_lookup(r, paths[k], strlen(paths[k]), &res);
        printf("{\"path\":");
        json_str(paths[k], strlen(paths[k]));
        if (rc != 0) {
            printf(",\"rc\":%d}\n", rc);
            continue;
        }
        printf(",\"rc\":0,\"ino\":%llu,\"mode\":%u,\"size\":%llu,\"mtime\":%u,\"flags\":%u,\"nchildren\":%u,\"target\":",
               (unsigned long long)res.ino, res.mode, (unsigned long long)res.size, res.mtime_sec, res.flags,
               res.nchildren);
        json_str(res.target, res.target_len);
        printf(",\"digest\":\"");
        if ((res.mode & VRIFT_VDIR_S_IFMT) == VRIFT_VDIR_S_IFREG)
            for (int i = 0; i < 32; i++)
                printf("%02x", res.entry.u.digest[i]);
        char blob[512] = "";
        if ((res.mode & VRIFT_VDIR_S_IFMT) == VRIFT_VDIR_S_IFREG)
            vrift_vdir_blob_path(r, res.entry.u.digest, (res.mode & 0100) != 0, blob, sizeof blob);
        /* a string: ns since the epoch do not fit a JSON (double) number */
        printf("\",\"blob\":\"%s\",\"ctime\":\"%llu\"}\n", blob,
               (res.mode & VRIFT_VDIR_S_IFMT) == VRIFT_VDIR_S_IFREG ? (unsigned long long)res.entry.u.blob.ctime_ns : 0ull);
    }
    vrift_vdir_close(r);
    return 0;
}

/* One long-lived reader: prints "ready", then answers one lookup per stdin
 * line (so a test can change the VDir between lines), with its remap count. */
static int cmd_follow(const char *vdir)
{
    vrift_vdir_reader *r = NULL;
    int rc = vrift_vdir_open(vdir, &r);
    if (rc != 0) {
        fprintf(stderr, "vdir-hammer: open %s: %s\n", vdir, strerror(-rc));
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    char line[VRIFT_VDIR_PATH_MAX + 2];
    static struct vrift_vdir_result res;
    while (fgets(line, sizeof line, stdin) != NULL) {
        size_t n = strcspn(line, "\n");
        line[n] = '\0';
        rc = vrift_vdir_lookup(r, line, n, &res);
        struct vrift_vdir_info info;
        int irc = vrift_vdir_info(r, &info);
        printf("{\"path\":");
        json_str(line, n);
        printf(",\"rc\":%d,\"mtime\":%u,\"size\":%llu,\"remaps\":%llu,\"info\":%d}\n", rc, rc == 0 ? res.mtime_sec : 0,
               rc == 0 ? (unsigned long long)res.size : 0ull, irc == 0 ? (unsigned long long)info.remaps : 0ull, irc);
        fflush(stdout);
    }
    vrift_vdir_close(r);
    return 0;
}

static int cmd_list(const char *vdir, const char *dir)
{
    vrift_vdir_reader *r = NULL;
    int rc = vrift_vdir_open(vdir, &r);
    if (rc != 0) {
        fprintf(stderr, "vdir-hammer: open %s: %s\n", vdir, strerror(-rc));
        return 1;
    }
    size_t needed = 0;
    uint32_t count = 0;
    rc = vrift_vdir_list(r, dir, strlen(dir), NULL, 0, &needed, &count); /* size it first */
    void *buf = NULL;
    if (rc == -ERANGE || rc == 0) {
        buf = aligned_alloc(8, needed + 8);
        rc = vrift_vdir_list(r, dir, strlen(dir), buf, needed, &needed, &count);
    }
    printf("{\"rc\":%d,\"count\":%u,\"names\":[", rc, rc == 0 ? count : 0);
    const struct vrift_vdir_dirent *d = buf;
    for (uint32_t c = 0; rc == 0 && c < count; c++, d = vrift_vdir_dirent_next(d)) {
        if (c)
            putchar(',');
        json_str(d->name, d->namelen);
    }
    printf("]}\n");
    free(buf);
    vrift_vdir_close(r);
    return 0;
}

/* ---- fuzz ---------------------------------------------------------------- */

struct tally {
    uint64_t ops, ok, enoent, eio, eagain, estale, enotdir, erange, unexpected;
    uint64_t open_ok, open_einval, open_other;
};

static void count_rc(struct tally *t, int rc, const char *what)
{
    t->ops++;
    switch (rc) {
    case 0: t->ok++; break;
    case -ENOENT: t->enoent++; break;
    case -EIO: t->eio++; break;
    case -EAGAIN: t->eagain++; break;
    case -ESTALE: t->estale++; break;
    case -ENOTDIR: t->enotdir++; break;
    case -ERANGE: t->erange++; break;
    default:
        if (t->unexpected++ < 10)
            fprintf(stderr, "vdir-hammer: fuzz: unexpected %d from %s\n", rc, what);
    }
}

/* What the API promises even for garbage: well-formed copies. */
static void sane_result(struct tally *t, const struct vrift_vdir_result *res)
{
    uint32_t type = res->mode & VRIFT_VDIR_S_IFMT;
    int ok = type == VRIFT_VDIR_S_IFREG || type == VRIFT_VDIR_S_IFDIR || type == VRIFT_VDIR_S_IFLNK;
    ok = ok && res->target_len <= VRIFT_VDIR_TARGET_MAX && res->target[res->target_len] == '\0';
    ok = ok && (type == VRIFT_VDIR_S_IFLNK) == (res->target_len != 0);
    if (!ok && t->unexpected++ < 10)
        fprintf(stderr, "vdir-hammer: fuzz: malformed result\n");
}

static void sane_list(struct tally *t, const unsigned char *buf, size_t needed, uint32_t count)
{
    const struct vrift_vdir_dirent *d = (const void *)buf;
    size_t used = 0;
    for (uint32_t c = 0; c < count; c++, d = vrift_vdir_dirent_next(d)) {
        if (used + 16 > needed || d->reclen != VRIFT_VDIR_DIRENT_SIZE(d->namelen) || used + d->reclen > needed ||
            d->namelen == 0 || d->name[d->namelen] != '\0' || memchr(d->name, '/', d->namelen) != NULL) {
            if (t->unexpected++ < 10)
                fprintf(stderr, "vdir-hammer: fuzz: malformed listing\n");
            return;
        }
        used += d->reclen;
    }
}

/* Lookups and listings of known and made-up paths on reader r. */
static void fuzz_reads(vrift_vdir_reader *r, char **known, uint32_t nknown, uint64_t *s, struct tally *t)
{
    static struct vrift_vdir_result res;
    static _Alignas(8) unsigned char buf[4096];
    for (int k = 0; k < 12; k++) {
        const char *p = known[rng(s) % nknown];
        int rc = vrift_vdir_lookup(r, p, strlen(p), &res);
        count_rc(t, rc, "lookup");
        if (rc == 0)
            sane_result(t, &res);
        struct vrift_vdir_stat st;
        rc = vrift_vdir_stat(r, p, strlen(p), &st);
        count_rc(t, rc, "stat");
        uint32_t type = st.mode & VRIFT_VDIR_S_IFMT;
        if (rc == 0 && type != VRIFT_VDIR_S_IFREG && type != VRIFT_VDIR_S_IFDIR && type != VRIFT_VDIR_S_IFLNK &&
            t->unexpected++ < 10)
            fprintf(stderr, "vdir-hammer: fuzz: malformed stat\n");
    }
    for (int k = 0; k < 4; k++) {
        char junk[40];
        int n = snprintf(junk, sizeof junk, "%s/x%llu", known[rng(s) % nknown], (unsigned long long)(rng(s) % 1000));
        count_rc(t, vrift_vdir_lookup(r, junk, (size_t)(n < 0 ? 0 : n > 39 ? 39 : n), &res), "lookup");
        struct vrift_vdir_stat st;
        count_rc(t, vrift_vdir_stat(r, junk, (size_t)(n < 0 ? 0 : n > 39 ? 39 : n), &st), "stat");
    }
    for (int k = 0; k < 4; k++) {
        const char *p = k == 0 ? "" : known[rng(s) % nknown];
        size_t needed = 0;
        uint32_t count = 0;
        int rc = vrift_vdir_list(r, p, strlen(p), buf, sizeof buf, &needed, &count);
        count_rc(t, rc, "list");
        if (rc == 0)
            sane_list(t, buf, needed, count);
    }
}

static int cmd_fuzz(const char *vdir, int argc, char **argv)
{
    const uint32_t iterations = (uint32_t)strtoul(opt(argc, argv, "--iterations", "3000"), NULL, 10);
    uint64_t s = strtoull(opt(argc, argv, "--seed", "1"), NULL, 10);
    int fd = open(vdir, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < 4096) {
        fprintf(stderr, "vdir-hammer: fuzz: cannot read %s\n", vdir);
        return 1;
    }
    const size_t size = (size_t)st.st_size;
    unsigned char *pristine = malloc(size);
    if (read(fd, pristine, size) != (ssize_t)size)
        return 1;
    close(fd);
    /* The private copy: created like a real object (0600, ours). */
    char copy[64];
    snprintf(copy, sizeof copy, "/dev/shm/vrift-fuzz.%d", (int)getpid());
    fd = open(copy, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)size) != 0) {
        fprintf(stderr, "vdir-hammer: fuzz: cannot create %s\n", copy);
        return 1;
    }
    unsigned char *rw = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    memcpy(rw, pristine, size);

    /* Known paths: walk the pristine copy breadth-first. */
    vrift_vdir_reader *r = NULL;
    int rc = vrift_vdir_open(copy, &r);
    if (rc != 0) {
        fprintf(stderr, "vdir-hammer: fuzz: open pristine copy: %s\n", strerror(-rc));
        unlink(copy);
        return 1;
    }
    enum { MAXK = 4096 };
    static char *known[MAXK];
    uint32_t nknown = 0;
    known[nknown++] = strdup("");
    static _Alignas(8) unsigned char lb[1 << 16];
    for (uint32_t q = 0; q < nknown && nknown < MAXK; q++) {
        size_t needed;
        uint32_t count;
        if (vrift_vdir_list(r, known[q], strlen(known[q]), lb, sizeof lb, &needed, &count) != 0)
            continue;
        const struct vrift_vdir_dirent *d = (const void *)lb;
        for (uint32_t c = 0; c < count && nknown < MAXK; c++, d = vrift_vdir_dirent_next(d)) {
            char p[VRIFT_VDIR_PATH_MAX + 1];
            snprintf(p, sizeof p, "%s%s%s", known[q], known[q][0] ? "/" : "", d->name);
            known[nknown++] = strdup(p);
        }
    }

    const struct vrift_vdir_header *ph = (const void *)pristine;
    const size_t eoff = ph->entry_off, doff = ph->data_off, boff = ph->bucket_off, poff = ph->pool_off;
    const size_t esz = (size_t)ph->entry_cap * VRIFT_VDIR_ENTRY_SIZE, dsz = (size_t)ph->entry_cap * VRIFT_VDIR_DATA_SIZE,
                 bsz = (size_t)ph->bucket_count * VRIFT_VDIR_BUCKET_SIZE, psz = ph->pool_cap;
    struct tally t;
    memset(&t, 0, sizeof t);
    for (uint32_t it = 0; it < iterations; it++) {
        memcpy(rw, pristine, size);
        uint64_t x = rng(&s);
        size_t base = 0, span = size;
        switch (x % 8) {
        case 0: base = 4096; span = size - 4096; break; /* anywhere after the header */
        case 1: base = boff; span = bsz; break;
        case 2: base = eoff; span = esz; break;
        case 3: base = poff; span = psz; break;
        case 4: base = 0; span = 512; break; /* the header's fields */
        case 5: base = doff; span = dsz; break;
        default: break;                     /* anywhere */
        }
        uint32_t nbytes = 1 + (uint32_t)(rng(&s) % ((x >> 8) % 4 == 0 ? 256 : 8));
        for (uint32_t b = 0; b < nbytes; b++)
            rw[base + rng(&s) % span] = (unsigned char)rng(&s);
        /* Keep gen even, else every read backs off to -EAGAIN (tested once below). */
        struct vrift_vdir_header *h = (void *)rw;
        uint64_t g = atomic_load(&h->gen);
        atomic_store(&h->gen, g & ~(uint64_t)1);
        fuzz_reads(r, known, nknown, &s, &t); /* the mapping that was valid when opened */
        vrift_vdir_reader *r2 = NULL;          /* and a fresh open of the corrupt object */
        rc = vrift_vdir_open(copy, &r2);
        if (rc == 0) {
            t.open_ok++;
            fuzz_reads(r2, known, nknown, &s, &t);
            vrift_vdir_close(r2);
        } else if (rc == -EINVAL || rc == -EPROTONOSUPPORT) {
            t.open_einval++;
        } else {
            t.open_other++;
            if (t.unexpected++ < 10)
                fprintf(stderr, "vdir-hammer: fuzz: open returned %d\n", rc);
        }
    }
    /* A writer stuck inside its window: reads give up, they do not hang. */
    memcpy(rw, pristine, size);
    atomic_fetch_or(&((struct vrift_vdir_header *)(void *)rw)->gen, 1);
    static struct vrift_vdir_result res;
    double t0 = now_s();
    rc = vrift_vdir_lookup(r, known[0], strlen(known[0]), &res);
    double stuck_s = now_s() - t0;
    if (rc != -EAGAIN) {
        fprintf(stderr, "vdir-hammer: fuzz: odd gen gave %d, not -EAGAIN\n", rc);
        t.unexpected++;
    }
    vrift_vdir_close(r);
    munmap(rw, size);
    close(fd);
    unlink(copy);
    free(pristine);
    for (uint32_t k = 0; k < nknown; k++)
        free(known[k]);
    printf("{\"iterations\":%u,\"known\":%u,\"ops\":%llu,\"ok\":%llu,\"enoent\":%llu,\"eio\":%llu,\"eagain\":%llu,"
           "\"estale\":%llu,\"enotdir\":%llu,\"erange\":%llu,\"open_ok\":%llu,\"open_einval\":%llu,"
           "\"unexpected\":%llu,\"stuck_seconds\":%.3f}\n",
           iterations, nknown, (unsigned long long)t.ops, (unsigned long long)t.ok, (unsigned long long)t.enoent,
           (unsigned long long)t.eio, (unsigned long long)t.eagain, (unsigned long long)t.estale,
           (unsigned long long)t.enotdir, (unsigned long long)t.erange, (unsigned long long)t.open_ok,
           (unsigned long long)t.open_einval, (unsigned long long)t.unexpected, stuck_s);
    return t.unexpected == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: vdir-hammer hammer|probe|lookup|list|fuzz <vdir> [...]\n");
        return 2;
    }
    const char *cmd = argv[1], *vdir = argv[2];
    if (strcmp(cmd, "hammer") == 0)
        return cmd_hammer(vdir, argc - 3, argv + 3);
    if (strcmp(cmd, "probe") == 0)
        return cmd_probe(vdir);
    if (strcmp(cmd, "lookup") == 0)
        return cmd_lookup(vdir, argc - 3, argv + 3);
    if (strcmp(cmd, "list") == 0 && argc >= 4)
        return cmd_list(vdir, argv[3]);
    if (strcmp(cmd, "follow") == 0)
        return cmd_follow(vdir);
    if (strcmp(cmd, "fuzz") == 0)
        return cmd_fuzz(vdir, argc - 3, argv + 3);
    fprintf(stderr, "vdir-hammer: unknown command %s\n", cmd);
    return 2;
}
