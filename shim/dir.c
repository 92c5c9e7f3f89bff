/*
 * dir.c — virtual directory streams, scandir, getdents64, and the working
 * directory (chdir/fchdir/getcwd).
 *
 * A virtual directory is opened as a real placeholder descriptor on the
 * mount root (a real, empty directory: fchdir, fstatfs and poll work on
 * it) bound in vfd.c to the virtual path. opendir()/fdopendir() return a
 * vrift DIR (an mmap'd struct, told apart from glibc's by its first word,
 * which as glibc's `int fd` would be negative). Its listing is one
 * consistent VDir snapshot taken at open (and at rewinddir), with "." and
 * ".." first, like the kernel's.
 */
#include "shim.h"

#include <stdlib.h>

#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

#define DS_MAGIC 0x56524654FFFFFFF1ull /* low 32 bits: a negative int */
#define DS_INITIAL (64u * 1024u)

struct vr_dirstream {
    uint64_t magic;
    int fd;
    int mount;
    size_t maplen;    /* bytes of this mapping */
    size_t nbytes;    /* bytes of listing records */
    uint32_t count;   /* children */
    long idx;         /* next entry: 0 ".", 1 "..", 2.. children */
    size_t off;       /* byte offset of the next child record */
    uint64_t ino;     /* the directory's */
    uint64_t parent_ino;
    struct dirent64 ent;
    char name_pad[256];
    size_t rellen;
    char rel[PATH_MAX];
    _Alignas(8) unsigned char buf[]; /* vrift_vdir_dirent records */
};

_Static_assert(sizeof(struct dirent) == sizeof(struct dirent64), "dirent and dirent64 share a layout");

/* Freed streams of the initial size are kept for reuse: mmap/munmap and
 * their page faults were most of the cost of walking a tree (find, fts). */
#define DS_CACHE 16
static struct vr_dirstream *_Atomic ds_cache[DS_CACHE];

static struct vr_dirstream *ds_alloc(void)
{
    for (int i = 0; i < DS_CACHE; i++) {
        struct vr_dirstream *s = atomic_exchange(&ds_cache[i], NULL);
        if (s)
            return s;
    }
    struct vr_dirstream *s = vr_mmap(DS_INITIAL);
    if (s)
        s->maplen = DS_INITIAL;
    return s;
}

static void ds_free(struct vr_dirstream *s)
{
    s->magic = 0;
    if (s->maplen == DS_INITIAL) {
        for (int i = 0; i < DS_CACHE; i++) {
            struct vr_dirstream *z = NULL;
            if (atomic_compare_exchange_strong(&ds_cache[i], &z, s))
                return;
        }
    }
    vr_munmap(s, s->maplen);
}

static int is_ours(DIR *d)
{
    const void *volatile p = d; /* glibc declares DIR* arguments nonnull; they may still be NULL */
    return p && *(const uint64_t *)p == DS_MAGIC;
}

int vr_dir_placeholder(int mount, int oflags)
{
    /* dup() of a cached descriptor of the mount root: no path walk per directory */
    struct vr_mount *m = &vr_mounts[mount];
    int base = atomic_load_explicit(&m->ph_fd, memory_order_acquire);
    if (base < 0) {
        int fd = vr_openat(AT_FDCWD, m->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
        if (fd >= 0) {
            int hi = vr_fcntl(fd, F_DUPFD_CLOEXEC, vr_high_fd_floor() + 1 + mount);
            vr_close(fd);
            int expect = -1;
            if (hi >= 0 && !atomic_compare_exchange_strong(&m->ph_fd, &expect, hi))
                vr_close(hi);
            base = atomic_load(&m->ph_fd);
        }
    }
    int fd = base >= 0 ? vr_fcntl(base, (oflags & O_CLOEXEC) ? F_DUPFD_CLOEXEC : F_DUPFD, 0) : -EBADF;
    if (fd >= 0)
        return fd;
    int fl = O_RDONLY | O_DIRECTORY | (oflags & O_CLOEXEC);
    fd = vr_openat(AT_FDCWD, m->root, fl, 0);
    if (fd < 0)
        fd = vr_openat(AT_FDCWD, "/", fl, 0);
    return fd;
}

/* A new VFD_DIR description for a found directory entry, bound to a new placeholder fd. */
int vr_open_dir_fd(const struct vr_path *p, int oflags)
{
    int fd = vr_dir_placeholder(p->mount, oflags);
    if (fd < 0)
        return fd;
    struct vr_vfd *v = vr_vfd_new();
    if (!v) {
        vr_close(fd);
        return -EMFILE;
    }
    struct vr_mount *m = &vr_mounts[p->mount];
    if (!atomic_load_explicit(&m->ph_known, memory_order_acquire)) {
        struct stat real;
        if (vr_fstat(fd, &real) == 0) {
            m->ph_dev = (uint64_t)real.st_dev;
            m->ph_ino = (uint64_t)real.st_ino;
            atomic_store_explicit(&m->ph_known, 1, memory_order_release);
        }
    }
    v->real_dev = m->ph_dev;
    v->real_ino = m->ph_ino;
    vr_vfd_describe(v, VFD_DIR, p);
    vr_vfd_set(fd, v);
    return fd;
}

/* Loads (or reloads) the listing of s->rel; may replace the mapping. */
static struct vr_dirstream *load(struct vr_dirstream *s)
{
    vrift_vdir_reader *r = vr_mounts[s->mount].r;
    if (vr_upper_pending(s->mount))
        vr_upper_settle(s->mount); /* files just made by any process are listed */
    for (int attempt = 0; attempt < 8; attempt++) {
        size_t room = s->maplen - sizeof *s;
        size_t needed = 0;
        uint32_t count = 0;
        int rc = vrift_vdir_list(r, s->rel, s->rellen, s->buf, room, &needed, &count);
        if (rc == 0) {
            s->nbytes = needed;
            s->count = count;
            s->idx = 0;
            s->off = 0;
            return s;
        }
        if (rc != -ERANGE) {
            s->nbytes = 0;
            s->count = 0;
            s->idx = 0;
            s->off = 0;
            return s;
        }
        size_t len = (sizeof *s + needed + needed / 4 + 4095) & ~(size_t)4095;
        struct vr_dirstream *n = vr_mmap(len);
        if (!n)
            return s;
        memcpy(n, s, sizeof *s);
        n->maplen = len;
        vr_munmap(s, s->maplen);
        s = n;
    }
    return s;
}

static DIR *stream_for(int fd, struct vr_vfd *v)
{
    struct vr_dirstream *s = ds_alloc();
    if (!s) {
        errno = ENOMEM;
        return NULL;
    }
    s->magic = DS_MAGIC;
    s->fd = fd;
    s->mount = v->mount;
    s->ino = v->ino;
    s->rellen = v->rellen;
    memcpy(s->rel, v->rel, v->rellen + 1);
    s->parent_ino = s->ino;
    if (s->rellen > 0) {
        size_t pl = s->rellen;
        while (pl > 0 && s->rel[pl - 1] != '/')
            pl--;
        struct vrift_vdir_result res;
        if (vrift_vdir_lookup(vr_mounts[s->mount].r, s->rel, pl ? pl - 1 : 0, &res) == 0)
            s->parent_ino = res.ino;
    }
    return (DIR *)(void *)load(s);
}

static unsigned char dtype_of(uint32_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFDIR:
        return DT_DIR;
    case S_IFREG:
        return DT_REG;
    case S_IFLNK:
        return DT_LNK;
    default:
        return DT_UNKNOWN;
    }
}

static struct dirent64 *next_ent(struct vr_dirstream *s)
{
    struct dirent64 *e = &s->ent;
    if (s->idx < 2) {
        e->d_ino = s->idx == 0 ? s->ino : s->parent_ino;
        e->d_type = DT_DIR;
        e->d_name[0] = '.';
        e->d_name[1] = s->idx == 0 ? '\0' : '.';
        e->d_name[2] = '\0';
    } else {
        if (s->off >= s->nbytes)
            return NULL;
        const struct vrift_vdir_dirent *d = (const void *)(s->buf + s->off);
        if (d->reclen == 0 || s->off + d->reclen > s->nbytes)
            return NULL;
        e->d_ino = d->ino;
        e->d_type = dtype_of(d->mode);
        size_t nl = d->namelen < 255 ? d->namelen : 255;
        memcpy(e->d_name, d->name, nl);
        e->d_name[nl] = '\0';
        s->off += d->reclen;
    }
    s->idx++;
    e->d_off = s->idx;
    e->d_reclen = sizeof(struct dirent64);
    return e;
}

/* ---- opendir family ------------------------------------------------------------ */

/* Remembers a real directory fd that is an ancestor of a mount root, so
 * openat(fd, "<mount name>/...") can be resolved. */
static void track_real_dir(int dirfd_base, const char *path, int fd)
{
    char abs[PATH_MAX];
    size_t n;
    if (path[0] == '/') {
        n = vr_strlcpy(abs, path, sizeof abs);
    } else {
        size_t bl;
        if (dirfd_base == AT_FDCWD) {
            bl = vr_cwd_get(abs, sizeof abs);
        } else {
            struct vr_vfd *b = vr_vfd_get(dirfd_base);
            if (!b || b->kind != VFD_REALDIR)
                return;
            bl = vr_strlcpy(abs, b->rel, sizeof abs);
        }
        if (bl == 0 || bl + 2 + vr_strlen(path) >= sizeof abs)
            return;
        abs[bl] = '/';
        n = bl + 1 + vr_strlcpy(abs + bl + 1, path, sizeof abs - bl - 1);
    }
    /* lexical clean-up: "//", "/./", "/.." */
    char out[PATH_MAX];
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        while (i < n && abs[i] == '/')
            i++;
        size_t s = i;
        while (i < n && abs[i] != '/')
            i++;
        size_t cl = i - s;
        if (cl == 0 || (cl == 1 && abs[s] == '.'))
            continue;
        if (cl == 2 && abs[s] == '.' && abs[s + 1] == '.') {
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--;
            continue;
        }
        out[o++] = '/';
        memcpy(out + o, abs + s, cl);
        o += cl;
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = '\0';
    if (!vr_is_mount_ancestor(out, o))
        return;
    struct vr_vfd *v = vr_vfd_new();
    if (!v)
        return;
    v->kind = VFD_REALDIR;
    v->rellen = o;
    memcpy(v->rel, out, o + 1);
    vr_vfd_set(fd, v);
}

void vr_track_real_dir(int dirfd_base, const char *path, int fd)
{
    if (fd >= 0 && path && path[0])
        track_real_dir(dirfd_base, path, fd);
}

SHIM_EXPORT DIR *opendir(const char *path)
{
    if (!vr_active())
        return real_opendir(path);
    struct vr_path p;
    vr_resolve(AT_FDCWD, path, VR_FOLLOW, &p);
    if (p.kind == VP_PASS) {
        DIR *d = real_opendir(path);
        if (d) {
            int saved = errno;
            vr_track_real_dir(AT_FDCWD, path, real_dirfd(d));
            errno = saved;
        }
        return d;
    }
    if (p.kind == VP_REAL) {
        DIR *d = real_opendir(p.rel);
        if (d) {
            int saved = errno;
            vr_track_real_dir(AT_FDCWD, p.rel, real_dirfd(d));
            errno = saved;
        }
        return d;
    }
    if (p.err) {
        errno = -p.err;
        return NULL;
    }
    if ((p.res.mode & S_IFMT) != S_IFDIR) {
        errno = ENOTDIR;
        return NULL;
    }
    int saved = errno;
    int fd = vr_open_dir_fd(&p, O_CLOEXEC);
    if (fd < 0) {
        errno = -fd;
        return NULL;
    }
    DIR *d = stream_for(fd, vr_vfd_get(fd));
    if (!d) {
        struct vr_vfd *v = vr_vfd_take(fd);
        vr_vfd_put(v);
        vr_close(fd);
        return NULL;
    }
    errno = saved;
    return d;
}

SHIM_EXPORT DIR *fdopendir(int fd)
{
    if (vr_active()) {
        struct vr_vfd *v = vr_vfd_get(fd);
        if (v && v->kind == VFD_DIR) {
            int saved = errno;
            DIR *d = stream_for(fd, v);
            if (d)
                errno = saved;
            return d;
        }
        if (v && v->kind == VFD_FILE) {
            errno = ENOTDIR;
            return NULL;
        }
    }
    return real_fdopendir(fd);
}

SHIM_EXPORT struct dirent64 *readdir64(DIR *d)
{
    if (is_ours(d))
        return next_ent((struct vr_dirstream *)(void *)d);
    return real_readdir64(d);
}

SHIM_EXPORT struct dirent *readdir(DIR *d)
{
    if (is_ours(d))
        return (struct dirent *)(void *)next_ent((struct vr_dirstream *)(void *)d);
    return real_readdir(d);
}

SHIM_EXPORT int readdir64_r(DIR *d, struct dirent64 *entry, struct dirent64 **result)
{
    if (!is_ours(d))
        return real_readdir64_r(d, entry, result);
    struct dirent64 *e = next_ent((struct vr_dirstream *)(void *)d);
    if (e) {
        memcpy(entry, e, sizeof *e);
        *result = entry;
    } else {
        *result = NULL;
    }
    return 0;
}

SHIM_EXPORT int readdir_r(DIR *d, struct dirent *entry, struct dirent **result)
{
    if (!is_ours(d))
        return real_readdir_r(d, entry, result);
    return readdir64_r(d, (struct dirent64 *)(void *)entry, (struct dirent64 **)(void *)result);
}

SHIM_EXPORT int closedir(DIR *d)
{
    if (!is_ours(d)) {
        if (vr_active()) {
            struct vr_vfd *v = vr_vfd_take(real_dirfd(d));
            vr_vfd_put(v);
        }
        return real_closedir(d);
    }
    struct vr_dirstream *s = (struct vr_dirstream *)(void *)d;
    struct vr_vfd *v = vr_vfd_take(s->fd);
    vr_vfd_put(v);
    int rc = vr_close(s->fd);
    ds_free(s);
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    return 0;
}

SHIM_EXPORT int dirfd(DIR *d)
{
    if (is_ours(d))
        return ((struct vr_dirstream *)(void *)d)->fd;
    return real_dirfd(d);
}

SHIM_EXPORT void rewinddir(DIR *d)
{
    if (!is_ours(d)) {
        real_rewinddir(d);
        return;
    }
    /* A fresh snapshot, as a real rewinddir() re-reads the directory. The
     * mapping may move: callers hold the DIR*, so keep it in place when it
     * still fits, otherwise restart from the current contents lazily. */
    struct vr_dirstream *s = (struct vr_dirstream *)(void *)d;
    size_t needed = 0;
    uint32_t count = 0;
    if (vr_upper_pending(s->mount))
        vr_upper_settle(s->mount);
    int rc = vrift_vdir_list(vr_mounts[s->mount].r, s->rel, s->rellen, s->buf, s->maplen - sizeof *s, &needed, &count);
    if (rc == 0) {
        s->nbytes = needed;
        s->count = count;
    }
    s->idx = 0;
    s->off = 0;
}

SHIM_EXPORT long telldir(DIR *d)
{
    if (is_ours(d))
        return ((struct vr_dirstream *)(void *)d)->idx;
    return real_telldir(d);
}

SHIM_EXPORT void seekdir(DIR *d, long pos)
{
    if (!is_ours(d)) {
        real_seekdir(d, pos);
        return;
    }
    struct vr_dirstream *s = (struct vr_dirstream *)(void *)d;
    s->idx = 0;
    s->off = 0;
    while (s->idx < pos && next_ent(s))
        ;
}

/* ---- scandir: glibc's calls its own internal opendir, so it is redone here ---- */

static int scan(const char *path, struct dirent64 ***list, int (*filter)(const struct dirent64 *),
                int (*cmp)(const struct dirent64 **, const struct dirent64 **))
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int saved = errno;
    size_t n = 0, cap = 0;
    struct dirent64 **v = NULL;
    struct dirent64 *e;
    while ((e = readdir64(d)) != NULL) {
        if (filter && !filter(e))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            struct dirent64 **nv = realloc(v, cap * sizeof *v);
            if (!nv)
                goto oom;
            v = nv;
        }
        struct dirent64 *copy = malloc(sizeof *copy);
        if (!copy)
            goto oom;
        memcpy(copy, e, sizeof *copy);
        v[n++] = copy;
    }
    closedir(d);
    if (cmp && n > 1)
        qsort(v, n, sizeof *v, (int (*)(const void *, const void *))cmp);
    *list = v;
    errno = saved;
    return (int)n;
oom:
    while (n > 0)
        free(v[--n]);
    free(v);
    closedir(d);
    errno = ENOMEM;
    return -1;
}

static int scan_is_virtual(const char *path)
{
    if (!vr_active())
        return 0;
    struct vr_path p;
    vr_resolve(AT_FDCWD, path, VR_FOLLOW, &p);
    return p.kind != VP_PASS;
}

SHIM_EXPORT int scandir64(const char *path, struct dirent64 ***list, int (*filter)(const struct dirent64 *),
                          int (*cmp)(const struct dirent64 **, const struct dirent64 **))
{
    if (!scan_is_virtual(path))
        return real_scandir64(path, list, filter, cmp);
    return scan(path, list, filter, cmp);
}

SHIM_EXPORT int scandir(const char *path, struct dirent ***list, int (*filter)(const struct dirent *),
                        int (*cmp)(const struct dirent **, const struct dirent **))
{
    if (!scan_is_virtual(path))
        return real_scandir(path, list, filter, cmp);
    return scan(path, (struct dirent64 ***)(void *)list, (int (*)(const struct dirent64 *))(void *)filter,
                (int (*)(const struct dirent64 **, const struct dirent64 **))(void *)cmp);
}

/* ---- getdents64 (the glibc function and syscall(SYS_getdents64)) ---------------- */

/* 1 = handled (*rc = bytes or -errno). */
int vr_getdents(int fd, void *out, size_t n, long *rc)
{
    if (!vr_active())
        return 0;
    struct vr_vfd *v = vr_vfd_get(fd);
    if (!v || v->kind == VFD_REALDIR)
        return 0;
    if (v->kind != VFD_DIR) {
        *rc = -ENOTDIR;
        return 1;
    }
    struct vr_vfd tmp; /* a stream over the same directory */
    tmp.kind = VFD_DIR;
    tmp.mount = v->mount;
    tmp.ino = v->ino;
    tmp.rellen = v->rellen;
    memcpy(tmp.rel, v->rel, v->rellen + 1);
    int saved = errno;
    struct vr_dirstream *s = (struct vr_dirstream *)(void *)stream_for(fd, &tmp);
    errno = saved;
    if (!s) {
        *rc = -ENOMEM;
        return 1;
    }
    size_t used = 0;
    uint64_t pos = v->dirpos;
    struct dirent64 *e;
    while ((uint64_t)s->idx < pos && next_ent(s))
        ;
    while ((e = next_ent(s)) != NULL) {
        size_t nl = vr_strlen(e->d_name);
        size_t rec = (19 + nl + 1 + 7) & ~(size_t)7;
        if (used + rec > n) {
            s->idx--; /* not consumed */
            break;
        }
        unsigned char *p = (unsigned char *)out + used;
        uint64_t ino = e->d_ino;
        int64_t off = e->d_off;
        uint16_t rl = (uint16_t)rec;
        memcpy(p, &ino, 8);
        memcpy(p + 8, &off, 8);
        memcpy(p + 16, &rl, 2);
        p[18] = e->d_type;
        memcpy(p + 19, e->d_name, nl + 1);
        for (size_t k = 19 + nl + 1; k < rec; k++)
            p[k] = 0;
        used += rec;
        pos++;
    }
    v->dirpos = pos;
    ds_free(s);
    *rc = (used == 0 && e != NULL) ? -EINVAL : (long)used;
    return 1;
}

SHIM_EXPORT ssize_t getdents64(int fd, void *buf, size_t n)
{
    long rc;
    if (vr_getdents(fd, buf, n, &rc)) {
        if (rc < 0) {
            errno = (int)-rc;
            return -1;
        }
        return rc;
    }
    return real_getdents64(fd, buf, n);
}

/* ---- the working directory --------------------------------------------------------- */

SHIM_EXPORT int chdir(const char *path)
{
    if (!vr_active())
        return real_chdir(path);
    struct vr_path p;
    vr_resolve(AT_FDCWD, path, VR_FOLLOW, &p);
    if (p.kind == VP_PASS || p.kind == VP_REAL) {
        int rc = real_chdir(p.kind == VP_REAL ? p.rel : path);
        if (rc == 0) {
            int saved = errno;
            vr_cwd_refresh();
            errno = saved;
        }
        return rc;
    }
    if (p.err) {
        errno = -p.err;
        return -1;
    }
    if ((p.res.mode & S_IFMT) != S_IFDIR) {
        errno = ENOTDIR;
        return -1;
    }
    int saved = errno;
    /* the kernel's cwd: the mount root (a real directory), so relative
     * real calls that escape the mount still land somewhere sane */
    real_chdir(vr_mounts[p.mount].root);
    char abs[PATH_MAX];
    int n = vr_abs_of(p.mount, p.rel, p.rellen, abs, sizeof abs);
    if (n > 0)
        vr_cwd_set(abs, (size_t)n);
    errno = saved;
    return 0;
}

SHIM_EXPORT int fchdir(int fd)
{
    if (!vr_active())
        return real_fchdir(fd);
    struct vr_vfd *v = vr_vfd_get(fd);
    if (v && v->kind == VFD_DIR) {
        int saved = errno;
        int rc = real_fchdir(fd);
        if (rc != 0)
            return rc;
        char abs[PATH_MAX];
        int n = vr_abs_of(v->mount, v->rel, v->rellen, abs, sizeof abs);
        if (n > 0)
            vr_cwd_set(abs, (size_t)n);
        errno = saved;
        return 0;
    }
    if (v && v->kind == VFD_FILE) {
        errno = ENOTDIR;
        return -1;
    }
    int rc = real_fchdir(fd);
    if (rc == 0) {
        int saved = errno;
        vr_cwd_refresh();
        errno = saved;
    }
    return rc;
}

SHIM_EXPORT char *getcwd(char *buf, size_t size)
{
    if (!vr_active() || !vr_cwd_is_virtual())
        return real_getcwd(buf, size);
    char cwd[PATH_MAX];
    size_t n = vr_cwd_get(cwd, sizeof cwd);
    if (n == 0)
        return real_getcwd(buf, size);
    if (!buf) {
        size_t cap = size ? size : n + 1;
        if (cap < n + 1) {
            errno = ERANGE;
            return NULL;
        }
        buf = malloc(cap);
        if (!buf) {
            errno = ENOMEM;
            return NULL;
        }
    } else if (size < n + 1) {
        errno = size == 0 ? EINVAL : ERANGE;
        return NULL;
    }
    memcpy(buf, cwd, n + 1);
    return buf;
}
