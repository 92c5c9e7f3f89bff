/*
 * journal.c — announcing the changes the shim makes itself in a mount's
 * upper layer (a create, a mkdir's claim, an unlink of an upper file),
 * without a round trip and without waking the daemon for each one.
 *
 * The change is made first (the kernel decides races: O_CREAT|O_EXCL,
 * mkdir, unlink), then counted in the mount's `.issued` (a u64 mapped
 * shared), then recorded in this process's journal file with one O_APPEND
 * write (vrift_proto.h, "The journal"). The daemon publishes records in
 * count order and stores how far it got in the VDir header; until it has
 * caught up, lookups that miss look for the path's file themselves and
 * listings wait (upper.c). The daemon is woken only when it may be idle:
 * when everything before this change was already published. It then
 * works through whatever has piled up meanwhile in one go, so a `tar -x`
 * costs one write() per file here and a batch per wake-up there.
 *
 * While it works through a burst the daemon keeps the AWAKE bit of
 * `upper_published` set and looks again every millisecond, so a `tar -x`
 * wakes it a handful of times, not once per file.
 *
 * Why no lost wake-ups: the shim adds to `.issued`, then loads
 * `upper_published`; the daemon stores `upper_published` (AWAKE clear),
 * then reads `.issued` before it goes idle. One of the two sees the
 * other's store, so either the daemon goes on, or the shim sees it caught
 * up (and not awake) and wakes it.
 */
#include "shim.h"

#include "vrift_proto.h"

/* ---- the mount's `.issued` count ----------------------------------------- */

#define ISSUED_NONE ((_Atomic uint64_t *)(uintptr_t)1) /* tried: the mount has no upper layer */

/* `.issued`, mapped shared (the daemon makes it with the upper directory);
 * NULL when it cannot be mapped. */
static _Atomic uint64_t *issued_of(int mount)
{
    struct vr_mount *m = &vr_mounts[mount];
    _Atomic uint64_t *p = atomic_load_explicit(&m->issued, memory_order_acquire);
    if (VR_LIKELY(p != NULL) || !m->upper[0])
        return p == ISSUED_NONE ? NULL : p;
    char path[PATH_MAX];
    size_t n = vr_strlcpy(path, m->upper, sizeof path);
    vr_strlcpy(path + n, "/" VRIFT_LAYOUT_UPPER_ISSUED, sizeof path - n);
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

uint64_t vr_upper_seen(int mount)
{
    return vrift_vdir_upper_published(vr_mounts[mount].r);
}

int vr_upper_pending_since(int mount, uint64_t seen)
{
    const struct vr_mount *m = &vr_mounts[mount];
    _Atomic uint64_t *issued = atomic_load_explicit(&m->issued, memory_order_acquire);
    if (VR_UNLIKELY(issued == NULL || issued == ISSUED_NONE))
        issued = issued_of(mount);
    if (!issued)
        return 0;
    /* published (`seen`, before the lookup) first, then issued: published at
     * least issued means every change counted before this load was in the
     * VDir the lookup read */
    return (int64_t)(atomic_load_explicit(issued, memory_order_acquire) - seen) > 0;
}

int vr_upper_pending(int mount)
{
    return vr_upper_pending_since(mount, vr_upper_seen(mount));
}

int vr_may_announce(int mount)
{
    return issued_of(mount) ? vr_may_change() : -EROFS;
}

/* ---- this process's journal file ------------------------------------------ */

/* Journal descriptors are kept per process: a child (fork, vfork) opens
 * its own file rather than appending to its parent's, so every file has
 * one writer process and the daemon can delete it once that process is
 * gone. A descriptor inherited from the parent is left alone (after vfork
 * its number means something else in the parent). */
static int journal_fd(int mount)
{
    struct vr_mount *m = &vr_mounts[mount];
    int pid = vr_getpid();
    int fd = atomic_load_explicit(&m->journal_fd, memory_order_acquire);
    if (VR_LIKELY(fd >= 0 && atomic_load_explicit(&m->journal_pid, memory_order_relaxed) == pid))
        return fd;
    if (fd == VR_JOURNAL_BROKEN && atomic_load_explicit(&m->journal_pid, memory_order_relaxed) == pid)
        return -EIO;
    struct timespec ts;
    VR_SYS2(SYS_clock_gettime, CLOCK_REALTIME, &ts);
    char path[PATH_MAX];
    size_t n = vr_strlcpy(path, m->upper, sizeof path);
    n += vr_strlcpy(path + n, "/" VRIFT_LAYOUT_UPPER_JOURNAL "/", sizeof path - n);
    if (n + 48 > sizeof path)
        return -ENAMETOOLONG;
    n += vr_utoa((uint64_t)pid, path + n);
    path[n++] = '.';
    n += vr_utoa((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec, path + n);
    path[n] = '\0';
    int lo = vr_openat(AT_FDCWD, path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lo < 0)
        return lo;
    int hi = vr_fcntl(lo, F_DUPFD_CLOEXEC, vr_high_fd_floor() + 1 + 3 * VR_MAX_MOUNTS + mount);
    vr_close(lo);
    if (hi < 0)
        return hi;
    /* Another thread of this process may have opened one too: both files
     * are read (each record is whole in one of them). */
    atomic_store_explicit(&m->journal_pid, pid, memory_order_relaxed);
    atomic_store_explicit(&m->journal_fd, hi, memory_order_release);
    return hi;
}

/* One record, in one write(): 0, or -errno (nothing usable was written). */
static int append(int mount, const uint8_t *rec, size_t len)
{
    int fd = journal_fd(mount);
    if (fd < 0)
        return fd;
    long w;
    do
        w = vr_write(fd, rec, len);
    while (w == -EINTR);
    if (w == (long)len)
        return 0;
    /* A short write (a full disk) leaves a torn record the daemon skips
     * with the file; this process announces over the socket from now on. */
    struct vr_mount *m = &vr_mounts[mount];
    atomic_store_explicit(&m->journal_fd, VR_JOURNAL_BROKEN, memory_order_release);
    vr_close(fd);
    return w < 0 ? (int)w : -ENOSPC;
}

/* ---- announcing ------------------------------------------------------------ */

/* Tells the daemon the mount's journal has news (`now`: someone waits for
 * it; else it gathers a little more first). 0, or -EROFS when it is gone. */
static int wake(int mount, int now)
{
    struct vr_req b;
    b.n = 0;
    b.bad = 0;
    vr_req_str(&b, VRIFT_F_PATH, vr_mounts[mount].root, vr_mounts[mount].rootlen);
    if (now)
        vr_req_u32(&b, VRIFT_F_NOW, 1);
    return vr_request_async(VRIFT_MSG_JOURNAL, &b);
}

int vr_announce(int mount, uint32_t change, const char *rel, size_t rellen, uint32_t mode, uint64_t *seq_out)
{
    _Atomic uint64_t *issued = issued_of(mount);
    if (!issued)
        return -EROFS;
    uint8_t rec[VRIFT_JOURNAL_REC_HEADER + PATH_MAX];
    if (rellen > PATH_MAX)
        return -ENAMETOOLONG;
    uint64_t seq = atomic_fetch_add(issued, 1) + 1;
    if (seq_out)
        *seq_out = seq;
    size_t len = VRIFT_JOURNAL_REC_HEADER + rellen;
    vrift_proto_put_u32(rec, (uint32_t)len);
    vrift_proto_put_u32(rec + 4, change);
    vrift_proto_put_u64(rec + 8, seq);
    vrift_proto_put_u32(rec + 16, mode);
    vrift_proto_put_u32(rec + 20, (uint32_t)rellen);
    memcpy(rec + VRIFT_JOURNAL_REC_HEADER, rel, rellen);
    if (append(mount, rec, len) < 0) {
        /* no journal to write to: the record itself goes over the socket */
        struct vr_req b;
        vr_req_mount(&b, mount, rel, rellen);
        vr_req_u64(&b, VRIFT_F_SEQ, seq);
        vr_req_u32(&b, VRIFT_F_CHANGE, change);
        vr_req_u32(&b, VRIFT_F_MODE, mode);
        return vr_request_async(VRIFT_MSG_JOURNAL, &b);
    }
    /* the add above, then this load, in that order (see the top of this file) */
    atomic_thread_fence(memory_order_seq_cst);
    uint64_t word = vrift_vdir_upper_word(vr_mounts[mount].r);
    if (word & VRIFT_VDIR_UPPER_AWAKE)
        return 0; /* the daemon is working through the journal and will look again */
    if ((int64_t)(seq - 1 - word) > 0)
        return 0; /* the daemon has older ones to publish: it is awake */
    return wake(mount, 0);
}

void vr_upper_settle(int mount)
{
    _Atomic uint64_t *issued = issued_of(mount);
    if (!issued)
        return;
    uint64_t want = atomic_load_explicit(issued, memory_order_acquire);
    uint64_t last = vrift_vdir_upper_published(vr_mounts[mount].r);
    if ((int64_t)(last - want) >= 0)
        return;
    /* in case the writer that should have woken the daemon died first */
    if (wake(mount, 1) < 0)
        return;
    /* As long as the daemon makes progress (a busy host may take seconds);
     * ~2 s without any means the daemon is stuck on a change it will skip. */
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
