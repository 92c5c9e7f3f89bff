/*
 * upper.c — a mount's upper layer, as overlayfs has one.
 *
 * The first write, truncate or create of a path makes ONE real file for
 * it in <home>/upper/<vdir name>/, named by the path itself
 * (vrift_vdir_upper_name: vrift_vdir.h section 6), and from then on the
 * VDir entry carries VRIFT_VDIR_F_UPPER and that name: every open of the
 * path, by any descriptor of any process of the mount, opens that same
 * file. Shared offsets, O_APPEND, locks, mmap MAP_SHARED and rename over
 * an open file are then the kernel's own; stat() of such a path is the
 * real file's (its inode, size, times with nanoseconds, mode).
 *
 * Because the name is the path's, a create is an O_CREAT|O_EXCL in the
 * upper directory — the kernel decides races, exactly as on a real
 * filesystem — and needs no answer from the daemon: the shim counts it in
 * the mount's `.issued` (before making the file) and announces it without
 * waiting (VRIFT_MSG_UPPER); the daemon publishes it and counts it in the
 * VDir header. Until then a lookup that misses in the VDir while the two
 * counts differ looks for the path's file itself (one fstatat), and a
 * directory listing waits for the counts to agree. Copy-up (an existing
 * file from the CAS) is made under a temporary name, linked to the path's
 * name (the kernel picks one winner) and published before it is used.
 */
#include "shim.h"

#include "vrift_proto.h"

static inline int is_upper(const struct vr_path *p)
{
    return p->err == 0 && (p->res.mode & S_IFMT) == S_IFREG && (p->res.flags & VRIFT_VDIR_F_UPPER);
}

int vr_path_is_upper(const struct vr_path *p) { return is_upper(p); }

/* The mount's upper directory as a cached O_PATH descriptor (like the CAS
 * directory's in open.c); -errno when it cannot be opened. */
static int upper_dir(int mount)
{
    struct vr_mount *m = &vr_mounts[mount];
    int fd = atomic_load_explicit(&m->upper_fd, memory_order_acquire);
    if (VR_LIKELY(fd >= 0))
        return fd;
    if (!m->upper[0])
        return -EROFS;
    int lo = vr_openat(AT_FDCWD, m->upper, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
    if (lo < 0)
        return lo;
    int hi = vr_fcntl(lo, F_DUPFD_CLOEXEC, vr_high_fd_floor() + 1 + 2 * VR_MAX_MOUNTS + mount);
    vr_close(lo);
    if (hi < 0)
        return hi;
    int expect = -1;
    if (!atomic_compare_exchange_strong(&m->upper_fd, &expect, hi)) {
        vr_close(hi);
        return expect;
    }
    return hi;
}

int vr_upper_path(int mount, const uint8_t name[32], char *buf, size_t cap)
{
    const struct vr_mount *m = &vr_mounts[mount];
    size_t n = vr_strlcpy(buf, m->upper, cap);
    if (n + 2 + VRIFT_LAYOUT_DIGEST_HEX > cap)
        return -ENAMETOOLONG;
    buf[n++] = '/';
    vrift_layout_hex(name, buf + n);
    buf[n + VRIFT_LAYOUT_DIGEST_HEX] = '\0';
    return (int)(n + VRIFT_LAYOUT_DIGEST_HEX);
}

/* openat() of an upper file; a stale cached directory descriptor (closed
 * behind our back) is forgotten and the absolute path used instead. */
static int upper_openat(int mount, const uint8_t name[32], int flags, mode_t mode)
{
    char hex[VRIFT_LAYOUT_DIGEST_HEX + 1];
    vrift_layout_hex(name, hex);
    hex[VRIFT_LAYOUT_DIGEST_HEX] = '\0';
    int dfd = upper_dir(mount);
    int fd = dfd >= 0 ? vr_openat(dfd, hex, flags, mode) : dfd;
    if (fd >= 0 || fd == -ENOENT || fd == -EEXIST || fd == -EMFILE || fd == -ENFILE || fd == -EACCES || fd == -EISDIR)
        return fd == -EACCES && dfd < 0 ? -EROFS : fd;
    char abs[PATH_MAX];
    if (vr_upper_path(mount, name, abs, sizeof abs) < 0)
        return -ENAMETOOLONG;
    int afd = vr_openat(AT_FDCWD, abs, flags, mode);
    if (afd >= 0 && dfd >= 0) {
        int e = dfd;
        atomic_compare_exchange_strong(&vr_mounts[mount].upper_fd, &e, -1);
    }
    return afd;
}

int vr_upper_open_existing(const struct vr_path *p, int flags)
{
    return upper_openat(p->mount, p->res.entry.u.digest, flags & ~(O_CREAT | O_EXCL | O_NOFOLLOW | O_DIRECTORY), 0);
}

int vr_upper_stat(const struct vr_path *p, struct stat *st)
{
    int dfd = upper_dir(p->mount);
    char hex[VRIFT_LAYOUT_DIGEST_HEX + 1];
    vrift_layout_hex(p->res.entry.u.digest, hex);
    hex[VRIFT_LAYOUT_DIGEST_HEX] = '\0';
    int rc = dfd >= 0 ? vr_fstatat(dfd, hex, st, AT_SYMLINK_NOFOLLOW) : -EBADF;
    if (rc == -EBADF || rc == -ENOTDIR) {
        char abs[PATH_MAX];
        vr_upper_path(p->mount, p->res.entry.u.digest, abs, sizeof abs);
        rc = vr_fstatat(AT_FDCWD, abs, st, AT_SYMLINK_NOFOLLOW);
    }
    return rc;
}

static void random_name(uint8_t name[32])
{
    static _Atomic uint64_t counter;
    long got = VR_SYS3(SYS_getrandom, name, 32, 0);
    if (got == 32)
        return;
    /* no entropy syscall: unique enough within this host */
    struct timespec ts;
    VR_SYS2(SYS_clock_gettime, CLOCK_REALTIME, &ts);
    uint64_t v[4] = {(uint64_t)vr_getpid() << 32 | (uint64_t)vr_gettid(), (uint64_t)ts.tv_sec, (uint64_t)ts.tv_nsec,
                     atomic_fetch_add(&counter, 1) * 0x9E3779B97F4A7C15ull};
    memcpy(name, v, 32);
}

static void drop_file(int mount, const uint8_t name[32])
{
    char abs[PATH_MAX];
    if (vr_upper_path(mount, name, abs, sizeof abs) > 0)
        vr_unlinkat(AT_FDCWD, abs, 0);
}

/* ---- announced creates: <upper>/.issued and header.upper_published ---------- */

/* The mount's `.issued` count, mapped shared (created by the daemon with
 * the upper directory); NULL when it cannot be mapped. */
#define ISSUED_NONE ((_Atomic uint64_t *)(uintptr_t)1) /* tried: the mount has no upper layer */

static _Atomic uint64_t *issued_of(int mount)
{
    struct vr_mount *m = &vr_mounts[mount];
    _Atomic uint64_t *p = atomic_load_explicit(&m->issued, memory_order_acquire);
    if (VR_LIKELY(p != NULL) || !m->upper[0])
        return p == ISSUED_NONE ? NULL : p;
    char path[PATH_MAX];
    size_t n = vr_strlcpy(path, m->upper, sizeof path);
    vr_strlcpy(path + n, "/.issued", sizeof path - n);
    int fd = vr_openat(AT_FDCWD, path, O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0);
    if (fd < 0) {
        /* asked once: a miss must not cost an open() each time */
        _Atomic uint64_t *none = NULL;
        atomic_compare_exchange_strong(&m->issued, &none, ISSUED_NONE);
        return NULL;
    }
    long r = vr_sys6(SYS_mmap, 0, 4096, 0x1 | 0x2 /* PROT_READ|WRITE */, 0x01 /* MAP_SHARED */, fd, 0);
    vr_close(fd);
    if (r < 0 && r > -4096)
        return NULL;
    _Atomic uint64_t *expect = NULL;
    if (!atomic_compare_exchange_strong(&m->issued, &expect, (_Atomic uint64_t *)r)) {
        vr_munmap((void *)r, 4096);
        return expect;
    }
    return (_Atomic uint64_t *)r;
}

int vr_upper_pending(int mount)
{
    const struct vr_mount *m = &vr_mounts[mount];
    _Atomic uint64_t *issued = atomic_load_explicit(&m->issued, memory_order_acquire);
    if (VR_UNLIKELY(issued == NULL || issued == ISSUED_NONE))
        issued = issued_of(mount);
    if (!issued)
        return 0;
    /* published first, then issued: equal means every create announced
     * before these loads is in the VDir (vrift_vdir.h section 6) */
    uint64_t pub = vrift_vdir_upper_published(m->r);
    return atomic_load_explicit(issued, memory_order_acquire) != pub;
}

void vr_upper_settle(int mount)
{
    _Atomic uint64_t *issued = issued_of(mount);
    if (!issued)
        return;
    uint64_t want = atomic_load_explicit(issued, memory_order_acquire);
    uint64_t last = vrift_vdir_upper_published(vr_mounts[mount].r);
    /* As long as the daemon makes progress (a busy host may take seconds);
     * ~2 s without any means an announcement was lost (a writer killed
     * mid-announce) and waiting longer would never end. */
    for (int idle = 0; idle < 20000; idle++) {
        uint64_t pub = vrift_vdir_upper_published(vr_mounts[mount].r);
        if ((int64_t)(pub - want) >= 0 || atomic_load(&vr_detached))
            return;
        if (pub != last) {
            last = pub;
            idle = 0;
        }
        struct timespec ts = {0, 100000};
        VR_SYS2(SYS_nanosleep, &ts, NULL);
    }
}

void vr_upper_check(struct vr_path *p)
{
    struct stat st;
    if (!is_upper(p) || vr_upper_stat(p, &st) != -ENOENT)
        return;
    p->err = -ENOENT;
    p->creatable = 1;
    vr_upper_claim(p); /* (and made again since?) */
}

/* lstat() of the path's file or directory in the upper layer. */
static int claim_stat(int mount, const char *rel, size_t rellen, uint8_t name[32], struct stat *st)
{
    vrift_vdir_upper_name(rel, rellen, name);
    int dfd = upper_dir(mount);
    if (dfd < 0)
        return dfd;
    char hex[VRIFT_LAYOUT_DIGEST_HEX + 1];
    vrift_layout_hex(name, hex);
    hex[VRIFT_LAYOUT_DIGEST_HEX] = '\0';
    return vr_fstatat(dfd, hex, st, AT_SYMLINK_NOFOLLOW);
}

static void claimed_dir(struct vrift_vdir_result *res, const struct stat *st)
{
    memset(res, 0, sizeof *res);
    res->mode = S_IFDIR | 0755;
    res->ino = (uint64_t)st->st_ino;
    res->mtime_sec = (uint32_t)st->st_mtime;
}

int vr_upper_claimed_dir(int mount, const char *rel, size_t rellen, struct vrift_vdir_result *res)
{
    uint8_t name[32];
    struct stat st;
    if (claim_stat(mount, rel, rellen, name, &st) != 0 || !S_ISDIR(st.st_mode))
        return 0;
    claimed_dir(res, &st);
    return 1;
}

int vr_upper_claim(struct vr_path *p)
{
    if (p->kind != VP_VIRT || p->err != -ENOENT || !p->creatable)
        return 0;
    uint8_t name[32];
    struct stat st;
    if (claim_stat(p->mount, p->rel, p->rellen, name, &st) != 0)
        return 0;
    if (S_ISDIR(st.st_mode)) {
        /* A directory just made. Who reports its identity (stat, opendir)
         * waits for it to be published first (vr_upper_published_dir): find
         * compares inodes, and the VDir's is the one that lasts. */
        claimed_dir(&p->res, &st);
        p->res.flags = VR_RES_CLAIMED_DIR;
        p->err = 0;
        return 1;
    }
    if (!S_ISREG(st.st_mode) || p->must_dir)
        return 0;
    memset(&p->res, 0, sizeof p->res);
    memcpy(p->res.entry.u.digest, name, 32);
    p->res.mode = (uint32_t)st.st_mode;
    p->res.size = (uint64_t)st.st_size;
    p->res.mtime_sec = (uint32_t)st.st_mtime;
    p->res.flags = VRIFT_VDIR_F_UPPER;
    p->err = 0;
    return 1;
}

void vr_upper_published_dir(struct vr_path *p)
{
    if (p->err != 0 || !(p->res.flags & VR_RES_CLAIMED_DIR))
        return;
    vr_upper_settle(p->mount);
    struct vrift_vdir_result res;
    if (vrift_vdir_lookup(vr_mounts[p->mount].r, p->rel, p->rellen, &res) == 0)
        p->res = res;
}

int vr_upper_mkdir(struct vr_path *p, mode_t mode)
{
    _Atomic uint64_t *issued = issued_of(p->mount);
    int dfd = upper_dir(p->mount);
    if (!issued || dfd < 0)
        return -EROFS;
    uint8_t name[32];
    vrift_vdir_upper_name(p->rel, p->rellen, name);
    char hex[VRIFT_LAYOUT_DIGEST_HEX + 1];
    vrift_layout_hex(name, hex);
    hex[VRIFT_LAYOUT_DIGEST_HEX] = '\0';
    /* The directory's claim: an empty real directory under the path's name
     * (the kernel picks one winner); the entry follows, announced. */
    atomic_fetch_add(issued, 1);
    int rc = vr_mkdirat(dfd, hex, 0700);
    if (rc < 0) {
        atomic_fetch_sub(issued, 1);
        return rc == -EEXIST ? -EEXIST : rc;
    }
    struct vr_req b;
    vr_req_mount(&b, p->mount, p->rel, p->rellen);
    vr_req_u32(&b, VRIFT_F_MODE, S_IFDIR | (mode & 07777));
    vr_req_u32(&b, VRIFT_F_ASYNC, 1);
    rc = vr_request_async(VRIFT_MSG_MKDIR, &b);
    if (rc < 0) {
        atomic_fetch_sub(issued, 1);
        VR_SYS3(SYS_unlinkat, dfd, hex, AT_REMOVEDIR);
    }
    return rc;
}

/* Copies the blob of lower file p into fd (offsets untouched). */
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

static int publish(const struct vr_path *p, const uint8_t name[32], const uint8_t *base)
{
    struct vr_req b;
    vr_req_mount(&b, p->mount, p->rel, p->rellen);
    vr_req_hex(&b, VRIFT_F_DIGEST, name);
    if (!base) {
        vr_req_u32(&b, VRIFT_F_ASYNC, 1);
        return vr_request_async(VRIFT_MSG_UPPER, &b);
    }
    vr_req_hex(&b, VRIFT_F_BASE, base);
    return vr_request(VRIFT_MSG_UPPER, &b, NULL);
}

/* Looks the same entry up again (after a race with another process). */
static void relookup(struct vr_path *p)
{
    char abs[PATH_MAX];
    int n = vr_abs_of(p->mount, p->rel, p->rellen, abs, sizeof abs);
    if (n < 0) {
        p->err = n;
        return;
    }
    vr_resolve(AT_FDCWD, abs, 0, p);
    if (p->kind != VP_VIRT)
        p->err = -EROFS;
}

/*
 * Copy-up: the lower file p becomes an upper file with its bytes (none when
 * `empty`), its mode and its mtime, made under a temporary name and linked
 * to the path's name (one winner), then published. 0 (look it up again: it
 * is upper now), -EEXIST/-ESTALE (another process was first: look it up
 * again), -errno.
 */
static int copy_up(const struct vr_path *p, int empty)
{
    uint8_t tmp[32], name[32];
    random_name(tmp);
    vrift_vdir_upper_name(p->rel, p->rellen, name);
    int fd = upper_openat(p->mount, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return fd;
    int rc = empty ? 0 : copy_blob(p, fd);
    if (rc == 0)
        rc = (int)VR_SYS2(SYS_fchmod, fd, p->res.mode & 07777);
    if (rc == 0 && !empty) {
        struct timespec ts[2] = {{(time_t)p->res.mtime_sec, 0}, {(time_t)p->res.mtime_sec, 0}};
        VR_SYS4(SYS_utimensat, fd, NULL, ts, 0);
    }
    vr_close(fd);
    char from[PATH_MAX], to[PATH_MAX];
    if (rc == 0 && (vr_upper_path(p->mount, tmp, from, sizeof from) < 0 || vr_upper_path(p->mount, name, to, sizeof to) < 0))
        rc = -ENAMETOOLONG;
    if (rc == 0)
        rc = (int)VR_SYS5(SYS_linkat, AT_FDCWD, from, AT_FDCWD, to, 0);
    drop_file(p->mount, tmp);
    if (rc == -EEXIST)
        return rc; /* another process copied it up */
    if (rc == 0) {
        rc = publish(p, name, p->res.entry.u.digest);
        if (rc < 0 && rc != -EEXIST)
            drop_file(p->mount, name);
    }
    return rc;
}

int vr_copy_up(struct vr_path *p, int empty)
{
    for (int attempt = 0; attempt < 16; attempt++) {
        if (p->err)
            return p->err;
        if ((p->res.mode & S_IFMT) != S_IFREG)
            return (p->res.mode & S_IFMT) == S_IFDIR ? -EISDIR : -EINVAL;
        if (is_upper(p))
            return 0;
        int rc = copy_up(p, empty);
        if (rc < 0 && rc != -ESTALE && rc != -EEXIST)
            return rc;
        relookup(p);
        if (rc == -EEXIST && p->err == 0 && !is_upper(p)) {
            /* copied up by another process and not published yet: wait for it */
            vr_upper_settle(p->mount);
            relookup(p);
        }
    }
    return -EAGAIN;
}

int vr_upper_open(struct vr_path *p, int flags, mode_t mode)
{
    int excl = (flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL);
    for (int attempt = 0; attempt < 16; attempt++) {
        if (p->err == 0) {
            if (excl)
                return -EEXIST;
            if (!is_upper(p)) {
                int rc = vr_copy_up(p, (flags & O_TRUNC) != 0);
                if (rc < 0)
                    return rc;
            }
            int fd = vr_upper_open_existing(p, flags);
            if (fd != -ENOENT)
                return fd;
            relookup(p); /* its last name went away meanwhile */
            if (p->err == 0 && is_upper(p)) {
                /* unlinked, not yet unpublished: the real file is the truth */
                p->err = -ENOENT;
                p->creatable = 1;
            }
            continue;
        }
        if (p->err != -ENOENT || !p->creatable || !(flags & O_CREAT))
            return p->err;
        if (p->must_dir)
            return -EISDIR;
        /* A new file: announce, make (the kernel decides a race), publish
         * without waiting. */
        _Atomic uint64_t *issued = issued_of(p->mount);
        if (!issued)
            return -EROFS;
        uint8_t name[32];
        vrift_vdir_upper_name(p->rel, p->rellen, name);
        atomic_fetch_add(issued, 1);
        int fd = upper_openat(p->mount, name, (flags & ~(O_TRUNC | O_NOFOLLOW | O_DIRECTORY)) | O_CREAT | O_EXCL, mode);
        if (fd < 0) {
            atomic_fetch_sub(issued, 1);
            if (fd != -EEXIST)
                return fd;
            if (excl)
                return -EEXIST;
            vr_upper_claim(p); /* made by another process a moment ago */
            if (p->err != 0)
                relookup(p);
            continue;
        }
        int rc = publish(p, name, NULL);
        if (rc == 0)
            return fd;
        atomic_fetch_sub(issued, 1);
        vr_close(fd);
        drop_file(p->mount, name);
        return rc;
    }
    return -EAGAIN;
}

int vr_upper_unlink(struct vr_path *p)
{
    _Atomic uint64_t *issued = issued_of(p->mount);
    char abs[PATH_MAX];
    if (!issued || vr_upper_path(p->mount, p->res.entry.u.digest, abs, sizeof abs) < 0)
        return -EROFS;
    /* The real file is the truth for an upper entry: unlinking it is the
     * unlink every process sees at once; the entry follows, announced. */
    atomic_fetch_add(issued, 1);
    int rc = vr_unlinkat(AT_FDCWD, abs, 0);
    if (rc < 0) {
        atomic_fetch_sub(issued, 1);
        return rc;
    }
    struct vr_req b;
    vr_req_mount(&b, p->mount, p->rel, p->rellen);
    vr_req_u32(&b, VRIFT_F_ASYNC, 1);
    if (vr_request_async(VRIFT_MSG_UNLINK, &b) < 0)
        atomic_fetch_sub(issued, 1); /* detached: the file is gone; the entry goes when the daemon sees it missing */
    return 0;
}
