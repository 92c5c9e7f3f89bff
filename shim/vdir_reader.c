/*
 * vdir_reader.c — the VDir reader (see vdir_reader.h for the contract and
 * vrift_vdir.h for the layout and protocols).
 *
 * Discipline: every value read from the shared mapping is loaded ONCE into
 * a local (relaxed atomic loads, so the compiler cannot re-read it after
 * the bounds check), checked, and only then used as an index or offset.
 * Nothing read inside a seqlock attempt is believed until gen is re-read.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "vdir_core.h"
#include "vdir_reader.h"
#include "vrift_layout.h"

#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* System calls go through syscall(2), never libc's open/fstat/close/mmap:
 * in libvrift.so those names are the shim's own interposed wrappers, and
 * the reader must not recurse into them. syscall() sets errno like libc. */
static int sys_open_ro(const char *path)
{
    return (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
}
static int sys_fstat(int fd, struct stat *st) { return (int)syscall(SYS_fstat, fd, st); }
static void sys_close(int fd) { syscall(SYS_close, fd); }
static void *sys_mmap(void *addr, size_t len, int prot, int flags, int fd)
{
    return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, (off_t)0);
}
static void sys_munmap(void *addr, size_t len) { syscall(SYS_munmap, addr, len); }

enum { SLOT_FREE = 0, SLOT_BUSY = 1, SLOT_LIVE = 2 };

#define ROUND_PAGE(n) (((n) + (size_t)VRIFT_VDIR_PAGE - 1) & ~((size_t)VRIFT_VDIR_PAGE - 1))

/* ---- small helpers ------------------------------------------------ */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Backs off before attempt `n` (n >= 1): spin first, then give the CPU
 * away (the writer may be descheduled inside its window), then sleep. */
static void backoff(uint32_t n)
{
    if (n < VRIFT_VDIR_SPIN_ATTEMPTS) {
        cpu_relax();
    } else if (n < VRIFT_VDIR_YIELD_ATTEMPTS) {
        syscall(SYS_sched_yield);
    } else {
        struct timespec ts = {0, VRIFT_VDIR_SLEEP_NS};
        syscall(SYS_nanosleep, &ts, NULL);
    }
}

/* Copies node `idx` (already bounds-checked) into the node fields of *e. */
static inline void copy_node(const struct vdir_map *m, uint32_t idx, struct vrift_vdir_entry *e)
{
    const unsigned char *n = node_at(m, idx);
    e->size_flags = ld64(n + offsetof(struct vrift_vdir_node, size_flags));
    e->path_off = ld32(n + offsetof(struct vrift_vdir_node, path_off));
    e->next_sibling = ld32(n + offsetof(struct vrift_vdir_node, next_sibling));
    e->mtime_sec = ld32(n + offsetof(struct vrift_vdir_node, mtime_sec));
    const uint32_t mode_check = ld32(n + offsetof(struct vrift_vdir_node, mode));
    e->mode = (uint16_t)(mode_check & 0xFFFFu);
    e->check = (uint16_t)(mode_check >> 16);
}

/* Copies data record `idx` (already bounds-checked) into e->u, word by word. */
static inline void copy_data(const struct vdir_map *m, uint32_t idx, struct vrift_vdir_entry *e)
{
    const unsigned char *d = m->base + m->data_off + (size_t)idx * VRIFT_VDIR_DATA_SIZE;
    _Static_assert(VRIFT_VDIR_DATA_SIZE == 40 && sizeof e->u == 40, "five words");
    uint64_t w0 = ld64(d), w1 = ld64(d + 8), w2 = ld64(d + 16), w3 = ld64(d + 24), w4 = ld64(d + 32);
    unsigned char *u = (unsigned char *)&e->u;
    memcpy(u, &w0, 8);
    memcpy(u + 8, &w1, 8);
    memcpy(u + 16, &w2, 8);
    memcpy(u + 24, &w3, 8);
    memcpy(u + 32, &w4, 8);
}

/* Copies entry `idx` whole: node and data record. */
static inline void copy_entry(const struct vdir_map *m, uint32_t idx, struct vrift_vdir_entry *e)
{
    copy_node(m, idx, e);
    copy_data(m, idx, e);
}

static size_t cstr_len(const char *s, size_t max)
{
    size_t n = 0;
    while (n < max && s[n] != '\0')
        n++;
    return n;
}

static int utoa(uint64_t v, char *buf, size_t buflen)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    if (n + 1 > buflen)
        return -ERANGE;
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return (int)n;
}

/* ---- mapping ------------------------------------------------------ */

/* Checks the header's geometry against the file size; 0 or -errno. */
static int validate_geometry(const struct vrift_vdir_header *h, size_t size, struct vdir_map *m)
{
    if (h->magic != VRIFT_VDIR_MAGIC)
        return -EINVAL;
    if (h->version != VRIFT_VDIR_VERSION)
        return -EPROTONOSUPPORT;
    if (h->header_size != VRIFT_VDIR_HEADER_SIZE || h->entry_size != VRIFT_VDIR_ENTRY_SIZE)
        return -EINVAL;
    if (h->total_size != size)
        return -EINVAL;
    uint64_t eoff = h->entry_off, doff = h->data_off, boff = h->bucket_off, poff = h->pool_off;
    uint32_t ecap = h->entry_cap, nb = h->bucket_count, pcap = h->pool_cap;
    if (ecap == 0 || ecap > VRIFT_VDIR_MAX_ENTRIES || nb <= ecap)
        return -EINVAL;
    if (eoff < VRIFT_VDIR_HEADER_SIZE || eoff % 8 != 0 || eoff > size ||
        (uint64_t)ecap * VRIFT_VDIR_ENTRY_SIZE > size - eoff)
        return -EINVAL;
    if (doff < VRIFT_VDIR_HEADER_SIZE || doff % 8 != 0 || doff > size || (uint64_t)ecap * VRIFT_VDIR_DATA_SIZE > size - doff)
        return -EINVAL;
    if (boff < VRIFT_VDIR_HEADER_SIZE || boff % 8 != 0 || boff > size || (uint64_t)nb * VRIFT_VDIR_BUCKET_SIZE > size - boff)
        return -EINVAL;
    if (poff < VRIFT_VDIR_HEADER_SIZE || poff > size || pcap == 0 || pcap > size - poff)
        return -EINVAL;
    if (memchr(h->cas_root, '\0', sizeof h->cas_root) == NULL ||
        memchr(h->mount_root, '\0', sizeof h->mount_root) == NULL)
        return -EINVAL;
    m->seed = h->hash_seed;
    m->entry_off = eoff;
    m->data_off = doff;
    m->bucket_off = boff;
    m->pool_off = poff;
    m->entry_cap = ecap;
    m->nbuckets = nb;
    m->pool_cap = pcap;
    return 0;
}

/*
 * Opens and maps `path` into *m. If `same_as` is given and the path still
 * names that same file, fails with -ESTALE without mapping it.
 * The mapping is followed by a PROT_NONE guard page, so a bug that reads
 * past the end faults instead of reading a neighbour.
 */
static int map_object(const char *path, struct vdir_map *m, const struct vdir_map *same_as)
{
    int fd = sys_open_ro(path);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (sys_fstat(fd, &st) != 0) {
        int e = -errno;
        sys_close(fd);
        return e;
    }
    if (same_as != NULL && (uint64_t)st.st_dev == same_as->dev && (uint64_t)st.st_ino == same_as->ino) {
        sys_close(fd);
        return -ESTALE;
    }
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
        sys_close(fd);
        return -EPERM;
    }
    if (st.st_size < (off_t)VRIFT_VDIR_HEADER_SIZE || st.st_size % VRIFT_VDIR_PAGE != 0 ||
        (uint64_t)st.st_size > ((uint64_t)1 << 40)) {
        sys_close(fd);
        return -EINVAL;
    }
    size_t size = (size_t)st.st_size;
    void *reserve = sys_mmap(NULL, size + VRIFT_VDIR_PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1);
    if (reserve == MAP_FAILED) {
        int e = -errno;
        sys_close(fd);
        return e;
    }
    void *base = sys_mmap(reserve, size, PROT_READ, MAP_SHARED | MAP_FIXED, fd);
    int e = base == MAP_FAILED ? -errno : 0;
    sys_close(fd);
    if (e == 0)
        e = validate_geometry((const struct vrift_vdir_header *)base, size, m);
    if (e != 0) {
        sys_munmap(reserve, size + VRIFT_VDIR_PAGE);
        return e;
    }
    m->base = (const unsigned char *)base;
    m->size = size;
    m->dev = (uint64_t)st.st_dev;
    m->ino = (uint64_t)st.st_ino;
    return 0;
}

static void unmap_object(struct vdir_map *m)
{
    sys_munmap((void *)m->base, m->size + VRIFT_VDIR_PAGE);
}

/* Claims a free descriptor slot; -1 when all are taken. */
static int claim_slot(vrift_vdir_reader *r)
{
    for (uint32_t i = 0; i < VRIFT_VDIR_READER_MAPS; i++) {
        uint32_t expect = SLOT_FREE;
        if (atomic_compare_exchange_strong(&r->slot_state[i], &expect, SLOT_BUSY))
            return (int)i;
    }
    return -1;
}

/*
 * The object `*m` says it was superseded (or retired): map the object now at
 * the stable name and make it current. Several threads may race here; one
 * wins the swap, the others drop their mapping (nobody else saw it) and use
 * the winner's. The superseded mapping stays mapped (other threads may be
 * reading it) until vrift_vdir_close().
 */
static int follow(vrift_vdir_reader *r, struct vdir_map **m, uint32_t hflags)
{
    if (hflags & VRIFT_VDIR_HF_RETIRED)
        return -ESTALE;
    struct vdir_map *old = *m;
    struct vdir_map *cur = atomic_load_explicit(&r->cur, memory_order_acquire);
    if (cur != old) { /* another thread already followed */
        *m = cur;
        return 0;
    }
    int slot = claim_slot(r);
    if (slot < 0)
        return -ENOMEM;
    struct vdir_map *fresh = &r->maps[slot];
    int e = map_object(r->path, fresh, old);
    if (e != 0) {
        atomic_store(&r->slot_state[slot], SLOT_FREE);
        return e == -ENOENT ? -ESTALE : e;
    }
    atomic_store(&r->slot_state[slot], SLOT_LIVE);
    if (atomic_compare_exchange_strong_explicit(&r->cur, &cur, fresh, memory_order_acq_rel, memory_order_acquire)) {
        atomic_fetch_add_explicit(&r->remaps, 1, memory_order_relaxed);
        *m = fresh;
    } else {
        unmap_object(fresh);
        atomic_store(&r->slot_state[slot], SLOT_FREE);
        *m = cur;
    }
    return 0;
}

/* ---- one attempt (inside a seqlock read) --------------------------- */

/* Copies and checks symlink target bytes of *e into dst (cap >= TARGET_MAX+1). */
static int copy_target(const struct vdir_map *m, const struct vrift_vdir_entry *e, char *dst, uint32_t *tlen)
{
    uint32_t off = e->u.lnk.target_off, len = e->u.lnk.target_len;
    if (len == 0 || len > VRIFT_VDIR_TARGET_MAX || off > m->pool_cap || len > m->pool_cap - off)
        return -EIO;
    memcpy(dst, m->base + m->pool_off + off, len);
    dst[len] = '\0';
    *tlen = len;
    return 0;
}

/*
 * Finds `path` (hash h) in one attempt. On 0, e and idx hold the entry, and
 * for a symlink `target` (if not NULL) holds its target; the check has been
 * verified. -ENOENT: definite miss (if the attempt turns out consistent).
 * -EIO: something did not validate.
 */
static int find(const struct vdir_map *m, const char *path, size_t len, uint64_t h, struct vrift_vdir_entry *e,
                uint32_t *idx, char *target, uint32_t *tlen)
{
    uint32_t i = 0, off = 0;
    int rc = probe(m, path, len, h, &i, &off);
    if (rc != 0)
        return rc;
    copy_entry(m, i, e);
    if (!valid_type(e->mode) || e->path_off != off)
        return -EIO;
    const unsigned char *pool = m->base + m->pool_off;
    const void *t = NULL;
    uint32_t tl = 0;
    if ((e->mode & VRIFT_VDIR_S_IFMT) == VRIFT_VDIR_S_IFLNK) {
        if (target != NULL) {
            if (copy_target(m, e, target, &tl) != 0)
                return -EIO;
            t = target;
        } else { /* checked in place: nobody needs a copy */
            uint32_t toff = e->u.lnk.target_off;
            tl = e->u.lnk.target_len;
            if (tl == 0 || tl > VRIFT_VDIR_TARGET_MAX || toff > m->pool_cap || tl > m->pool_cap - toff)
                return -EIO;
            t = pool + toff;
        }
    } else if (target != NULL) {
        target[0] = '\0';
    }
    if (vrift_vdir_entry_check(e, h, t, tl) != e->check ||
        vrift_vdir_data_check(&e->u, h) != VRIFT_VDIR_DATA_CHECK(e->next_sibling))
        return -EIO;
    *idx = i;
    if (tlen != NULL)
        *tlen = tl;
    return 0;
}

struct list_out {
    unsigned char *buf;
    size_t buflen, needed;
    uint32_t count;
};

/* Walks the children of directory entry *d (path `dir`) into *o. */
static int walk_children(const struct vdir_map *m, const char *dir, size_t len, const struct vrift_vdir_entry *d,
                         struct list_out *o)
{
    const unsigned char *pool = m->base + m->pool_off;
    const size_t plen = len == 0 ? 0 : len + 1; /* "dir/" */
    uint32_t next = d->u.dir.first_child;
    o->needed = 0;
    o->count = 0;
    while (next != 0) {
        if (o->count >= m->entry_cap)
            return -EIO; /* a cycle */
        uint32_t i = next - 1;
        if (i >= m->entry_cap)
            return -EIO;
        struct vrift_vdir_entry c;
        copy_node(m, i, &c); /* a listing needs no data record but a symlink's, or a claimed directory's */
        uint32_t off = c.path_off;
        if (!valid_type(c.mode) || off >= m->pool_cap)
            return -EIO;
        const char *p = (const char *)pool + off;
        size_t room = m->pool_cap - off;
        size_t l = cstr_len(p, room < VRIFT_VDIR_PATH_MAX + 1 ? room : VRIFT_VDIR_PATH_MAX + 1);
        if (l == room || l > VRIFT_VDIR_PATH_MAX || l <= plen)
            return -EIO;
        if (memcmp(p, dir, len) != 0 || (len != 0 && p[len] != '/'))
            return -EIO; /* not a child of dir */
        const char *name = p + plen;
        size_t nlen = l - plen;
        if (nlen > VRIFT_VDIR_NAME_MAX || memchr(name, '/', nlen) != NULL)
            return -EIO;
        const void *t = NULL;
        size_t tl = 0;
        const uint64_t ph = vrift_vdir_path_hash(p, l, m->seed);
        if ((c.mode & VRIFT_VDIR_S_IFMT) == VRIFT_VDIR_S_IFDIR && (vrift_vdir_flags_of(c.size_flags) & VRIFT_VDIR_F_CLAIM)) {
            copy_data(m, i, &c); /* its inode (vrift_vdir_entry_ino) */
            if (vrift_vdir_data_check(&c.u, ph) != VRIFT_VDIR_DATA_CHECK(c.next_sibling))
                return -EIO;
        }
        if ((c.mode & VRIFT_VDIR_S_IFMT) == VRIFT_VDIR_S_IFLNK) {
            copy_data(m, i, &c);
            uint32_t toff = c.u.lnk.target_off;
            tl = c.u.lnk.target_len;
            if (tl == 0 || tl > VRIFT_VDIR_TARGET_MAX || toff > m->pool_cap || tl > m->pool_cap - toff)
                return -EIO;
            t = pool + toff;
        }
        if (vrift_vdir_entry_check(&c, ph, t, tl) != c.check)
            return -EIO;
        size_t rec = VRIFT_VDIR_DIRENT_SIZE(nlen);
        if (o->needed + rec <= o->buflen) {
            struct vrift_vdir_dirent *de = (struct vrift_vdir_dirent *)(void *)(o->buf + o->needed);
            de->ino = vrift_vdir_entry_ino(&c, i);
            de->reclen = (uint16_t)rec;
            de->namelen = (uint16_t)nlen;
            de->mode = c.mode;
            de->reserved = 0;
            memcpy(de->name, name, nlen);
            memset(de->name + nlen, 0, rec - 16 - nlen);
        }
        o->needed += rec;
        o->count++;
        next = VRIFT_VDIR_NEXT(c.next_sibling);
    }
    if (o->count != d->u.dir.nchildren)
        return -EIO;
    return 0;
}

/* ---- the seqlock read loop ----------------------------------------- */

enum op_kind { OP_LOOKUP, OP_STAT, OP_LIST, OP_INFO };

struct op {
    enum op_kind kind;
    const char *path;
    size_t len;
    struct vrift_vdir_result *res; /* OP_LOOKUP */
    struct vrift_vdir_stat *st;    /* OP_STAT */
    struct list_out list;          /* OP_LIST */
    struct vrift_vdir_info *info;  /* OP_INFO */
};

/* One attempt of `op` on *m; its result only counts if gen did not move. */
static int attempt(const struct vdir_map *m, struct op *op, uint64_t h)
{
    if (op->kind == OP_INFO) {
        const struct vrift_vdir_header *hd = HDR(m);
        struct vrift_vdir_info *in = op->info;
        in->entry_count = ld32(&hd->entry_count);
        in->pool_used = ld32(&hd->pool_used);
        in->pool_garbage = ld32(&hd->pool_garbage);
        return 0;
    }
    struct vrift_vdir_entry e;
    uint32_t idx = 0, tl = 0;
    char *target = op->kind == OP_LOOKUP ? op->res->target : NULL;
    int rc = find(m, op->path, op->len, h, &e, &idx, target, &tl);
    if (rc != 0)
        return rc;
    if (op->kind == OP_STAT) {
        struct vrift_vdir_stat *o = op->st;
        o->ino = vrift_vdir_entry_ino(&e, idx);
        o->size = vrift_vdir_size_of(e.size_flags);
        o->mode = e.mode;
        o->flags = vrift_vdir_flags_of(e.size_flags);
        o->mtime_sec = e.mtime_sec;
        o->index = idx;
        return 0;
    }
    if (op->kind == OP_LOOKUP) {
        struct vrift_vdir_result *o = op->res;
        o->entry = e;
        o->index = idx;
        o->target_len = tl;
        return 0;
    }
    if ((e.mode & VRIFT_VDIR_S_IFMT) != VRIFT_VDIR_S_IFDIR)
        return -ENOTDIR;
    return walk_children(m, op->path, op->len, &e, &op->list);
}

static int run(vrift_vdir_reader *r, struct op *op, uint64_t *gen_out)
{
    struct vdir_map *m = atomic_load_explicit(&r->cur, memory_order_acquire);
    uint64_t h = 0, hseed = 0;
    bool hashed = false;
    uint32_t follows = 0;
    for (uint32_t n = 0; n < VRIFT_VDIR_READ_ATTEMPTS; n++) {
        if (n != 0) { /* the previous attempt saw an odd or moving gen */
            atomic_fetch_add_explicit(&r->retries, 1, memory_order_relaxed);
            int saved = errno;
            backoff(n);
            errno = saved;
        }
        const struct vrift_vdir_header *hd = HDR(m);
        uint64_t s0 = atomic_load_explicit(&hd->gen, memory_order_acquire);
        if (s0 & 1u)
            continue;
        uint32_t hflags = atomic_load_explicit(&hd->flags, memory_order_relaxed);
        if (hflags & (VRIFT_VDIR_HF_SUPERSEDED | VRIFT_VDIR_HF_RETIRED)) {
            if (++follows > 8)
                return -ESTALE;
            int saved = errno;
            int e = follow(r, &m, hflags);
            errno = saved;
            if (e != 0)
                return e;
            n = 0; /* a fresh budget on the new object */
            continue;
        }
        if (!hashed || hseed != m->seed) {
            h = vrift_vdir_path_hash(op->path, op->len, m->seed);
            hseed = m->seed;
            hashed = true;
        }
        int rc = attempt(m, op, h);
        atomic_thread_fence(memory_order_acquire);
        uint64_t s1 = atomic_load_explicit(&hd->gen, memory_order_relaxed);
        if (s1 == s0) {
            *gen_out = s0;
            return rc;
        }
    }
    return -EAGAIN;
}

/* ---- public API ----------------------------------------------------- */

static bool valid_name(const char *name, size_t n)
{
    if (n == 0 || n > VRIFT_VDIR_NAME_MAX || (n == 1 && name[0] == '.') || (n == 2 && name[0] == '.' && name[1] == '.'))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return false;
    }
    return true;
}

VRIFT_VDIR_API int vrift_vdir_shm_path(const char *name, char *buf, size_t buflen)
{
    if (name == NULL || buf == NULL)
        return -EINVAL;
    size_t n = cstr_len(name, VRIFT_VDIR_NAME_MAX + 1);
    if (!valid_name(name, n))
        return -EINVAL;
    static const char prefix[] = VRIFT_VDIR_SHM_DIR "/" VRIFT_VDIR_SHM_PREFIX;
    char uid[24];
    int ul = utoa((uint64_t)getuid(), uid, sizeof uid);
    size_t total = sizeof prefix - 1 + (size_t)ul + 1 + n;
    if (total + 1 > buflen)
        return -ERANGE;
    char *p = buf;
    memcpy(p, prefix, sizeof prefix - 1);
    p += sizeof prefix - 1;
    memcpy(p, uid, (size_t)ul);
    p += ul;
    *p++ = '.';
    memcpy(p, name, n);
    p[n] = '\0';
    return 0;
}

VRIFT_VDIR_API int vrift_vdir_open(const char *name_or_path, vrift_vdir_reader **out)
{
    if (name_or_path == NULL || out == NULL)
        return -EINVAL;
    int saved = errno;
    int rc = 0;
    void *mem = sys_mmap(NULL, ROUND_PAGE(sizeof(vrift_vdir_reader)), PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1);
    if (mem == MAP_FAILED) {
        rc = -errno;
        errno = saved;
        return rc;
    }
    vrift_vdir_reader *r = mem; /* anonymous memory is zeroed: all slots free */
    if (strchr(name_or_path, '/') != NULL) {
        size_t n = cstr_len(name_or_path, VRIFT_VDIR_PATH_MAX + 1);
        if (n > VRIFT_VDIR_PATH_MAX)
            rc = -EINVAL;
        else
            memcpy(r->path, name_or_path, n + 1);
    } else {
        rc = vrift_vdir_shm_path(name_or_path, r->path, sizeof r->path);
        if (rc == -ERANGE)
            rc = -EINVAL;
    }
    if (rc == 0)
        rc = map_object(r->path, &r->maps[0], NULL);
    if (rc != 0) {
        sys_munmap(mem, ROUND_PAGE(sizeof(vrift_vdir_reader)));
        errno = saved;
        return rc;
    }
    atomic_store(&r->slot_state[0], SLOT_LIVE);
    atomic_store_explicit(&r->cur, &r->maps[0], memory_order_release);
    *out = r;
    errno = saved;
    return 0;
}

VRIFT_VDIR_API int vrift_vdir_lookup(vrift_vdir_reader *r, const char *path, size_t len,
                                     struct vrift_vdir_result *out)
{
    if (r == NULL || out == NULL || (path == NULL && len != 0))
        return -EINVAL;
    if (len > VRIFT_VDIR_PATH_MAX)
        return -ENAMETOOLONG;
    int saved = errno;
    struct op op = {.kind = OP_LOOKUP, .path = path != NULL ? path : "", .len = len, .res = out};
    uint64_t gen = 0;
    int rc = run(r, &op, &gen);
    if (rc == 0) {
        const struct vrift_vdir_entry *e = &out->entry;
        out->ino = vrift_vdir_entry_ino(e, out->index);
        out->size = vrift_vdir_size_of(e->size_flags);
        out->gen = gen;
        out->mode = e->mode;
        out->flags = vrift_vdir_flags_of(e->size_flags);
        out->mtime_sec = e->mtime_sec;
        out->nchildren = (e->mode & VRIFT_VDIR_S_IFMT) == VRIFT_VDIR_S_IFDIR ? e->u.dir.nchildren : 0;
    }
    errno = saved;
    return rc;
}

/* vrift_vdir_stat() when one attempt did not do: the seqlock loop (back-off,
 * following a resize, a symlink's target). Out of line, so the common
 * path keeps its registers (no spills). */
static __attribute__((noinline)) int stat_slow(vrift_vdir_reader *r, const char *path, size_t len,
                                               struct vrift_vdir_stat *out)
{
    /* errno: run() keeps it across its system calls (backoff, follow) */
    struct op op = {.kind = OP_STAT, .path = path, .len = len, .st = out};
    uint64_t gen = 0;
    return run(r, &op, &gen);
}

VRIFT_VDIR_API int vrift_vdir_stat(vrift_vdir_reader *r, const char *path, size_t len, struct vrift_vdir_stat *out)
{
    if (r == NULL || out == NULL || (path == NULL && len != 0))
        return -EINVAL;
    if (len > VRIFT_VDIR_PATH_MAX)
        return -ENAMETOOLONG;
    if (path == NULL)
        path = "";
    int rc = vdir_stat_once(r, path, len, out);
    return VRIFT_LIKELY(rc != VDIR_UNDECIDED) ? rc : stat_slow(r, path, len, out);
}

VRIFT_VDIR_API int vrift_vdir_list(vrift_vdir_reader *r, const char *dir, size_t len, void *buf, size_t buflen,
                                   size_t *needed, uint32_t *count)
{
    if (r == NULL || (dir == NULL && len != 0) || (buf == NULL && buflen != 0))
        return -EINVAL;
    if (len > VRIFT_VDIR_PATH_MAX)
        return -ENAMETOOLONG;
    int saved = errno;
    struct op op = {.kind = OP_LIST, .path = dir != NULL ? dir : "", .len = len};
    op.list.buf = buf;
    op.list.buflen = buflen;
    uint64_t gen = 0;
    int rc = run(r, &op, &gen);
    if (rc == 0 && op.list.needed > buflen)
        rc = -ERANGE;
    if (rc == 0 || rc == -ERANGE) {
        if (needed != NULL)
            *needed = op.list.needed;
        if (count != NULL)
            *count = op.list.count;
    }
    errno = saved;
    return rc;
}

VRIFT_VDIR_API int vrift_vdir_info(vrift_vdir_reader *r, struct vrift_vdir_info *out)
{
    if (r == NULL || out == NULL)
        return -EINVAL;
    int saved = errno;
    struct op op = {.kind = OP_INFO, .path = "", .info = out};
    uint64_t gen = 0;
    int rc = run(r, &op, &gen);
    if (rc == 0) {
        const struct vdir_map *m = atomic_load_explicit(&r->cur, memory_order_acquire);
        const struct vrift_vdir_header *hd = HDR(m);
        size_t n = cstr_len(r->path, VRIFT_VDIR_PATH_MAX);
        memcpy(out->path, r->path, n);
        out->path[n] = '\0';
        /* Immutable after publish, but copied with bounds all the same. */
        n = cstr_len(hd->cas_root, sizeof out->cas_root - 1);
        memcpy(out->cas_root, hd->cas_root, n);
        out->cas_root[n] = '\0';
        n = cstr_len(hd->mount_root, sizeof out->mount_root - 1);
        memcpy(out->mount_root, hd->mount_root, n);
        out->mount_root[n] = '\0';
        out->gen = gen;
        out->hash_seed = m->seed;
        out->volume_id = hd->volume_id;
        out->created_ns = hd->created_ns;
        out->mapped_bytes = m->size;
        out->entry_cap = m->entry_cap;
        out->bucket_count = m->nbuckets;
        out->pool_cap = m->pool_cap;
        out->retries = atomic_load_explicit(&r->retries, memory_order_relaxed);
        out->remaps = atomic_load_explicit(&r->remaps, memory_order_relaxed);
    }
    errno = saved;
    return rc;
}

VRIFT_VDIR_API int vrift_vdir_blob_path(vrift_vdir_reader *r, const uint8_t digest[32], int exec, char *buf,
                                        size_t buflen)
{
    if (r == NULL || digest == NULL || buf == NULL)
        return -EINVAL;
    const struct vdir_map *m = atomic_load_explicit(&r->cur, memory_order_acquire);
    const char *root = HDR(m)->cas_root;
    size_t rl = cstr_len(root, VRIFT_VDIR_CAS_ROOT_MAX - 1);
    size_t rel = VRIFT_LAYOUT_BLOB_REL_SIZE - (exec ? 0 : sizeof VRIFT_LAYOUT_EXEC_SUFFIX - 1);
    if (rl + 1 + rel > buflen)
        return -ERANGE;
    memcpy(buf, root, rl);
    buf[rl] = '/';
    char hex[VRIFT_LAYOUT_DIGEST_HEX];
    vrift_layout_hex(digest, hex);
    vrift_layout_blob_rel(hex, exec, buf + rl + 1);
    return 0;
}

VRIFT_VDIR_API void vrift_vdir_close(vrift_vdir_reader *r)
{
    if (r == NULL)
        return;
    int saved = errno;
    for (uint32_t i = 0; i < VRIFT_VDIR_READER_MAPS; i++)
        if (atomic_load(&r->slot_state[i]) == SLOT_LIVE)
            unmap_object(&r->maps[i]);
    sys_munmap(r, ROUND_PAGE(sizeof(vrift_vdir_reader)));
    errno = saved;
}

uint64_t vrift_vdir_upper_word(vrift_vdir_reader *r)
{
    struct vdir_map *m = atomic_load_explicit(&r->cur, memory_order_acquire);
    if (!m || !m->base)
        return 0;
    return atomic_load(&((struct vrift_vdir_header *)(void *)m->base)->upper_published);
}

uint64_t vrift_vdir_upper_published(vrift_vdir_reader *r)
{
    struct vdir_map *m = atomic_load_explicit(&r->cur, memory_order_acquire);
    if (!m || !m->base)
        return 0;
    return atomic_load_explicit(&((struct vrift_vdir_header *)(void *)m->base)->upper_published, memory_order_acquire) & ~VRIFT_VDIR_UPPER_AWAKE;
}
