/*
 * shim.h — internals of libvrift.so, the LD_PRELOAD shim (not installed,
 * not an API). docs/shim.md is the tour; this header is the map:
 *
 *   shim.c    initialisation, the real functions (dlsym RTLD_NEXT), the
 *             active/fallback state, warnings
 *   mounts.c  which VDirs are mounted where; path resolution (absolute,
 *             relative to the cwd or a directory fd, virtual symlinks);
 *             the working directory (virtual when inside a mount)
 *   vfd.c     the table of virtual descriptors: fd -> what it stands for
 *   stat.c    stat family, access, readlink, xattrs, statfs, realpath
 *   dir.c     virtual DIR streams, scandir, getdents64, chdir/getcwd
 *   open.c    open family, stdio opens, close/dup/fcntl
 *   upper.c   the mount's upper layer: one real file per written path
 *   write.c   changes of names and metadata: mkdir, unlink, rename, link,
 *             truncate, chmod, times, xattrs, locks
 *   request.c change requests to the daemon; detached mode when it is gone
 *   ipc.c     the control-socket connection to vriftd
 *   exec.c    exec family, posix_spawn, dlopen: virtual executables,
 *             keeping the shim in children, refusing what cannot see it
 *
 * Rules every file keeps: no malloc and no locks on any path that can run
 * during initialisation; the shim's own system calls go through rawsys.h;
 * errno is preserved on success and set only the way libc would set it;
 * every symbol is hidden except the wrappers (SHIM_EXPORT).
 */
#ifndef VRIFT_SHIM_H
#define VRIFT_SHIM_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>
#include <utime.h>
#include <linux/close_range.h>
#include <sys/sysmacros.h>
#include <time.h>

#include "rawsys.h"
#include "vdir_reader.h"
#include "vrift_layout.h"

#define SHIM_EXPORT __attribute__((visibility("default")))
#define SHIM_HIDDEN __attribute__((visibility("hidden")))
#define VR_LIKELY(x) __builtin_expect(!!(x), 1)
#define VR_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define VR_TLS __thread __attribute__((tls_model("initial-exec")))

/* ---- shim.c ------------------------------------------------------- */

/* One `real_<name>` pointer per interposed function (shim_fns.h). */
#define SHIM_FN(ret, name, params) extern ret(*real_##name) params SHIM_HIDDEN;
#include "shim_fns.h"
#undef SHIM_FN

/** 1 once initialised with at least one mount and a live daemon. */
extern _Atomic int vr_on;
/** Non-zero while this thread is inside the shim's own initialisation. */
extern VR_TLS int vr_in_init;

/** Initialises once (idempotent, thread-safe). */
void vr_init(void);

/**
 * The gate of every wrapper: initialises if needed, returns 1 when the
 * shim should look at this call (mounts active), 0 to pass it straight to
 * libc.
 */
static inline int vr_active(void)
{
    if (VR_UNLIKELY(vr_in_init))
        return 0;
    int on = atomic_load_explicit(&vr_on, memory_order_acquire);
    if (VR_UNLIKELY(on < 0)) { /* not initialised yet */
        vr_init();
        on = atomic_load_explicit(&vr_on, memory_order_acquire);
    }
    return on > 0;
}

/** Writes "vrift: <msg>\n" to stderr (raw write, no stdio). */
void vr_say(const char *a, const char *b, const char *c);

/**
 * The daemon is gone (or a request timed out): print ONE warning for the
 * whole `vrift run` (a marker file keeps children quiet), then send every
 * call to the real filesystem for the rest of this process.
 */
void vr_fallback(const char *why);

/** 1 for the first process of this `vrift run` to ask (a marker file): it says the one warning. */
int vr_first_in_run(void);

/** Periodic liveness check of the daemon (at most every 100 ms, cheap otherwise). */
void vr_check_daemon(void);

/** $VRIFT_HOME of the mounts (dirname of the VDirs' cas_root). */
extern char vr_home[PATH_MAX];
extern char vr_lib_path[PATH_MAX]; /* absolute path of libvrift.so (for children) */

/* ---- mounts.c ----------------------------------------------------- */

#define VR_MAX_MOUNTS 32

struct vr_mount {
    vrift_vdir_reader *r;
    size_t rootlen;
    dev_t dev;                 /* st_dev reported for the mount's entries */
    _Atomic int ph_fd;         /* a cached descriptor of the real mount root (high, close-on-exec), or -1 */
    _Atomic int ph_known;      /* identity of the placeholder directory (the real mount root) */
    uint64_t ph_dev, ph_ino;
    _Atomic int cas_fd;        /* a cached O_PATH descriptor of cas_root (high, close-on-exec), or -1 */
    _Atomic int upper_fd;      /* a cached O_PATH descriptor of the upper directory, or -1 */
    _Atomic uint64_t *_Atomic issued; /* <upper>/.issued mapped shared (journal.c), or NULL until first use */
    _Atomic int journal_fd;    /* this process's journal file (high, close-on-exec), -1, or VR_JOURNAL_BROKEN */
    _Atomic int journal_pid;   /* the process that opened journal_fd (a child opens its own) */
    char root[VRIFT_VDIR_MOUNT_ROOT_MAX];
    char upper[PATH_MAX];      /* <home>/upper/<vdir name> (vrift_layout.h), or "" */
    char name[VRIFT_VDIR_NAME_MAX + 1]; /* the VDir's name ($VRIFT_VDIRS) */
    char cas_root[VRIFT_VDIR_CAS_ROOT_MAX]; /* the VDir's cas_root (fixed for its life) */
};

extern struct vr_mount vr_mounts[VR_MAX_MOUNTS];
extern int vr_nmounts;

/** Opens the VDirs named in $VRIFT_VDIRS: the number opened, or -1 if any could not be. */
int vr_mounts_init(void);

enum vr_kind {
    VP_PASS = 0, /* not in a mount: call libc with the caller's own arguments */
    VP_REAL = 1, /* not in a mount, but reached through a virtual base or symlink:
                    call libc with the absolute path in `rel` */
    VP_VIRT = 2, /* in mount `mount`: `err` 0 = found (res), -ENOENT = missing
                    with its parent a directory (creatable), other -errno = fail */
};

/* resolve flags */
#define VR_FOLLOW 0x1   /* follow a final symlink */
#define VR_MUST_DIR 0x2 /* (internal) the path ended in '/' */
#define VR_CREATING 0x4 /* an open with O_CREAT: a missing last component is not looked for
                           in the upper layer (the create's O_EXCL finds it: one lookup less) */

struct vr_path {
    int kind;
    int err;
    int creatable; /* VP_VIRT, err == -ENOENT: only the last component is missing */
    int must_dir;  /* the path ended in '/' */
    int mount;
    size_t rellen;
    uint64_t seen;                 /* VP_VIRT: vr_upper_seen() before the last lookup */
    int upper_stat_ok;             /* VP_VIRT, upper entry: upper_stat holds its file's lstat() (vr_upper_check) */
    char rel[PATH_MAX];            /* VP_VIRT: relative path; VP_REAL: absolute path */
    struct vrift_vdir_result res;  /* VP_VIRT, err == 0 */
    struct stat upper_stat;
};

/**
 * Resolves (dirfd, path) the way the kernel would, against the mounts.
 * Errors that belong to the caller (path NULL, dirfd unknown) yield VP_PASS
 * so libc reports them.
 */
void vr_resolve(int dirfd, const char *path, int flags, struct vr_path *out);

/**
 * stat() of an absolute path, when that is simple (mounts.c): VR_FAST_DONE
 * (*st filled), VR_FAST_ENOENT (no such entry), VR_FAST_PASS (outside
 * every mount: libc answers), or VR_FAST_SLOW (vr_resolve() must decide).
 */
#define VR_FAST_SLOW 0
#define VR_FAST_DONE 1
#define VR_FAST_PASS 2
#define VR_FAST_ENOENT 3
int vr_stat_fast(const char *path, int follow, struct stat *st);

/** Fills *st for a found entry. */
void vr_fill_stat(const struct vr_path *p, struct stat *st);
void vr_fill_stat_entry(int mount, uint64_t ino, uint32_t mode, uint64_t size, uint32_t mtime, struct stat *st);

/** Absolute path of entry `rel` of `mount` into buf (NUL-terminated); its length or -ENAMETOOLONG. */
int vr_abs_of(int mount, const char *rel, size_t rellen, char *buf, size_t cap);

/** Splits a clean absolute path into (mount, rel); -1 when it is in no mount. */
int vr_split_abs(const char *abs, size_t len, size_t *rel_off);
/** Fetches a blob into the local CAS through the daemon. 0 or -errno. */
int vr_fetch(int mount, const uint8_t digest[32], uint32_t mode);
/**
 * vr_fetch for a reader that can start before a large blob has arrived:
 * `partial` gets the path of the file it streams into ("" when the blob is
 * whole in the CAS by now). Reads of that file wait in the kernel until
 * their range is verified (docs/lazy.md "Large files stream").
 */
int vr_fetch_stream(int mount, const uint8_t digest[32], uint32_t mode, char *partial, size_t cap);
/**
 * vr_fetch_stream for an open of entry `rel` (NULL: none) whose blob failed
 * the open-time check: the daemon re-checks the blob (re-hash, quarantine
 * and fetch again if it changed) and renews the entry's ctime in the VDir.
 * *ctime_ns gets the ctime of the blob as the daemon checked it (0: not said).
 */
int vr_fetch_for(int mount, const char *rel, size_t rellen, const uint8_t digest[32], uint32_t mode, char *partial,
                 size_t cap, uint64_t *ctime_ns);
/**
 * A file of a partial mount (docs/lazy.md "Partial metadata") names the
 * digest 0…0 until it is first opened: the daemon learns its digest from
 * the tree's lazy index (FETCH with `rel`), publishes it with the blob's
 * ctime, and `res` is read again from the VDir. 0 when `res` names a
 * digest (already, or now); -EIO when it cannot be had.
 */
int vr_learn_digest(int mount, const char *rel, size_t rellen, struct vrift_vdir_result *res);
/** Whether `res` is a file of a partial mount whose digest is not learned yet (0…0; never an upper file). */
static inline int vr_digest_unknown(const struct vrift_vdir_result *res)
{
    static const uint8_t none[32];
    return !(res->flags & VRIFT_VDIR_F_UPPER) && memcmp(res->entry.u.digest, none, sizeof none) == 0;
}
/**
 * The blob of lower file p, opened read-only with `fl` (its .x twin for an
 * executable mode) and checked with one fstat against its VDir entry (size,
 * and the blob's ctime as the daemon last knew it good); a mismatch asks
 * the daemon (vr_fetch_for) and is never served. With `stream`, a large
 * blob still arriving may be opened as its partial file. fd or -errno (EIO:
 * no good copy can be had).
 */
int vr_open_lower_blob(const struct vr_path *p, int fl, int stream);

/** True when `abs` (absolute, clean) is a strict ancestor of some mount root. */
int vr_is_mount_ancestor(const char *abs, size_t len);

/* The working directory as the program sees it (possibly inside a mount). */
void vr_cwd_init(void);
size_t vr_cwd_get(char *buf, size_t cap);      /* length, 0 if unknown */
void vr_cwd_set(const char *abs, size_t len);
void vr_cwd_refresh(void);                        /* from the kernel */
int vr_cwd_is_virtual(void);

/* ---- vfd.c -------------------------------------------------------- */

enum vr_vfd_kind {
    VFD_NONE = 0,
    VFD_DIR = 1,     /* a virtual directory (placeholder fd on the mount root dir) */
    VFD_FILE = 2,    /* a virtual file opened for reading (fd on its CAS blob) */
    VFD_REALDIR = 4, /* a real directory that is an ancestor of a mount (rel = absolute path) */
};

struct vr_vfd {
    _Atomic int refs;      /* descriptors sharing this description (dup) */
    int kind;
    int mount;
    uint32_t mode;
    uint64_t ino;
    uint64_t size;
    uint32_t mtime;
    uint64_t real_dev, real_ino; /* identity of the real file behind the fd */
    uint64_t dirpos;       /* getdents64 position */
    size_t rellen;
    char rel[PATH_MAX];
};

/** Allocates a description (refs = 1); NULL when out of memory. */
struct vr_vfd *vr_vfd_new(void);
/** Drops one reference; frees at zero. */
void vr_vfd_put(struct vr_vfd *v);
/** The description behind fd, or NULL. Not a reference: valid until fd is closed. */
struct vr_vfd *vr_vfd_get(int fd);
/** Binds fd to v (takes the caller's reference); replaces (and puts) any old binding. */
void vr_vfd_set(int fd, struct vr_vfd *v);
/** Fills v as a `kind` (VFD_FILE, VFD_DIR) for the virtual entry p resolved to. */
void vr_vfd_describe(struct vr_vfd *v, int kind, const struct vr_path *p);
/** Unbinds fd and returns its description (the caller owns that reference), or NULL. */
struct vr_vfd *vr_vfd_take(int fd);
/** Calls fn(fd, v) for every bound fd (used at exec and exit). */
void vr_vfd_each(void (*fn)(int fd, struct vr_vfd *v, void *arg), void *arg);

/* ---- stat.c ------------------------------------------------------- */

int vr_stat_path(int dirfd, const char *path, int flags, struct stat *st, int *handled);
int vr_fstat_fd(int fd, struct stat *st, int *handled);
int vr_statx(int dirfd, const char *path, int flags, struct statx *sx, int *rc);

/* ---- dir.c -------------------------------------------------------- */

/** Opens a placeholder descriptor for a virtual directory (flags: O_CLOEXEC honoured). */
int vr_dir_placeholder(int mount, int oflags);

/* ---- open.c ------------------------------------------------------- */

/** open(2) inside a mount. Returns fd or -errno. */
int vr_open_virtual(struct vr_path *p, int flags, mode_t mode);

/* ---- upper.c ------------------------------------------------------ */

/** Is the found entry a file of the upper layer (VRIFT_VDIR_F_UPPER)? */
int vr_path_is_upper(const struct vr_path *p);
/** open() for writing / truncating / creating inside a mount: the path's upper file (made if needed). fd or -errno. */
int vr_upper_open(struct vr_path *p, int flags, mode_t mode);
/** Opens the upper file of an upper entry with `flags` (O_CREAT/O_EXCL dropped). fd or -errno. */
int vr_upper_open_existing(const struct vr_path *p, int flags);
/** Makes the lower file p an upper file (`empty`: without copying its bytes); p is looked up again. 0 or -errno. */
int vr_copy_up(struct vr_path *p, int empty);
/** lstat() of an upper entry's real file. 0 or -errno. */
int vr_upper_stat(const struct vr_path *p, struct stat *st);
/** Absolute path of upper file `name` of `mount`; its length or -errno. */
int vr_upper_path(int mount, const uint8_t name[32], char *buf, size_t cap);
/** p missed in the VDir: if the path's upper file exists (announced, not yet published), p becomes it. 1 if so. */
int vr_upper_claim(struct vr_path *p);
/** p found an upper entry: if its real file is gone (unlinked, not yet unpublished), p becomes missing;
 *  if it is there, its lstat() is kept in p (upper_stat_ok). */
void vr_upper_check(struct vr_path *p);
/** An intermediate directory missing from the VDir: made just now (its claim directory exists)? res filled if so. */
int vr_upper_claimed_dir(int mount, const char *rel, size_t rellen, struct vrift_vdir_result *res);
/** mkdir() inside a mount: the claim directory at once, the entry announced. 0 or -errno. */
int vr_upper_mkdir(struct vr_path *p, mode_t mode);
/** unlink() of an upper file: the real file at once, the entry announced. 0 or -errno. */
int vr_upper_unlink(struct vr_path *p);

/* ---- journal.c ---------------------------------------------------- */

/** journal_fd after a failed append: this process announces over the socket. */
#define VR_JOURNAL_BROKEN (-2)
/**
 * Announces a change (VRIFT_CHANGE_*) the caller has just made in the
 * mount's upper layer: counted, recorded in the journal, the daemon woken
 * if it may be idle. 0, or -EROFS when the daemon turned out to be gone
 * (the record stays: a restarted daemon applies it). `seq_out` (may be
 * NULL): the change's number in the mount's count.
 */
int vr_announce(int mount, uint32_t change, const char *rel, size_t rellen, uint32_t mode, uint64_t *seq_out);
/** May the caller make a change to announce? 0, or -EROFS (no upper layer, or the daemon is gone). */
int vr_may_announce(int mount);
/** Do changes announced in this mount wait to be published? (then a VDir miss may be an upper file) */
int vr_upper_pending(int mount);
/**
 * How far the daemon has published this mount's changes: read before a
 * VDir lookup, then given to vr_upper_pending_since() if the lookup missed.
 * (Asking vr_upper_pending() after the miss is not enough: an entry
 * published between the lookup and that question would be missed by the
 * one and not pending for the other.)
 */
uint64_t vr_upper_seen(int mount);
/** Were changes announced that the VDir may not have held when it was read, after vr_upper_seen() gave `seen`? */
int vr_upper_pending_since(int mount, uint64_t seen);
/** Waits (at most ~2 s without progress) until every change announced so far is published. */
void vr_upper_settle(int mount);

/* ---- write.c ------------------------------------------------------ */

/** Before a lock: a descriptor of a file read from the CAS is moved onto the path's own upper file. 0 or -errno. */
int vr_own_inode(int fd);

/* ---- request.c ---------------------------------------------------- */

struct vr_reply;

struct vr_req {
    size_t n;
    int bad;
    uint8_t b[3 * PATH_MAX + 256];
};
/** Starts a request about (mount, rel): PATH = the mount root, REL. */
void vr_req_mount(struct vr_req *p, int mount, const char *rel, size_t rellen);
void vr_req_str(struct vr_req *p, uint16_t tag, const char *s, size_t len);
void vr_req_u32(struct vr_req *p, uint16_t tag, uint32_t v);
void vr_req_u64(struct vr_req *p, uint16_t tag, uint64_t v);
/** A 32-byte name or digest as 64 hex. */
void vr_req_hex(struct vr_req *p, uint16_t tag, const uint8_t bytes[32]);
/** Sends a change request: 0, the daemon's -errno, or -EROFS when the daemon is gone (detached). */
int vr_request(uint16_t type, struct vr_req *p, struct vr_reply *rep);
/** Sends a message the daemon does not answer (JOURNAL): 0, or -EROFS when it is gone. */
int vr_request_async(uint16_t type, struct vr_req *p);
/** May a change be made now? 0, or -EROFS while the daemon is gone (and not due for a retry). */
int vr_may_change(void);
/** 1 while the daemon cannot be reached (reads go on from the last VDir; changes fail with EROFS). */
extern _Atomic int vr_detached;
/** The daemon is unreachable: one warning, then EROFS for changes until it answers again. */
void vr_detach(const char *why);
/** The daemon answered again. */
void vr_reattached(void);

/* ---- ipc.c -------------------------------------------------------- */

struct vr_reply {
    int ok;               /* 1: VRIFT_MSG_OK */
    int err;              /* errno derived from the error code (when !ok) */
    char code[96];
    char digest[65];
    uint64_t size;
    uint64_t ctime_ns;    /* CTIME of an OK reply (FETCH: the checked blob's ctime), or 0 */
    char path[PATH_MAX];  /* PATH of an OK reply (FETCH with STREAM: the partial blob), or "" */
};


/* 1 once this process (or its parent before fork) had a connection to the daemon. */
int vr_ipc_ever_connected(void);
/** The connection is alive (no EOF/HUP pending); reconnects after fork. */
int vr_ipc_alive(void);
/**
 * One request: `fields` is a pre-encoded payload. Returns 0 with *rep
 * filled, or -errno when the daemon could not be reached (the caller then
 * falls back).
 */
int vr_ipc_call(uint16_t type, const uint8_t *payload, size_t len, struct vr_reply *rep);
/** Sends a message the daemon does not answer (JOURNAL; a full socket is the back-pressure). 0 or -errno. */
int vr_ipc_send(uint16_t type, const uint8_t *payload, size_t len);
/** Is `fd` the shim's own socket? */
int vr_ipc_owns_fd(int fd);
/** Is `fd` one of the shim's own descriptors (socket, cached mount-root descriptors)? */
int vr_owns_fd(int fd);
/** The program replaces or closed `fd`: stop using it as our own (the socket is moved). */
void vr_disown_fd(int fd);
/** Lowest descriptor number the shim keeps its own descriptors at or above. */
int vr_high_fd_floor(void);
/** Grows the descriptor table over those numbers at start, while the process has one thread (ipc.c says why). */
void vr_reserve_high_fds(void);
/** Moves the socket away from `fd` (the program wants that number). */
void vr_ipc_evict(int fd);

/* ---- exec.c ------------------------------------------------------- */

void vr_exec_init(void);

/* ---- small helpers (shim.c) --------------------------------------- */

size_t vr_strlen(const char *s);
int vr_memeq(const void *a, const void *b, size_t n);
/** Copies up to cap-1 bytes + NUL; returns the length copied. */
size_t vr_strlcpy(char *dst, const char *src, size_t cap);
/** Decimal of v into buf, NUL-terminated; returns its length. */
size_t vr_utoa(uint64_t v, char *buf);
/** Value of an environment variable from environ (no allocation), or NULL. */
const char *vr_getenv(const char *name);

#endif /* VRIFT_SHIM_H */
