/*
 * write.c — changes inside a mount.
 *
 * Files: opening a path for writing creates a staged file in
 * $VRIFT_HOME/staging (the CAS's filesystem), copy-on-write from the
 * current content unless O_TRUNC; the program writes it natively. On the
 * last close (or at exit, or in the program exec'd with the descriptor)
 * the shim sends COMMIT with the staged file as /proc/<pid>/fd/<fd>: the
 * daemon copies (reflinks where it can) and hashes it into the CAS,
 * publishes the entry in the VDir, and unlinks the staged name. It copies
 * rather than renames because another process may still hold the staged
 * file open for writing (an inherited descriptor): a CAS blob must never
 * change after it is named.
 *
 * Everything else (mkdir, unlink, rmdir, rename, symlink, link, chmod,
 * truncate) is one request to the daemon, answered once the VDir shows the
 * change — to every process of the mount. Errors come back as codes ending
 * in an errno name (ERR_VRIFT_MOUNTFS_ENOTEMPTY ...).
 */
#include "shim.h"

#include "vrift_proto.h"

#define VRIFT_MSG_CHMOD_ VRIFT_MSG_CHMOD

static inline int ret(int rc)
{
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    return rc;
}

/* ---- the staged set (read-your-writes lookups) ----------------------------- */

#define MAX_STAGED 1024
static _Atomic(struct vr_vfd *) staged_list[MAX_STAGED];

static void staged_add(struct vr_vfd *v)
{
    atomic_fetch_add(&vr_staged_open, 1);
    for (int i = 0; i < MAX_STAGED; i++) {
        struct vr_vfd *z = NULL;
        if (atomic_compare_exchange_strong(&staged_list[i], &z, v))
            return;
    }
}

void vr_staged_adopt(struct vr_vfd *v) { staged_add(v); }

void vr_staged_forget(struct vr_vfd *v)
{
    atomic_fetch_sub(&vr_staged_open, 1);
    for (int i = 0; i < MAX_STAGED; i++) {
        struct vr_vfd *e = v;
        if (atomic_compare_exchange_strong(&staged_list[i], &e, NULL))
            return;
    }
}

struct vr_vfd *vr_staged_lookup(int mount, const char *rel, size_t rellen)
{
    for (int i = 0; i < MAX_STAGED; i++) {
        struct vr_vfd *v = atomic_load(&staged_list[i]);
        if (v && v->kind == VFD_STAGED && !v->orphan && v->mount == mount && v->rellen == rellen &&
            vr_memeq(v->rel, rel, rellen))
            return v;
    }
    return NULL;
}

/* ---- requests ------------------------------------------------------------------ */

struct pb {
    size_t n;
    int bad;
    uint8_t b[3 * PATH_MAX + 256];
};

static void pb_str(struct pb *p, uint16_t tag, const char *s, size_t len)
{
    size_t w = vrift_proto_field(p->b + p->n, sizeof p->b - p->n, tag, s, (uint32_t)len);
    if (!w)
        p->bad = 1;
    p->n += w;
}

static void pb_u32(struct pb *p, uint16_t tag, uint32_t v)
{
    size_t w = vrift_proto_field_u32(p->b + p->n, sizeof p->b - p->n, tag, v);
    if (!w)
        p->bad = 1;
    p->n += w;
}

static void pb_mount(struct pb *p, int mount, const char *rel, size_t rellen)
{
    p->n = 0;
    p->bad = 0;
    pb_str(p, VRIFT_F_PATH, vr_mounts[mount].root, vr_mounts[mount].rootlen);
    pb_str(p, VRIFT_F_REL, rel, rellen);
}

/* Sends one change request; 0 or -errno (EIO after falling back). */
static int request(uint16_t type, struct pb *p, struct vr_reply *rep)
{
    if (p->bad)
        return -ENAMETOOLONG;
    if (atomic_load(&vr_on) != 1)
        return -EIO;
    struct vr_reply local;
    struct vr_reply *r = rep ? rep : &local;
    int rc = vr_ipc_call(type, p->b, p->n, r);
    if (rc < 0) {
        vr_fallback(rc == -ETIMEDOUT ? "the vrift daemon did not answer in time" : "lost the vrift daemon");
        return -EIO;
    }
    return r->ok ? 0 : -r->err;
}

int vr_fetch(int mount, const uint8_t digest[32])
{
    static const char hex[] = "0123456789abcdef";
    char d[64];
    for (int i = 0; i < 32; i++) {
        d[2 * i] = hex[digest[i] >> 4];
        d[2 * i + 1] = hex[digest[i] & 15];
    }
    struct pb p = {0};
    pb_str(&p, VRIFT_F_PATH, vr_mounts[mount].root, vr_mounts[mount].rootlen);
    pb_str(&p, VRIFT_F_DIGEST, d, 64);
    return request(VRIFT_MSG_FETCH, &p, NULL);
}

/* ---- staging --------------------------------------------------------------------- */

static _Atomic unsigned stage_counter;

static unsigned current_umask(void)
{
    unsigned m = (unsigned)VR_SYS1(SYS_umask, 022);
    VR_SYS1(SYS_umask, m);
    return m;
}

static int make_staged(char *path, size_t cap, int flags)
{
    size_t n = vr_strlcpy(path, vr_home, cap);
    n += vr_strlcpy(path + n, "/" VRIFT_LAYOUT_STAGING_DIR, cap - n);
    vr_mkdirat(AT_FDCWD, path, 0700);
    for (int attempt = 0; attempt < 100; attempt++) {
        char num[24];
        size_t k = n;
        if (k + 80 >= cap)
            return -ENAMETOOLONG;
        path[k++] = '/';
        vr_utoa((uint64_t)vr_getpid(), num);
        k += vr_strlcpy(path + k, num, cap - k);
        path[k++] = '.';
        vr_utoa((uint64_t)vr_gettid(), num);
        k += vr_strlcpy(path + k, num, cap - k);
        path[k++] = '.';
        vr_utoa(atomic_fetch_add(&stage_counter, 1), num);
        k += vr_strlcpy(path + k, num, cap - k);
        path[k] = '\0';
        int acc = (flags & O_ACCMODE) == O_WRONLY ? O_WRONLY : O_RDWR;
        int fd = vr_openat(AT_FDCWD, path, acc | O_CREAT | O_EXCL | (flags & (O_CLOEXEC | O_NONBLOCK)), 0600);
        if (fd != -EEXIST)
            return fd;
    }
    return -EEXIST;
}

/* Copies the current content of a found file into staged fd `out` (offsets untouched). */
static int copy_blob(const struct vr_path *p, int out)
{
    char blob[PATH_MAX];
    vrift_vdir_blob_path(vr_mounts[p->mount].r, p->res.entry.u.digest, 0, blob, sizeof blob);
    int in = vr_openat(AT_FDCWD, blob, O_RDONLY | O_CLOEXEC, 0);
    if (in == -ENOENT) {
        if (vr_fetch(p->mount, p->res.entry.u.digest) == 0)
            in = vr_openat(AT_FDCWD, blob, O_RDONLY | O_CLOEXEC, 0);
    }
    if (in < 0)
        return -EIO;
    long long off_in = 0, off_out = 0;
    uint64_t left = p->res.size;
    int rc = 0;
    while (left > 0) {
        long w = VR_SYS6(SYS_copy_file_range, in, &off_in, out, &off_out, left, 0);
        if (w == -EINTR)
            continue;
        if (w <= 0) {
            /* not supported across these filesystems: plain copy */
            char buf[65536];
            while (left > 0) {
                long r = vr_pread(in, buf, left < sizeof buf ? left : sizeof buf, off_in);
                if (r <= 0) {
                    rc = -EIO;
                    break;
                }
                long x = VR_SYS4(SYS_pwrite64, out, buf, r, off_out);
                if (x != r) {
                    rc = x < 0 ? (int)x : -EIO;
                    break;
                }
                off_in += r;
                off_out += r;
                left -= (uint64_t)r;
            }
            break;
        }
        left -= (uint64_t)w;
    }
    vr_close(in);
    return rc;
}

int vr_stage_open(struct vr_path *p, int flags, mode_t mode, int copy_existing)
{
    if (!vr_home[0])
        return -EROFS;
    struct vr_vfd *v = vr_vfd_new();
    if (!v)
        return -EMFILE;
    int fd = make_staged(v->staged, sizeof v->staged, flags & ~O_APPEND);
    if (fd < 0) {
        vr_vfd_put(v);
        return fd == -ENOENT || fd == -EACCES ? -EROFS : fd;
    }
    if (copy_existing && p->err == 0) {
        int rc = copy_blob(p, fd);
        if (rc < 0) {
            vr_close(fd);
            vr_unlinkat(AT_FDCWD, v->staged, 0);
            vr_vfd_put(v);
            return rc;
        }
    }
    if (flags & O_APPEND)
        vr_fcntl(fd, F_SETFL, (long)(O_APPEND | (flags & O_NONBLOCK)));
    struct stat st;
    vr_fstat(fd, &st);
    v->kind = VFD_STAGED;
    v->mount = p->mount;
    v->mode = p->err == 0 ? (p->res.mode & 07777) : (mode & 07777 & ~current_umask());
    v->real_dev = (uint64_t)st.st_dev;
    v->real_ino = (uint64_t)st.st_ino;
    v->rellen = p->rellen;
    memcpy(v->rel, p->rel, p->rellen + 1);
    staged_add(v);
    vr_vfd_set(fd, v);
    return fd;
}

int vr_commit(struct vr_vfd *v, int fd)
{
    if (v->orphan)
        return 0;
    if (atomic_load(&vr_on) != 1)
        return -EIO;
    char src[PATH_MAX];
    if (fd >= 0) {
        size_t n = vr_strlcpy(src, "/proc/", sizeof src);
        n += vr_utoa((uint64_t)vr_getpid(), src + n);
        n += vr_strlcpy(src + n, "/fd/", sizeof src - n);
        vr_utoa((uint64_t)fd, src + n);
    } else {
        vr_strlcpy(src, v->staged, sizeof src);
    }
    struct pb p;
    pb_mount(&p, v->mount, v->rel, v->rellen);
    pb_str(&p, VRIFT_F_STAGED, src, vr_strlen(src));
    pb_u32(&p, VRIFT_F_MODE, S_IFREG | (v->mode & 07777));
    int rc = request(VRIFT_MSG_COMMIT, &p, NULL);
    if (rc < 0 && rc != -EIO) {
        char m[PATH_MAX + 64];
        size_t k = vr_strlcpy(m, "could not save ", sizeof m);
        vr_abs_of(v->mount, v->rel, v->rellen, m + k, sizeof m - k);
        vr_say(m, NULL, NULL);
    }
    return rc;
}

struct commit_seen {
    int n;
    struct vr_vfd *v[256];
};

static void commit_one(int fd, struct vr_vfd *v, void *arg)
{
    struct commit_seen *seen = arg;
    if (v->kind != VFD_STAGED || v->orphan)
        return;
    for (int i = 0; i < seen->n; i++)
        if (seen->v[i] == v)
            return; /* once per description */
    if (seen->n < 256)
        seen->v[seen->n++] = v;
    vr_commit(v, fd);
}

/* Commits every staged file still open. Marks nothing: after a vfork the
 * table is the parent's too, and the parent commits again when it closes. */
void vr_commit_all(void)
{
    int saved = errno;
    struct commit_seen seen;
    seen.n = 0;
    vr_vfd_each(commit_one, &seen);
    errno = saved;
}

/* ---- path-changing calls ------------------------------------------------------- */

/* Resolves for a change: 1 = virtual (p filled), 0 = pass to libc. */
static int for_change(int dirfd, const char *path, int follow, struct vr_path *p)
{
    p->kind = VP_PASS;
    if (!vr_active())
        return 0;
    vr_resolve(dirfd, path, follow ? VR_FOLLOW : 0, p);
    return p->kind == VP_VIRT;
}

static int do_mkdir(int dirfd, const char *path, mode_t mode)
{
    struct vr_path p;
    if (!for_change(dirfd, path, 0, &p))
        return p.kind == VP_REAL ? real_mkdirat(AT_FDCWD, p.rel, mode) : real_mkdirat(dirfd, path, mode);
    if (p.err == 0)
        return ret(-EEXIST);
    if (p.err != -ENOENT || !p.creatable)
        return ret(p.err);
    int saved = errno;
    struct pb b;
    pb_mount(&b, p.mount, p.rel, p.rellen);
    pb_u32(&b, VRIFT_F_MODE, S_IFDIR | (mode & 07777));
    int rc = request(VRIFT_MSG_MKDIR, &b, NULL);
    if (rc == 0)
        errno = saved;
    return ret(rc);
}

SHIM_EXPORT int mkdir(const char *path, mode_t mode) { return do_mkdir(AT_FDCWD, path, mode); }
SHIM_EXPORT int mkdirat(int dirfd, const char *path, mode_t mode) { return do_mkdir(dirfd, path, mode); }

/* An open staged file of this path no longer has a name to commit to. */
static int orphan_staged(int mount, const char *rel, size_t rellen)
{
    struct vr_vfd *v = vr_staged_lookup(mount, rel, rellen);
    if (!v)
        return 0;
    v->orphan = 1;
    return 1;
}

static int do_unlink(int dirfd, const char *path, int flags)
{
    struct vr_path p;
    if (!for_change(dirfd, path, 0, &p))
        return p.kind == VP_REAL ? real_unlinkat(AT_FDCWD, p.rel, flags) : real_unlinkat(dirfd, path, flags);
    int rmdir_ = (flags & AT_REMOVEDIR) != 0;
    int saved = errno;
    if (p.err == -ENOENT && !rmdir_ && p.creatable && orphan_staged(p.mount, p.rel, p.rellen))
        return 0; /* a file this process created and has not closed yet */
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
    struct pb b;
    pb_mount(&b, p.mount, p.rel, p.rellen);
    int rc = request(rmdir_ ? VRIFT_MSG_RMDIR : VRIFT_MSG_UNLINK, &b, NULL);
    if (rc == 0) {
        if (!rmdir_)
            orphan_staged(p.mount, p.rel, p.rellen);
        errno = saved;
    }
    return ret(rc);
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
    int saved = errno;
    if (a.err == -ENOENT && a.creatable) {
        /* renaming a file this process is still writing: commit it first */
        struct vr_vfd *v = vr_staged_lookup(a.mount, a.rel, a.rellen);
        if (v) {
            int rc = vr_commit(v, -1);
            if (rc < 0)
                return ret(rc);
            vr_resolve(ofd, from, 0, &a);
        }
    }
    if (a.err)
        return ret(a.err);
    if (b.err && !(b.err == -ENOENT && b.creatable))
        return ret(b.err);
    if ((flags & RENAME_NOREPLACE) && b.err == 0)
        return ret(-EEXIST);
    struct pb p;
    pb_mount(&p, a.mount, a.rel, a.rellen);
    pb_str(&p, VRIFT_F_REL2, b.rel, b.rellen);
    int rc = request(VRIFT_MSG_RENAME, &p, NULL);
    if (rc == 0) {
        struct vr_vfd *v = vr_staged_lookup(a.mount, a.rel, a.rellen);
        if (v && b.rellen < sizeof v->rel) { /* still open for writing: follow the new name */
            memcpy(v->rel, b.rel, b.rellen + 1);
            v->rellen = b.rellen;
        }
        errno = saved;
    }
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
    struct pb b;
    pb_mount(&b, p.mount, p.rel, p.rellen);
    pb_str(&b, VRIFT_F_TARGET, target, vr_strlen(target));
    int rc = request(VRIFT_MSG_SYMLINK, &b, NULL);
    if (rc == 0)
        errno = saved;
    return ret(rc);
}

SHIM_EXPORT int symlink(const char *target, const char *path) { return do_symlink(target, AT_FDCWD, path); }
SHIM_EXPORT int symlinkat(const char *target, int dirfd, const char *path) { return do_symlink(target, dirfd, path); }

/* A new name for existing content: stage a copy, commit it (trees have no hard links). */
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
    if ((a.res.mode & S_IFMT) == S_IFLNK) {
        struct pb p;
        pb_mount(&p, b.mount, b.rel, b.rellen);
        pb_str(&p, VRIFT_F_TARGET, a.res.target, a.res.target_len);
        int rc = request(VRIFT_MSG_SYMLINK, &p, NULL);
        if (rc == 0)
            errno = saved;
        return ret(rc);
    }
    /* b takes a's entry for the copy */
    memcpy(&b.res, &a.res, sizeof a.res);
    b.err = 0;
    int fd = vr_stage_open(&b, O_RDWR | O_CLOEXEC, 0, 1);
    if (fd < 0)
        return ret(fd);
    struct vr_vfd *v = vr_vfd_take(fd);
    int rc = vr_after_close(v, fd);
    vr_close(fd);
    if (rc == 0)
        errno = saved;
    return ret(rc);
}

SHIM_EXPORT int link(const char *from, const char *to) { return do_link(AT_FDCWD, from, AT_FDCWD, to, 0); }
SHIM_EXPORT int linkat(int ofd, const char *from, int nfd, const char *to, int flags)
{
    return do_link(ofd, from, nfd, to, flags);
}

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
    int saved = errno;
    int fd = vr_stage_open(&p, O_RDWR | O_CLOEXEC, 0, len > 0);
    if (fd < 0)
        return ret(fd);
    int rc = (int)VR_SYS2(SYS_ftruncate, fd, len);
    struct vr_vfd *v = vr_vfd_take(fd);
    if (rc == 0) {
        rc = vr_after_close(v, fd);
    } else {
        v->orphan = 1;
        vr_vfd_put(v);
    }
    vr_close(fd);
    if (rc == 0)
        errno = saved;
    return ret(rc);
}

SHIM_EXPORT int truncate(const char *path, off_t len) { return do_truncate(path, len); }
SHIM_EXPORT int truncate64(const char *path, off64_t len) { return do_truncate(path, (off_t)len); }

/* chmod: trees keep only a file's executable bit; directories are 0755. */
static int chmod_virtual(const struct vr_path *p, mode_t mode)
{
    if (p->err)
        return p->err;
    if ((p->res.mode & S_IFMT) != S_IFREG)
        return 0;
    if (((p->res.mode & 0100) != 0) == ((mode & 0100) != 0))
        return 0;
    struct pb b;
    pb_mount(&b, p->mount, p->rel, p->rellen);
    pb_u32(&b, VRIFT_F_MODE, S_IFREG | (mode & 07777));
    return request(VRIFT_MSG_CHMOD_, &b, NULL);
}

static int do_chmod(int dirfd, const char *path, mode_t mode, int flags)
{
    struct vr_path p;
    if (!for_change(dirfd, path, !(flags & AT_SYMLINK_NOFOLLOW), &p))
        return p.kind == VP_REAL ? real_fchmodat(AT_FDCWD, p.rel, mode, flags) : real_fchmodat(dirfd, path, mode, flags);
    int saved = errno;
    if (p.err == -ENOENT && p.creatable) {
        struct vr_vfd *v = vr_staged_lookup(p.mount, p.rel, p.rellen);
        if (v) {
            v->mode = mode & 07777;
            return 0;
        }
    }
    int rc = chmod_virtual(&p, mode);
    if (rc == 0)
        errno = saved;
    return ret(rc);
}

SHIM_EXPORT int chmod(const char *path, mode_t mode) { return do_chmod(AT_FDCWD, path, mode, 0); }
SHIM_EXPORT int fchmodat(int dirfd, const char *path, mode_t mode, int flags) { return do_chmod(dirfd, path, mode, flags); }

SHIM_EXPORT int fchmod(int fd, mode_t mode)
{
    if (vr_active()) {
        struct vr_vfd *v = vr_vfd_get(fd);
        if (v && v->kind == VFD_STAGED) {
            v->mode = mode & 07777;
            return 0;
        }
        if (v && (v->kind == VFD_FILE || v->kind == VFD_DIR)) {
            struct vr_path p;
            memset(&p.res, 0, sizeof p.res);
            p.kind = VP_VIRT;
            p.err = 0;
            p.mount = v->mount;
            p.rellen = v->rellen;
            memcpy(p.rel, v->rel, v->rellen + 1);
            p.res.mode = v->mode;
            int saved = errno;
            int rc = chmod_virtual(&p, mode);
            if (rc == 0)
                errno = saved;
            return ret(rc);
        }
    }
    return real_fchmod(fd, mode);
}

/* Owners and times: trees record neither; accepted on existing entries. */
static int accept_existing(int dirfd, const char *path, int follow, int *handled)
{
    struct vr_path p;
    *handled = 0;
    if (!path) {
        /* utimensat(fd, NULL, ...): the descriptor itself */
        struct vr_vfd *v = vr_active() ? vr_vfd_get(dirfd) : NULL;
        if (v && (v->kind == VFD_FILE || v->kind == VFD_DIR)) {
            *handled = 1;
            return 0;
        }
        return 0;
    }
    if (!for_change(dirfd, path, follow, &p))
        return 0;
    *handled = 1;
    if (p.err == -ENOENT && p.creatable && vr_staged_lookup(p.mount, p.rel, p.rellen))
        return 0;
    return p.err;
}

SHIM_EXPORT int chown(const char *path, uid_t u, gid_t g)
{
    int h, rc = accept_existing(AT_FDCWD, path, 1, &h);
    return h ? ret(rc) : real_chown(path, u, g);
}
SHIM_EXPORT int lchown(const char *path, uid_t u, gid_t g)
{
    int h, rc = accept_existing(AT_FDCWD, path, 0, &h);
    return h ? ret(rc) : real_lchown(path, u, g);
}
SHIM_EXPORT int fchownat(int dirfd, const char *path, uid_t u, gid_t g, int flags)
{
    int h, rc = accept_existing(dirfd, path, !(flags & AT_SYMLINK_NOFOLLOW), &h);
    return h ? ret(rc) : real_fchownat(dirfd, path, u, g, flags);
}
SHIM_EXPORT int utimensat(int dirfd, const char *path, const struct timespec t[2], int flags)
{
    int h, rc = accept_existing(dirfd, path, !(flags & AT_SYMLINK_NOFOLLOW), &h);
    return h ? ret(rc) : real_utimensat(dirfd, path, t, flags);
}
SHIM_EXPORT int utimes(const char *path, const struct timeval t[2])
{
    int h, rc = accept_existing(AT_FDCWD, path, 1, &h);
    return h ? ret(rc) : real_utimes(path, t);
}
SHIM_EXPORT int lutimes(const char *path, const struct timeval t[2])
{
    int h, rc = accept_existing(AT_FDCWD, path, 0, &h);
    return h ? ret(rc) : real_lutimes(path, t);
}
SHIM_EXPORT int utime(const char *path, const struct utimbuf *t)
{
    int h, rc = accept_existing(AT_FDCWD, path, 1, &h);
    return h ? ret(rc) : real_utime(path, t);
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
