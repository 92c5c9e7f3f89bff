/*
 * vdir_core.h — the reader's view of a mapped VDir and the lock-free steps
 * of a lookup, shared by the reader (vdir_reader.c) and the shim's stat()
 * fast path (mounts.c), which compiles them inline: stat() of a path in a
 * mount is the call a build makes most, and a call into the reader, its
 * argument checks and a result copied through memory cost it a few
 * percent each. Internal to libvrift.so and the reader library: not an API.
 *
 * Discipline (as in vdir_reader.c): every value read from the shared
 * mapping is loaded ONCE (relaxed atomics), checked, and only then used as
 * an index or offset; nothing read inside a seqlock attempt is believed
 * until gen is re-read.
 */
#ifndef VRIFT_VDIR_CORE_H
#define VRIFT_VDIR_CORE_H

#include "vdir_reader.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define VRIFT_LIKELY(x) __builtin_expect(!!(x), 1)
#define VRIFT_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* vdir_stat_once(): not decided in one attempt (the caller runs the full
 * vrift_vdir_stat()). */
#define VDIR_UNDECIDED (-EAGAIN)

/* One mapped object. Filled before it is published through reader.cur and
 * never changed afterwards (readers on other threads may hold it). */
struct vdir_map {
    const unsigned char *base; /* PROT_READ mapping of the object */
    size_t size;               /* from fstat(); == header.total_size */
    uint64_t dev, ino;         /* identity of the file, to spot "same object" */
    uint64_t seed;
    uint64_t entry_off, data_off, bucket_off, pool_off;
    uint32_t entry_cap, nbuckets, pool_cap;
};

/* An open VDir: the current mapping, and every mapping it followed
 * (vdir_reader.c maps and leaks them; vrift_vdir_close() unmaps). */
struct vrift_vdir_reader {
    _Atomic(struct vdir_map *) cur;
    _Atomic uint64_t retries;
    _Atomic uint64_t remaps;
    _Atomic uint32_t slot_state[VRIFT_VDIR_READER_MAPS];
    struct vdir_map maps[VRIFT_VDIR_READER_MAPS];
    char path[VRIFT_VDIR_PATH_MAX + 1];
};

#define HDR(m) ((const struct vrift_vdir_header *)(const void *)(m)->base)

static inline uint64_t ld64(const void *p)
{
    return atomic_load_explicit((const _Atomic uint64_t *)p, memory_order_relaxed);
}

static inline uint32_t ld32(const void *p)
{
    return atomic_load_explicit((const _Atomic uint32_t *)p, memory_order_relaxed);
}

/* Node `idx` (already bounds-checked) in the mapping. */
static inline const unsigned char *node_at(const struct vdir_map *m, uint32_t idx)
{
    return m->base + m->entry_off + (size_t)idx * VRIFT_VDIR_ENTRY_SIZE;
}

static inline bool valid_type(uint32_t mode)
{
    uint32_t t = mode & VRIFT_VDIR_S_IFMT;
    return t == VRIFT_VDIR_S_IFREG || t == VRIFT_VDIR_S_IFDIR || t == VRIFT_VDIR_S_IFLNK;
}

/*
 * a[0, n) == b[0, n) and a[n] == NUL, where a is pool memory (at least n + 1
 * bytes, checked by the caller) and b the caller's path: 16 or 8 bytes at a
 * time, inline (a libc memcmp call costs more than comparing a typical
 * path). Torn pool bytes only make it answer "different".
 */
static inline __attribute__((always_inline)) bool path_equal(const unsigned char *a, const char *b, size_t n)
{
    uint64_t x, y, u, v;
#ifdef __SSE2__
    if (n >= 16) {
        for (size_t i = 0; i + 16 < n; i += 16)
            if (_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(const void *)(a + i)),
                                                 _mm_loadu_si128((const __m128i *)(const void *)(b + i)))) != 0xFFFF)
                return false;
        if (_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(const void *)(a + n - 16)),
                                             _mm_loadu_si128((const __m128i *)(const void *)(b + n - 16)))) != 0xFFFF)
            return false;
        return a[n] == 0;
    }
#endif
    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8) {
            memcpy(&x, a + i, 8);
            memcpy(&y, b + i, 8);
            if (x != y)
                return false;
        }
        memcpy(&x, a + n - 8, 8); /* the last 8 (overlapping) */
        memcpy(&y, b + n - 8, 8);
        return x == y && a[n] == 0;
    }
    if (n >= 4) { /* first 4 and last 4, overlapping */
        uint32_t p, q, r, t;
        memcpy(&p, a, 4);
        memcpy(&q, b, 4);
        memcpy(&r, a + n - 4, 4);
        memcpy(&t, b + n - 4, 4);
        return p == q && r == t && a[n] == 0;
    }
    u = v = 0;
    for (size_t i = 0; i < n; i++) {
        u = u << 8 | a[i];
        v = v << 8 | (unsigned char)b[i];
    }
    return u == v && a[n] == 0;
}

/*
 * Finds the entry slot whose path is `path` (hash h): probes from h's home
 * bucket to the first empty one, comparing the path at the bucket's
 * path_off for every bucket whose tag matches. Eight buckets per step
 * where there is SSE2 (their slot words gathered into two registers, one
 * compare of their tags and one for empties), so the number of probes is
 * not a branch per bucket. The node is not read here: the path offset is
 * the bucket's copy (vrift_vdir.h section 3), so the caller's load of the
 * node does not wait for the path compare, nor the compare for the node.
 * 0, *idx and *path_off (the caller checks the node's own path_off is
 * the same); -ENOENT at an empty bucket; -EIO when an index or offset is
 * out of bounds or no bucket is empty. Decides nothing the caller may
 * believe before gen is re-checked.
 */
static inline __attribute__((always_inline)) int probe(const struct vdir_map *m, const char *path, size_t len,
                                                      uint64_t h, uint32_t *idx, uint32_t *path_off)
{
    const unsigned char *buckets = m->base + m->bucket_off;
    const unsigned char *pool = m->base + m->pool_off;
    const uint32_t nb = m->nbuckets, tag = vrift_vdir_tag_of(h);
    uint32_t b = vrift_vdir_bucket_of(h, nb);
    for (uint32_t seen = 0; seen < nb;) {
        uint32_t match, empty, width; /* bit k: bucket b + k */
#ifdef __SSE2__
        if (VRIFT_LIKELY(nb - b >= 8)) {
            const __m128i hi = _mm_set1_epi32((int)0xFF000000u), t = _mm_set1_epi32((int)(tag << 24));
            const unsigned char *p = buckets + (size_t)b * VRIFT_VDIR_BUCKET_SIZE;
            /* the slot words (even 32-bit lanes) of buckets b..b+3 and b+4..b+7 */
            const __m128 y0 = _mm_castsi128_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
            const __m128 y1 = _mm_castsi128_ps(_mm_loadu_si128((const __m128i *)(const void *)(p + 16u)));
            const __m128 y2 = _mm_castsi128_ps(_mm_loadu_si128((const __m128i *)(const void *)(p + 32u)));
            const __m128 y3 = _mm_castsi128_ps(_mm_loadu_si128((const __m128i *)(const void *)(p + 48u)));
            const __m128i x0 = _mm_castps_si128(_mm_shuffle_ps(y0, y1, _MM_SHUFFLE(2, 0, 2, 0)));
            const __m128i x1 = _mm_castps_si128(_mm_shuffle_ps(y2, y3, _MM_SHUFFLE(2, 0, 2, 0)));
            const __m128i z = _mm_setzero_si128();
            match = (uint32_t)_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(_mm_and_si128(x0, hi), t))) |
                    (uint32_t)_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(_mm_and_si128(x1, hi), t))) << 4;
            empty = (uint32_t)_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(x0, z))) |
                    (uint32_t)_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(x1, z))) << 4;
            width = 8;
        } else
#endif
        {
            uint32_t v = ld32(buckets + (size_t)b * VRIFT_VDIR_BUCKET_SIZE);
            empty = v == 0;
            match = VRIFT_VDIR_BUCKET_TAG(v) == tag;
            width = 1;
        }
        /* only buckets before the first empty one are in the probe sequence */
        match &= (empty & -empty) - 1u;
        while (match != 0) {
            const uint32_t k = (uint32_t)__builtin_ctz(match);
            match &= match - 1u;
            const unsigned char *bk = buckets + (size_t)(b + k) * VRIFT_VDIR_BUCKET_SIZE;
            const uint32_t i = VRIFT_VDIR_BUCKET_INDEX(ld32(bk + offsetof(struct vrift_vdir_bucket, slot)));
            if (i >= m->entry_cap)
                return -EIO;
            const uint32_t off = ld32(bk + offsetof(struct vrift_vdir_bucket, path_off));
            if (off >= m->pool_cap)
                return -EIO;
            if (len < m->pool_cap - off && path_equal(pool + off, path, len)) {
                *idx = i;
                *path_off = off;
                return 0;
            }
        }
        if (empty != 0)
            return -ENOENT;
        seen += width;
        b = nb - b == width ? 0 : b + width;
    }
    return -EIO; /* no empty bucket: the table is garbage */
}

/*
 * One attempt of vrift_vdir_stat() on *m: only the node is read (24
 * bytes, its data record not at all) and only its check verified.
 * VDIR_UNDECIDED: a symlink (its target is part of the check), a directory
 * made in the mount (its inode is its claim's, in the data record): the
 * general path.
 */
static inline __attribute__((always_inline)) int stat_attempt(const struct vdir_map *m, const char *path, size_t len,
                                                              uint64_t h, struct vrift_vdir_stat *o)
{
    uint32_t i = 0, off = 0;
    int rc = probe(m, path, len, h, &i, &off);
    if (rc != 0)
        return rc;
    const unsigned char *n = node_at(m, i);
    const uint64_t size_flags = ld64(n + offsetof(struct vrift_vdir_node, size_flags));
    const uint32_t path_off = ld32(n + offsetof(struct vrift_vdir_node, path_off));
    const uint32_t next = ld32(n + offsetof(struct vrift_vdir_node, next_sibling));
    const uint32_t mtime = ld32(n + offsetof(struct vrift_vdir_node, mtime_sec));
    const uint32_t mode_check = ld32(n + offsetof(struct vrift_vdir_node, mode)); /* mode, then check */
    const uint32_t mode = mode_check & 0xFFFFu;
    if (!valid_type(mode) || path_off != off)
        return -EIO;
    if ((mode & VRIFT_VDIR_S_IFMT) == VRIFT_VDIR_S_IFLNK ||
        ((mode & VRIFT_VDIR_S_IFMT) == VRIFT_VDIR_S_IFDIR && (vrift_vdir_flags_of(size_flags) & VRIFT_VDIR_F_CLAIM)))
        return VDIR_UNDECIDED;
    if (vrift_vdir_node_check(size_flags, path_off, next, mtime, mode, h, NULL, 0) != (mode_check >> 16))
        return -EIO;
    o->ino = vrift_vdir_ino(i);
    o->size = vrift_vdir_size_of(size_flags);
    o->mode = mode;
    o->flags = vrift_vdir_flags_of(size_flags);
    o->mtime_sec = mtime;
    o->index = i;
    return 0;
}

/*
 * vrift_vdir_stat() in one attempt on the current object: 0 (*o filled) or
 * -ENOENT, both from a consistent snapshot, -EIO for a consistent corrupt
 * one; VDIR_UNDECIDED when the writer is in its window, the object was
 * superseded or retired, or the path is a symlink (its target is part of
 * its check). No system call, errno untouched.
 */
static inline __attribute__((always_inline)) int vdir_stat_once(vrift_vdir_reader *r, const char *path, size_t len,
                                                                struct vrift_vdir_stat *o)
{
    const struct vdir_map *m = atomic_load_explicit(&r->cur, memory_order_acquire);
    const struct vrift_vdir_header *hd = HDR(m);
    const uint64_t h = vrift_vdir_path_hash(path, len, m->seed);
    const uint64_t s0 = atomic_load_explicit(&hd->gen, memory_order_acquire);
    const uint32_t hflags = atomic_load_explicit(&hd->flags, memory_order_relaxed);
    if (((s0 & 1u) | (hflags & (VRIFT_VDIR_HF_SUPERSEDED | VRIFT_VDIR_HF_RETIRED))) != 0)
        return VDIR_UNDECIDED;
    int rc = stat_attempt(m, path, len, h, o);
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&hd->gen, memory_order_relaxed) != s0)
        return VDIR_UNDECIDED;
    return rc;
}

/* Would a 16-byte load at p reach into the next page? (A string may end
 * right before an unmapped one: its bytes there are read one at a time.) */
static inline bool vdir_crosses_page(const char *p) { return ((uintptr_t)p & 4095u) > 4096u - 16u; }

/*
 * vrift_vdir_path_hash() of the NUL-terminated `s` and its length, in one
 * pass: sixteen bytes at a time, no byte past the NUL read unless it lies
 * in the same page. Stops after VRIFT_VDIR_PATH_MAX + 1 bytes (*len is then
 * more than VRIFT_VDIR_PATH_MAX and the hash meaningless).
 */
static inline __attribute__((always_inline)) uint64_t vdir_path_hash_cstr(const char *s, uint64_t seed, size_t *len)
{
    const uint64_t k0 = 0xa0761d6478bd642fULL, k1 = 0xe7037ed1a0b428dbULL, k2 = 0x8ebc6af09c88c6e3ULL;
    uint64_t h = seed ^ k0, w0, w1;
    const char *p = s;
    for (;;) {
        if (VRIFT_UNLIKELY((size_t)(p - s) > VRIFT_VDIR_PATH_MAX)) {
            *len = (size_t)(p - s);
            return h;
        }
#ifdef __SSE2__
        if (VRIFT_LIKELY(!vdir_crosses_page(p))) {
            /* the blocks that end in p's page, counted once: no test per
             * block for the page end or the length limit */
            size_t blocks = (4096u - ((uintptr_t)p & 4095u)) / 16u;
            const size_t left = (VRIFT_VDIR_PATH_MAX + 16u - (size_t)(p - s)) / 16u;
            for (blocks = blocks < left ? blocks : left; blocks != 0; blocks--) {
                __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
                const uint32_t nul = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_setzero_si128()));
                if (nul != 0) { /* the tail: the bytes before the NUL, the rest zero */
                    static const unsigned char keep[32] = {255, 255, 255, 255, 255, 255, 255, 255,
                                                           255, 255, 255, 255, 255, 255, 255, 255};
                    const uint32_t n = (uint32_t)__builtin_ctz(nul);
                    x = _mm_and_si128(x, _mm_loadu_si128((const __m128i *)(const void *)(keep + 16 - n)));
                    w0 = (uint64_t)_mm_cvtsi128_si64(x);
                    w1 = (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(x, x));
                    *len = (size_t)(p - s) + n;
                    goto tail;
                }
                memcpy(&w0, p, 8); /* the same bytes, from L1 */
                memcpy(&w1, p + 8, 8);
                h = vrift_vdir__mum(w0 ^ k1, w1 ^ h);
                p += 16;
            }
            continue;
        }
#endif
        /* a block across a page end, a byte at a time: the bytes after the
         * NUL may lie in the next page */
        unsigned char t[16] = {0};
        uint32_t n = 0;
        while (n < 16 && p[n] != '\0') {
            t[n] = (unsigned char)p[n];
            n++;
        }
        memcpy(&w0, t, 8);
        memcpy(&w1, t + 8, 8);
        if (n < 16) {
            *len = (size_t)(p - s) + n;
            break;
        }
        h = vrift_vdir__mum(w0 ^ k1, w1 ^ h);
        p += 16;
    }
#ifdef __SSE2__
tail:
#endif
    h = vrift_vdir__mum(w0 ^ k2, w1 ^ h);
    return vrift_vdir__mum(h ^ k0, (uint64_t)*len ^ k1) ^ h;
}

/*
 * vdir_stat_once() of the NUL-terminated `path`, whose length it finds
 * while hashing it (*len; more than VRIFT_VDIR_PATH_MAX: VDIR_UNDECIDED).
 */
static inline __attribute__((always_inline)) int vdir_stat_once_cstr(vrift_vdir_reader *r, const char *path, size_t *len,
                                                                     struct vrift_vdir_stat *o, uint64_t *published)
{
    const struct vdir_map *m = atomic_load_explicit(&r->cur, memory_order_acquire);
    const struct vrift_vdir_header *hd = HDR(m);
    *published = 0; /* (a miss judged against 0 takes the full path: safe) */
    const uint64_t h = vdir_path_hash_cstr(path, m->seed, len);
    if (VRIFT_UNLIKELY(*len > VRIFT_VDIR_PATH_MAX))
        return VDIR_UNDECIDED;
    const uint64_t s0 = atomic_load_explicit(&hd->gen, memory_order_acquire);
    const uint32_t hflags = atomic_load_explicit(&hd->flags, memory_order_relaxed);
    if (((s0 & 1u) | (hflags & (VRIFT_VDIR_HF_SUPERSEDED | VRIFT_VDIR_HF_RETIRED))) != 0)
        return VDIR_UNDECIDED;
    /* how far the mount's own changes were published, read before the
     * lookup: a miss is judged against it (shim/journal.c) */
    *published = atomic_load_explicit(&hd->upper_published, memory_order_acquire) & ~VRIFT_VDIR_UPPER_AWAKE;
    int rc = stat_attempt(m, path, *len, h, o);
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&hd->gen, memory_order_relaxed) != s0)
        return VDIR_UNDECIDED;
    return rc;
}

#endif /* VRIFT_VDIR_CORE_H */
