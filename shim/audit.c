/*
 * audit.c — libvrift-audit.so: the mounts as the dynamic loader sees them
 * (glibc rtld-audit, LD_AUDIT; docs/shim.md, "The dynamic loader").
 *
 * ld.so opens libraries with its own internal open(), which no preload can
 * see, so a library inside a mount (found through $ORIGIN, DT_RPATH,
 * DT_RUNPATH, LD_LIBRARY_PATH, or dlopen of a mount path) is not there for
 * it: the mount point is an empty real directory. ld.so asks its audit
 * libraries about every name it looks up (la_objsearch, LA_SER_ORIG) and
 * every candidate path it tries (LA_SER_LIBPATH, _RUNPATH, _CONFIG,
 * _DEFAULT ...). Here a candidate inside a mount root, or inside that
 * mount's link farm (farm.h), becomes the farm path of the same relative
 * name, a hard link to the file that serves it, made on demand; a
 * candidate in a mount that names nothing becomes NULL (ld.so tries the
 * next one). Everything else is returned unchanged. Since the farm mirrors
 * the mount's paths, $ORIGIN of a library loaded from it is the farm
 * directory of its mount directory, and "$ORIGIN/../x" candidates are
 * farm paths mapped back the same way.
 *
 * This library is loaded by ld.so into a link-map namespace of its own:
 * it shares nothing with libvrift.so and opens the VDirs itself (from
 * $VRIFT_VDIRS, vdirs_env.h). It links NO libc (-nostdlib): a libc in the
 * audit namespace would be searched for along LD_LIBRARY_PATH before any
 * audit callback runs, and ld.so would mark the mount's directories there
 * as nonexistent for every later search (the directory-status cache is
 * shared between namespaces); it would also cost a second libc per
 * process. So: raw system calls (rawsys.h), and the few string functions
 * the compiler and the reader need, defined here (hidden).
 *
 * ld.so calls la_objsearch with its load lock held (every _dl_map_object
 * runs under it), so the static buffers below are never used by two
 * threads at once. The library never prints and never fails a load it
 * does not understand: no mounts, or a VDir that cannot be opened, means
 * pass-through (la_version returns 0 when nothing is mounted, and ld.so
 * drops the library).
 *
 * Exported: la_version and la_objsearch only (-fvisibility=hidden;
 * test/shim/safety.spec.ts checks `nm -D`).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <link.h>
#include <stdarg.h>

#include "farm.h"
#include "vdirs_env.h"
#include "vrift_proto.h"

#define VA_EXPORT __attribute__((visibility("default")))
#define VA_HIDDEN __attribute__((visibility("hidden")))
#define VA_MAX_MOUNTS 32
#define VA_MAXSYMLINKS 40

/* ---- the little libc this library needs (it links none) -------------- */

static int va_errno_value;
VA_HIDDEN int *__errno_location(void) { return &va_errno_value; }

VA_HIDDEN void *memcpy(void *d, const void *s, size_t n)
{
    unsigned char *a = d;
    const unsigned char *b = s;
    while (n--)
        *a++ = *b++;
    return d;
}

VA_HIDDEN void *memmove(void *d, const void *s, size_t n)
{
    unsigned char *a = d;
    const unsigned char *b = s;
    if (a < b)
        while (n--)
            *a++ = *b++;
    else
        while (n--)
            a[n] = b[n];
    return d;
}

VA_HIDDEN void *memset(void *d, int c, size_t n)
{
    unsigned char *a = d;
    while (n--)
        *a++ = (unsigned char)c;
    return d;
}

VA_HIDDEN int memcmp(const void *x, const void *y, size_t n)
{
    const unsigned char *a = x, *b = y;
    for (; n--; a++, b++)
        if (*a != *b)
            return *a < *b ? -1 : 1;
    return 0;
}

VA_HIDDEN size_t strlen(const char *s) { return vrift_farm__len(s); }

VA_HIDDEN void *memchr(const void *s, int c, size_t n)
{
    const unsigned char *a = s;
    for (; n--; a++)
        if (*a == (unsigned char)c)
            return (void *)a;
    return NULL;
}

VA_HIDDEN char *strchr(const char *s, int c)
{
    for (;; s++) {
        if (*s == (char)c)
            return (char *)s;
        if (!*s)
            return NULL;
    }
}

/* The reader checks the VDir's owner against these. */
VA_HIDDEN uid_t getuid(void) { return (uid_t)VR_SYS0(SYS_getuid); }
VA_HIDDEN uid_t geteuid(void) { return (uid_t)VR_SYS0(SYS_geteuid); }

/* The VDir reader calls syscall(2): compiled with -Dsyscall=va_syscall
 * (Makefile), it lands here — a raw system call that sets errno like libc. */
VA_HIDDEN long va_syscall(long n, ...)
{
    va_list ap;
    va_start(ap, n);
    long a = va_arg(ap, long), b = va_arg(ap, long), c = va_arg(ap, long);
    long d = va_arg(ap, long), e = va_arg(ap, long), f = va_arg(ap, long);
    va_end(ap);
    long r = vr_sys6(n, a, b, c, d, e, f);
    if (r < 0 && r > -4096) {
        va_errno_value = (int)-r;
        return -1;
    }
    return r;
}

/* ---- the mounts ---------------------------------------------------------- */

static struct vrift_farm va_mounts[VA_MAX_MOUNTS];
static int va_n;
static char **va_envp;
/* $LD_LIBRARY_PATH as ld.so read it (the initial environment), when one
 * of its directories is in a mount or a farm; else NULL. */
static const char *va_libpath;

/* ELF constructors get (argc, argv, envp) from glibc's ld.so, audit
 * libraries too (the initial environment: what `vrift run` set). */
__attribute__((constructor)) static void va_ctor(int argc, char **argv, char **envp)
{
    (void)argc;
    (void)argv;
    va_envp = envp;
}

static const char *va_getenv(const char *name)
{
    size_t n = vrift_farm__len(name);
    for (char **e = va_envp; e && *e; e++)
        if (memcmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

static void va_init(void)
{
    const char *p = va_getenv("VRIFT_VDIRS");
    if (!p)
        return;
    char name[VRIFT_VDIR_NAME_MAX + 1];
    int k;
    while (va_n < VA_MAX_MOUNTS && (k = vrift_vdirs_next(&p, name)) != 0) {
        vrift_vdir_reader *r;
        if (k < 0 || vrift_vdir_open(name, &r) != 0)
            continue;
        if (vrift_farm_init(&va_mounts[va_n], name, r) == 0)
            va_n++;
        else
            vrift_vdir_close(r);
    }
}

static int va_maybe_ours(const char *name);

/* Keeps $LD_LIBRARY_PATH when a directory of it is ours (after va_init). */
static void va_init_libpath(void)
{
    static char dir[PATH_MAX];
    const char *lp = va_getenv("LD_LIBRARY_PATH");
    for (const char *p = lp; p && *p;) {
        const char *q = p;
        while (*q && *q != ':' && *q != ';')
            q++;
        size_t n = (size_t)(q - p);
        if (n > 0 && n < sizeof dir) {
            memcpy(dir, p, n);
            dir[n] = '\0';
            if (dir[0] == '/' && va_maybe_ours(dir)) {
                va_libpath = lp;
                return;
            }
        }
        p = *q ? q + 1 : q;
    }
}

/* ---- paths --------------------------------------------------------------- */

/* Lexically cleans absolute `in` ("//", ".", ".."; no trailing '/') into
 * out. The farm holds only real directories and hard links, so there ".."
 * is what the kernel would do. Returns the length, or -1 if too long. */
static long va_clean(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    out[o++] = '/';
    for (const char *s = in; *s;) {
        while (*s == '/')
            s++;
        const char *c = s;
        while (*s && *s != '/')
            s++;
        size_t cl = (size_t)(s - c);
        if (cl == 0 || (cl == 1 && c[0] == '.'))
            continue;
        if (cl == 2 && c[0] == '.' && c[1] == '.') {
            while (o > 1 && out[o - 1] != '/')
                o--;
            if (o > 1)
                o--;
            continue;
        }
        if (o + cl + 2 > cap)
            return -1;
        if (o > 1)
            out[o++] = '/';
        memcpy(out + o, c, cl);
        o += cl;
    }
    out[o] = '\0';
    return (long)o;
}

static int va_under(const char *p, size_t len, const char *dir, size_t dl)
{
    return len >= dl && memcmp(p, dir, dl) == 0 && (len == dl || p[dl] == '/' || dl == 1);
}

/* The mount whose root holds clean `p`, with the offset of its relative
 * path; -1 if none. */
static int va_in_root(const char *p, size_t len, size_t *rel_off)
{
    for (int i = 0; i < va_n; i++) {
        size_t rl = va_mounts[i].rootlen;
        if (va_under(p, len, va_mounts[i].root, rl)) {
            *rel_off = len == rl ? len : rl + (rl == 1 ? 0 : 1);
            return i;
        }
    }
    return -1;
}

/* Same for a mount's farm directory. */
static int va_in_farm(const char *p, size_t len, size_t *rel_off)
{
    for (int i = 0; i < va_n; i++) {
        size_t fl = va_mounts[i].farmlen;
        if (va_under(p, len, va_mounts[i].farm, fl)) {
            *rel_off = len == fl ? len : fl + 1;
            return i;
        }
    }
    return -1;
}

/* A cheap first look: could raw `name` be ours? */
static int va_maybe_ours(const char *name)
{
    size_t len = vrift_farm__len(name), o;
    if (va_in_root(name, len, &o) >= 0 || va_in_farm(name, len, &o) >= 0)
        return 1;
    for (size_t i = 0; i + 1 < len; i++) /* "//", "/." : needs cleaning first */
        if (name[i] == '/' && (name[i + 1] == '/' || name[i + 1] == '.'))
            return 1;
    return 0;
}

enum { VA_MISS, VA_FOUND, VA_REAL };

/* Work buffers (used under ld.so's load lock, see the top). */
static char va_walk[PATH_MAX], va_splice[PATH_MAX];
static struct vrift_vdir_result va_res;

/*
 * Resolves clean absolute path `p` (copied into va_walk) the way the
 * kernel would, following the mounts' virtual symlinks. VA_FOUND: va_res
 * holds a non-symlink entry of mount *mount. VA_REAL: a symlink led out of
 * every mount; va_walk is the real path. VA_MISS: nothing there.
 */
static int va_resolve(const char *p, int *mount)
{
    size_t len = vrift_farm__len(p);
    if (len + 1 > sizeof va_walk)
        return VA_MISS;
    memcpy(va_walk, p, len + 1);
    for (int hops = 0; hops <= VA_MAXSYMLINKS; hops++) {
        size_t off;
        int m = va_in_root(va_walk, len, &off);
        if (m < 0)
            return hops ? VA_REAL : VA_MISS;
        vrift_vdir_reader *r = va_mounts[m].r;
        const char *rel = va_walk + off;
        size_t rellen = len - off;
        size_t at = rellen; /* where the symlink to follow ends, within rel */
        int rc = vrift_vdir_lookup(r, rel, rellen, &va_res);
        if (rc == 0 && (va_res.mode & VRIFT_VDIR_S_IFMT) != VRIFT_VDIR_S_IFLNK) {
            *mount = m;
            return VA_FOUND;
        }
        if (rc == -ENOENT) { /* a symlink in a parent? walk the components */
            at = 0;
            for (size_t i = 1; i < rellen && !at; i++) {
                if (rel[i] != '/')
                    continue;
                if (vrift_vdir_lookup(r, rel, i, &va_res) != 0)
                    return VA_MISS;
                uint32_t t = va_res.mode & VRIFT_VDIR_S_IFMT;
                if (t == VRIFT_VDIR_S_IFLNK)
                    at = i;
                else if (t != VRIFT_VDIR_S_IFDIR)
                    return VA_MISS;
            }
            if (!at)
                return VA_MISS;
        } else if (rc != 0) {
            return VA_MISS;
        }
        /* va_res is the symlink rel[0, at): splice its target in */
        size_t link_end = off + at, s = 0;
        if (va_res.target[0] != '/') {
            size_t dir = link_end;
            while (dir > 0 && va_walk[dir - 1] != '/')
                dir--;
            if (vrift_farm__put(va_splice, sizeof va_splice, &s, va_walk, dir) < 0)
                return VA_MISS;
        }
        if (vrift_farm__put(va_splice, sizeof va_splice, &s, va_res.target, va_res.target_len) < 0 ||
            vrift_farm__puts(va_splice, sizeof va_splice, &s, va_walk + link_end) < 0)
            return VA_MISS;
        long n = va_clean(va_splice, va_walk, sizeof va_walk);
        if (n < 0)
            return VA_MISS;
        len = (size_t)n;
    }
    return VA_MISS;
}

/* All n bytes through read(2) or write(2) (`nr`: SYS_read, SYS_write), or -1. */
static int va_io_all(long nr, int fd, uint8_t *buf, size_t n)
{
    while (n > 0) {
        long r = VR_SYS3(nr, fd, buf, n);
        if (r == -EINTR)
            continue;
        if (r <= 0)
            return -1;
        buf += r;
        n -= (size_t)r;
    }
    return 0;
}

/*
 * Asks the daemon for a file's blob (FETCH, as the shim does on an open:
 * vrift_proto.h), on a connection of its own: the loader cannot go on
 * without it, so this waits for the answer. 0 once the blob (and, for an
 * executable, its twin) is in the CAS.
 */
static int va_fetch(const struct vrift_farm *f, struct vrift_vdir_result *res, const char *rel, size_t rellen)
{
    struct sockaddr_un {
        unsigned short sun_family;
        char sun_path[108];
    } addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = 1; /* AF_UNIX */
    size_t n = 0;
    if (vrift_farm__put(addr.sun_path, sizeof addr.sun_path, &n, f->home, f->homelen) < 0 ||
        vrift_farm__puts(addr.sun_path, sizeof addr.sun_path, &n, "/" VRIFT_LAYOUT_RUN_DIR "/" VRIFT_LAYOUT_SOCKET_NAME) < 0)
        return -1;
    static uint8_t frame[VRIFT_PROTO_HEADER_SIZE + 4 * VRIFT_PROTO_FIELD_HEADER_SIZE + VRIFT_VDIR_MOUNT_ROOT_MAX + PATH_MAX + VRIFT_LAYOUT_DIGEST_HEX + 4];
    uint8_t *pl = frame + VRIFT_PROTO_HEADER_SIZE;
    size_t cap = sizeof frame - VRIFT_PROTO_HEADER_SIZE, len = 0, w;
    char hex[VRIFT_LAYOUT_DIGEST_HEX];
    vrift_layout_hex(res->entry.u.digest, hex);
    if (!(w = vrift_proto_field(pl + len, cap - len, VRIFT_F_PATH, f->root, (uint32_t)f->rootlen)))
        return -1;
    len += w;
    if (!(w = vrift_proto_field(pl + len, cap - len, VRIFT_F_DIGEST, hex, sizeof hex)))
        return -1;
    len += w;
    /* (the entry: a file of a partial mount names 0…0 until the daemon learns its digest, docs/lazy.md) */
    if (!(w = vrift_proto_field(pl + len, cap - len, VRIFT_F_REL, rel, (uint32_t)rellen)))
        return -1;
    len += w;
    if (!(w = vrift_proto_field_u32(pl + len, cap - len, VRIFT_F_MODE, res->mode)))
        return -1;
    len += w;
    vrift_proto_header(frame, VRIFT_PROTO_HEADER_SIZE, VRIFT_MSG_FETCH, 1, (uint32_t)len);
    int fd = (int)VR_SYS3(SYS_socket, 1 /* AF_UNIX */, 1 /* SOCK_STREAM */ | 02000000 /* SOCK_CLOEXEC */, 0);
    if (fd < 0)
        return -1;
    uint8_t hdr[VRIFT_PROTO_HEADER_SIZE];
    int rc = -1;
    if (VR_SYS3(SYS_connect, fd, &addr, sizeof addr) == 0 && va_io_all(SYS_write, fd, frame, VRIFT_PROTO_HEADER_SIZE + len) == 0 &&
        va_io_all(SYS_read, fd, hdr, sizeof hdr) == 0 && vrift_proto_get_u16(hdr + 6) == VRIFT_MSG_OK)
        rc = 0;
    VR_SYS1(SYS_close, fd);
    /* The daemon published the digest it learned (a partial mount): read the entry again. */
    if (rc == 0 && vrift_vdir_lookup(f->r, rel, rellen, res) != 0)
        rc = -1;
    return rc;
}

/* Returned names: a small ring, so a name handed to ld.so stays intact
 * over the next few calls. */
static char va_out[4][PATH_MAX];
static unsigned va_out_next;
static char va_clean_buf[PATH_MAX], va_abs[PATH_MAX], va_target[PATH_MAX];

/*
 * A miss at farm path <farm>/<rel>: ld.so now stat()s the candidate's
 * directory and, if it does not exist, skips that directory for every
 * later search (its directory-status cache). When the mount has that
 * directory, make it in the farm, so the next library looked up there is
 * still found.
 */
static void va_farm_dir_for_miss(const struct vrift_farm *f, const char *rel, size_t rellen)
{
    size_t dl = rellen;
    while (dl > 0 && rel[dl - 1] != '/')
        dl--;
    size_t a = 0;
    int em;
    if (vrift_farm__put(va_abs, sizeof va_abs, &a, f->root, f->rootlen) < 0 ||
        (dl > 0 && (vrift_farm__put(va_abs, sizeof va_abs, &a, "/", 1) < 0 ||
                    vrift_farm__put(va_abs, sizeof va_abs, &a, rel, dl - 1) < 0)))
        return;
    if (va_resolve(va_abs, &em) != VA_FOUND || (va_res.mode & VRIFT_VDIR_S_IFMT) != VRIFT_VDIR_S_IFDIR)
        return;
    char *path = va_out[va_out_next++ % 4];
    a = 0;
    if (vrift_farm__put(path, PATH_MAX, &a, f->farm, f->farmlen) < 0 || vrift_farm__put(path, PATH_MAX, &a, "/", 1) < 0 ||
        vrift_farm__put(path, PATH_MAX, &a, rel, rellen) < 0)
        return;
    vrift_farm__mkdirs(f, path);
}

static char *va_map(const char *name)
{
    long cl = va_clean(name, va_clean_buf, sizeof va_clean_buf);
    if (cl < 0)
        return (char *)name;
    size_t len = (size_t)cl, off;
    int in_farm = 0;
    int m = va_in_root(va_clean_buf, len, &off);
    if (m < 0 && (m = va_in_farm(va_clean_buf, len, &off)) >= 0)
        in_farm = 1;
    if (m < 0)
        return (char *)name;
    const char *rel = va_clean_buf + off;
    size_t rellen = len - off;
    if (rellen == 0)
        return NULL; /* the mount root is a directory, not a library */
    /* the same path under the mount root, resolved through the VDir */
    const struct vrift_farm *f = &va_mounts[m];
    size_t a = 0;
    if (vrift_farm__put(va_abs, sizeof va_abs, &a, f->root, f->rootlen) < 0 ||
        (f->rootlen > 1 && vrift_farm__put(va_abs, sizeof va_abs, &a, "/", 1) < 0) ||
        vrift_farm__put(va_abs, sizeof va_abs, &a, rel, rellen) < 0)
        return NULL;
    int em;
    char *out = va_out[va_out_next++ % 4];
    switch (va_resolve(va_abs, &em)) {
    case VA_REAL: {
        size_t o = 0;
        return vrift_farm__puts(out, PATH_MAX, &o, va_walk) < 0 ? NULL : out;
    }
    case VA_FOUND:
        break;
    default:
        if (in_farm)
            va_farm_dir_for_miss(f, rel, rellen);
        return NULL;
    }
    if ((va_res.mode & VRIFT_VDIR_S_IFMT) != VRIFT_VDIR_S_IFREG)
        return NULL;
    struct stat tst;
    if (vrift_farm_target(&va_mounts[em], &va_res, va_target, sizeof va_target, &tst) != 0) {
        /* not here yet (a lazy mount): the daemon fetches it, as for any open (va_walk: where va_resolve found it) */
        size_t rl = va_mounts[em].rootlen, skip = rl > 1 ? rl + 1 : rl;
        const char *erel = va_walk + skip;
        if ((va_res.flags & VRIFT_VDIR_F_UPPER) || va_fetch(&va_mounts[em], &va_res, erel, vrift_farm__len(erel)) != 0)
            return NULL;
        /* A partial mount's first FETCH may only learn the digest: a large blob is left for the opener to
         * fetch (it may stream to a read()er). ld.so maps the whole file: ask for it by its digest now. */
        if (vrift_farm_target(&va_mounts[em], &va_res, va_target, sizeof va_target, &tst) != 0 &&
            (va_fetch(&va_mounts[em], &va_res, erel, vrift_farm__len(erel)) != 0 ||
             vrift_farm_target(&va_mounts[em], &va_res, va_target, sizeof va_target, &tst) != 0))
            return NULL;
    }
    if (vrift_farm_link(f, rel, rellen, va_target, &tst, out, PATH_MAX) >= 0)
        return out;
    /* no farm entry could be made: the file itself still loads ($ORIGIN
     * is then the CAS shard) */
    size_t o = 0;
    return vrift_farm__puts(out, PATH_MAX, &o, va_target) < 0 ? NULL : out;
}

/* Does object `l`'s dynamic section have `tag`? */
static int va_has_tag(const struct link_map *l, long tag)
{
    if (!l || !l->l_ld)
        return 0;
    int n = 0;
    for (const ElfW(Dyn) *d = l->l_ld; d->d_tag != DT_NULL && n < 4096; d++, n++)
        if (d->d_tag == tag)
            return 1;
    return 0;
}

static char va_cand[PATH_MAX];

/*
 * A bare library name (LA_SER_ORIG) while $LD_LIBRARY_PATH names a mount
 * directory: search $LD_LIBRARY_PATH here, in its order, before ld.so
 * does. ld.so cannot be left to try <mnt>/dir/name itself: on a miss it
 * stat()s <mnt>/dir, which does not exist for the kernel, and never looks
 * there again. A hit in a mount directory returns the farm path (ld.so
 * opens it as given); a real directory that has the file, or anything
 * this cannot order (DT_RPATH, which comes first, or a "$" token), returns
 * the name unchanged: ld.so's own search finds the same file.
 */
static char *va_search_libpath(const char *name, const struct link_map *loader)
{
    if (!va_has_tag(loader, DT_RUNPATH)) {
        /* DT_RPATH of the loader, and of the program, precede LD_LIBRARY_PATH
         * (those of the loader's own loaders are not visible here) */
        const struct link_map *main_map = loader;
        for (int i = 0; main_map && main_map->l_prev && i < 1000000; i++)
            main_map = main_map->l_prev;
        if (va_has_tag(loader, DT_RPATH) || va_has_tag(main_map, DT_RPATH))
            return (char *)name;
    }
    size_t nl = vrift_farm__len(name);
    for (const char *p = va_libpath; *p;) {
        const char *q = p;
        while (*q && *q != ':' && *q != ';')
            q++;
        size_t dl = (size_t)(q - p), c = 0;
        if (memchr(p, '$', dl))
            return (char *)name;
        if (dl == 0)
            vrift_farm__put(va_cand, sizeof va_cand, &c, ".", 1); /* an empty entry is the cwd */
        else if (vrift_farm__put(va_cand, sizeof va_cand, &c, p, dl) < 0)
            return (char *)name;
        if (vrift_farm__put(va_cand, sizeof va_cand, &c, "/", 1) < 0 || vrift_farm__put(va_cand, sizeof va_cand, &c, name, nl) < 0)
            return (char *)name;
        if (va_cand[0] == '/' && va_maybe_ours(va_cand)) {
            char *r = va_map(va_cand);
            if (r && r != va_cand)
                return r;
        } else {
            struct stat st;
            if (vr_fstatat(AT_FDCWD, va_cand, &st, 0) == 0)
                return (char *)name;
        }
        p = *q ? q + 1 : q;
    }
    return (char *)name;
}

/* ---- rtld-audit ---------------------------------------------------------- */

VA_EXPORT unsigned int la_version(unsigned int version)
{
    va_init();
    va_init_libpath();
    if (va_n == 0)
        return 0; /* nothing to serve: ld.so unloads this library */
    return version < LAV_CURRENT ? version : LAV_CURRENT;
}

VA_EXPORT char *la_objsearch(const char *name, uintptr_t *cookie, unsigned int flag)
{
    if (!name || va_n == 0)
        return (char *)name;
    int saved = va_errno_value;
    char *r = (char *)name;
    if (name[0] == '/') {
        if (va_maybe_ours(name))
            r = va_map(name);
    } else if (flag == LA_SER_ORIG && va_libpath && cookie && *cookie && !strchr(name, '/')) {
        /* glibc starts every object's audit cookie as its link_map: here, the object whose dependency this is */
        r = va_search_libpath(name, (const struct link_map *)*cookie);
    }
    va_errno_value = saved;
    return r;
}
