/*
 * vrift_vdir.h — the VDir: a per-mount, shared-memory path index.
 *
 * THIS HEADER IS THE SPECIFICATION. The daemon's writer (native/, C++)
 * and the shim's reader (shim/vdir_reader.c, C) both include it; neither
 * may assume anything about the layout that is not written here.
 *
 * One VDir describes one mounted tree: every path under the mount (files,
 * directories, symlinks) with what stat(), readlink() and readdir() need,
 * plus the digest that names a file's bytes in the local CAS. Exactly one
 * process writes it (vriftd); any number of processes of the same user map
 * it read-only and answer metadata calls from it without a system call.
 *
 * All symbols use the prefix vrift_vdir_ / VRIFT_VDIR_. Every integer is
 * in host byte order: a VDir never leaves the host that wrote it.
 *
 * This header holds the layout, the protocols and the pure helpers both
 * sides share. The reader library's functions (open, lookup, list ...) are
 * documented in vdir_reader.h; the writer's in native/src/vdir_writer.h.
 *
 * ---------------------------------------------------------------------
 * 1. THE OBJECT
 * ---------------------------------------------------------------------
 * A VDir is a regular file on tmpfs:
 *
 *     /dev/shm/vrift.<uid>.<name>          (the "stable name")
 *
 * <uid> is the decimal real user id of the daemon (and of its readers),
 * <name> is chosen by the daemon (one per mount; [A-Za-z0-9._-], at most
 * VRIFT_VDIR_NAME_MAX bytes). The file is created with
 * O_CREAT|O_EXCL|O_NOFOLLOW and mode 0600, so no other user id can open
 * it (EACCES). Readers refuse an object that is not a regular file owned
 * by their effective uid, or that has any group/other permission bit set
 * (-EPERM): /dev/shm is world-writable, so a name alone proves nothing.
 *
 * The writer never publishes a half-built object: it builds every object
 * under a temporary name in the same directory,
 *
 *     /dev/shm/vrift.<uid>.<name>.tmp.<pid>.<n>.<16 random hex>
 *
 * and rename()s it over the stable name once it is complete. The file
 * size is fixed at creation (header.total_size, a multiple of 4096) and
 * never changes: the writer never ftruncate()s a mapped object.
 *
 * Layout of the mapping (offsets from its first byte):
 *
 *     [0, 4096)                       struct vrift_vdir_header
 *     [entry_off,  + entry_cap*24)    struct vrift_vdir_node[entry_cap]
 *     [data_off,   + entry_cap*40)    union vrift_vdir_data[entry_cap]
 *     [bucket_off, + bucket_count*8)  struct vrift_vdir_bucket buckets[bucket_count]
 *     [pool_off,   + pool_cap)        string pool (bytes)
 *     ... zero padding up to total_size
 *
 * The geometry fields (everything in the header except gen, flags,
 * entry_count, entry_hwm, pool_used and pool_garbage) are written before
 * the object is published and never change afterwards.
 *
 * ---------------------------------------------------------------------
 * 2. ENTRIES
 * ---------------------------------------------------------------------
 * Entry slot i (0 <= i < entry_cap) is node i and data record i: the node
 * (24 bytes) holds what stat() and the path index read -- size, flags,
 * mtime, mode, the path's pool offset, the sibling link, the check -- and
 * the data record (40 bytes) the rest: a file's digest and its blob's
 * ctime (the open-time check, version 3), a directory's child list, a
 * symlink's target range. They live in two arrays so that a
 * stat() of a path touches 24 bytes of entry memory, not 64 (version 1
 * kept both in one 56-byte entry; on a tree bigger than the CPU's cache,
 * stat()'s time is its cache misses). struct vrift_vdir_entry is the two
 * together as the reader API and the writer hand them around; it is not a
 * layout.
 *
 * Slot i is free when its node's mode is 0. Slot 0 is
 * always the root directory, whose path is the empty string "". Every
 * other path is relative to the mount root, '/'-separated, without a
 * leading or trailing '/', without empty, "." or ".." components, at most
 * VRIFT_VDIR_PATH_MAX bytes, each component at most VRIFT_VDIR_NAME_MAX.
 * The parent of every entry is a directory entry (the root for top-level
 * names); a directory is removed only after its children.
 *
 * Paths are NUL-terminated byte strings in the pool at path_off. Symlink
 * targets are (target_off, target_len) byte ranges in the pool, without a
 * NUL. The pool is append-only between compactions; bytes no live entry
 * refers to are garbage (counted in pool_garbage) until the writer
 * compacts the pool in place (inside a seqlock window, section 4).
 *
 * Directories: each directory's children form a singly linked list,
 * dir.first_child -> next sibling -> ... -> 0, in insertion order (a tree
 * mounted in sorted order lists sorted). Links are entry index + 1, so 0
 * means "none". dir.nchildren is the length of the list. A node's link to
 * its next sibling is the low 24 bits of node.next_sibling
 * (VRIFT_VDIR_NEXT(); indices are < 2^24 - 1, section 3); the high 8 bits
 * are the data record's check (VRIFT_VDIR_DATA_CHECK(), section 4).
 *
 * An entry's slot index never changes while the entry exists, including
 * across resizes (section 5), so vrift_vdir_ino() is stable for the life
 * of the entry. A slot freed by a removal may be reused by a later path
 * (as a real filesystem reuses inode numbers).
 *
 * ---------------------------------------------------------------------
 * 3. THE PATH INDEX
 * ---------------------------------------------------------------------
 * buckets[] is an open-addressing hash table with linear probing:
 *
 *     h    = vrift_vdir_path_hash(path, len, header.hash_seed)
 *     home = vrift_vdir_bucket_of(h, bucket_count)     (fastrange, any n)
 *     tag  = vrift_vdir_tag_of(h)                      (top 8 bits of h)
 *
 * A bucket (struct vrift_vdir_bucket, 8 bytes) is all zero (empty) or
 * holds slot = VRIFT_VDIR_BUCKET(tag, index) -- the entry index + 1 in the
 * low 24 bits and the tag in the high 8 -- and path_off, a copy of that
 * entry's node.path_off. A lookup probes home, home+1, ... (wrapping at
 * bucket_count) until an empty bucket; for each bucket whose tag matches
 * it compares the FULL path bytes at the bucket's path_off and their
 * terminating NUL, so a hash collision can never return another path, and
 * then requires the node's own path_off to be the bucket's (else the
 * object is corrupt). The copy is there so that a lookup's two cache
 * misses after the bucket (the node, the path bytes) are independent
 * loads the CPU overlaps, not one after the other (version 4; stat() of a
 * tree bigger than the cache spends its time in those misses). The writer
 * changes a bucket's path_off whenever the node's changes (compaction,
 * resize). bucket_count > entry_cap always, so every probe sequence ends;
 * the writer keeps the load (entries / buckets) at or below 0.8. Removal
 * uses backward-shift deletion (no tombstones).
 *
 * ---------------------------------------------------------------------
 * 4. THE SEQLOCK (header.gen)
 * ---------------------------------------------------------------------
 * gen is even when the object is consistent and odd while the writer is
 * changing it. Writer, for one batch of any number of changes:
 *
 *     g = gen;                                   (only the writer stores)
 *     store(gen, g + 1, relaxed);  fence(release);
 *     ... change entries, buckets, pool, header counters, flags ...
 *     store(gen, g + 2, release);
 *
 * Reader, for one operation (a lookup, or a whole directory listing):
 *
 *     s0 = load(gen, acquire);  if (s0 & 1) -> back off, retry
 *     check flags (SUPERSEDED / RETIRED, section 5)
 *     COPY everything needed out of the mapping (relaxed loads), checking
 *       every index and offset against the geometry validated at map time
 *       (which itself was checked against the fstat() size of the file)
 *     fence(acquire);  s1 = load(gen, relaxed)
 *     if (s1 != s0) -> retry; otherwise the copy is consistent.
 *
 * Anything read between s0 and s1 may be torn garbage: a reader decides
 * nothing from it (beyond "stop and retry") until gen has been re-checked,
 * and never dereferences a value it has not bounds-checked. Readers bound
 * their retries (VRIFT_VDIR_READ_ATTEMPTS) and then fail with -EAGAIN. A
 * writer that died inside a window leaves gen odd; the next daemon
 * replaces the object and supersedes the old one (section 5).
 *
 * Every node carries `check`, vrift_vdir_node_check() over its other
 * fields (the data record's check included), its path and its symlink
 * target; every data record is covered by an 8-bit check kept in its
 * node, vrift_vdir_data_check() over the record and the path. A read
 * verifies the checks of what it returns: stat() the node's, a lookup
 * both. A consistent copy (s1 == s0) whose check does not match is
 * corruption, reported as -EIO. (A data record's check is 8 bits: 1 in 256
 * damaged records pass it; a damaged digest then names no blob, and a
 * damaged child list fails the listing's own checks -- each child's node
 * check, its parent's path, the count.)
 *
 * ---------------------------------------------------------------------
 * 5. RESIZE AND REPLACEMENT (header.flags)
 * ---------------------------------------------------------------------
 * When a batch does not fit (entries, or pool bytes after an in-place
 * compaction), the writer:
 *   1. builds a new object under a temporary name with larger capacity
 *      (each full area at least doubled), copying every entry to the SAME
 *      slot index, copying live strings, rebuilding the buckets; the new
 *      object keeps hash_seed and volume_id;
 *   2. rename()s it over the stable name (atomic: an open() of the stable
 *      name sees the old or the new object, never neither);
 *   3. in the OLD object, inside a seqlock window, sets
 *      VRIFT_VDIR_HF_SUPERSEDED;
 *   4. munmap()s the old object (its name is gone; its memory is freed when
 *      the last reader unmaps it) and applies the batch to the new one, in
 *      the new object's own seqlock window.
 * A reader that sees SUPERSEDED (at s0) re-opens the stable name, maps
 * and validates the new object, atomically swaps its current-mapping
 * pointer, and retries the operation there. It never unmaps a mapping
 * another thread may still be reading: superseded mappings are leaked
 * until vrift_vdir_close(). Resizes at least double an area, so a reader
 * sees few of them. If the stable name still names the superseded object,
 * or no longer exists, the operation fails with -ESTALE.
 *
 * A new daemon that creates a VDir over a stale object of the same name
 * (a previous daemon that died) sets SUPERSEDED in the stale object after
 * the rename (making gen even first), so its readers follow to the new one.
 * VRIFT_VDIR_HF_RETIRED means the mount is gone for good (the daemon
 * unmounted it): readers fail with -ESTALE without re-opening.
 *
 * ---------------------------------------------------------------------
 * 6. THE UPPER LAYER
 * ---------------------------------------------------------------------
 * A file written in the mount is a real file of its upper layer,
 * <home>/upper/<name>/<64 hex of vrift_vdir_upper_name(path)>: the name is
 * a function of the path, so creating one is an O_CREAT|O_EXCL the kernel
 * decides, and a path's file can be found before the daemon has published
 * it. Its entry (VRIFT_VDIR_F_UPPER) carries that name in u.digest.
 * Clients count the changes they make there themselves (create, mkdir's
 * claim directory, unlink) in <home>/upper/<name>/.issued (a u64 at
 * offset 0, incremented after the change, before its journal record is
 * written: vrift_proto.h, "The journal"); the writer stores in
 * header.upper_published the number up to which it has published them
 * (after the entries are in). A reader that loads upper_published, then
 * .issued, and finds the first at least the second knows every change
 * counted before was published. The top bit of upper_published
 * (VRIFT_VDIR_UPPER_AWAKE) is not part of the number: set, it says the
 * writer is working through the journal and will look again soon, so a
 * client need not wake it (shim/journal.c).
 */
#ifndef VRIFT_VDIR_H
#define VRIFT_VDIR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
#include <atomic>
/* std::atomic<T> and C11 _Atomic T have the same size and representation
 * for the lock-free 32/64-bit integers used here (checked below). */
#define VRIFT_VDIR_ATOMIC(T) std::atomic<T>
extern "C" {
#else
#include <stdatomic.h>
#define VRIFT_VDIR_ATOMIC(T) _Atomic T
#endif

/* ------------------------------------------------------------------ */
/* Constants                                                          */
/* ------------------------------------------------------------------ */

/** header.magic: "VRFTVDIR" read as a little-endian uint64_t. */
#define VRIFT_VDIR_MAGIC 0x5249445654465256ULL
/** header.version: bumped on any incompatible layout change (2: nodes and
 *  data records in two arrays, section 2; 3: a file's data record carries
 *  its blob's inode change time, 40 bytes; 4: a bucket carries its entry's
 *  path offset, 8 bytes, section 3). */
#define VRIFT_VDIR_VERSION 4u
/** Size of the header area; also the alignment of entry_off. */
#define VRIFT_VDIR_HEADER_SIZE 4096u
/** sizeof(struct vrift_vdir_node): the stride of entry_off's array. */
#define VRIFT_VDIR_ENTRY_SIZE 24u
/** sizeof(union vrift_vdir_data): the stride of data_off's array. */
#define VRIFT_VDIR_DATA_SIZE 40u
/** sizeof(struct vrift_vdir_bucket): the stride of bucket_off's array. */
#define VRIFT_VDIR_BUCKET_SIZE 8u
/** Objects are sized in multiples of this many bytes. */
#define VRIFT_VDIR_PAGE 4096u

/** Longest relative path (bytes, without the NUL); PATH_MAX - 1. */
#define VRIFT_VDIR_PATH_MAX 4095u
/** Longest path component, and longest <name> of an object. */
#define VRIFT_VDIR_NAME_MAX 255u
/** Longest symlink target (bytes, without a NUL). */
#define VRIFT_VDIR_TARGET_MAX 4095u
/** header.cas_root size, including its NUL. */
#define VRIFT_VDIR_CAS_ROOT_MAX 256u
/** header.mount_root size, including its NUL. */
#define VRIFT_VDIR_MOUNT_ROOT_MAX 3584u
/** Most entries one object can hold (24-bit index + 1 in a bucket). */
#define VRIFT_VDIR_MAX_ENTRIES 0xFFFFFFu
/** Largest st_size an entry can carry (48 bits). */
#define VRIFT_VDIR_MAX_SIZE 0xFFFFFFFFFFFFull

/** Directory holding every object, and the prefix of their names. */
#define VRIFT_VDIR_SHM_DIR "/dev/shm"
#define VRIFT_VDIR_SHM_PREFIX "vrift."

/** Reader back-off while gen is odd or moving: attempts below
 *  VRIFT_VDIR_SPIN_ATTEMPTS spin (cpu pause), below VRIFT_VDIR_YIELD_ATTEMPTS
 *  sched_yield(), then sleep VRIFT_VDIR_SLEEP_NS each; after
 *  VRIFT_VDIR_READ_ATTEMPTS (about one second in all) the operation fails
 *  with -EAGAIN instead of hanging on a stuck or dead writer. */
#define VRIFT_VDIR_SPIN_ATTEMPTS 128u
#define VRIFT_VDIR_YIELD_ATTEMPTS 1024u
#define VRIFT_VDIR_SLEEP_NS 50000u
#define VRIFT_VDIR_READ_ATTEMPTS 8192u

/* header.flags (VRIFT_VDIR_HF_*) -- changed only inside a seqlock window. */
/** A newer object now lives at the stable name: re-open it. */
#define VRIFT_VDIR_HF_SUPERSEDED 0x1u
/** The mount is gone; there is no successor. */
#define VRIFT_VDIR_HF_RETIRED 0x2u

/* Entry flags (VRIFT_VDIR_F_*), the high 16 bits of size_flags. Unknown
 * bits are carried through untouched. */
/** The file's blob is not in the local CAS yet: ask the daemon to fetch it
 *  before opening <cas_root>/.. (lazy start). */
#define VRIFT_VDIR_F_REMOTE 0x1u
/** The file lives in the mount's upper layer (written since it was
 *  mounted): its bytes, size, times, mode and inode are those of the real
 *  file <home>/upper/<vdir name>/<64 hex of u.digest> (vrift_layout.h), not
 *  of a blob; readers stat and open that file. */
#define VRIFT_VDIR_F_UPPER 0x2u
/** A directory made in the mount: it has a claim directory in the upper
 *  layer (section 6), and its inode number is derived from the claim's
 *  (u.dir.claim_ino_lo/hi, vrift_vdir_claim_ino), so it is the same before
 *  the daemon publishes it (when readers find it by its claim) and after. */
#define VRIFT_VDIR_F_CLAIM 0x4u

/* File type bits of st_mode (same values as <sys/stat.h>, restated so the
 * header is self-contained). Only these three types are stored. */
#define VRIFT_VDIR_S_IFMT 0170000u
#define VRIFT_VDIR_S_IFDIR 0040000u
#define VRIFT_VDIR_S_IFREG 0100000u
#define VRIFT_VDIR_S_IFLNK 0120000u

/* ------------------------------------------------------------------ */
/* Layout                                                             */
/* ------------------------------------------------------------------ */

/** The first 4096 bytes of every object. */
struct vrift_vdir_header {
    uint64_t magic;        /**< VRIFT_VDIR_MAGIC */
    uint32_t version;      /**< VRIFT_VDIR_VERSION */
    uint32_t header_size;  /**< VRIFT_VDIR_HEADER_SIZE */
    VRIFT_VDIR_ATOMIC(uint64_t) gen;   /**< seqlock generation (section 4) */
    VRIFT_VDIR_ATOMIC(uint32_t) flags; /**< VRIFT_VDIR_HF_* */
    uint32_t entry_size;   /**< VRIFT_VDIR_ENTRY_SIZE */
    uint64_t total_size;   /**< bytes in the object (= file size), multiple of 4096 */
    uint64_t hash_seed;    /**< seed of vrift_vdir_hash() for this object */
    uint64_t entry_off;    /**< offset of nodes[]; 4096 */
    uint32_t entry_cap;    /**< slots in nodes[] and data[], <= VRIFT_VDIR_MAX_ENTRIES */
    uint32_t entry_count;  /**< live entries (mutable) */
    uint64_t bucket_off;   /**< offset of buckets[], 8-aligned */
    uint32_t bucket_count; /**< > entry_cap; any value (not a power of two) */
    uint32_t entry_hwm;    /**< slots [entry_hwm, entry_cap) were never used (mutable) */
    uint64_t pool_off;     /**< offset of the string pool */
    uint32_t pool_cap;     /**< bytes in the pool */
    uint32_t pool_used;    /**< bytes [0, pool_used) allocated (mutable) */
    uint32_t pool_garbage; /**< of those, bytes no entry refers to (mutable) */
    uint32_t writer_pid;   /**< pid of the daemon that wrote the object */
    uint64_t created_ns;   /**< CLOCK_REALTIME when this object was built, ns */
    uint64_t volume_id;    /**< random id of the mount, kept across resizes
                                (a shim may derive st_dev from it) */
    uint32_t owner_uid;    /**< uid in the object's name */
    uint32_t reserved0;
    /** Upper-layer creates the daemon has published (section 6): the shim
     *  compares it with its mount's `.issued` count. */
    VRIFT_VDIR_ATOMIC(uint64_t) upper_published;
    uint64_t data_off;     /**< offset of data[], 8-aligned */
    uint8_t  reserved[112];/**< zero */
    char cas_root[VRIFT_VDIR_CAS_ROOT_MAX];     /**< NUL-terminated absolute directory of blobs:
                                                   <cas_root>/<2 hex>/<64 hex>[.x] (.x: executable twin;
                                                   vrift_layout.h) */
    char mount_root[VRIFT_VDIR_MOUNT_ROOT_MAX]; /**< NUL-terminated absolute path of the mount */
};

/** What stat() and the path index read of entry slot i: 24 bytes. */
struct vrift_vdir_node {
    uint64_t size_flags;   /**< low 48 bits: st_size; high 16: VRIFT_VDIR_F_* */
    uint32_t path_off;     /**< pool offset of the NUL-terminated path */
    uint32_t next_sibling; /**< low 24 bits: index + 1 of the next child of the same dir, 0 = end
                                (VRIFT_VDIR_NEXT); high 8: vrift_vdir_data_check() of data[i] */
    uint32_t mtime_sec;    /**< st_mtime (seconds since the epoch, unsigned) */
    uint16_t mode;         /**< st_mode (type | permissions); 0 = free slot */
    uint16_t check;        /**< vrift_vdir_node_check() of everything else */
};

/** The rest of entry slot i: 40 bytes. */
union vrift_vdir_data {
    /** S_IFREG: BLAKE3-256 of the content (the blob's name). */
    uint8_t digest[32];
    /** S_IFREG: the digest again, and the blob file's inode change time
     *  (st_ctim as ns since the epoch; its .x twin's for an executable mode)
     *  when the daemon last knew it good; 0 = unknown. No user can set a
     *  ctime and every write into the inode moves it, so a reader that opens
     *  the blob compares it with one fstat() and, on a mismatch, asks the
     *  daemon (FETCH: re-check, quarantine and fetch again if it changed)
     *  instead of serving it. A hard link moves it too: the daemon then
     *  renews the value here. Unused for VRIFT_VDIR_F_UPPER entries. */
    struct {
        uint8_t digest[32];
        uint64_t ctime_ns;
    } blob;
    /** S_IFDIR: children list (index + 1, 0 = none). */
    struct {
        uint32_t first_child;
        uint32_t nchildren;
        uint32_t last_child; /**< tail of the list, for O(1) appends */
        uint32_t claim_ino_lo; /**< VRIFT_VDIR_F_CLAIM: st_ino of the claim directory */
        uint32_t claim_ino_hi;
        uint32_t reserved[5];
    } dir;
    /** S_IFLNK: the target bytes in the pool (no NUL). */
    struct {
        uint32_t target_off;
        uint32_t target_len;
        uint32_t reserved[8];
    } lnk;
};

/** One slot of the path index (section 3): 8 bytes, all zero when empty. */
struct vrift_vdir_bucket {
    uint32_t slot;     /**< VRIFT_VDIR_BUCKET(tag, index) */
    uint32_t path_off; /**< node[index].path_off, so the node and the path load in parallel */
};

/** Entry slot i whole: node i and data record i, as the reader API returns
 *  it and the writer handles it (a value, not a layout; section 2). */
struct vrift_vdir_entry {
    union vrift_vdir_data u;
    uint64_t size_flags;   /**< node.size_flags */
    uint32_t path_off;     /**< node.path_off */
    uint32_t next_sibling; /**< node.next_sibling (with the data check in the high 8 bits) */
    uint32_t mtime_sec;    /**< node.mtime_sec */
    uint16_t mode;         /**< node.mode */
    uint16_t check;        /**< node.check */
};

/** The sibling link (index + 1, 0 = end) and the data check in node.next_sibling. */
#define VRIFT_VDIR_NEXT(v) ((uint32_t)(v) & 0xFFFFFFu)
#define VRIFT_VDIR_DATA_CHECK(v) ((uint32_t)(v) >> 24)
#define VRIFT_VDIR_NEXT_WITH(link, data_check) (((uint32_t)(data_check) << 24) | ((uint32_t)(link) & 0xFFFFFFu))

#ifdef __cplusplus
static_assert(sizeof(struct vrift_vdir_header) == VRIFT_VDIR_HEADER_SIZE, "header is one page");
static_assert(sizeof(struct vrift_vdir_node) == VRIFT_VDIR_ENTRY_SIZE, "node is 24 bytes");
static_assert(sizeof(union vrift_vdir_data) == VRIFT_VDIR_DATA_SIZE, "data record is 40 bytes");
static_assert(sizeof(struct vrift_vdir_bucket) == VRIFT_VDIR_BUCKET_SIZE, "bucket is 8 bytes");
static_assert(offsetof(struct vrift_vdir_node, check) == offsetof(struct vrift_vdir_node, mode) + 2, "mode, check");
static_assert(offsetof(struct vrift_vdir_header, gen) == 16, "gen offset");
static_assert(offsetof(struct vrift_vdir_header, cas_root) == 256, "cas_root offset");
static_assert(offsetof(struct vrift_vdir_header, upper_published) % 8 == 0, "upper_published aligned");
static_assert(sizeof(std::atomic<uint64_t>) == 8 && std::atomic<uint64_t>::is_always_lock_free, "atomic u64");
#else
_Static_assert(sizeof(struct vrift_vdir_header) == VRIFT_VDIR_HEADER_SIZE, "header is one page");
_Static_assert(sizeof(struct vrift_vdir_node) == VRIFT_VDIR_ENTRY_SIZE, "node is 24 bytes");
_Static_assert(sizeof(union vrift_vdir_data) == VRIFT_VDIR_DATA_SIZE, "data record is 40 bytes");
_Static_assert(sizeof(struct vrift_vdir_bucket) == VRIFT_VDIR_BUCKET_SIZE, "bucket is 8 bytes");
_Static_assert(offsetof(struct vrift_vdir_node, check) == offsetof(struct vrift_vdir_node, mode) + 2, "mode, check");
_Static_assert(offsetof(struct vrift_vdir_header, gen) == 16, "gen offset");
_Static_assert(offsetof(struct vrift_vdir_header, cas_root) == 256, "cas_root offset");
_Static_assert(offsetof(struct vrift_vdir_header, upper_published) % 8 == 0, "upper_published aligned");
_Static_assert(sizeof(_Atomic uint64_t) == 8 && sizeof(_Atomic uint32_t) == 4, "plain-sized atomics");
#endif

/* ------------------------------------------------------------------ */
/* Pure helpers (static inline: identical in writer and reader)       */
/* ------------------------------------------------------------------ */

/** size_flags <-> (st_size, flags). */
static inline uint64_t vrift_vdir_size_of(uint64_t size_flags) { return size_flags & VRIFT_VDIR_MAX_SIZE; }
static inline uint32_t vrift_vdir_flags_of(uint64_t size_flags) { return (uint32_t)(size_flags >> 48); }
static inline uint64_t vrift_vdir_size_flags(uint64_t size, uint32_t flags)
{
    return (size & VRIFT_VDIR_MAX_SIZE) | ((uint64_t)(flags & 0xFFFFu) << 48);
}

/** Inode number a reader reports for entry slot `index`: index + 2, so the
 *  root is 2 (as on ext4) and 0 never appears. */
/** upper_published's top bit: the writer is awake (section 6). */
#define VRIFT_VDIR_UPPER_AWAKE (1ull << 63)

static inline uint64_t vrift_vdir_ino(uint32_t index) { return (uint64_t)index + 2u; }
/** The inode number of a directory made in the mount, from its claim
 *  directory's (VRIFT_VDIR_F_CLAIM): above every slot's vrift_vdir_ino. */
static inline uint64_t vrift_vdir_claim_ino(uint64_t claim_st_ino) { return (1ull << 40) | claim_st_ino; }
/** The inode number readers report for entry `e` at slot `index`. */
static inline uint64_t vrift_vdir_entry_ino(const struct vrift_vdir_entry *e, uint32_t index)
{
    if ((e->mode & VRIFT_VDIR_S_IFMT) == VRIFT_VDIR_S_IFDIR && (vrift_vdir_flags_of(e->size_flags) & VRIFT_VDIR_F_CLAIM))
        return vrift_vdir_claim_ino((uint64_t)e->u.dir.claim_ino_lo | (uint64_t)e->u.dir.claim_ino_hi << 32);
    return vrift_vdir_ino(index);
}

static inline uint64_t vrift_vdir__mum(uint64_t a, uint64_t b)
{
#if defined(__x86_64__) && defined(__GNUC__)
    /* the same product, without the stack round trip gcc gives a
     * __uint128_t in a loop (the hash's loop runs on every lookup) */
    uint64_t lo, hi;
    __asm__("mulq %3" : "=a"(lo), "=d"(hi) : "a"(a), "rm"(b) : "cc");
    return lo ^ hi;
#else
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
#endif
}

static inline uint64_t vrift_vdir__load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t vrift_vdir__load32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/**
 * The VDir hash: 64 bits of `len` bytes at `p` under `seed` (wyhash-style
 * multiply-fold, 16 bytes per step; the last 16 bytes are read as two
 * overlapping words, short inputs as overlapping 4-byte words, so no
 * variable-length copies). Deterministic across processes on a host; not
 * cryptographic (the seed is random per mount, and full-path comparison
 * makes collisions harmless). Reads exactly the bytes [p, p + len).
 */
static inline uint64_t vrift_vdir_hash(const void *p, size_t len, uint64_t seed)
{
    const uint64_t k0 = 0xa0761d6478bd642fULL, k1 = 0xe7037ed1a0b428dbULL, k2 = 0x8ebc6af09c88c6e3ULL;
    const unsigned char *s = (const unsigned char *)p;
    uint64_t h = seed ^ k0 ^ ((uint64_t)len * k2);
    uint64_t a = 0, b = 0;
    if (len <= 16) {
        if (len >= 4) {
            const size_t q = (len >> 3) << 2; /* 0 or 4 */
            a = (vrift_vdir__load32(s) << 32) | vrift_vdir__load32(s + q);
            b = (vrift_vdir__load32(s + len - 4) << 32) | vrift_vdir__load32(s + len - 4 - q);
        } else if (len > 0) {
            a = ((uint64_t)s[0] << 16) | ((uint64_t)s[len >> 1] << 8) | s[len - 1];
        }
    } else {
        size_t n = len;
        while (n > 16) {
            h = vrift_vdir__mum(vrift_vdir__load64(s) ^ k1, vrift_vdir__load64(s + 8) ^ h);
            s += 16;
            n -= 16;
        }
        a = vrift_vdir__load64(s + n - 16);
        b = vrift_vdir__load64(s + n - 8);
    }
    h = vrift_vdir__mum(a ^ k1, b ^ h ^ k2);
    return vrift_vdir__mum(h ^ k0, (uint64_t)len ^ k1) ^ h;
}

/**
 * The path index's hash (section 3), also the seed of the entry checks:
 * 64 bits of the `len` bytes at `p` under `seed`, taken sixteen bytes at a
 * time from the start, the last 0-15 bytes zero-padded to a block, the
 * length folded in at the end:
 *     h = seed ^ K0
 *     h = mum(w0 ^ K1, w1 ^ h)     for each whole block (w0, w1: its words)
 *     h = mum(t0 ^ K2, t1 ^ h)     for the padded tail (t0, t1), always
 *     return mum(h ^ K0, len ^ K1) ^ h
 * with vrift_vdir_hash()'s constants. Why not vrift_vdir_hash(): nothing
 * here depends on the length until the end, so a reader hashes a
 * NUL-terminated path in the same pass that finds its end (the shim's
 * stat(): no strlen() first). Reads exactly the bytes [p, p + len).
 */
static inline uint64_t vrift_vdir_path_hash(const void *p, size_t len, uint64_t seed)
{
    const uint64_t k0 = 0xa0761d6478bd642fULL, k1 = 0xe7037ed1a0b428dbULL, k2 = 0x8ebc6af09c88c6e3ULL;
    const unsigned char *s = (const unsigned char *)p;
    uint64_t h = seed ^ k0;
    size_t i = 0;
    for (; i + 16 <= len; i += 16)
        h = vrift_vdir__mum(vrift_vdir__load64(s + i) ^ k1, vrift_vdir__load64(s + i + 8) ^ h);
    unsigned char t[16] = {0};
    memcpy(t, s + i, len - i);
    h = vrift_vdir__mum(vrift_vdir__load64(t) ^ k2, vrift_vdir__load64(t + 8) ^ h);
    return vrift_vdir__mum(h ^ k0, (uint64_t)len ^ k1) ^ h;
}

/** Home bucket of hash `h` among `n` buckets: ((h mod 2^32) * n) >> 32. */
static inline uint32_t vrift_vdir_bucket_of(uint64_t h, uint32_t n)
{
    return (uint32_t)(((uint64_t)(uint32_t)h * n) >> 32);
}

/** The 8-bit tag stored in a bucket: the top byte of the hash. */
static inline uint32_t vrift_vdir_tag_of(uint64_t h) { return (uint32_t)(h >> 56); }

/** bucket.slot for entry `index` with `tag`; 0 is the empty bucket. */
#define VRIFT_VDIR_BUCKET(tag, index) ((((uint32_t)(tag)) << 24) | ((uint32_t)(index) + 1u))
#define VRIFT_VDIR_BUCKET_TAG(b) ((uint32_t)(b) >> 24)
/** Entry index of a non-empty bucket.slot (may be out of range in garbage). */
#define VRIFT_VDIR_BUCKET_INDEX(b) (((uint32_t)(b) & 0xFFFFFFu) - 1u)

/**
 * The node checksum stored in node.check: the top 16 bits of one
 * multiply-fold (stat() verifies it on every call; one multiply is what
 * it can afford; the fold mixes every input bit into the high ones)
 *     mum(size_flags ^ rotl64(path_off | next_sibling << 32, 31) ^ K1,
 *         (mtime_sec | mode << 32) ^ path_hash)
 * chained with vrift_vdir_hash(target bytes) for symlinks, where K1 is
 * vrift_vdir_hash()'s second constant and path_hash = vrift_vdir_path_hash(path,
 * strlen(path), header.hash_seed), the value the index uses (a lookup
 * hashes the path once). `target`/`target_len` are the symlink's target
 * bytes, or NULL/0. next_sibling includes the data check (section 2).
 */
static inline uint16_t vrift_vdir_node_check(uint64_t size_flags, uint32_t path_off, uint32_t next_sibling,
                                             uint32_t mtime_sec, uint32_t mode, uint64_t path_hash,
                                             const void *target, size_t target_len)
{
    const uint64_t k1 = 0xe7037ed1a0b428dbULL;
    const uint64_t link = (uint64_t)path_off | (uint64_t)next_sibling << 32;
    uint64_t h = vrift_vdir__mum(size_flags ^ ((link << 31) | (link >> 33)) ^ k1,
                                 ((uint64_t)mtime_sec | (uint64_t)(mode & 0xFFFFu) << 32) ^ path_hash);
    if (target_len != 0)
        h = vrift_vdir_hash(target, target_len, h);
    return (uint16_t)(h >> 48);
}

/** vrift_vdir_node_check() of a whole entry's node fields. */
static inline uint16_t vrift_vdir_entry_check(const struct vrift_vdir_entry *e, uint64_t path_hash,
                                              const void *target, size_t target_len)
{
    return vrift_vdir_node_check(e->size_flags, e->path_off, e->next_sibling, e->mtime_sec, e->mode, path_hash,
                                 target, target_len);
}

/**
 * The data record's 8-bit check kept in the high byte of node.next_sibling:
 * the top 8 bits of mum(w0 ^ K1, w1 ^ path_hash) ^ mum(w2 ^ K2, w3 ^ path_hash)
 * ^ mum(w4 ^ K3, path_hash ^ K1), w0..w4 the record's five 64-bit words in
 * host order.
 */
static inline uint32_t vrift_vdir_data_check(const union vrift_vdir_data *d, uint64_t path_hash)
{
    const uint64_t k1 = 0xe7037ed1a0b428dbULL, k2 = 0x8ebc6af09c88c6e3ULL, k3 = 0x589965cc75374cc3ULL;
    const unsigned char *p = (const unsigned char *)d;
    const uint64_t h = vrift_vdir__mum(vrift_vdir__load64(p) ^ k1, vrift_vdir__load64(p + 8) ^ path_hash) ^
                       vrift_vdir__mum(vrift_vdir__load64(p + 16) ^ k2, vrift_vdir__load64(p + 24) ^ path_hash) ^
                       vrift_vdir__mum(vrift_vdir__load64(p + 32) ^ k3, path_hash ^ k1);
    return (uint32_t)(h >> 56);
}

/**
 * The name of a path's file in the upper layer (section 6): 32 bytes, four
 * vrift_vdir_hash() lanes of the relative path under fixed seeds (not
 * per-mount: the name must not change when a VDir is rebuilt).
 */
static inline void vrift_vdir_upper_name(const char *rel, size_t len, uint8_t out[32])
{
    static const uint64_t seeds[4] = {0x7570706572000001ULL, 0x9e3779b97f4a7c15ULL, 0xc2b2ae3d27d4eb4fULL, 0x165667b19e3779f9ULL};
    for (int i = 0; i < 4; i++) {
        uint64_t h = vrift_vdir_hash(rel, len, seeds[i]);
        memcpy(out + 8 * i, &h, 8);
    }
}

#ifdef __cplusplus
}
#endif
#endif /* VRIFT_VDIR_H */
