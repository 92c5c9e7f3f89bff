/*
 * mounts.c — which VDirs are mounted where, and path resolution.
 *
 * $VRIFT_VDIRS names the VDirs (comma-separated); each VDir's header holds
 * its mount_root and cas_root, so nothing else needs configuring.
 *
 * Resolution turns (dirfd, path) into an absolute path and then walks it
 * the way the kernel would: "." and ".." components, and symlinks inside
 * a mount (their targets come from the VDir) — absolute targets may leave
 * the mount or enter another. Prefixes outside every mount are taken
 * lexically (a real symlink in front of a mount root is not followed).
 *
 * The fast path (what makes stat() cheap): a clean absolute path under a
 * mount root is looked up whole. A hit proves every intermediate
 * component is a directory (the VDir keeps every entry's parent a
 * directory), so no per-component walk is needed. Misses, symlinks and
 * "..": the component walk.
 */
#include "shim.h"
#include "vdir_core.h" /* stat()'s lookup, inline */

#include <sys/sysmacros.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

struct vr_mount vr_mounts[VR_MAX_MOUNTS];
int vr_nmounts;
/* Bit i: mount i's root is not a clean path (the daemon resolves roots, so
 * never in practice); vr_stat_fast() leaves such a mount to vr_resolve(). */
static uint32_t root_unclean;
/* Bytes of "<root>/" (1 for a root of "/"): where a path's part in the mount starts. */
static size_t rel_skip[VR_MAX_MOUNTS];
static int is_clean(const char *s, size_t n);
/* getuid()/getgid() are system calls: asked once (a mount belongs to the
 * user who started the program; setuid programs never run under the shim). */
static uid_t my_uid;
static gid_t my_gid;

#define VR_MAXSYMLINKS 40
#define VR_DEV_MAJOR 0xf5du /* st_dev major of virtual entries (minor from the VDir's volume_id) */

/* vr_home from a VDir's cas_root, "<home>/" VRIFT_LAYOUT_CAS_DIR; left
 * empty (then $VRIFT_HOME is used) when cas_root is not of that form. */
static void home_of(const char *cas_root)
{
    static const char tail[] = "/" VRIFT_LAYOUT_CAS_DIR;
    const size_t tl = sizeof tail - 1;
    size_t n = vr_strlcpy(vr_home, cas_root, sizeof vr_home);
    int ok = n > tl && n < sizeof vr_home;
    for (size_t i = 0; ok && i < tl; i++)
        ok = vr_home[n - tl + i] == tail[i];
    vr_home[ok ? n - tl : 0] = '\0';
}

/* The mount's upper directory, "<home>/" VRIFT_LAYOUT_UPPER_DIR "/<name>",
 * beside the CAS the VDir names; "" when cas_root is not "<home>/cas". */
static void upper_of(struct vr_mount *m, const char *cas_root, const char *name)
{
    static const char tail[] = "/" VRIFT_LAYOUT_CAS_DIR;
    const size_t tl = sizeof tail - 1;
    size_t n = vr_strlen(cas_root);
    m->upper[0] = '\0';
    if (n <= tl || !vr_memeq(cas_root + n - tl, tail, tl) || n + vr_strlen(name) + 16 >= sizeof m->upper)
        return;
    memcpy(m->upper, cas_root, n - tl);
    size_t k = n - tl;
    k += vr_strlcpy(m->upper + k, "/" VRIFT_LAYOUT_UPPER_DIR "/", sizeof m->upper - k);
    vr_strlcpy(m->upper + k, name, sizeof m->upper - k);
}

int vr_mounts_init(void)
{
    const char *list = vr_getenv("VRIFT_VDIRS");
    if (!list || !*list)
        return 0;
    my_uid = getuid();
    my_gid = getgid();
    int failed = 0;
    char name[VRIFT_VDIR_NAME_MAX + 1];
    const char *p = list;
    while (*p && vr_nmounts < VR_MAX_MOUNTS) {
        size_t n = 0;
        while (p[n] && p[n] != ',')
            n++;
        if (n > 0 && n <= VRIFT_VDIR_NAME_MAX) {
            for (size_t i = 0; i < n; i++)
                name[i] = p[i];
            name[n] = '\0';
            vrift_vdir_reader *r;
            if (vrift_vdir_open(name, &r) == 0) {
                struct vrift_vdir_info info;
                if (vrift_vdir_info(r, &info) == 0 && info.mount_root[0] == '/') {
                    struct vr_mount *m = &vr_mounts[vr_nmounts];
                    m->r = r;
                    atomic_store(&m->ph_fd, -1);
                    atomic_store(&m->cas_fd, -1);
                    atomic_store(&m->upper_fd, -1);
                    atomic_store(&m->issued, NULL);
                    atomic_store(&m->journal_fd, -1);
                    atomic_store(&m->journal_pid, 0);
                    vr_strlcpy(m->cas_root, info.cas_root, sizeof m->cas_root);
                    vr_strlcpy(m->name, name, sizeof m->name);
                    upper_of(m, info.cas_root, name);
                    m->rootlen = vr_strlcpy(m->root, info.mount_root, sizeof m->root);
                    while (m->rootlen > 1 && m->root[m->rootlen - 1] == '/')
                        m->root[--m->rootlen] = '\0';
                    m->dev = makedev(VR_DEV_MAJOR, (unsigned)(info.volume_id & 0xfffffu));
                    rel_skip[vr_nmounts] = m->rootlen == 1 ? 1 : m->rootlen + 1;
                    if (!is_clean(m->root, m->rootlen) && m->rootlen > 1)
                        root_unclean |= 1u << vr_nmounts;
                    if (!vr_home[0])
                        home_of(info.cas_root);
                    vr_nmounts++;
                } else {
                    vrift_vdir_close(r);
                    failed++;
                }
            } else {
                failed++;
            }
        } else if (n > 0) {
            failed++;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    /* A mount that cannot be opened (retired by a stopped daemon, removed)
     * means the daemon is not serving this run: all or nothing. */
    return failed ? -1 : vr_nmounts;
}

/* ---- the working directory -------------------------------------------- */

/* A seqlock around one buffer: chdir is rare, reads are frequent. */
static char cwd_buf[PATH_MAX];
static size_t cwd_len;
static _Atomic unsigned cwd_gen;
static _Atomic int cwd_lock;
static _Atomic int cwd_virtual;

static inline int in_mount(const char *abs, size_t len);

size_t vr_cwd_get(char *buf, size_t cap)
{
    for (int tries = 0; tries < 1000; tries++) {
        unsigned g0 = atomic_load_explicit(&cwd_gen, memory_order_acquire);
        if (g0 & 1u)
            continue;
        size_t n = atomic_load_explicit((_Atomic size_t *)&cwd_len, memory_order_relaxed);
        if (n >= cap || n >= sizeof cwd_buf)
            n = 0;
        memcpy(buf, cwd_buf, n);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&cwd_gen, memory_order_relaxed) == g0) {
            buf[n] = '\0';
            return n;
        }
    }
    return 0;
}

void vr_cwd_set(const char *abs, size_t len)
{
    if (len >= sizeof cwd_buf)
        return;
    int expect = 0;
    while (!atomic_compare_exchange_weak(&cwd_lock, &expect, 1))
        expect = 0;
    unsigned g = atomic_load_explicit(&cwd_gen, memory_order_relaxed);
    atomic_store_explicit(&cwd_gen, g + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    memcpy(cwd_buf, abs, len);
    cwd_buf[len] = '\0';
    atomic_store_explicit((_Atomic size_t *)&cwd_len, len, memory_order_relaxed);
    atomic_store_explicit(&cwd_gen, g + 2, memory_order_release);
    atomic_store(&cwd_virtual, in_mount(abs, len) >= 0);
    atomic_store(&cwd_lock, 0);
}

void vr_cwd_refresh(void)
{
    char buf[PATH_MAX];
    long n = vr_getcwd(buf, sizeof buf);
    if (n > 0 && buf[0] == '/')
        vr_cwd_set(buf, vr_strlen(buf));
}

/* At start, the kernel's cwd may be a mount root (a real, empty directory):
 * then the program is "in" the mount. $PWD may name a deeper virtual
 * directory the parent process (another shimmed program) was in. */
void vr_cwd_init(void)
{
    vr_cwd_refresh();
    const char *pwd = vr_getenv("VRIFT_CWD");
    if (pwd && pwd[0] == '/') {
        size_t n = vr_strlen(pwd);
        int m = in_mount(pwd, n);
        char cur[PATH_MAX];
        size_t cl = vr_cwd_get(cur, sizeof cur);
        /* only believe it if the kernel cwd is that mount's root */
        if (m >= 0 && cl == vr_mounts[m].rootlen && vr_memeq(cur, vr_mounts[m].root, cl))
            vr_cwd_set(pwd, n);
    }
}

int vr_cwd_is_virtual(void) { return atomic_load_explicit(&cwd_virtual, memory_order_relaxed); }

/* ---- helpers ---------------------------------------------------------- */

/* a[0, n) == b[0, n), both at least n bytes: sixteen (SSE2) or eight at a
 * time, inline (this runs on every call that names a path; a libc memcmp
 * call costs more than the compare of a mount root). */
static inline int prefix_eq(const char *a, const char *b, size_t n)
{
    uint64_t x, y;
#ifdef __SSE2__
    if (n >= 16) {
        for (size_t i = 0; i + 16 < n; i += 16)
            if (_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(const void *)(a + i)),
                                                 _mm_loadu_si128((const __m128i *)(const void *)(b + i)))) != 0xFFFF)
                return 0;
        return _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(const void *)(a + n - 16)),
                                                _mm_loadu_si128((const __m128i *)(const void *)(b + n - 16)))) == 0xFFFF;
    }
#endif
    if (n < 8) {
        for (size_t i = 0; i < n; i++)
            if (a[i] != b[i])
                return 0;
        return 1;
    }
    for (size_t i = 0; i + 8 < n; i += 8) {
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y)
            return 0;
    }
    memcpy(&x, a + n - 8, 8); /* the last 8 (overlapping) */
    memcpy(&y, b + n - 8, 8);
    return x == y;
}

/* Index of the mount containing clean absolute `abs`, or -1 (inline: it
 * is the first step of every stat()). */
static inline __attribute__((always_inline)) int in_mount(const char *abs, size_t len)
{
    for (int i = 0; i < vr_nmounts; i++) {
        const struct vr_mount *m = &vr_mounts[i];
        size_t rl = m->rootlen;
        if (len >= rl && prefix_eq(abs, m->root, rl) && (len == rl || abs[rl] == '/' || rl == 1))
            return i;
    }
    return -1;
}

int vr_split_abs(const char *abs, size_t len, size_t *rel_off)
{
    int m = in_mount(abs, len);
    if (m < 0)
        return -1;
    size_t rl = vr_mounts[m].rootlen;
    *rel_off = len == rl ? len : rl + (rl == 1 ? 0 : 1);
    return m;
}

int vr_is_mount_ancestor(const char *abs, size_t len)
{
    while (len > 1 && abs[len - 1] == '/')
        len--;
    for (int i = 0; i < vr_nmounts; i++) {
        const struct vr_mount *m = &vr_mounts[i];
        if (m->rootlen > len && vr_memeq(abs, m->root, len) && (m->root[len] == '/' || len == 1))
            return 1;
    }
    return 0;
}

int vr_abs_of(int mount, const char *rel, size_t rellen, char *buf, size_t cap)
{
    const struct vr_mount *m = &vr_mounts[mount];
    size_t need = m->rootlen + (rellen ? 1 + rellen : 0);
    if (need + 1 > cap)
        return -ENAMETOOLONG;
    memcpy(buf, m->root, m->rootlen);
    size_t n = m->rootlen;
    if (rellen) {
        buf[n++] = '/';
        memcpy(buf + n, rel, rellen);
        n += rellen;
    }
    buf[n] = '\0';
    return (int)n;
}

static inline __attribute__((always_inline)) void fill_stat(int mount, uint64_t ino, uint32_t mode, uint64_t size,
                                                           uint32_t mtime, struct stat *st)
{
#if defined(__SSE2__) && defined(__x86_64__)
    /* nine 16-byte stores: gcc makes a 144-byte memset `rep stos`, whose
     * start-up costs more than the rest of a virtual stat() */
    _Static_assert(sizeof *st == 144, "x86_64 struct stat");
    const __m128i z = _mm_setzero_si128();
    __m128i *w = (__m128i *)(void *)st;
    _mm_storeu_si128(w + 0, z);
    _mm_storeu_si128(w + 1, z);
    _mm_storeu_si128(w + 2, z);
    _mm_storeu_si128(w + 3, z);
    _mm_storeu_si128(w + 4, z);
    _mm_storeu_si128(w + 5, z);
    _mm_storeu_si128(w + 6, z);
    _mm_storeu_si128(w + 7, z);
    _mm_storeu_si128(w + 8, z);
#else
    memset(st, 0, sizeof *st);
#endif
    st->st_dev = vr_mounts[mount].dev;
    st->st_ino = ino;
    st->st_mode = mode;
    /* Directories report 1 link, as btrfs does: "subdirectory count
     * unknown", which keeps fts/find from skipping stat()s on a guess. */
    st->st_nlink = 1;
    st->st_uid = my_uid;
    st->st_gid = my_gid;
    /* directories report one block, as ext4 does, so `ls -l` reads the same */
    if ((mode & S_IFMT) == S_IFDIR && size == 0)
        size = 4096;
    st->st_size = (off_t)size;
    st->st_blksize = 4096;
    st->st_blocks = (blkcnt_t)((size + 511) / 512);
    st->st_atim.tv_sec = st->st_mtim.tv_sec = st->st_ctim.tv_sec = (time_t)mtime;
}

void vr_fill_stat_entry(int mount, uint64_t ino, uint32_t mode, uint64_t size, uint32_t mtime, struct stat *st)
{
    fill_stat(mount, ino, mode, size, mtime, st);
}

void vr_fill_stat(const struct vr_path *p, struct stat *st)
{
    vr_fill_stat_entry(p->mount, p->res.ino, p->res.mode, p->res.size, p->res.mtime_sec, st);
}

/* ---- resolution ---------------------------------------------------------- */

/* A path is "clean" when it is absolute with no empty, "." or ".." component
 * and no trailing '/': then it can be looked up whole. */
/* s[i] is '/' and i + 1 < n: does what follows keep the path clean? */
static inline int clean_after(const char *s, size_t n, size_t i)
{
    char c = s[i + 1];
    if (c == '/')
        return 0;
    if (c == '.') {
        char d = i + 2 < n ? s[i + 2] : '/';
        if (d == '/')
            return 0;
        if (d == '.' && (i + 3 >= n || s[i + 3] == '/'))
            return 0;
    }
    return 1;
}

/* Absolute, no "//", "." or ".." component, no trailing '/' (this runs on
 * every open and stat: 16 positions per step where there is SSE2, and only
 * a '/' followed by '/' or '.' is looked at closer). */
static int is_clean(const char *s, size_t n)
{
    if (n == 0 || s[0] != '/')
        return 0;
    if (n > 1 && s[n - 1] == '/')
        return 0;
    size_t i = 0;
#ifdef __SSE2__
    const __m128i slash = _mm_set1_epi8('/'), dot = _mm_set1_epi8('.');
    for (; i + 17 <= n; i += 16) { /* reads s[i, i + 17) */
        const __m128i a = _mm_loadu_si128((const __m128i *)(s + i));
        const __m128i b = _mm_loadu_si128((const __m128i *)(s + i + 1));
        const __m128i hit = _mm_and_si128(_mm_cmpeq_epi8(a, slash), _mm_or_si128(_mm_cmpeq_epi8(b, slash), _mm_cmpeq_epi8(b, dot)));
        for (unsigned m = (unsigned)_mm_movemask_epi8(hit); m != 0; m &= m - 1)
            if (!clean_after(s, n, i + (size_t)__builtin_ctz(m)))
                return 0;
    }
#endif
    for (; i + 1 < n; i++)
        if (s[i] == '/' && !clean_after(s, n, i))
            return 0;
    return 1;
}

/* Joins base (absolute) and path into out; length or -ENAMETOOLONG. */
static long join(const char *base, size_t bl, const char *path, size_t pl, char *out, size_t cap)
{
    if (bl + 1 + pl + 1 > cap)
        return -ENAMETOOLONG;
    memcpy(out, base, bl);
    out[bl] = '/';
    memcpy(out + bl + 1, path, pl);
    out[bl + 1 + pl] = '\0';
    return (long)(bl + 1 + pl);
}

/*
 * The component walk. `in` is an absolute path (any form) of length n.
 * Fills out as vr_resolve() documents; `subst` tells whether the path
 * was already rewritten (then a non-virtual result is VP_REAL).
 */
static void walk(char *in, size_t n, int flags, int subst, struct vr_path *out)
{
    char cur[PATH_MAX];
    char next[2 * PATH_MAX];
    size_t cl = 0;
    int loops = 0;
restart:
    cl = 0;
    cur[0] = '\0';
    size_t i = 0;
    int must_dir = n > 0 && in[n - 1] == '/';
    while (i < n) {
        while (i < n && in[i] == '/')
            i++;
        if (i >= n)
            break;
        size_t s = i;
        while (i < n && in[i] != '/')
            i++;
        size_t clen = i - s;
        const char *c = in + s;
        /* is this the last component? (only slashes after it) */
        size_t j = i;
        while (j < n && in[j] == '/')
            j++;
        int last = j >= n;
        if (clen == 1 && c[0] == '.')
            continue;
        if (clen == 2 && c[0] == '.' && c[1] == '.') {
            while (cl > 0 && cur[cl - 1] != '/')
                cl--;
            if (cl > 0)
                cl--; /* drop the '/' */
            cur[cl] = '\0';
            if (last)
                break;
            continue;
        }
        if (cl + 1 + clen + 1 > sizeof cur) {
            out->kind = VP_VIRT; /* report as an error the caller returns */
            out->err = -ENAMETOOLONG;
            out->mount = 0;
            return;
        }
        cur[cl++] = '/';
        memcpy(cur + cl, c, clen);
        cl += clen;
        cur[cl] = '\0';
        int m = in_mount(cur, cl);
        if (m < 0)
            continue;
        const struct vr_mount *mt = &vr_mounts[m];
        const char *rel = cl == mt->rootlen ? "" : cur + mt->rootlen + (mt->rootlen == 1 ? 0 : 1);
        size_t rl = cl == mt->rootlen ? 0 : cl - mt->rootlen - (mt->rootlen == 1 ? 0 : 1);
        out->seen = vr_upper_seen(m);
        int rc = vrift_vdir_lookup(mt->r, rel, rl, &out->res);
        if (VR_UNLIKELY(rc == -ENOENT) && !last && vr_upper_pending_since(m, out->seen) && vr_upper_claimed_dir(m, rel, rl, &out->res))
            rc = 0; /* a directory just made, not yet published: walk on into it */
        if (rc == -ENOENT) {
            out->kind = VP_VIRT;
            out->mount = m;
            if (!last) {
                out->err = -ENOENT;
                return;
            }
            out->err = -ENOENT;
            out->creatable = 1;
            out->must_dir = must_dir;
            memcpy(out->rel, rel, rl);
            out->rel[rl] = '\0';
            out->rellen = rl;
            return;
        }
        if (rc != 0) {
            /* The VDir is unusable (retired, corrupt, stuck writer). */
            out->kind = VP_VIRT;
            out->mount = m;
            out->err = rc == -ESTALE ? -ENOENT : -EIO;
            if (rc == -ESTALE)
                vr_fallback("a mount was removed");
            return;
        }
        uint32_t type = out->res.mode & S_IFMT;
        if (type == S_IFLNK && (!last || (flags & VR_FOLLOW) || must_dir)) {
            if (++loops > VR_MAXSYMLINKS) {
                out->kind = VP_VIRT;
                out->mount = m;
                out->err = -ELOOP;
                return;
            }
            /* rebuild: <target resolved against cur's parent> + rest */
            const char *t = out->res.target;
            size_t tl = out->res.target_len;
            size_t pos = 0;
            if (t[0] != '/') {
                size_t pl = cl;
                while (pl > 0 && cur[pl - 1] != '/')
                    pl--;
                if (pl + tl + 1 > sizeof next)
                    goto toolong;
                memcpy(next, cur, pl);
                pos = pl;
            }
            if (pos + tl + (n - i) + 1 > sizeof next)
                goto toolong;
            memcpy(next + pos, t, tl);
            pos += tl;
            memcpy(next + pos, in + i, n - i);
            pos += n - i;
            next[pos] = '\0';
            if (pos >= PATH_MAX * 2)
                goto toolong;
            memcpy(in, next, pos + 1);
            n = pos;
            subst = 1;
            goto restart;
        }
        if (!last && type != S_IFDIR && type != S_IFLNK) {
            out->kind = VP_VIRT;
            out->mount = m;
            out->err = -ENOTDIR;
            return;
        }
        if (last && must_dir && type != S_IFDIR) {
            out->kind = VP_VIRT;
            out->mount = m;
            out->err = -ENOTDIR;
            return;
        }
        if (last) {
            out->kind = VP_VIRT;
            out->err = 0;
            out->mount = m;
            memcpy(out->rel, rel, rl);
            out->rel[rl] = '\0';
            out->rellen = rl;
            return;
        }
    }
    /* Ended outside any mount (or at a ".." / "." tail). */
    if (cl == 0) {
        cur[0] = '/';
        cur[1] = '\0';
        cl = 1;
    }
    int m = in_mount(cur, cl);
    if (m >= 0) {
        /* e.g. "<root>/a/.." or "<dir>/." — look the result up */
        const struct vr_mount *mt = &vr_mounts[m];
        const char *rel = cl == mt->rootlen ? "" : cur + mt->rootlen + (mt->rootlen == 1 ? 0 : 1);
        size_t rl = cl == mt->rootlen ? 0 : cl - mt->rootlen - (mt->rootlen == 1 ? 0 : 1);
        out->kind = VP_VIRT;
        out->mount = m;
        out->seen = vr_upper_seen(m);
        int rc = vrift_vdir_lookup(mt->r, rel, rl, &out->res);
        if (VR_UNLIKELY(rc == -ENOENT) && vr_upper_pending_since(m, out->seen) && vr_upper_claimed_dir(m, rel, rl, &out->res))
            rc = 0; /* a directory just made, not yet published ("d/." of a new d) */
        out->err = rc == 0 ? 0 : (rc == -ENOENT ? -ENOENT : -EIO);
        if (rc == 0 && must_dir && (out->res.mode & S_IFMT) != S_IFDIR)
            out->err = -ENOTDIR;
        memcpy(out->rel, rel, rl);
        out->rel[rl] = '\0';
        out->rellen = rl;
        return;
    }
    if (!subst) {
        out->kind = VP_PASS;
        return;
    }
    out->kind = VP_REAL;
    if (must_dir && cl + 1 < sizeof out->rel) {
        cur[cl++] = '/';
        cur[cl] = '\0';
    }
    memcpy(out->rel, cur, cl + 1);
    out->rellen = cl;
    return;
toolong:
    out->kind = VP_VIRT;
    out->mount = 0;
    out->err = -ENAMETOOLONG;
}

static void resolve_inner(int dirfd, const char *path, int flags, struct vr_path *out)
{
    out->kind = VP_PASS;
    out->err = 0;
    out->creatable = 0;
    out->must_dir = 0;
    out->upper_stat_ok = 0;
    if (VR_UNLIKELY(path == NULL || path[0] == '\0'))
        return;
    char abs[2 * PATH_MAX];
    const char *a = abs; /* the absolute path: the caller's own when it is one (no copy on the fast path) */
    size_t pl = vr_strlen(path);
    long n;
    int based = 0; /* joined to a base the kernel does not know as such */
    if (path[0] == '/') {
        if (pl >= sizeof abs)
            return;
        a = path;
        n = (long)pl;
    } else if (dirfd == AT_FDCWD) {
        char cwd[PATH_MAX];
        size_t cl = vr_cwd_get(cwd, sizeof cwd);
        if (cl == 0)
            return;
        n = join(cwd, cl, path, pl, abs, sizeof abs);
        if (n < 0)
            return;
        based = vr_cwd_is_virtual();
    } else {
        struct vr_vfd *v = vr_vfd_get(dirfd);
        if (!v)
            return; /* a real directory we do not track: cannot lead into a mount */
        if (v->kind == VFD_DIR) {
            char base[PATH_MAX];
            int bl = vr_abs_of(v->mount, v->rel, v->rellen, base, sizeof base);
            if (bl < 0)
                return;
            n = join(base, (size_t)bl, path, pl, abs, sizeof abs);
            based = 1;
        } else if (v->kind == VFD_REALDIR) {
            n = join(v->rel, v->rellen, path, pl, abs, sizeof abs);
        } else {
            /* a file: the kernel answers ENOTDIR */
            out->kind = VP_PASS;
            return;
        }
        if (n < 0)
            return;
    }
    if (VR_LIKELY(is_clean(a, (size_t)n))) {
        int m = in_mount(a, (size_t)n);
        if (m < 0) {
            if (based) {
                out->kind = VP_REAL;
                memcpy(out->rel, a, (size_t)n + 1);
                out->rellen = (size_t)n;
            }
            return;
        }
        const struct vr_mount *mt = &vr_mounts[m];
        size_t skip = (size_t)n == mt->rootlen ? (size_t)n : mt->rootlen + (mt->rootlen == 1 ? 0 : 1);
        const char *rel = a + skip;
        size_t rl = (size_t)n - skip;
        int rc = vrift_vdir_lookup(mt->r, rel, rl, &out->res);
        if (rc == 0 && ((out->res.mode & S_IFMT) != S_IFLNK || !(flags & VR_FOLLOW))) {
            out->kind = VP_VIRT;
            out->mount = m;
            memcpy(out->rel, rel, rl);
            out->rel[rl] = '\0';
            out->rellen = rl;
            return;
        }
        if (rc != 0 && rc != -ENOENT) {
            out->kind = VP_VIRT;
            out->mount = m;
            out->err = rc == -ESTALE ? -ENOENT : -EIO;
            if (rc == -ESTALE)
                vr_fallback("a mount was removed");
            return;
        }
    }
    if (a != abs)
        memcpy(abs, path, pl + 1);
    walk(abs, (size_t)n, flags, based, out);
}

void vr_resolve(int dirfd, const char *path, int flags, struct vr_path *out)
{
    resolve_inner(dirfd, path, flags, out);
    if (out->kind != VP_VIRT)
        return;
    /* While changes wait to be published, the upper layer's real files are
     * the truth: a file just made (not in the VDir yet), or one just
     * unlinked (still in it). */
    if (VR_UNLIKELY(out->err == -ENOENT) && out->creatable && !(flags & VR_CREATING) && vr_upper_pending_since(out->mount, out->seen))
        vr_upper_claim(out);
    else if (VR_UNLIKELY(out->err == 0 && (out->res.flags & VRIFT_VDIR_F_UPPER)) && vr_upper_pending(out->mount))
        vr_upper_check(out);
    vr_check_daemon();
    if (VR_LIKELY(atomic_load_explicit(&vr_on, memory_order_relaxed) == 1))
        return;
    /* The daemon went away: the same path, on the real filesystem. */
    char abs[PATH_MAX];
    int n = vr_abs_of(out->mount, out->rel, out->rellen, abs, sizeof abs);
    if (n < 0 || (out->err != 0 && out->err != -ENOENT)) {
        out->kind = VP_PASS;
        return;
    }
    memcpy(out->rel, abs, (size_t)n + 1);
    out->rellen = (size_t)n;
    out->kind = VP_REAL;
}

/* ---- the stat() fast path --------------------------------------------- */

/*
 * stat() of an absolute path inside a mount is the call a build makes most.
 * vr_resolve() answers every form of path; this answers the common one (an
 * absolute path naming an entry of a mount that is not a symlink to
 * follow) with less work: the mount found by an inline prefix compare, the
 * rest looked up whole, only the stat fields asked of the VDir, nothing
 * copied; a miss is ENOENT after one more lookup, of the parent. No
 * cleanliness scan is needed for a hit: the writer stores only
 * clean relative paths (no empty, "." or ".." component, no trailing '/'),
 * so "<root>/<rel>" with <rel> found is a clean path that names exactly
 * that entry (every parent a directory). Anything else returns
 * VR_FAST_SLOW and the caller resolves in full: a miss, a symlink to
 * follow, an entry with flags other than REMOTE and CLAIM (the upper
 * layer: a real file's stat), a mount gone for good, an unclean path
 * outside the mounts (it may lead into one).
 */
/* Calls of this thread's fast path since it last polled the daemon. */
static VR_TLS unsigned fast_calls;

/* vr_check_daemon() on every 64th fast stat() of a thread: reading the
 * clock (~5 ns) costs more than the rest of the bookkeeping, and the
 * answer comes from the VDir whether the daemon lives or not (a retired
 * VDir is the reader's -ESTALE; a restarted daemon supersedes it). Every
 * other path polls as before. */
static inline void check_daemon_sometimes(void)
{
    if (VR_UNLIKELY((++fast_calls & 63u) == 0))
        vr_check_daemon();
}

/* A found entry's stat(), if the fast path may answer it: not a symlink
 * to follow, no flag but REMOTE and CLAIM (the upper layer is a real
 * file's stat; a directory made in the mount has its claim's inode, which
 * vrift_vdir_stat() reports). */
static inline int fast_found(int m, const struct vrift_vdir_stat *e, int follow, struct stat *st)
{
    if (VR_UNLIKELY(((e->mode & S_IFMT) == S_IFLNK && follow) ||
                    (e->flags & ~(uint32_t)(VRIFT_VDIR_F_REMOTE | VRIFT_VDIR_F_CLAIM)) != 0))
        return VR_FAST_SLOW;
    check_daemon_sometimes();
    if (VR_UNLIKELY(atomic_load_explicit(&vr_on, memory_order_relaxed) != 1))
        return VR_FAST_SLOW;
    fill_stat(m, e->ino, e->mode, e->size, e->mtime_sec, st);
    return VR_FAST_DONE;
}

/* What one inline attempt did not settle: the full vrift_vdir_stat(), and
 * misses. Out of line, so that the common path's result never leaves
 * registers. */
static __attribute__((noinline)) int stat_fast_rest(int m, const char *rel, size_t rl, int rc, int follow,
                                                    uint64_t seen, struct stat *st)
{
    const struct vr_mount *mt = &vr_mounts[m];
    struct vrift_vdir_stat e;
    if (rc == VDIR_UNDECIDED) {
        rc = vrift_vdir_stat(mt->r, rel, rl, &e);
        if (rc == 0)
            return fast_found(m, &e, follow, st);
    }
    if (rc != -ENOENT)
        return VR_FAST_SLOW;
    /* A miss is ENOENT when the parent is a directory entry and the last
     * component a real name: then the path is clean, and the kernel
     * would say so. (Node's module resolution asks mostly misses.) */
    size_t i = rl;
    while (i > 0 && rel[i - 1] != '/')
        i--;
    const char *name = rel + i;
    size_t nl = rl - i;
    if (nl == 0 || (name[0] == '.' && (nl == 1 || (nl == 2 && name[1] == '.'))) || i == 1)
        return VR_FAST_SLOW;
    rc = vrift_vdir_stat(mt->r, rel, i ? i - 1 : 0, &e);
    if (rc != 0 || (e.mode & S_IFMT) != S_IFDIR || (e.flags & ~(uint32_t)(VRIFT_VDIR_F_REMOTE | VRIFT_VDIR_F_CLAIM)) != 0)
        return VR_FAST_SLOW;
    if (vr_upper_pending_since(m, seen))
        return VR_FAST_SLOW; /* it may be a file just made (upper.c), or published since the lookup */
    check_daemon_sometimes();
    if (VR_UNLIKELY(atomic_load_explicit(&vr_on, memory_order_relaxed) != 1))
        return VR_FAST_SLOW;
    return VR_FAST_ENOENT;
}

/*
 * path[0, n) == root[0, n): root holds no NUL, so a shorter path differs
 * at its NUL. Sixteen bytes at a time (the last block overlapping), and
 * never a load into a page the path has not reached: stat() gets no
 * length, and finds it later, while hashing the rest (vdir_core.h).
 */
static inline int root_prefix(const char *p, const char *root, size_t n)
{
    size_t i = 0;
#ifdef __SSE2__
    if (n >= 16) {
        for (;;) {
            const size_t at = i + 16 <= n ? i : n - 16;
            if (VR_UNLIKELY(vdir_crosses_page(p + at)))
                break; /* the rest a byte at a time */
            if (_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(const void *)(p + at)),
                                                 _mm_loadu_si128((const __m128i *)(const void *)(root + at)))) != 0xFFFF)
                return 0;
            if (at == n - 16)
                return 1;
            i += 16;
        }
    }
#endif
    for (; i < n; i++)
        if (p[i] != root[i])
            return 0;
    return 1;
}

int vr_stat_fast(const char *path, int follow, struct stat *st)
{
    /* the mount, by its root (the first whose root the path starts with) */
    int m = 0;
    const char *rel = NULL;
    for (; m < vr_nmounts; m++) {
        const size_t rl = vr_mounts[m].rootlen;
        if (!root_prefix(path, vr_mounts[m].root, rl))
            continue;
        if (rl == 1 || path[rl] == '/') {
            rel = path + rel_skip[m];
            break;
        }
        if (path[rl] == '\0') { /* the root itself: "" */
            rel = path + rl;
            break;
        }
    }
    if (rel == NULL) {
        const size_t n = strlen(path);
        return n < 2 * PATH_MAX && is_clean(path, n) ? VR_FAST_PASS : VR_FAST_SLOW;
    }
    if (VR_UNLIKELY(root_unclean != 0))
        return VR_FAST_SLOW;
    size_t rl;
    struct vrift_vdir_stat e;
    uint64_t seen; /* read before the lookup: a miss is judged against it */
    int rc = vdir_stat_once_cstr(vr_mounts[m].r, rel, &rl, &e, &seen);
    if (VR_LIKELY(rc == 0))
        return fast_found(m, &e, follow, st);
    if (VR_UNLIKELY(rl > VRIFT_VDIR_PATH_MAX))
        return VR_FAST_SLOW; /* ENAMETOOLONG is the full resolution's to say */
    return stat_fast_rest(m, rel, rl, rc, follow, seen, st);
}
