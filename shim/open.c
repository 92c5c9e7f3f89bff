/*
 * open.c — the open family, stdio opens, and descriptor bookkeeping
 * (close, close_range, dup, dup2, dup3, fcntl F_DUPFD).
 *
 * Reading a virtual file opens its CAS blob read-only (zero copy: the
 * kernel's page cache serves the bytes; mmap works) relative to a cached
 * descriptor of the CAS directory (cas_dir below), and binds the fd to
 * the virtual entry so fstat() reports the virtual file. Executable entries
 * open the blob's 0555 twin (<digest>.x), so fexecve and /proc/self/fd
 * exec work. A blob not in the local CAS (VDIR_F_REMOTE, or missing) is
 * fetched through the daemon first; if that fails the open fails with EIO:
 * never other bytes.
 *
 * Opening for writing (or O_TRUNC, or O_CREAT of a new name) opens the
 * path's file in the mount's upper layer, made on first use (upper.c): a
 * plain real descriptor the shim does not track. So does any open of a
 * path that already has an upper file.
 */
#include "shim.h"

#include <stdlib.h>

int vr_open_dir_fd(const struct vr_path *p, int oflags);
void vr_track_real_dir(int dirfd_base, const char *path, int fd);

static inline int ret(int rc)
{
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    return rc;
}

/*
 * The mount's CAS directory as a descriptor, opened once per process
 * (O_PATH, at a high number, close-on-exec, like the mount-root cache):
 * a blob is then opened with openat(cas, "ab/<64 hex>"), a 2-component
 * walk instead of the whole absolute path from "/". -1 when it cannot be
 * opened. The program may close or replace the number (close, dup2 and
 * close_range disown it; a raw close is caught by open_cas's fallback).
 */
static int cas_dir(int mount)
{
    struct vr_mount *m = &vr_mounts[mount];
    int fd = atomic_load_explicit(&m->cas_fd, memory_order_acquire);
    if (VR_LIKELY(fd >= 0))
        return fd;
    int lo = vr_openat(AT_FDCWD, m->cas_root, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
    if (lo < 0)
        return -1;
    int hi = vr_fcntl(lo, F_DUPFD_CLOEXEC, vr_high_fd_floor() + 1 + VR_MAX_MOUNTS + mount);
    vr_close(lo);
    if (hi < 0)
        return -1;
    int expect = -1;
    if (!atomic_compare_exchange_strong(&m->cas_fd, &expect, hi)) {
        vr_close(hi); /* another thread was first */
        return expect;
    }
    return hi;
}

#ifdef __SSE2__
#include <emmintrin.h>
/* 16 bytes -> 32 lowercase hex digits, 16 at a time. */
static inline void hex16(const uint8_t *in, char *out)
{
    const __m128i x = _mm_loadu_si128((const __m128i *)in), m = _mm_set1_epi8(0x0f);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(x, 4), m), lo = _mm_and_si128(x, m);
    __m128i a = _mm_unpacklo_epi8(hi, lo), b = _mm_unpackhi_epi8(hi, lo);
    const __m128i nine = _mm_set1_epi8(9), zero = _mm_set1_epi8('0'), gap = _mm_set1_epi8('a' - '0' - 10);
    a = _mm_add_epi8(_mm_add_epi8(a, zero), _mm_and_si128(_mm_cmpgt_epi8(a, nine), gap));
    b = _mm_add_epi8(_mm_add_epi8(b, zero), _mm_and_si128(_mm_cmpgt_epi8(b, nine), gap));
    _mm_storeu_si128((__m128i *)out, a);
    _mm_storeu_si128((__m128i *)(out + 16), b);
}
#endif

/* The blob's path relative to cas/ (vrift_layout.h) into rel: the hex is
 * made with vector code where there is SSE2 (this runs on every read-only
 * open), the path by the layout's one helper. */
static void blob_rel(const uint8_t digest[32], int exec, char rel[VRIFT_LAYOUT_BLOB_REL_SIZE])
{
    char hex[VRIFT_LAYOUT_DIGEST_HEX];
#ifdef __SSE2__
    hex16(digest, hex);
    hex16(digest + 16, hex + 32);
#else
    vrift_layout_hex(digest, hex);
#endif
    vrift_layout_blob_rel(hex, exec, rel);
}

/*
 * Opens a blob relative to the cached CAS descriptor. Any failure there is
 * retried with the absolute path (the descriptor may be stale: closed
 * behind our back, its number reused, the directory replaced); when that
 * succeeds the cached descriptor is dropped and reopened next time.
 */
static int open_cas(int mount, const uint8_t digest[32], int exec, int fl)
{
    char rel[VRIFT_LAYOUT_BLOB_REL_SIZE];
    blob_rel(digest, exec, rel);
    int dfd = cas_dir(mount);
    int fd = dfd >= 0 ? vr_openat(dfd, rel, fl, 0) : -EBADF;
    if (VR_LIKELY(fd >= 0) || fd == -EMFILE || fd == -ENFILE)
        return fd;
    const struct vr_mount *m = &vr_mounts[mount];
    char blob[VRIFT_VDIR_CAS_ROOT_MAX + sizeof rel];
    size_t n = vr_strlcpy(blob, m->cas_root, VRIFT_VDIR_CAS_ROOT_MAX);
    blob[n++] = '/';
    memcpy(blob + n, rel, sizeof rel);
    int afd = vr_openat(AT_FDCWD, blob, fl, 0);
    if (afd >= 0 && dfd >= 0) {
        /* Forget it, never close it: the number may be the program's now
         * (a rare leak of one descriptor beats closing someone else's). */
        int e = dfd;
        atomic_compare_exchange_strong(&vr_mounts[mount].cas_fd, &e, -1);
    }
    return afd;
}

/*
 * One fstat of the opened blob: the size the VDir entry says, and the inode
 * change time `ctime_ns` the daemon recorded when it last knew the blob good
 * (vrift_vdir.h; no user can set a ctime, every write into the inode moves
 * it). 0 = unknown: never matches, so the daemon is asked. `any_ctime`:
 * the size alone (the daemon has just vouched for the bytes).
 */
static int blob_unchanged(int fd, uint64_t size, uint64_t ctime_ns, int any_ctime)
{
    struct stat st;
    if (vr_fstat(fd, &st) != 0)
        return 0;
    const uint64_t ct = (uint64_t)st.st_ctim.tv_sec * 1000000000u + (uint64_t)st.st_ctim.tv_nsec;
    return (uint64_t)st.st_size == size && (any_ctime || ct == ctime_ns);
}

int vr_open_lower_blob(const struct vr_path *p, int fl, int stream)
{
    /* By pointer: a result is 4 KiB (a symlink target's room), and this runs on every read-only open. */
    const struct vrift_vdir_result *res = &p->res;
    struct vrift_vdir_result learned;
    if (VR_UNLIKELY(vr_digest_unknown(res))) {
        learned = p->res; /* (a partial mount's first open of the file) */
        if (vr_learn_digest(p->mount, p->rel, p->rellen, &learned) != 0)
            return -EIO;
        res = &learned;
    }
    int exec = (res->mode & 0111) != 0;
    uint64_t want = res->entry.u.blob.ctime_ns;
    int vouched = 0, fd = -ENOENT;
    for (int attempt = 0; attempt < 2 && fd < 0; attempt++) {
        if (attempt == 1 || (res->flags & VRIFT_VDIR_F_REMOTE)) {
            /* Missing, or not as the daemon last knew it: the daemon checks it
             * (re-hash; quarantine and fetch again if it changed), renews the
             * entry's ctime, and says the ctime it checked. */
            char partial[PATH_MAX];
            uint64_t checked = 0;
            if (vr_fetch_for(p->mount, p->rel, p->rellen, res->entry.u.digest, res->mode, stream ? partial : NULL,
                             sizeof partial, &checked) != 0)
                return -EIO;
            /* A large blob still arriving: its reads wait, range by range, in the kernel.
             * Gone already (complete and renamed into the CAS): open that instead. */
            if (stream && partial[0] && (fd = vr_openat(AT_FDCWD, partial, fl, 0)) >= 0)
                break;
            want = checked;
            /* No CTIME: a streamed blob completed meanwhile (admission has just hashed it). */
            vouched = checked == 0;
        }
        fd = open_cas(p->mount, res->entry.u.digest, exec, fl);
        if (fd == -ENOENT && exec)
            fd = open_cas(p->mount, res->entry.u.digest, 0, fl);
        if (fd >= 0 && !blob_unchanged(fd, res->size, want, vouched)) {
            /* Not the size or ctime on record: a damaged blob (a byte flipped,
             * truncated, written through a hard link), or only linked again.
             * Never served unchecked; a second mismatch is EIO. */
            vr_close(fd);
            fd = attempt == 0 ? -ENOENT : -EIO;
            continue;
        }
        if (fd >= 0 || fd != -ENOENT)
            break;
    }
    if (fd < 0)
        return fd == -EMFILE || fd == -ENFILE ? fd : -EIO;
    return fd;
}

static int open_blob(const struct vr_path *p, int flags)
{
    int fd = vr_open_lower_blob(p, O_RDONLY | (flags & (O_CLOEXEC | O_NONBLOCK | O_LARGEFILE | O_NOCTTY)), 1);
    if (fd < 0)
        return fd;
    struct vr_vfd *v = vr_vfd_new();
    if (!v) {
        vr_close(fd);
        return -EMFILE;
    }
    vr_vfd_describe(v, VFD_FILE, p);
    vr_vfd_set(fd, v);
    return fd;
}

int vr_open_virtual(struct vr_path *p, int flags, mode_t mode)
{
    int acc = flags & O_ACCMODE;
    int writing = acc == O_WRONLY || acc == O_RDWR || (flags & O_TRUNC);
    if ((flags & __O_TMPFILE) == __O_TMPFILE)
        return -EOPNOTSUPP;
    if (p->err == -ENOENT) {
        if (!(flags & O_CREAT) || !p->creatable)
            return -ENOENT;
        if (p->must_dir)
            return -EISDIR;
        return vr_upper_open(p, flags, mode);
    }
    if (p->err)
        return p->err;
    uint32_t type = p->res.mode & S_IFMT;
    if ((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL))
        return -EEXIST;
    if (type == S_IFLNK)
        return -ELOOP; /* O_NOFOLLOW on a symlink */
    if (type == S_IFDIR) {
        if (writing || (flags & O_CREAT))
            return -EISDIR;
        return vr_open_dir_fd(p, flags);
    }
    if (flags & O_DIRECTORY)
        return -ENOTDIR;
    if (writing || vr_path_is_upper(p)) {
        int fd = vr_upper_open(p, flags, mode);
        if (fd >= 0)
            vr_vfd_set(fd, NULL); /* a stale binding of a number closed behind our back */
        return fd;
    }
    return open_blob(p, flags);
}

/* Every open variant ends here. */
static int do_open(int dirfd, const char *path, int flags, mode_t mode)
{
    if (!vr_active())
        return real_openat(dirfd, path, flags, mode);
    struct vr_path p;
    vr_resolve(dirfd, path, ((flags & O_NOFOLLOW) ? 0 : VR_FOLLOW) | ((flags & O_CREAT) ? VR_CREATING : 0), &p);
    if (p.kind == VP_VIRT) {
        int saved = errno;
        int fd = vr_open_virtual(&p, flags, mode);
        if (fd < 0)
            return ret(fd);
        errno = saved;
        return fd;
    }
    const char *target = p.kind == VP_REAL ? p.rel : path;
    int base = p.kind == VP_REAL ? AT_FDCWD : dirfd;
    int fd = real_openat(base, target, flags, mode);
    if (fd >= 0) {
        int saved = errno;
        vr_vfd_set(fd, NULL); /* a stale binding of a number closed behind our back */
        if (flags & (O_DIRECTORY | O_PATH))
            vr_track_real_dir(base, target, fd);
        errno = saved;
    }
    return fd;
}

static mode_t mode_arg(int flags, va_list ap)
{
    return (flags & O_CREAT) || (flags & __O_TMPFILE) == __O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

SHIM_EXPORT int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t m = mode_arg(flags, ap);
    va_end(ap);
    return do_open(AT_FDCWD, path, flags, m);
}
SHIM_EXPORT int open64(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t m = mode_arg(flags, ap);
    va_end(ap);
    return do_open(AT_FDCWD, path, flags | O_LARGEFILE, m);
}
SHIM_EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t m = mode_arg(flags, ap);
    va_end(ap);
    return do_open(dirfd, path, flags, m);
}
SHIM_EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t m = mode_arg(flags, ap);
    va_end(ap);
    return do_open(dirfd, path, flags | O_LARGEFILE, m);
}
SHIM_EXPORT int __open_2(const char *path, int flags) { return do_open(AT_FDCWD, path, flags, 0); }
SHIM_EXPORT int __open64_2(const char *path, int flags) { return do_open(AT_FDCWD, path, flags | O_LARGEFILE, 0); }
SHIM_EXPORT int __openat_2(int dirfd, const char *path, int flags) { return do_open(dirfd, path, flags, 0); }
SHIM_EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
    return do_open(dirfd, path, flags | O_LARGEFILE, 0);
}
SHIM_EXPORT int creat(const char *path, mode_t mode) { return do_open(AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC, mode); }
SHIM_EXPORT int creat64(const char *path, mode_t mode)
{
    return do_open(AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC | O_LARGEFILE, mode);
}

/* ---- stdio: glibc's fopen calls its internal open, so it is redone here ---- */

static int parse_fmode(const char *m, int *flags)
{
    int f;
    switch (m[0]) {
    case 'r':
        f = O_RDONLY;
        break;
    case 'w':
        f = O_WRONLY | O_CREAT | O_TRUNC;
        break;
    case 'a':
        f = O_WRONLY | O_CREAT | O_APPEND;
        break;
    default:
        return -EINVAL;
    }
    for (const char *c = m + 1; *c && *c != ','; c++) {
        if (*c == '+')
            f = (f & ~O_ACCMODE) | O_RDWR;
        else if (*c == 'x')
            f |= O_EXCL;
        else if (*c == 'e')
            f |= O_CLOEXEC;
    }
    *flags = f;
    return 0;
}

/* 1 = the path is in a mount (or reached through one): *fp set. */
static int stdio_open(const char *path, const char *mode, FILE **fp)
{
    if (!vr_active() || !path || !mode)
        return 0;
    struct vr_path p;
    vr_resolve(AT_FDCWD, path, VR_FOLLOW, &p);
    if (p.kind == VP_PASS)
        return 0;
    int flags;
    if (parse_fmode(mode, &flags) != 0) {
        errno = EINVAL;
        *fp = NULL;
        return 1;
    }
    int saved = errno;
    int fd;
    if (p.kind == VP_REAL) {
        fd = real_openat(AT_FDCWD, p.rel, flags, 0666);
        if (fd < 0) {
            *fp = NULL;
            return 1;
        }
        vr_vfd_set(fd, NULL);
    } else {
        fd = vr_open_virtual(&p, flags, 0666);
        if (fd < 0) {
            errno = -fd;
            *fp = NULL;
            return 1;
        }
    }
    FILE *f = fdopen(fd, mode);
    if (!f) {
        int e = errno;
        close(fd);
        errno = e;
        *fp = NULL;
        return 1;
    }
    errno = saved;
    *fp = f;
    return 1;
}

SHIM_EXPORT FILE *fopen(const char *path, const char *mode)
{
    FILE *f;
    if (stdio_open(path, mode, &f))
        return f;
    return real_fopen(path, mode);
}

SHIM_EXPORT FILE *fopen64(const char *path, const char *mode)
{
    FILE *f;
    if (stdio_open(path, mode, &f))
        return f;
    return real_fopen64(path, mode);
}

/* Bookkeeping for a FILE about to be closed by libc (its fd closes inside
 * libc, where close() is not interposed). */
static void before_stdio_close(FILE *fp)
{
    if (!fp || atomic_load_explicit(&vr_on, memory_order_relaxed) != 1)
        return;
    int fd = fileno(fp);
    if (fd < 0)
        return;
    struct vr_vfd *v = vr_vfd_take(fd);
    if (v)
        vr_vfd_put(v);
}

SHIM_EXPORT FILE *freopen(const char *path, const char *mode, FILE *fp)
{
    int saved = errno;
    before_stdio_close(fp);
    errno = saved;
    if (path && vr_active()) {
        struct vr_path p;
        vr_resolve(AT_FDCWD, path, VR_FOLLOW, &p);
        if (p.kind != VP_PASS) {
            FILE *nf;
            if (!stdio_open(path, mode, &nf)) {
                errno = EINVAL;
                return NULL;
            }
            if (!nf)
                return NULL;
            /* move the new stream's fd onto the old stream's number */
            int oldfd = fileno(fp), newfd = fileno(nf);
            fflush(fp);
            if (oldfd >= 0 && newfd != oldfd && dup2(newfd, oldfd) >= 0) {
                fclose(nf);
                clearerr(fp);
                return fp;
            }
            real_fclose(fp);
            return nf;
        }
    }
    return real_freopen(path, mode, fp);
}

SHIM_EXPORT FILE *freopen64(const char *path, const char *mode, FILE *fp) { return freopen(path, mode, fp); }

SHIM_EXPORT int fclose(FILE *fp)
{
    int saved = errno;
    before_stdio_close(fp);
    errno = saved;
    return real_fclose(fp);
}

/* ---- descriptors -------------------------------------------------------------- */

SHIM_EXPORT int close(int fd)
{
    if (atomic_load_explicit(&vr_on, memory_order_relaxed) == 1) {
        if (VR_UNLIKELY(vr_owns_fd(fd)))
            return 0; /* "close every descriptor" loops: keep ours, quietly */
        struct vr_vfd *v = vr_vfd_take(fd);
        if (v)
            vr_vfd_put(v);
    }
    return real_close(fd);
}

SHIM_EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
    if (atomic_load_explicit(&vr_on, memory_order_relaxed) != 1 || (flags & CLOSE_RANGE_CLOEXEC))
        return real_close_range(first, last, flags);
    int saved = errno;
    unsigned hi = last > (1u << 20) ? (1u << 20) : last;
    for (unsigned fd = first; fd <= hi && fd >= first; fd++) {
        if (vr_vfd_get((int)fd))
            vr_vfd_put(vr_vfd_take((int)fd));
        if (fd == hi)
            break;
    }
    errno = saved;
    for (int i = 0; i < vr_nmounts; i++) { /* cached mount-root and CAS descriptors: reopened when needed */
        int ph = atomic_load(&vr_mounts[i].ph_fd);
        if (ph >= 0 && (unsigned)ph >= first && (unsigned)ph <= last)
            vr_disown_fd(ph);
        int cd = atomic_load(&vr_mounts[i].cas_fd);
        if (cd >= 0 && (unsigned)cd >= first && (unsigned)cd <= last)
            vr_disown_fd(cd);
        int ud = atomic_load(&vr_mounts[i].upper_fd);
        if (ud >= 0 && (unsigned)ud >= first && (unsigned)ud <= last)
            vr_disown_fd(ud);
    }
    /* keep the shim's socket: close around it */
    for (unsigned fd = first; fd <= last && fd <= (1u << 20); fd++) {
        if (vr_ipc_owns_fd((int)fd)) {
            int rc = 0;
            if (fd > first)
                rc = real_close_range(first, fd - 1, flags);
            if (rc == 0 && fd < last)
                rc = real_close_range(fd + 1, last, flags);
            return rc;
        }
        if (fd == last)
            break;
    }
    return real_close_range(first, last, flags);
}

static void share(int from, int to)
{
    struct vr_vfd *v = vr_vfd_get(from);
    if (v && v->kind != VFD_REALDIR) {
        atomic_fetch_add(&v->refs, 1);
        vr_vfd_set(to, v);
    } else if (v) {
        struct vr_vfd *n = vr_vfd_new();
        if (n) {
            n->kind = VFD_REALDIR;
            n->rellen = v->rellen;
            memcpy(n->rel, v->rel, v->rellen + 1);
        }
        vr_vfd_set(to, n);
    } else {
        vr_vfd_set(to, NULL);
    }
}

SHIM_EXPORT int dup(int fd)
{
    int nfd = real_dup(fd);
    if (nfd >= 0 && atomic_load_explicit(&vr_on, memory_order_relaxed) == 1) {
        int saved = errno;
        share(fd, nfd);
        errno = saved;
    }
    return nfd;
}

static int dup_onto(int fd, int nfd, int flags, int three)
{
    if (atomic_load_explicit(&vr_on, memory_order_relaxed) != 1 || fd == nfd)
        return three ? real_dup3(fd, nfd, flags) : real_dup2(fd, nfd);
    int saved = errno;
    if (vr_owns_fd(nfd))
        vr_disown_fd(nfd);
    /* nfd is about to be closed by the kernel */
    struct vr_vfd *old = vr_vfd_take(nfd);
    if (old)
        vr_vfd_put(old);
    errno = saved;
    int rc = three ? real_dup3(fd, nfd, flags) : real_dup2(fd, nfd);
    if (rc >= 0) {
        saved = errno;
        share(fd, rc);
        errno = saved;
    }
    return rc;
}

SHIM_EXPORT int dup2(int fd, int nfd) { return dup_onto(fd, nfd, 0, 0); }
SHIM_EXPORT int dup3(int fd, int nfd, int flags) { return dup_onto(fd, nfd, flags, 1); }

static int do_fcntl(int fd, int cmd, long arg, int is64)
{
    if ((cmd == F_SETLK || cmd == F_SETLKW || cmd == F_OFD_SETLK || cmd == F_OFD_SETLKW) &&
        atomic_load_explicit(&vr_on, memory_order_relaxed) == 1 && vr_vfd_get(fd)) {
        int saved = errno;
        int own = vr_own_inode(fd); /* a lock on a CAS blob would be shared by every path of its content */
        if (own < 0)
            return ret(own);
        errno = saved;
    }
    int rc = is64 ? real_fcntl64(fd, cmd, arg) : real_fcntl(fd, cmd, arg);
    if (rc >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) &&
        atomic_load_explicit(&vr_on, memory_order_relaxed) == 1) {
        int saved = errno;
        share(fd, rc);
        errno = saved;
    }
    return rc;
}

SHIM_EXPORT int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    long arg = va_arg(ap, long);
    va_end(ap);
    return do_fcntl(fd, cmd, arg, 0);
}

SHIM_EXPORT int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    long arg = va_arg(ap, long);
    va_end(ap);
    return do_fcntl(fd, cmd, arg, 1);
}
