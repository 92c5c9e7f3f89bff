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
 * filesystem — and needs no answer from the daemon: the shim announces it
 * in the mount's journal (journal.c) and the daemon publishes it later.
 * Until then a lookup that misses in the VDir while changes wait to be
 * published looks for the path's file itself (one fstatat), and a
 * directory listing waits for the daemon to catch up. Copy-up (an existing
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

void vr_upper_check(struct vr_path *p)
{
    if (!is_upper(p))
        return;
    int rc = vr_upper_stat(p, &p->upper_stat);
    if (rc != -ENOENT) {
        /* (stat() answers with it: sqlite stats its database at every transaction) */
        p->upper_stat_ok = rc == 0;
        return;
    }
    p->err = -ENOENT;
    p->creatable = 1;
    /* Made again since, as a file or a claim? Both would have the path's
     * own name, which the lstat above just missed, unless the entry's file
     * had another one. */
    uint8_t name[32];
    vrift_vdir_upper_name(p->rel, p->rellen, name);
    if (memcmp(name, p->res.entry.u.digest, 32) != 0)
        vr_upper_claim(p);
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

static void claimed_dir_of(struct vrift_vdir_result *res, uint64_t ino, uint32_t mtime)
{
    memset(res, 0, sizeof *res);
    res->mode = S_IFDIR | 0755;
    res->ino = vrift_vdir_claim_ino(ino); /* the inode it keeps once published */
    res->mtime_sec = mtime;
}

static void claimed_dir(struct vrift_vdir_result *res, const struct stat *st)
{
    claimed_dir_of(res, (uint64_t)st->st_ino, (uint32_t)st->st_mtime);
}

/*
 * Directories this thread made and the daemon has not published yet: a
 * program that makes a directory and then its files (tar -x) walks
 * through them at every create, and each would cost an fstatat of the
 * claim while the daemon catches up. A memo holds while the mount's
 * published count is below the mkdir's own number: nothing removes a
 * claim before the daemon has published it (rmdir and rename apply the
 * journal up to themselves first), so an unpublished claim is still
 * there. Once published, the VDir answers (or, if it was removed since,
 * misses and the claim is looked at as before). Per thread, so no locks.
 */
#define MEMO_SLOTS 8
struct claim_memo {
    uint64_t key[2]; /* the path, as two seeded hashes (it stays small: static TLS is scarce) */
    uint64_t seq;    /* the mkdir's number in the mount's count; 0: a free slot */
    uint64_t ino;    /* the claim's st_ino; 0: not looked at yet */
    uint32_t mtime;
    uint16_t mount;
    uint16_t rellen;
};
static VR_TLS struct claim_memo memos[MEMO_SLOTS];
static VR_TLS unsigned memo_next;

static void memo_key(const char *rel, size_t rellen, uint64_t key[2])
{
    key[0] = vrift_vdir_hash(rel, rellen, 0x6d656d6f2d6b6579ull);
    key[1] = vrift_vdir_hash(rel, rellen, 0x636c61696d2d6469ull);
}

static struct claim_memo *memo_find(int mount, const char *rel, size_t rellen)
{
    uint64_t key[2];
    int keyed = 0;
    for (unsigned i = 0; i < MEMO_SLOTS; i++) {
        struct claim_memo *c = &memos[i];
        if (c->seq == 0 || c->mount != mount || c->rellen != rellen)
            continue;
        if (!keyed) {
            memo_key(rel, rellen, key);
            keyed = 1;
        }
        if (c->key[0] != key[0] || c->key[1] != key[1])
            continue;
        if ((int64_t)(vr_upper_seen(mount) - c->seq) >= 0) {
            c->seq = 0; /* published (or dropped) since: the VDir knows */
            return NULL;
        }
        return c;
    }
    return NULL;
}

static void memo_add(int mount, const char *rel, size_t rellen, uint64_t seq)
{
    if (rellen > UINT16_MAX || mount > UINT16_MAX)
        return;
    struct claim_memo *c = &memos[memo_next++ % MEMO_SLOTS];
    /* freed first and filled last: a signal handler of this thread that
     * walks meanwhile never sees a new key with an old entry's inode */
    c->seq = 0;
    atomic_signal_fence(memory_order_seq_cst);
    memo_key(rel, rellen, c->key);
    c->mount = (uint16_t)mount;
    c->rellen = (uint16_t)rellen;
    c->ino = 0;
    atomic_signal_fence(memory_order_seq_cst);
    c->seq = seq;
}

/* A memo of a claim that is still unpublished: res filled (its inode looked at once). */
static int memo_claimed_dir(int mount, const char *rel, size_t rellen, struct vrift_vdir_result *res)
{
    struct claim_memo *c = memo_find(mount, rel, rellen);
    if (!c)
        return 0;
    if (c->ino == 0) {
        uint8_t name[32];
        struct stat st;
        if (claim_stat(mount, rel, rellen, name, &st) != 0 || !S_ISDIR(st.st_mode)) {
            c->seq = 0;
            return 0;
        }
        c->mtime = (uint32_t)st.st_mtime;
        atomic_signal_fence(memory_order_seq_cst);
        c->ino = (uint64_t)st.st_ino;
    }
    claimed_dir_of(res, c->ino, c->mtime);
    return 1;
}

int vr_upper_claimed_dir(int mount, const char *rel, size_t rellen, struct vrift_vdir_result *res)
{
    if (memo_claimed_dir(mount, rel, rellen, res))
        return 1;
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
    if (memo_claimed_dir(p->mount, p->rel, p->rellen, &p->res)) {
        p->err = 0;
        return 1;
    }
    uint8_t name[32];
    struct stat st;
    if (claim_stat(p->mount, p->rel, p->rellen, name, &st) != 0)
        return 0;
    if (S_ISDIR(st.st_mode)) {
        /* A directory just made: it reports the inode its VDir entry will
         * have (VRIFT_VDIR_F_CLAIM), so find and tar, which compare them,
         * need not wait for the daemon. */
        claimed_dir(&p->res, &st);
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

int vr_upper_mkdir(struct vr_path *p, mode_t mode)
{
    int rc = vr_may_announce(p->mount);
    int dfd = upper_dir(p->mount);
    if (rc < 0 || dfd < 0)
        return -EROFS;
    uint8_t name[32];
    vrift_vdir_upper_name(p->rel, p->rellen, name);
    char hex[VRIFT_LAYOUT_DIGEST_HEX + 1];
    vrift_layout_hex(name, hex);
    hex[VRIFT_LAYOUT_DIGEST_HEX] = '\0';
    /* The directory's claim: an empty real directory under the path's name
     * (the kernel picks one winner); the entry follows, announced. */
    rc = vr_mkdirat(dfd, hex, 0700);
    if (rc < 0)
        return rc;
    uint64_t seq = 0;
    rc = vr_announce(p->mount, VRIFT_CHANGE_DIR, p->rel, p->rellen, S_IFDIR | (mode & 07777), &seq);
    if (rc < 0)
        VR_SYS3(SYS_unlinkat, dfd, hex, AT_REMOVEDIR); /* the daemon is gone: EROFS, as for every change */
    else
        memo_add(p->mount, p->rel, p->rellen, seq);
    return rc;
}

/* Copies the blob of lower file p into fd (offsets untouched). */
static int copy_blob(const struct vr_path *p, int out)
{
    /* checked as a read's open is: a damaged blob is never copied up */
    int in = vr_open_lower_blob(p, O_RDONLY | O_CLOEXEC, 0);
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

/* A copy-up is published before it is used (another process may copy up the same file). */
static int publish_copy(const struct vr_path *p, const uint8_t name[32], const uint8_t base[32])
{
    struct vr_req b;
    vr_req_mount(&b, p->mount, p->rel, p->rellen);
    vr_req_hex(&b, VRIFT_F_DIGEST, name);
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
        rc = publish_copy(p, name, p->res.entry.u.digest);
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
        /* A new file: make it (the kernel decides a race), then announce
         * it without waiting. */
        int rc = vr_may_announce(p->mount);
        if (rc < 0)
            return rc;
        uint8_t name[32];
        vrift_vdir_upper_name(p->rel, p->rellen, name);
        int fd = upper_openat(p->mount, name, (flags & ~(O_TRUNC | O_NOFOLLOW | O_DIRECTORY)) | O_CREAT | O_EXCL, mode);
        if (fd < 0) {
            if (fd != -EEXIST)
                return fd;
            if (excl)
                return -EEXIST;
            vr_upper_claim(p); /* made by another process a moment ago */
            if (p->err != 0)
                relookup(p);
            continue;
        }
        struct stat st;
        rc = vr_fstat(fd, &st);
        if (rc == 0)
            rc = vr_announce(p->mount, VRIFT_CHANGE_FILE, p->rel, p->rellen, st.st_mode & 07777, NULL);
        if (rc == 0)
            return fd;
        vr_close(fd); /* the daemon is gone: EROFS, as for every change */
        drop_file(p->mount, name);
        return rc;
    }
    return -EAGAIN;
}

int vr_upper_unlink(struct vr_path *p)
{
    char abs[PATH_MAX];
    if (vr_may_announce(p->mount) < 0 || vr_upper_path(p->mount, p->res.entry.u.digest, abs, sizeof abs) < 0)
        return -EROFS;
    /* The real file is the truth for an upper entry: unlinking it is the
     * unlink every process sees at once; the entry follows, announced. */
    int rc = vr_unlinkat(AT_FDCWD, abs, 0);
    if (rc < 0)
        return rc;
    vr_announce(p->mount, VRIFT_CHANGE_GONE, p->rel, p->rellen, 0, NULL); /* gone either way: a restarted daemon reads the record */
    return 0;
}
