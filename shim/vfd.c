/*
 * vfd.c — the table of virtual descriptors.
 *
 * fd -> struct vr_vfd (one per open file description: dup'ed fds share it
 * and count references). No malloc, no locks:
 *   - the fd table is two-level: 256 chunks of 4096 slots (fds < 1 048 576),
 *     each chunk mmap'd on first use and installed with a CAS;
 *   - descriptions come from mmap'd slabs of 32, claimed with a CAS on a
 *     per-object state word (a full scan only when the hint is stale).
 * A real descriptor closed behind our back (never through a wrapper) can
 * leave a stale binding; every wrapper that creates an fd overwrites the
 * binding of that number, and fstat() checks the real file's identity.
 */
#include "shim.h"

#define CHUNK_BITS 12
#define CHUNK (1u << CHUNK_BITS)
#define NCHUNKS 256u
#define SLAB 32u
#define NSLABS 1024u

static _Atomic(struct vr_vfd *) *_Atomic fd_chunks[NCHUNKS];

struct slab {
    _Atomic int used[SLAB];
    struct vr_vfd obj[SLAB];
};
static struct slab *_Atomic slabs[NSLABS];
static _Atomic unsigned slab_hint;

struct vr_vfd *vr_vfd_new(void)
{
    unsigned start = atomic_load_explicit(&slab_hint, memory_order_relaxed);
    for (unsigned k = 0; k < NSLABS; k++) {
        unsigned s = (start + k) % NSLABS;
        struct slab *sl = atomic_load_explicit(&slabs[s], memory_order_acquire);
        if (!sl) {
            struct slab *fresh = vr_mmap(sizeof(struct slab));
            if (!fresh)
                return NULL;
            struct slab *expect = NULL;
            if (atomic_compare_exchange_strong(&slabs[s], &expect, fresh)) {
                sl = fresh;
            } else {
                vr_munmap(fresh, sizeof(struct slab));
                sl = expect;
            }
        }
        for (unsigned i = 0; i < SLAB; i++) {
            int z = 0;
            if (atomic_load_explicit(&sl->used[i], memory_order_relaxed) == 0 &&
                atomic_compare_exchange_strong(&sl->used[i], &z, 1)) {
                struct vr_vfd *v = &sl->obj[i];
                atomic_store(&v->refs, 1);
                v->kind = VFD_NONE;
                v->mount = 0;
                v->mode = 0;
                v->ino = v->size = 0;
                v->mtime = 0;
                v->real_dev = v->real_ino = 0;
                v->dirpos = 0;
                v->rellen = 0;
                v->rel[0] = '\0';
                if (s != start)
                    atomic_store_explicit(&slab_hint, s, memory_order_relaxed);
                return v;
            }
        }
    }
    return NULL;
}

static void release(struct vr_vfd *v)
{
    for (unsigned s = 0; s < NSLABS; s++) {
        struct slab *sl = atomic_load_explicit(&slabs[s], memory_order_acquire);
        if (!sl)
            break;
        if (v >= &sl->obj[0] && v < &sl->obj[SLAB]) {
            v->kind = VFD_NONE;
            atomic_store(&sl->used[v - &sl->obj[0]], 0);
            return;
        }
    }
}

void vr_vfd_put(struct vr_vfd *v)
{
    if (v && atomic_fetch_sub(&v->refs, 1) == 1)
        release(v);
}

static _Atomic(struct vr_vfd *) *slot(int fd, int create)
{
    if (fd < 0 || (unsigned)fd >= CHUNK * NCHUNKS)
        return NULL;
    unsigned c = (unsigned)fd >> CHUNK_BITS;
    _Atomic(struct vr_vfd *) *chunk = atomic_load_explicit(&fd_chunks[c], memory_order_acquire);
    if (!chunk) {
        if (!create)
            return NULL;
        _Atomic(struct vr_vfd *) *fresh = vr_mmap(CHUNK * sizeof(*chunk));
        if (!fresh)
            return NULL;
        _Atomic(struct vr_vfd *) *expect = NULL;
        if (atomic_compare_exchange_strong(&fd_chunks[c], &expect, fresh)) {
            chunk = fresh;
        } else {
            vr_munmap(fresh, CHUNK * sizeof(*chunk));
            chunk = expect;
        }
    }
    return &chunk[(unsigned)fd & (CHUNK - 1)];
}

struct vr_vfd *vr_vfd_get(int fd)
{
    _Atomic(struct vr_vfd *) *s = slot(fd, 0);
    return s ? atomic_load_explicit(s, memory_order_acquire) : NULL;
}

void vr_vfd_set(int fd, struct vr_vfd *v)
{
    _Atomic(struct vr_vfd *) *s = slot(fd, v != NULL);
    if (!s) {
        vr_vfd_put(v);
        return;
    }
    struct vr_vfd *old = atomic_exchange(s, v);
    if (old)
        vr_vfd_put(old);
}

struct vr_vfd *vr_vfd_take(int fd)
{
    _Atomic(struct vr_vfd *) *s = slot(fd, 0);
    if (!s)
        return NULL;
    if (!atomic_load_explicit(s, memory_order_relaxed))
        return NULL;
    return atomic_exchange(s, NULL);
}

void vr_vfd_each(void (*fn)(int fd, struct vr_vfd *v, void *arg), void *arg)
{
    for (unsigned c = 0; c < NCHUNKS; c++) {
        _Atomic(struct vr_vfd *) *chunk = atomic_load_explicit(&fd_chunks[c], memory_order_acquire);
        if (!chunk)
            continue;
        for (unsigned i = 0; i < CHUNK; i++) {
            struct vr_vfd *v = atomic_load_explicit(&chunk[i], memory_order_acquire);
            if (v)
                fn((int)(c * CHUNK + i), v, arg);
        }
    }
}

void vr_vfd_describe(struct vr_vfd *v, int kind, const struct vr_path *p)
{
    v->kind = kind;
    v->mount = p->mount;
    v->mode = p->res.mode;
    v->ino = p->res.ino;
    v->size = p->res.size;
    v->mtime = p->res.mtime_sec;
    v->rellen = p->rellen;
    memcpy(v->rel, p->rel, p->rellen + 1);
}
