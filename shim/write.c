/*
 * write.c — changes inside a mount other than file contents.
 *
 * File contents are real files of the mount's upper layer (upper.c). Names
 * (mkdir, unlink, rmdir, rename, symlink, link) are one request each to the
 * daemon, answered once the VDir shows the change to every process of the
 * mount; errors come back as codes ending in an errno name
 * (ERR_VRIFT_MOUNTFS_ENOTEMPTY ...). Metadata follows overlayfs: truncate,
 * a chmod a tree cannot record, times and owners copy the file up and
 * change the real file (nanosecond times, any mode); a lock on a file read
 * from the CAS copies it up first, so two paths with the same content never
 * share a lock. Directories and symlinks keep their mount-time times.
 */
#include "shim.h"

#include "vrift_proto.h"

static inline int ret(int rc)
{
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    return rc;
}

/* Resolves for a change: 1 = virtual (p filled), 0 = pass to libc. */
/* `how`: VR_FOLLOW, VR_CREATING (see vr_resolve). */
static int for_change(int dirfd, const char *path, int how, struct vr_path *p)
{
    p->kind = VP_PASS;
    if (!vr_active())
        return 0;
    vr_resolve(dirfd, path, how, p);
    return p->kind == VP_VIRT;
}

/* A request about p alone (MKDIR, UNLINK, RMDIR ...), errno kept on success. */
static int simple(uint16_t type, const struct vr_path *p, uint32_t mode)
{
    int saved = errno;
    struct vr_req b;
    vr_req_mount(&b, p->mount, p->rel, p->rellen);
    if (mode)
        vr_req_u32(&b, VRIFT_F_MODE, mode);
    int rc = vr_request(type, &b, NULL);
    if (rc == 0)
        errno = saved;
    return rc;
}

/* The real path of an upper entry, into buf; its length or -errno. */
static int upper_real(const struct vr_path *p, char *buf, size_t cap)
{
    return vr_upper_path(p->mount, p->res.entry.u.digest, buf, cap);
}

/* p (a regular file) made an upper file if it is not one: its real path in buf. */
static int upper_of(struct vr_path *p, char *buf, size_t cap, int empty)
{
    if (!vr_path_is_upper(p)) {
        int rc = vr_copy_up(p, empty);
        if (rc < 0)
            return rc;
    }
    return upper_real(p, buf, cap);
}

/* ---- names ------------------------------------------------------------------------- */

static int do_mkdir(int dirfd, const char *path, mode_t mode)
{
    struct vr_path p;
    /* (a directory or file made a moment ago under that name: the claim's mkdirat says EEXIST) */
    if (!for_change(dirfd, path, VR_CREATING, &p))
        return p.kind == VP_REAL ? real_mkdirat(AT_FDCWD, p.rel, mode) : real_mkdirat(dirfd, path, mode);
    if (p.err == 0)
        return ret(-EEXIST);
    if (p.err != -ENOENT || !p.creatable)
        return ret(p.err);
    int saved = errno;
    int rc = vr_upper_mkdir(&p, mode);
    if (rc == 0)
        errno = saved;
    return ret(rc);
}

SHIM_EXPORT int mkdir(const char *path, mode_t mode) { return do_mkdir(AT_FDCWD, path, mode); }
SHIM_EXPORT int mkdirat(int dirfd, const char *path, mode_t mode) { return do_mkdir(dirfd, path, mode); }

static int do_unlink(int dirfd, const char *path, int flags)
{
    struct vr_path p;
    if (!for_change(dirfd, path, 0, &p))
        return p.kind == VP_REAL ? real_unlinkat(AT_FDCWD, p.rel, flags) : real_unlinkat(dirfd, path, flags);
    int rmdir_ = (flags & AT_REMOVEDIR) != 0;
    if (p.err)
        return ret(p.err);
    uint32_t type = p.res.mode & S_IFMT;
    if (rmdir_) {
        if (type != S_IFDIR)
            return ret(-ENOTDIR);
        if (p.rellen == 0)
            return ret(-EBUSY);
    } else if (type == S_IFDIR) {
        return ret(-EISDIR);
    }
    if (!rmdir_ && vr_path_is_upper(&p)) {
        int saved = errno;
        int rc = vr_upper_unlink(&p);
        if (rc == 0)
            errno = saved;
        return ret(rc);
    }
    return ret(simple(rmdir_ ? VRIFT_MSG_RMDIR : VRIFT_MSG_UNLINK, &p, 0));
}

SHIM_EXPORT int unlink(const char *path) { return do_unlink(AT_FDCWD, path, 0); }
SHIM_EXPORT int unlinkat(int dirfd, const char *path, int flags) { return do_unlink(dirfd, path, flags); }
SHIM_EXPORT int rmdir(const char *path) { return do_unlink(AT_FDCWD, path, AT_REMOVEDIR); }

static int do_rename(int ofd, const char *from, int nfd, const char *to, unsigned flags, int has_flags)
{
    struct vr_path a, b;
    if (!vr_active())
        goto pass;
    vr_resolve(ofd, from, 0, &a);
    vr_resolve(nfd, to, 0, &b);
    if (a.kind != VP_VIRT && b.kind != VP_VIRT) {
        const char *f = a.kind == VP_REAL ? a.rel : from, *t = b.kind == VP_REAL ? b.rel : to;
        int d1 = a.kind == VP_REAL ? AT_FDCWD : ofd, d2 = b.kind == VP_REAL ? AT_FDCWD : nfd;
        return has_flags ? real_renameat2(d1, f, d2, t, flags) : real_renameat(d1, f, d2, t);
    }
    if (a.kind != VP_VIRT || b.kind != VP_VIRT || a.mount != b.mount)
        return ret(-EXDEV);
    if (flags & RENAME_EXCHANGE)
        return ret(-EINVAL);
    if (a.err)
        return ret(a.err);
    if (b.err && !(b.err == -ENOENT && b.creatable))
        return ret(b.err);
    if ((flags & RENAME_NOREPLACE) && b.err == 0)
        return ret(-EEXIST);
    int saved = errno;
    struct vr_req p;
    vr_req_mount(&p, a.mount, a.rel, a.rellen);
    vr_req_str(&p, VRIFT_F_REL2, b.rel, b.rellen);
    int rc = vr_request(VRIFT_MSG_RENAME, &p, NULL);
    if (rc == 0)
        errno = saved;
    return ret(rc);
pass:
    return has_flags ? real_renameat2(ofd, from, nfd, to, flags) : real_renameat(ofd, from, nfd, to);
}

SHIM_EXPORT int rename(const char *from, const char *to) { return do_rename(AT_FDCWD, from, AT_FDCWD, to, 0, 0); }
SHIM_EXPORT int renameat(int ofd, const char *from, int nfd, const char *to) { return do_rename(ofd, from, nfd, to, 0, 0); }
SHIM_EXPORT int renameat2(int ofd, const char *from, int nfd, const char *to, unsigned int flags)
{
    return do_rename(ofd, from, nfd, to, flags, 1);
}

static int do_symlink(const char *target, int dirfd, const char *path)
{
    struct vr_path p;
    if (!for_change(dirfd, path, 0, &p))
        return p.kind == VP_REAL ? real_symlinkat(target, AT_FDCWD, p.rel) : real_symlinkat(target, dirfd, path);
    if (p.err == 0)
        return ret(-EEXIST);
    if (p.err != -ENOENT || !p.creatable)
        return ret(p.err);
    if (!target || !*target)
        return ret(-ENOENT);
    int saved = errno;
    struct vr_req b;
    vr_req_mount(&b, p.mount, p.rel, p.rellen);
    vr_req_str(&b, VRIFT_F_TARGET, target, vr_strlen(target));
    int rc = vr_request(VRIFT_MSG_SYMLINK, &b, NULL);
    if (rc == 0)
        errno = saved;
    return ret(rc);
}

SHIM_EXPORT int symlink(const char *target, const char *path) { return do_symlink(target, AT_FDCWD, path); }
SHIM_EXPORT int symlinkat(const char *target, int dirfd, const char *path) { return do_symlink(target, dirfd, path); }

/* A second name: an upper file is shared (a real hard link's semantics);
 * a file read from the CAS names the same content; a symlink is copied. */
static int do_link(int ofd, const char *from, int nfd, const char *to, int flags)
{
    struct vr_path a, b;
    if (!vr_active())
        return real_linkat(ofd, from, nfd, to, flags);
    vr_resolve(ofd, from, (flags & AT_SYMLINK_FOLLOW) ? VR_FOLLOW : 0, &a);
    vr_resolve(nfd, to, 0, &b);
    if (a.kind != VP_VIRT && b.kind != VP_VIRT) {
        const char *f = a.kind == VP_REAL ? a.rel : from, *t = b.kind == VP_REAL ? b.rel : to;
        return real_linkat(a.kind == VP_REAL ? AT_FDCWD : ofd, f, b.kind == VP_REAL ? AT_FDCWD : nfd, t, flags);
    }
    if (a.kind != VP_VIRT || b.kind != VP_VIRT || a.mount != b.mount)
        return ret(-EXDEV);
    if (a.err)
        return ret(a.err);
    if (b.err == 0)
        return ret(-EEXIST);
    if (b.err != -ENOENT || !b.creatable)
        return ret(b.err);
    if ((a.res.mode & S_IFMT) == S_IFDIR)
        return ret(-EPERM);
    int saved = errno;
    struct vr_req p;
    if ((a.res.mode & S_IFMT) == S_IFLNK) {
        vr_req_mount(&p, b.mount, b.rel, b.rellen);
        vr_req_str(&p, VRIFT_F_TARGET, a.res.target, a.res.target_len);
        int rc = vr_request(VRIFT_MSG_SYMLINK, &p, NULL);
        if (rc == 0)
            errno = saved;
        return ret(rc);
    }
    vr_req_mount(&p, a.mount, a.rel, a.rellen);
    vr_req_str(&p, VRIFT_F_REL2, b.rel, b.rellen);
    int rc = vr_request(VRIFT_MSG_LINK, &p, NULL);
    if (rc == 0)
        errno = saved;
    return ret(rc);
}

SHIM_EXPORT int link(const char *from, const char *to) { return do_link(AT_FDCWD, from, AT_FDCWD, to, 0); }
SHIM_EXPORT int linkat(int ofd, const char *from, int nfd, const char *to, int flags)
{
    return do_link(ofd, from, nfd, to, flags);
}

/* ---- metadata ------------------------------------------------------------------------- */

static int do_truncate(const char *path, off_t len)
{
    struct vr_path p;
    if (!for_change(AT_FDCWD, path, 1, &p))
        return p.kind == VP_REAL ? real_truncate(p.rel, len) : real_truncate(path, len);
    if (p.err)
        return ret(p.err);
    if ((p.res.mode & S_IFMT) == S_IFDIR)
        return ret(-EISDIR);
    if (len < 0)
        return ret(-EINVAL);
    char real[PATH_MAX];
    int rc = upper_of(&p, real, sizeof real, len == 0);
    if (rc < 0)
        return ret(rc);
    return real_truncate(real, len);
}

SHIM_EXPORT int truncate(const char *path, off_t len) { return do_truncate(path, len); }
SHIM_EXPORT int truncate64(const char *path, off64_t len) { return do_truncate(path, (off_t)len); }

/* chmod of a virtual entry: a file read from the CAS keeps 0644/0755 (what a
 * tree records) by one request; any other mode copies it up (overlayfs). */
static int chmod_virtual(struct vr_path *p, mode_t mode, int flags)
{
    if (p->err)
        return p->err;
    uint32_t type = p->res.mode & S_IFMT;
    if (type != S_IFREG)
        return 0; /* directories are 0755 and symlinks 0777 in a tree */
    char real[PATH_MAX];
    if (!vr_path_is_upper(p) && ((mode & 07777) == 0644 || (mode & 07777) == 0755)) {
        if ((p->res.mode & 07777) == (mode & 07777))
            return 0;
        return simple(VRIFT_MSG_CHMOD, p, S_IFREG | (mode & 07777));
    }
    int rc = upper_of(p, real, sizeof real, 0);
    if (rc < 0)
        return rc;
    return real_fchmodat(AT_FDCWD, real, mode, flags & ~AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
}

static int do_chmod(int dirfd, const char *path, mode_t mode, int flags)
{
    struct vr_path p;
    if (!for_change(dirfd, path, !(flags & AT_SYMLINK_NOFOLLOW), &p))
        return p.kind == VP_REAL ? real_fchmodat(AT_FDCWD, p.rel, mode, flags) : real_fchmodat(dirfd, path, mode, flags);
    int saved = errno;
    int rc = chmod_virtual(&p, mode, flags);
    if (rc == 0)
        errno = saved;
    return ret(rc);
}

SHIM_EXPORT int chmod(const char *path, mode_t mode) { return do_chmod(AT_FDCWD, path, mode, 0); }
SHIM_EXPORT int fchmodat(int dirfd, const char *path, mode_t mode, int flags) { return do_chmod(dirfd, path, mode, flags); }

/* The entry a virtual descriptor stands for, looked up again by its path. */
static int path_of_vfd(int fd, struct vr_path *p)
{
    struct vr_vfd *v = vr_active() ? vr_vfd_get(fd) : NULL;
    if (!v || (v->kind != VFD_FILE && v->kind != VFD_DIR))
        return 0;
    char abs[PATH_MAX];
    int n = vr_abs_of(v->mount, v->rel, v->rellen, abs, sizeof abs);
    if (n < 0) {
        p->kind = VP_VIRT;
        p->err = n;
        return 1;
    }
    vr_resolve(AT_FDCWD, abs, 0, p);
    if (p->kind != VP_VIRT) {
        p->kind = VP_VIRT;
        p->err = -ENOENT;
    }
    return 1;
}

SHIM_EXPORT int fchmod(int fd, mode_t mode)
{
    struct vr_path p;
    if (path_of_vfd(fd, &p)) {
        int saved = errno;
        int rc = chmod_virtual(&p, mode, 0);
        if (rc == 0)
            errno = saved;
        return ret(rc);
    }
    return real_fchmod(fd, mode);
}

/* Times and owners of a virtual entry: a file is copied up and its real
 * file changed (nanoseconds kept); directories and symlinks accept and keep
 * their mount-time times (trees record neither times nor owners). */
static int times_virtual(struct vr_path *p, const struct timespec t[2])
{
    if (p->err)
        return p->err;
    if ((p->res.mode & S_IFMT) != S_IFREG)
        return 0;
    char real[PATH_MAX];
    int rc = upper_of(p, real, sizeof real, 0);
    if (rc < 0)
        return rc;
    return real_utimensat(AT_FDCWD, real, t, 0) == 0 ? 0 : -errno;
}

static int owner_virtual(struct vr_path *p, uid_t u, gid_t g)
{
    if (p->err)
        return p->err;
    if (!vr_path_is_upper(p))
        return 0;
    char real[PATH_MAX];
    int rc = upper_real(p, real, sizeof real);
    if (rc < 0)
        return rc;
    return real_fchownat(AT_FDCWD, real, u, g, 0) == 0 ? 0 : -errno;
}

static int do_utimens(int dirfd, const char *path, const struct timespec t[2], int flags)
{
    struct vr_path p;
    if (!path) { /* futimens(fd): the descriptor itself */
        if (!path_of_vfd(dirfd, &p))
            return real_futimens(dirfd, t);
    } else if (!for_change(dirfd, path, !(flags & AT_SYMLINK_NOFOLLOW), &p)) {
        return p.kind == VP_REAL ? real_utimensat(AT_FDCWD, p.rel, t, flags) : real_utimensat(dirfd, path, t, flags);
    }
    int saved = errno;
    int rc = times_virtual(&p, t);
    if (rc == 0)
        errno = saved;
    return ret(rc);
}

static int do_chown(int dirfd, const char *path, uid_t u, gid_t g, int flags)
{
    struct vr_path p;
    if (!for_change(dirfd, path, !(flags & AT_SYMLINK_NOFOLLOW), &p))
        return p.kind == VP_REAL ? real_fchownat(AT_FDCWD, p.rel, u, g, flags) : real_fchownat(dirfd, path, u, g, flags);
    int saved = errno;
    int rc = owner_virtual(&p, u, g);
    if (rc == 0)
        errno = saved;
    return ret(rc);
}

static void tv_to_ts(const struct timeval tv[2], struct timespec ts[2])
{
    for (int i = 0; i < 2; i++) {
        ts[i].tv_sec = tv[i].tv_sec;
        ts[i].tv_nsec = tv[i].tv_usec * 1000;
    }
}

SHIM_EXPORT int chown(const char *path, uid_t u, gid_t g) { return do_chown(AT_FDCWD, path, u, g, 0); }
SHIM_EXPORT int lchown(const char *path, uid_t u, gid_t g) { return do_chown(AT_FDCWD, path, u, g, AT_SYMLINK_NOFOLLOW); }
SHIM_EXPORT int fchownat(int dirfd, const char *path, uid_t u, gid_t g, int flags)
{
    if (path[0] == '\0' && (flags & AT_EMPTY_PATH)) {
        struct vr_path p;
        if (path_of_vfd(dirfd, &p))
            return ret(owner_virtual(&p, u, g));
    }
    return do_chown(dirfd, path, u, g, flags);
}
SHIM_EXPORT int fchown(int fd, uid_t u, gid_t g)
{
    struct vr_path p;
    if (path_of_vfd(fd, &p))
        return ret(owner_virtual(&p, u, g));
    return real_fchown(fd, u, g);
}
SHIM_EXPORT int utimensat(int dirfd, const char *path, const struct timespec t[2], int flags)
{
    const char *p = path; /* (glibc declares it non-null; NULL gets glibc's own answer, EINVAL) */
    __asm__("" : "+r"(p));
    return p ? do_utimens(dirfd, p, t, flags) : real_utimensat(dirfd, p, t, flags);
}
SHIM_EXPORT int futimens(int fd, const struct timespec t[2]) { return do_utimens(fd, NULL, t, 0); }
SHIM_EXPORT int utimes(const char *path, const struct timeval t[2])
{
    struct timespec ts[2];
    if (t)
        tv_to_ts(t, ts);
    return do_utimens(AT_FDCWD, path, t ? ts : NULL, 0);
}
SHIM_EXPORT int lutimes(const char *path, const struct timeval t[2])
{
    struct timespec ts[2];
    if (t)
        tv_to_ts(t, ts);
    return do_utimens(AT_FDCWD, path, t ? ts : NULL, AT_SYMLINK_NOFOLLOW);
}
SHIM_EXPORT int futimes(int fd, const struct timeval t[2])
{
    struct timespec ts[2];
    if (t)
        tv_to_ts(t, ts);
    return do_utimens(fd, NULL, t ? ts : NULL, 0);
}
SHIM_EXPORT int utime(const char *path, const struct utimbuf *t)
{
    struct timespec ts[2];
    if (t) {
        ts[0].tv_sec = t->actime;
        ts[1].tv_sec = t->modtime;
        ts[0].tv_nsec = ts[1].tv_nsec = 0;
    }
    return do_utimens(AT_FDCWD, path, t ? ts : NULL, 0);
}

/* ---- locks: a file read from the CAS shares its inode with every path of
 * the same content; before it is locked it becomes its own upper file, and
 * the descriptor is moved onto that file (same number, flags and offset). */

int vr_own_inode(int fd)
{
    struct vr_vfd *v = vr_active() ? vr_vfd_get(fd) : NULL;
    if (!v || v->kind != VFD_FILE)
        return 0;
    struct vr_path p;
    if (!path_of_vfd(fd, &p) || p.err)
        return p.err ? p.err : -EBADF;
    int rc = vr_copy_up(&p, 0);
    if (rc < 0)
        return rc;
    int fl = vr_fcntl(fd, F_GETFL, 0), fdfl = vr_fcntl(fd, F_GETFD, 0);
    long off = VR_SYS3(SYS_lseek, fd, 0, SEEK_CUR);
    int nfd = vr_upper_open_existing(&p, (fl & ~O_ACCMODE) | O_RDONLY | O_CLOEXEC);
    if (nfd < 0)
        return nfd;
    if (off > 0)
        VR_SYS3(SYS_lseek, nfd, off, SEEK_SET);
    struct vr_vfd *old = vr_vfd_take(fd);
    int r = (int)VR_SYS3(SYS_dup3, nfd, fd, (fdfl & FD_CLOEXEC) ? O_CLOEXEC : 0);
    vr_close(nfd);
    if (old)
        vr_vfd_put(old);
    return r < 0 ? r : 0;
}

SHIM_EXPORT int flock(int fd, int op)
{
    int saved = errno;
    int rc = vr_own_inode(fd);
    if (rc < 0)
        return ret(rc);
    errno = saved;
    return real_flock(fd, op);
}

SHIM_EXPORT int lockf(int fd, int cmd, off_t len)
{
    int saved = errno;
    int rc = cmd == F_TEST ? 0 : vr_own_inode(fd);
    if (rc < 0)
        return ret(rc);
    errno = saved;
    return real_lockf(fd, cmd, len);
}

/* ---- mkstemp family: glibc's open its own file internally ---------------------- */

static int do_mkstemp(char *tmpl, int suffixlen, int flags, int *handled)
{
    *handled = 0;
    if (!vr_active() || !tmpl)
        return 0;
    size_t n = vr_strlen(tmpl);
    if (suffixlen < 0 || n < 6 + (size_t)suffixlen)
        return 0;
    char *x = tmpl + n - suffixlen - 6;
    if (!vr_memeq(x, "XXXXXX", 6))
        return 0;
    struct vr_path p;
    vr_resolve(AT_FDCWD, tmpl, 0, &p);
    if (p.kind != VP_VIRT)
        return 0;
    *handled = 1;
    static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    struct timespec ts;
    VR_SYS2(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
    uint64_t seed = (uint64_t)vr_getpid() * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32);
    for (int attempt = 0; attempt < 1000; attempt++) {
        uint64_t v = seed + (uint64_t)attempt * 0xBF58476D1CE4E5B9ull;
        v ^= v >> 31;
        for (int i = 0; i < 6; i++) {
            x[i] = chars[v % 62];
            v /= 62;
        }
        int fd = open(tmpl, O_RDWR | O_CREAT | O_EXCL | (flags & ~O_ACCMODE), 0600);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    errno = EEXIST;
    return -1;
}

SHIM_EXPORT int mkstemp(char *t)
{
    int h, fd = do_mkstemp(t, 0, 0, &h);
    return h ? fd : real_mkstemp(t);
}
SHIM_EXPORT int mkstemp64(char *t)
{
    int h, fd = do_mkstemp(t, 0, 0, &h);
    return h ? fd : real_mkstemp64(t);
}
SHIM_EXPORT int mkostemp(char *t, int flags)
{
    int h, fd = do_mkstemp(t, 0, flags, &h);
    return h ? fd : real_mkostemp(t, flags);
}
SHIM_EXPORT int mkstemps(char *t, int suffixlen)
{
    int h, fd = do_mkstemp(t, suffixlen, 0, &h);
    return h ? fd : real_mkstemps(t, suffixlen);
}
