/*
 * stat.c — the stat family, access, readlink, xattrs, statfs, realpath.
 *
 * Inside a mount these are answered from the VDir alone: no system call,
 * no IPC. A descriptor the shim opened (vfd.c) is answered from what it
 * stands for, so fstat() of a file read from the CAS reports the virtual
 * file (its inode, device, mode, size and mtime), not the blob.
 */
#include "shim.h"

#include <stdlib.h>
#include <sys/xattr.h>

_Static_assert(sizeof(struct stat) == sizeof(struct stat64), "stat and stat64 share a layout");

static inline int ret(int rc)
{
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    return rc;
}

/* Everything vr_stat_fast() leaves: AT_EMPTY_PATH, relative paths, symlinks
 * to follow, the upper layer, misses it cannot prove: the full resolution. */
static int stat_resolved(int dirfd, const char *path, int flags, struct stat *st, int *handled)
{
    *handled = 0;
    if (path && path[0] == '\0' && (flags & AT_EMPTY_PATH))
        return dirfd == AT_FDCWD ? 0 : vr_fstat_fd(dirfd, st, handled);
    struct vr_path p;
    vr_resolve(dirfd, path, (flags & AT_SYMLINK_NOFOLLOW) ? 0 : VR_FOLLOW, &p);
    if (p.kind == VP_PASS)
        return 0;
    *handled = 1;
    if (p.kind == VP_REAL) {
        int rc = real_fstatat(AT_FDCWD, p.rel, st, flags & ~AT_EMPTY_PATH);
        return rc == 0 ? 0 : -errno;
    }
    if (p.err)
        return p.err;
    if (VR_UNLIKELY(p.res.flags & VRIFT_VDIR_F_UPPER) && vr_path_is_upper(&p)) {
        /* a real file: its own inode, size, times, mode (looked at already while changes are unpublished) */
        if (p.upper_stat_ok) {
            *st = p.upper_stat;
            return 0;
        }
        return vr_upper_stat(&p, st);
    }
    vr_fill_stat(&p, st);
    return 0;
}

int vr_stat_path(int dirfd, const char *path, int flags, struct stat *st, int *handled)
{
    if (VR_LIKELY(path != NULL) && path[0] == '/') {
        int f = vr_stat_fast(path, !(flags & AT_SYMLINK_NOFOLLOW), st);
        if (VR_LIKELY(f != VR_FAST_SLOW)) {
            *handled = f != VR_FAST_PASS;
            return f == VR_FAST_ENOENT ? -ENOENT : 0;
        }
    }
    return stat_resolved(dirfd, path, flags, st, handled);
}

int vr_fstat_fd(int fd, struct stat *st, int *handled)
{
    *handled = 0;
    struct vr_vfd *v = vr_vfd_get(fd);
    if (!v || v->kind == VFD_REALDIR)
        return 0;
    struct stat real;
    int same = vr_fstat(fd, &real) == 0;
    if (same && v->kind == VFD_FILE) /* a CAS blob: read-only, the entry's size */
        same = S_ISREG(real.st_mode) && (uint64_t)real.st_size == v->size && !(real.st_mode & 0222);
    else if (same)
        same = (uint64_t)real.st_dev == v->real_dev && (uint64_t)real.st_ino == v->real_ino;
    if (!same) {
        /* closed behind our back and the number reused: forget it */
        struct vr_vfd *old = vr_vfd_take(fd);
        if (old)
            vr_vfd_put(old);
        return 0;
    }
    *handled = 1;
    vr_fill_stat_entry(v->mount, v->ino, v->mode, v->size, v->mtime, st);
    return 0;
}

/* ---- the stat wrappers --------------------------------------------------- */

/* An absolute path is tried on the fast path here, in the wrapper itself:
 * stat() of a path in a mount is the call builds make most, and each call
 * layer costs it a few percent. (libc declares these paths nonnull; the
 * empty asm makes the compiler keep the NULL test: stat(NULL) is EFAULT
 * from the kernel, never a crash here.) */
#define PATH_STAT(dirfd, path, flags, st, call_real)                                  \
    do {                                                                                \
        if (vr_active()) {                                                              \
            const char *p_ = (path);                                                    \
            __asm__("" : "+r"(p_));                                                     \
            if (VR_LIKELY(p_ != NULL) && p_[0] == '/') {                                \
                int f_ = vr_stat_fast(p_, !((flags) & AT_SYMLINK_NOFOLLOW), (struct stat *)(st)); \
                if (VR_LIKELY(f_ == VR_FAST_DONE))                                      \
                    return 0;                                                           \
                if (f_ == VR_FAST_ENOENT)                                               \
                    return ret(-ENOENT);                                                \
                if (f_ == VR_FAST_PASS)                                                 \
                    return call_real;                                                   \
            }                                                                           \
            int h_;                                                                     \
            int rc_ = stat_resolved((dirfd), p_, (flags), (struct stat *)(st), &h_);    \
            if (h_)                                                                     \
                return ret(rc_);                                                        \
        }                                                                               \
        return call_real;                                                               \
    } while (0)

#define FD_STAT(fd, st, call_real)                                   \
    do {                                                             \
        if (vr_active()) {                                           \
            int h_;                                                  \
            int rc_ = vr_fstat_fd((fd), (struct stat *)(st), &h_);   \
            if (h_)                                                  \
                return ret(rc_);                                     \
        }                                                            \
        return call_real;                                            \
    } while (0)

SHIM_EXPORT int stat(const char *p, struct stat *st) { PATH_STAT(AT_FDCWD, p, 0, st, real_stat(p, st)); }
SHIM_EXPORT int stat64(const char *p, struct stat64 *st) { PATH_STAT(AT_FDCWD, p, 0, st, real_stat64(p, st)); }
SHIM_EXPORT int lstat(const char *p, struct stat *st)
{
    PATH_STAT(AT_FDCWD, p, AT_SYMLINK_NOFOLLOW, st, real_lstat(p, st));
}
SHIM_EXPORT int lstat64(const char *p, struct stat64 *st)
{
    PATH_STAT(AT_FDCWD, p, AT_SYMLINK_NOFOLLOW, st, real_lstat64(p, st));
}
SHIM_EXPORT int fstat(int fd, struct stat *st) { FD_STAT(fd, st, real_fstat(fd, st)); }
SHIM_EXPORT int fstat64(int fd, struct stat64 *st) { FD_STAT(fd, st, real_fstat64(fd, st)); }
SHIM_EXPORT int fstatat(int d, const char *p, struct stat *st, int fl) { PATH_STAT(d, p, fl, st, real_fstatat(d, p, st, fl)); }
SHIM_EXPORT int fstatat64(int d, const char *p, struct stat64 *st, int fl)
{
    PATH_STAT(d, p, fl, st, real_fstatat64(d, p, st, fl));
}
SHIM_EXPORT int __xstat(int ver, const char *p, struct stat *st) { PATH_STAT(AT_FDCWD, p, 0, st, real___xstat(ver, p, st)); }
SHIM_EXPORT int __xstat64(int ver, const char *p, struct stat64 *st)
{
    PATH_STAT(AT_FDCWD, p, 0, st, real___xstat64(ver, p, st));
}
SHIM_EXPORT int __lxstat(int ver, const char *p, struct stat *st)
{
    PATH_STAT(AT_FDCWD, p, AT_SYMLINK_NOFOLLOW, st, real___lxstat(ver, p, st));
}
SHIM_EXPORT int __lxstat64(int ver, const char *p, struct stat64 *st)
{
    PATH_STAT(AT_FDCWD, p, AT_SYMLINK_NOFOLLOW, st, real___lxstat64(ver, p, st));
}
SHIM_EXPORT int __fxstat(int ver, int fd, struct stat *st) { FD_STAT(fd, st, real___fxstat(ver, fd, st)); }
SHIM_EXPORT int __fxstat64(int ver, int fd, struct stat64 *st) { FD_STAT(fd, st, real___fxstat64(ver, fd, st)); }
SHIM_EXPORT int __fxstatat(int ver, int d, const char *p, struct stat *st, int fl)
{
    PATH_STAT(d, p, fl, st, real___fxstatat(ver, d, p, st, fl));
}
SHIM_EXPORT int __fxstatat64(int ver, int d, const char *p, struct stat64 *st, int fl)
{
    PATH_STAT(d, p, fl, st, real___fxstatat64(ver, d, p, st, fl));
}

/* ---- statx ---------------------------------------------------------------- */

static void to_statx(const struct stat *st, struct statx *sx)
{
    memset(sx, 0, sizeof *sx);
    sx->stx_mask = STATX_BASIC_STATS;
    sx->stx_blksize = (uint32_t)st->st_blksize;
    sx->stx_nlink = (uint32_t)st->st_nlink;
    sx->stx_uid = st->st_uid;
    sx->stx_gid = st->st_gid;
    sx->stx_mode = (uint16_t)st->st_mode;
    sx->stx_ino = st->st_ino;
    sx->stx_size = (uint64_t)st->st_size;
    sx->stx_blocks = (uint64_t)st->st_blocks;
    sx->stx_atime.tv_sec = st->st_atim.tv_sec;
    sx->stx_atime.tv_nsec = (uint32_t)st->st_atim.tv_nsec;
    sx->stx_mtime.tv_sec = st->st_mtim.tv_sec;
    sx->stx_mtime.tv_nsec = (uint32_t)st->st_mtim.tv_nsec;
    sx->stx_ctime.tv_sec = st->st_ctim.tv_sec;
    sx->stx_ctime.tv_nsec = (uint32_t)st->st_ctim.tv_nsec;
    sx->stx_dev_major = major(st->st_dev);
    sx->stx_dev_minor = minor(st->st_dev);
}

/* statx() inside the shim: 1 = handled (*rc set), 0 = pass through. */
int vr_statx(int dirfd, const char *path, int flags, struct statx *sx, int *rc)
{
    if (!vr_active() || !sx)
        return 0;
    struct stat st;
    int h;
    int r;
    if (path && path[0] == '\0' && (flags & AT_EMPTY_PATH))
        r = vr_fstat_fd(dirfd, &st, &h);
    else
        r = vr_stat_path(dirfd, path, flags & (AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH), &st, &h);
    if (!h)
        return 0;
    if (r == 0)
        to_statx(&st, sx);
    *rc = r;
    return 1;
}

SHIM_EXPORT int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *sx)
{
    int rc;
    if (vr_statx(dirfd, path, flags, sx, &rc))
        return ret(rc);
    return real_statx(dirfd, path, flags, mask, sx);
}

/* ---- access ---------------------------------------------------------------- */

static int check_access(const struct vr_path *p, int amode, int eff)
{
    if (p->err)
        return p->err;
    if (amode == F_OK)
        return 0;
    uid_t uid = eff ? geteuid() : getuid();
    uint32_t m = p->res.mode;
    if ((amode & X_OK) && (m & S_IFMT) != S_IFDIR && !(m & 0111))
        return -EACCES;
    if (uid == 0)
        return 0;
    if ((amode & R_OK) && !(m & 0400))
        return -EACCES;
    if ((amode & X_OK) && !(m & 0100))
        return -EACCES;
    return 0; /* W_OK: a write makes the path's upper file, always allowed */
}

static int do_access(int dirfd, const char *path, int amode, int flags, int *handled)
{
    *handled = 0;
    if (!vr_active())
        return 0;
    struct vr_path p;
    vr_resolve(dirfd, path, (flags & AT_SYMLINK_NOFOLLOW) ? 0 : VR_FOLLOW, &p);
    if (p.kind == VP_PASS)
        return 0;
    *handled = 1;
    if (p.kind == VP_REAL)
        return real_faccessat(AT_FDCWD, p.rel, amode, flags) == 0 ? 0 : -errno;
    if (p.err == 0 && vr_path_is_upper(&p)) {
        char real[PATH_MAX];
        if (vr_upper_path(p.mount, p.res.entry.u.digest, real, sizeof real) < 0)
            return -ENAMETOOLONG;
        return real_faccessat(AT_FDCWD, real, amode, flags & AT_EACCESS) == 0 ? 0 : -errno;
    }
    return check_access(&p, amode, (flags & AT_EACCESS) != 0);
}

SHIM_EXPORT int access(const char *path, int amode)
{
    int h, rc = do_access(AT_FDCWD, path, amode, 0, &h);
    return h ? ret(rc) : real_access(path, amode);
}
SHIM_EXPORT int faccessat(int dirfd, const char *path, int amode, int flags)
{
    int h, rc = do_access(dirfd, path, amode, flags, &h);
    return h ? ret(rc) : real_faccessat(dirfd, path, amode, flags);
}
SHIM_EXPORT int eaccess(const char *path, int amode)
{
    int h, rc = do_access(AT_FDCWD, path, amode, AT_EACCESS, &h);
    return h ? ret(rc) : real_eaccess(path, amode);
}
SHIM_EXPORT int euidaccess(const char *path, int amode)
{
    int h, rc = do_access(AT_FDCWD, path, amode, AT_EACCESS, &h);
    return h ? ret(rc) : real_euidaccess(path, amode);
}

/* ---- readlink ------------------------------------------------------------------ */

static ssize_t do_readlink(int dirfd, const char *path, char *buf, size_t n, int *handled)
{
    *handled = 0;
    if (!vr_active())
        return 0;
    struct vr_path p;
    vr_resolve(dirfd, path, 0, &p);
    if (p.kind == VP_PASS)
        return 0;
    *handled = 1;
    if (p.kind == VP_REAL) {
        ssize_t r = real_readlinkat(AT_FDCWD, p.rel, buf, n);
        return r >= 0 ? r : -errno;
    }
    if (p.err)
        return p.err;
    if ((p.res.mode & S_IFMT) != S_IFLNK)
        return -EINVAL;
    size_t len = p.res.target_len < n ? p.res.target_len : n;
    memcpy(buf, p.res.target, len);
    return (ssize_t)len;
}

SHIM_EXPORT ssize_t readlink(const char *path, char *buf, size_t n)
{
    int h;
    ssize_t r = do_readlink(AT_FDCWD, path, buf, n, &h);
    if (!h)
        return real_readlink(path, buf, n);
    if (r < 0) {
        errno = (int)-r;
        return -1;
    }
    return r;
}

SHIM_EXPORT ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t n)
{
    int h;
    ssize_t r = do_readlink(dirfd, path, buf, n, &h);
    if (!h)
        return real_readlinkat(dirfd, path, buf, n);
    if (r < 0) {
        errno = (int)-r;
        return -1;
    }
    return r;
}

/* ---- extended attributes: a mount is a filesystem without them ------------------
 *
 * Every path inside a mount answers ENOTSUP (trees keep no xattrs, so none
 * could survive a snapshot), as a filesystem mounted without xattr support
 * would: cp -a, tar --xattrs, and gnulib's ACL code then fall back to
 * chmod. A descriptor of a virtual file or directory answers the same;
 * a descriptor of an upper file is a real file's (the kernel's answer). */

static int xattr_path(const char *path, int follow)
{
    if (!path || !vr_active())
        return 0;
    struct vr_path p;
    vr_resolve(AT_FDCWD, path, follow ? VR_FOLLOW : 0, &p);
    if (p.kind != VP_VIRT)
        return 0;
    errno = p.err ? -p.err : ENOTSUP;
    return 1;
}

static int xattr_fd(int fd)
{
    if (!vr_active())
        return 0;
    struct vr_vfd *v = vr_vfd_get(fd);
    if (!v || (v->kind != VFD_FILE && v->kind != VFD_DIR))
        return 0;
    errno = ENOTSUP;
    return 1;
}

SHIM_EXPORT ssize_t getxattr(const char *path, const char *name, void *value, size_t size)
{
    return xattr_path(path, 1) ? -1 : real_getxattr(path, name, value, size);
}
SHIM_EXPORT ssize_t lgetxattr(const char *path, const char *name, void *value, size_t size)
{
    return xattr_path(path, 0) ? -1 : real_lgetxattr(path, name, value, size);
}
SHIM_EXPORT ssize_t fgetxattr(int fd, const char *name, void *value, size_t size)
{
    return xattr_fd(fd) ? -1 : real_fgetxattr(fd, name, value, size);
}
SHIM_EXPORT ssize_t listxattr(const char *path, char *list, size_t size)
{
    return xattr_path(path, 1) ? -1 : real_listxattr(path, list, size);
}
SHIM_EXPORT ssize_t llistxattr(const char *path, char *list, size_t size)
{
    return xattr_path(path, 0) ? -1 : real_llistxattr(path, list, size);
}
SHIM_EXPORT ssize_t flistxattr(int fd, char *list, size_t size)
{
    return xattr_fd(fd) ? -1 : real_flistxattr(fd, list, size);
}
SHIM_EXPORT int setxattr(const char *path, const char *name, const void *value, size_t size, int flags)
{
    return xattr_path(path, 1) ? -1 : real_setxattr(path, name, value, size, flags);
}
SHIM_EXPORT int lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags)
{
    return xattr_path(path, 0) ? -1 : real_lsetxattr(path, name, value, size, flags);
}
SHIM_EXPORT int fsetxattr(int fd, const char *name, const void *value, size_t size, int flags)
{
    return xattr_fd(fd) ? -1 : real_fsetxattr(fd, name, value, size, flags);
}
SHIM_EXPORT int removexattr(const char *path, const char *name)
{
    return xattr_path(path, 1) ? -1 : real_removexattr(path, name);
}
SHIM_EXPORT int lremovexattr(const char *path, const char *name)
{
    return xattr_path(path, 0) ? -1 : real_lremovexattr(path, name);
}
SHIM_EXPORT int fremovexattr(int fd, const char *name)
{
    return xattr_fd(fd) ? -1 : real_fremovexattr(fd, name);
}

/* ---- statfs: the filesystem under the mount root ----------------------------- */

static const char *statfs_target(const char *path, struct vr_path *p, int *err)
{
    *err = 0;
    if (!vr_active())
        return path;
    vr_resolve(AT_FDCWD, path, VR_FOLLOW, p);
    if (p->kind == VP_PASS)
        return path;
    if (p->kind == VP_REAL)
        return p->rel;
    if (p->err) {
        *err = p->err;
        return NULL;
    }
    return vr_mounts[p->mount].root;
}

#define STATFS_WRAP(ret_t, name, st_t)                      \
    SHIM_EXPORT ret_t name(const char *path, st_t *buf)      \
    {                                                        \
        struct vr_path p;                                    \
        int err;                                             \
        const char *t = statfs_target(path, &p, &err);       \
        if (!t) {                                            \
            errno = -err;                                    \
            return -1;                                       \
        }                                                    \
        return real_##name(t, buf);                          \
    }
STATFS_WRAP(int, statfs, struct statfs)
STATFS_WRAP(int, statfs64, struct statfs64)
STATFS_WRAP(int, statvfs, struct statvfs)
STATFS_WRAP(int, statvfs64, struct statvfs64)

/* ---- realpath ------------------------------------------------------------------- */

static char *do_realpath(const char *path, char *resolved, int *handled)
{
    *handled = 0;
    if (!vr_active() || !path)
        return NULL;
    struct vr_path p;
    vr_resolve(AT_FDCWD, path, VR_FOLLOW, &p);
    if (p.kind == VP_PASS)
        return NULL;
    *handled = 1;
    if (p.kind == VP_REAL)
        return real_realpath(p.rel, resolved);
    if (p.err) {
        errno = -p.err;
        return NULL;
    }
    char abs[PATH_MAX];
    int n = vr_abs_of(p.mount, p.rel, p.rellen, abs, sizeof abs);
    if (n < 0) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    char *out = resolved ? resolved : malloc((size_t)n + 1);
    if (!out) {
        errno = ENOMEM;
        return NULL;
    }
    memcpy(out, abs, (size_t)n + 1);
    return out;
}

SHIM_EXPORT char *realpath(const char *path, char *resolved)
{
    int saved = errno, h;
    char *r = do_realpath(path, resolved, &h);
    if (!h)
        return real_realpath(path, resolved);
    if (r)
        errno = saved;
    return r;
}

SHIM_EXPORT char *canonicalize_file_name(const char *path)
{
    int saved = errno, h;
    char *r = do_realpath(path, NULL, &h);
    if (!h)
        return real_canonicalize_file_name(path);
    if (r)
        errno = saved;
    return r;
}

/* ---- syscall(): libuv (Node) calls statx this way; others getdents64 ---------- */

int vr_getdents(int fd, void *out, size_t n, long *rc);

SHIM_EXPORT long syscall(long n, ...)
{
    va_list ap;
    va_start(ap, n);
    long a = va_arg(ap, long), b = va_arg(ap, long), c = va_arg(ap, long);
    long d = va_arg(ap, long), e = va_arg(ap, long), f = va_arg(ap, long);
    va_end(ap);
    if (VR_LIKELY(atomic_load_explicit(&vr_on, memory_order_relaxed) == 1) || vr_active()) {
        int rc, h;
        long lrc;
        struct stat st;
        switch (n) {
        case SYS_statx:
            if (vr_statx((int)a, (const char *)b, (int)c, (struct statx *)e, &rc))
                return ret(rc);
            break;
        case SYS_newfstatat:
            rc = vr_stat_path((int)a, (const char *)b, (int)d, &st, &h);
            if (h) {
                if (rc == 0)
                    memcpy((void *)c, &st, sizeof st);
                return ret(rc);
            }
            break;
        case SYS_fstat:
            rc = vr_fstat_fd((int)a, &st, &h);
            if (h) {
                if (rc == 0)
                    memcpy((void *)b, &st, sizeof st);
                return ret(rc);
            }
            break;
        case SYS_getdents64:
            if (vr_getdents((int)a, (void *)b, (size_t)c, &lrc)) {
                if (lrc < 0) {
                    errno = (int)-lrc;
                    return -1;
                }
                return lrc;
            }
            break;
        case SYS_close:
            return close((int)a);
        case SYS_openat:
            return openat((int)a, (const char *)b, (int)c, (mode_t)d);
        default:
            break;
        }
    }
    return real_syscall(n, a, b, c, d, e, f);
}
