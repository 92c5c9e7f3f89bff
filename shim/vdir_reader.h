/*
 * vdir_reader.h — the VDir reader library (C11), used by the shim.
 *
 * The layout and protocols it implements are specified in vrift_vdir.h.
 * Properties every function below keeps, so the LD_PRELOAD shim can call
 * them from any libc wrapper (including from signal handlers and between
 * fork() and exec()):
 *   - no malloc/free and no locks anywhere (memory comes from mmap);
 *   - lookup/list/info make no system call unless the object was
 *     superseded (re-open + mmap) or they must back off (sched_yield);
 *   - thread-safe: any number of threads may share one reader;
 *   - errno-neutral: errno is the same on return as on entry; errors are
 *     returned as negative errno values (0 = success);
 *   - a reader never trusts the mapping: every index and offset is checked
 *     against the geometry validated at map time (itself checked against
 *     the file size from fstat), so a corrupt or half-written object makes
 *     calls fail (-EIO, -EAGAIN), never read out of bounds.
 */
#ifndef VRIFT_VDIR_READER_H
#define VRIFT_VDIR_READER_H

#include "vrift_vdir.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef VRIFT_VDIR_API
#define VRIFT_VDIR_API __attribute__((visibility("default")))
#endif

/** An open VDir (opaque). Created by vrift_vdir_open(), freed by vrift_vdir_close(). */
typedef struct vrift_vdir_reader vrift_vdir_reader;

/** Most objects one reader maps over its life (1 + resizes it follows);
 *  past that, calls that must follow a resize fail with -ENOMEM. Resizes at
 *  least double an area, so ~56 can happen before hitting the 2^24-entry /
 *  4 GiB limits. */
#define VRIFT_VDIR_READER_MAPS 64u

/** What vrift_vdir_lookup() copies out: one consistent snapshot of an entry. */
struct vrift_vdir_result {
    struct vrift_vdir_entry entry; /**< the raw record (check verified); entry.u.digest is
                                        the content digest of a regular file */
    uint64_t ino;        /**< vrift_vdir_ino(index): stable while the entry exists */
    uint64_t size;       /**< st_size (a symlink's is its target length) */
    uint64_t gen;        /**< the (even) generation the snapshot was taken at */
    uint32_t index;      /**< entry slot */
    uint32_t mode;       /**< st_mode */
    uint32_t flags;      /**< VRIFT_VDIR_F_* */
    uint32_t mtime_sec;  /**< st_mtime */
    uint32_t nchildren;  /**< directories: number of children; else 0 */
    uint32_t target_len; /**< symlinks: bytes in target; else 0 */
    char target[VRIFT_VDIR_TARGET_MAX + 1]; /**< symlinks: the target, NUL-terminated; else "" */
};

/** One record of a vrift_vdir_list() buffer (like linux_dirent64). */
struct vrift_vdir_dirent {
    uint64_t ino;     /**< vrift_vdir_ino() of the child */
    uint16_t reclen;  /**< bytes from this record to the next (multiple of 8) */
    uint16_t namelen; /**< bytes in name, without the NUL */
    uint16_t mode;    /**< the child's st_mode (type: mode & VRIFT_VDIR_S_IFMT) */
    uint16_t reserved;
    char name[];      /**< the child's name (one component), NUL-terminated */
};

/** Bytes one record with a `namelen`-byte name takes. */
#define VRIFT_VDIR_DIRENT_SIZE(namelen) ((((size_t)16 + (size_t)(namelen) + 1u) + 7u) & ~(size_t)7u)

/** The record after `d`. Iterate `count` records from the start of the buffer. */
static inline const struct vrift_vdir_dirent *vrift_vdir_dirent_next(const struct vrift_vdir_dirent *d)
{
    return (const struct vrift_vdir_dirent *)(const void *)((const char *)d + d->reclen);
}

/** What vrift_vdir_info() copies out. */
struct vrift_vdir_info {
    char path[VRIFT_VDIR_PATH_MAX + 1];            /**< the stable name this reader opens */
    char cas_root[VRIFT_VDIR_CAS_ROOT_MAX];        /**< see struct vrift_vdir_header */
    char mount_root[VRIFT_VDIR_MOUNT_ROOT_MAX];
    uint64_t gen;          /**< generation of the snapshot (even) */
    uint64_t hash_seed;
    uint64_t volume_id;
    uint64_t created_ns;
    uint64_t mapped_bytes; /**< size of the current object */
    uint32_t entry_count, entry_cap, bucket_count;
    uint32_t pool_cap, pool_used, pool_garbage;
    uint64_t retries;      /**< this reader so far: attempts that had to be retried */
    uint64_t remaps;       /**< this reader so far: resizes/replacements followed */
};

/**
 * Formats the stable name of object `name` for the calling user:
 * "/dev/shm/vrift.<getuid()>.<name>".
 *
 * @param name   object name: 1..VRIFT_VDIR_NAME_MAX bytes of [A-Za-z0-9._-],
 *               not "." or ".."
 * @param buf    receives the NUL-terminated path
 * @param buflen size of buf
 * @return 0; -EINVAL if name is not a valid object name; -ERANGE if buf is
 *         too small.
 */
VRIFT_VDIR_API int vrift_vdir_shm_path(const char *name, char *buf, size_t buflen);

/**
 * Opens a VDir read-only.
 *
 * @param name_or_path  an object name (no '/': see vrift_vdir_shm_path()),
 *                      or the path of the object (contains a '/'; this is
 *                      the path re-opened to follow a resize)
 * @param out           receives the reader on success (untouched on error)
 * @return 0, or:
 *   -EINVAL   bad name, path longer than VRIFT_VDIR_PATH_MAX, or the file
 *             is not a VDir (bad magic, size or geometry);
 *   -EPROTONOSUPPORT  a VDir of another layout version;
 *   -EPERM    not a regular file owned by the effective uid, or group/other
 *             may access it;
 *   -ENOENT, -EACCES, -ELOOP, -EMFILE, -ENOMEM ...  from open()/mmap().
 */
VRIFT_VDIR_API int vrift_vdir_open(const char *name_or_path, vrift_vdir_reader **out);

/**
 * Looks up one path and copies its entry out.
 *
 * @param r     an open reader
 * @param path  the path relative to the mount root exactly as stored:
 *              no leading or trailing '/', "" (len 0) for the root. Need not
 *              be NUL-terminated; may be NULL when len is 0.
 * @param len   bytes in path
 * @param out   receives the snapshot on success (unspecified on error)
 * @return 0 when found, or:
 *   -ENOENT        no such path (a definite miss, consistent snapshot);
 *   -ENAMETOOLONG  len > VRIFT_VDIR_PATH_MAX;
 *   -EINVAL        r or out is NULL;
 *   -EAGAIN        no consistent snapshot after VRIFT_VDIR_READ_ATTEMPTS
 *                  (the writer is stuck inside a write, or died there);
 *   -EIO           the object is corrupt (a consistent snapshot failed
 *                  validation or its check);
 *   -ESTALE        the mount was retired, or the object was superseded
 *                  and the stable name no longer holds a newer one;
 *   -ENOMEM        VRIFT_VDIR_READER_MAPS exhausted following resizes;
 *   other -errno   from re-opening the stable name after a resize.
 */
VRIFT_VDIR_API int vrift_vdir_lookup(vrift_vdir_reader *r, const char *path, size_t len,
                                     struct vrift_vdir_result *out);

/** What vrift_vdir_stat() copies out: the fields of a struct vrift_vdir_result stat() needs. */
struct vrift_vdir_stat {
    uint64_t ino;       /**< vrift_vdir_ino(index) */
    uint64_t size;      /**< st_size (a symlink's is its target length) */
    uint32_t mode;      /**< st_mode */
    uint32_t flags;     /**< VRIFT_VDIR_F_* */
    uint32_t mtime_sec; /**< st_mtime */
    uint32_t index;     /**< entry slot */
};

/**
 * vrift_vdir_lookup() for stat(): the same lookup, snapshot and checks
 * (a symlink's target is checked in place), but only the stat fields are
 * copied out: no entry, no target. Same arguments and errors.
 */
VRIFT_VDIR_API int vrift_vdir_stat(vrift_vdir_reader *r, const char *path, size_t len, struct vrift_vdir_stat *out);

/**
 * Lists a directory: copies one struct vrift_vdir_dirent per child (names
 * only; no "." or "..") into buf, all from one consistent snapshot, in the
 * directory's list order.
 *
 * @param r       an open reader
 * @param dir     the directory's path (as for vrift_vdir_lookup()); "" = root
 * @param len     bytes in dir
 * @param buf     receives the records (8-aligned buffer); may be NULL if buflen is 0
 * @param buflen  size of buf
 * @param needed  if not NULL, receives the bytes the whole listing takes
 *                (on success and on -ERANGE)
 * @param count   if not NULL, receives the number of children (on success
 *                and on -ERANGE)
 * @return 0, or -ERANGE when buflen < *needed (buf holds a prefix of whole
 *         records; call again with a bigger buffer), -ENOTDIR when the path
 *         is not a directory, and the errors of vrift_vdir_lookup().
 */
VRIFT_VDIR_API int vrift_vdir_list(vrift_vdir_reader *r, const char *dir, size_t len, void *buf,
                                   size_t buflen, size_t *needed, uint32_t *count);

/**
 * Copies the object's description and this reader's counters.
 *
 * @return 0, or -EINVAL (NULL argument), -EAGAIN, -ESTALE, -ENOMEM as for
 *         vrift_vdir_lookup().
 */
VRIFT_VDIR_API int vrift_vdir_info(vrift_vdir_reader *r, struct vrift_vdir_info *out);

/**
 * Formats the CAS path of a blob: "<cas_root>/<2 hex>/<64 hex>" and, when
 * `exec` is non-zero, the executable twin "<...>.x" (vrift_layout.h).
 *
 * @return 0, -ERANGE if buf is too small, -EINVAL on a NULL argument.
 */
VRIFT_VDIR_API int vrift_vdir_blob_path(vrift_vdir_reader *r, const uint8_t digest[32], int exec,
                                        char *buf, size_t buflen);

/**
 * Unmaps every object this reader mapped and frees it. No other thread may
 * be using `r`, during or after the call. NULL is ignored.
 */
VRIFT_VDIR_API void vrift_vdir_close(vrift_vdir_reader *r);

/** header.upper_published of the current mapping (vrift_vdir.h section 6), acquire, without the AWAKE bit. */
VRIFT_VDIR_API uint64_t vrift_vdir_upper_published(vrift_vdir_reader *r);
/** header.upper_published as stored (with VRIFT_VDIR_UPPER_AWAKE), seq_cst. */
VRIFT_VDIR_API uint64_t vrift_vdir_upper_word(vrift_vdir_reader *r);

#ifdef __cplusplus
}
#endif

#endif /* VRIFT_VDIR_READER_H */
