/*
 * farm.h — a mount's link farm (vrift_layout.h, VRIFT_LAYOUT_FARM_DIR):
 *
 *     <home>/farm/<vdir name>/<rel>
 *
 * real names for the files of a mount, for readers the shim cannot serve
 * (the dynamic loader opens libraries with its own internal open). An
 * entry is a HARD LINK to what serves the file: the CAS blob
 * <cas_root>/<2 hex>/<64 hex> (its executable twin <...>.x when the entry
 * is executable and the twin exists), or, for an entry flagged
 * VRIFT_VDIR_F_UPPER, the upper file <home>/upper/<vdir name>/<64 hex>.
 * <home> is the parent of the VDir's cas_root; every file is on the same
 * filesystem, so a link costs no bytes. Entries are made on demand, named
 * as the reader asked (a virtual symlink libfoo.so -> libfoo.so.1 gives a
 * farm file libfoo.so), and replaced (link to a temp name + rename) when
 * they no longer are the file that serves the path.
 *
 * Raw system calls only (rawsys.h), no libc, no malloc: this is compiled
 * into the audit library (audit.c), which links no libc at all.
 */
#ifndef VRIFT_FARM_H
#define VRIFT_FARM_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>

#include "rawsys.h"
#include "vdir_reader.h"
#include "vrift_layout.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

/** One mount, as the farm needs it. */
struct vrift_farm {
    vrift_vdir_reader *r;
    size_t rootlen, farmlen, homelen;
    char name[VRIFT_VDIR_NAME_MAX + 1];     /**< the VDir's name ($VRIFT_VDIRS) */
    char cas_root[VRIFT_VDIR_CAS_ROOT_MAX]; /**< from the VDir header */
    char home[VRIFT_VDIR_CAS_ROOT_MAX];     /**< parent of cas_root */
    char root[VRIFT_VDIR_MOUNT_ROOT_MAX];   /**< the mount root, no trailing '/' */
    char farm[VRIFT_VDIR_CAS_ROOT_MAX + sizeof VRIFT_LAYOUT_FARM_DIR + VRIFT_VDIR_NAME_MAX + 2]; /**< <home>/farm/<name> */
};

static inline size_t vrift_farm__len(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

/* Appends s (n bytes) at buf[*at]; 0, or -ENAMETOOLONG (buf stays NUL-terminated). */
static inline int vrift_farm__put(char *buf, size_t cap, size_t *at, const char *s, size_t n)
{
    if (*at + n + 1 > cap)
        return -ENAMETOOLONG;
    for (size_t i = 0; i < n; i++)
        buf[*at + i] = s[i];
    *at += n;
    buf[*at] = '\0';
    return 0;
}

static inline int vrift_farm__puts(char *buf, size_t cap, size_t *at, const char *s)
{
    return vrift_farm__put(buf, cap, at, s, vrift_farm__len(s));
}

static inline int vrift_farm__linkat(const char *from, const char *to)
{
    return (int)VR_SYS5(SYS_linkat, AT_FDCWD, from, AT_FDCWD, to, 0);
}

static inline int vrift_farm__rename(const char *from, const char *to)
{
    return (int)VR_SYS5(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, 0);
}

/**
 * Fills *f for the open VDir `r` named `name`.
 * @return 0, or -EINVAL (no absolute mount root / cas_root), -ENAMETOOLONG, or the reader's error
 */
static inline int vrift_farm_init(struct vrift_farm *f, const char *name, vrift_vdir_reader *r)
{
    struct vrift_vdir_info info;
    int rc = vrift_vdir_info(r, &info);
    if (rc != 0)
        return rc;
    if (info.mount_root[0] != '/' || info.cas_root[0] != '/')
        return -EINVAL;
    f->r = r;
    size_t n = 0;
    if (vrift_farm__puts(f->name, sizeof f->name, &n, name) < 0)
        return -ENAMETOOLONG;
    n = 0;
    if (vrift_farm__puts(f->root, sizeof f->root, &n, info.mount_root) < 0)
        return -ENAMETOOLONG;
    while (n > 1 && f->root[n - 1] == '/')
        f->root[--n] = '\0';
    f->rootlen = n;
    n = 0;
    if (vrift_farm__puts(f->cas_root, sizeof f->cas_root, &n, info.cas_root) < 0)
        return -ENAMETOOLONG;
    /* home: the parent of cas_root */
    n = 0;
    vrift_farm__puts(f->home, sizeof f->home, &n, info.cas_root);
    while (n > 1 && f->home[n - 1] == '/')
        n--;
    while (n > 1 && f->home[n - 1] != '/')
        n--;
    while (n > 1 && f->home[n - 1] == '/')
        n--;
    f->home[n] = '\0';
    f->homelen = n;
    if (n <= 1)
        return -EINVAL;
    n = 0;
    if (vrift_farm__put(f->farm, sizeof f->farm, &n, f->home, f->homelen) < 0 ||
        vrift_farm__puts(f->farm, sizeof f->farm, &n, "/" VRIFT_LAYOUT_FARM_DIR "/") < 0 ||
        vrift_farm__puts(f->farm, sizeof f->farm, &n, f->name) < 0)
        return -ENAMETOOLONG;
    f->farmlen = n;
    return 0;
}

/**
 * The real file that serves regular-file entry `res` of mount `f`: the
 * upper file, the executable twin, or the blob; *st receives its stat.
 * @return 0, or -ENOENT when it is not here (a remote blob: the loader
 *         cannot wait for a fetch), -ENAMETOOLONG
 */
static inline int vrift_farm_target(const struct vrift_farm *f, const struct vrift_vdir_result *res, char *out,
                                    size_t cap, struct stat *st)
{
    char hex[VRIFT_LAYOUT_DIGEST_HEX];
    char rel[VRIFT_LAYOUT_BLOB_REL_SIZE];
    vrift_layout_hex(res->entry.u.digest, hex);
    size_t n = 0;
    if (res->flags & VRIFT_VDIR_F_UPPER) {
        if (vrift_farm__put(out, cap, &n, f->home, f->homelen) < 0 ||
            vrift_farm__puts(out, cap, &n, "/" VRIFT_LAYOUT_UPPER_DIR "/") < 0 ||
            vrift_farm__puts(out, cap, &n, f->name) < 0 || vrift_farm__put(out, cap, &n, "/", 1) < 0 ||
            vrift_farm__put(out, cap, &n, hex, sizeof hex) < 0)
            return -ENAMETOOLONG;
    } else {
        if (res->flags & VRIFT_VDIR_F_REMOTE)
            return -ENOENT;
        int exec = (res->mode & 0111) != 0;
        for (;; exec = 0) {
            n = 0;
            size_t rl = vrift_layout_blob_rel(hex, exec, rel);
            if (vrift_farm__puts(out, cap, &n, f->cas_root) < 0 || vrift_farm__put(out, cap, &n, "/", 1) < 0 ||
                vrift_farm__put(out, cap, &n, rel, rl) < 0)
                return -ENAMETOOLONG;
            if (!exec || vr_fstatat(AT_FDCWD, out, st, 0) == 0)
                break;
        }
    }
    int rc = vr_fstatat(AT_FDCWD, out, st, 0);
    if (rc < 0)
        return rc;
    return S_ISREG(st->st_mode) ? 0 : -ENOENT;
}

/* Makes every directory of farm path `path` (up to its last '/') below the
 * home: farm/ and farm/<name>/ 0700, the mount's directories 0755 inside
 * them. A non-directory in the way (a file the mount since replaced by a
 * directory) is removed. */
static inline int vrift_farm__mkdirs(const struct vrift_farm *f, char *path)
{
    size_t last = vrift_farm__len(path);
    while (last > 0 && path[last - 1] != '/')
        last--;
    for (size_t i = f->homelen + 1; i < last; i++) {
        if (path[i] != '/')
            continue;
        path[i] = '\0';
        int rc = vr_mkdirat(AT_FDCWD, path, i <= f->farmlen ? 0700 : 0755);
        if (rc == -EEXIST) {
            struct stat st;
            if (vr_fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode) &&
                vr_unlinkat(AT_FDCWD, path, 0) == 0)
                rc = vr_mkdirat(AT_FDCWD, path, 0755);
            else
                rc = 0;
        }
        path[i] = '/';
        if (rc < 0 && rc != -EEXIST)
            return rc;
    }
    return 0;
}

/**
 * Makes sure the farm entry for `rel` (relative to the mount root, clean)
 * is a hard link to `target` (whose stat is *tst), replacing a stale one
 * atomically. Writes the entry's path into out.
 * @return the length of out, or -errno
 */
static inline int vrift_farm_link(const struct vrift_farm *f, const char *rel, size_t rellen, const char *target,
                                  const struct stat *tst, char *out, size_t cap)
{
    size_t n = 0;
    if (rellen == 0 || vrift_farm__put(out, cap, &n, f->farm, f->farmlen) < 0 ||
        vrift_farm__put(out, cap, &n, "/", 1) < 0 || vrift_farm__put(out, cap, &n, rel, rellen) < 0)
        return -ENAMETOOLONG;
    struct stat st;
    int rc = vr_fstatat(AT_FDCWD, out, &st, AT_SYMLINK_NOFOLLOW);
    if (rc == 0 && st.st_dev == tst->st_dev && st.st_ino == tst->st_ino)
        return (int)n;
    if (rc == -ENOENT || rc == -ENOTDIR) {
        if (rc == -ENOTDIR || (rc = vrift_farm__linkat(target, out)) == -ENOENT || rc == -ENOTDIR) {
            rc = vrift_farm__mkdirs(f, out);
            if (rc == 0)
                rc = vrift_farm__linkat(target, out);
        }
        if (rc == 0)
            return (int)n;
        if (rc != -EEXIST)
            return rc;
    }
    /* there, but stale (or raced): link beside it, rename over it */
    static unsigned seq;
    char tmp[PATH_MAX];
    char num[24];
    size_t t = 0;
    if (vrift_farm__put(tmp, sizeof tmp, &t, out, n) < 0 || vrift_farm__puts(tmp, sizeof tmp, &t, ".vrift-tmp.") < 0)
        return -ENAMETOOLONG;
    uint64_t ids[2] = {(uint64_t)vr_getpid(), (uint64_t)__atomic_fetch_add(&seq, 1, __ATOMIC_RELAXED)};
    for (int k = 0; k < 2; k++) {
        size_t d = 0;
        uint64_t v = ids[k];
        do
            num[d++] = (char)('0' + v % 10);
        while ((v /= 10) != 0);
        if (t + d + 2 > sizeof tmp)
            return -ENAMETOOLONG;
        if (k)
            tmp[t++] = '.';
        while (d)
            tmp[t++] = num[--d];
        tmp[t] = '\0';
    }
    rc = vrift_farm__linkat(target, tmp);
    if (rc < 0)
        return rc;
    rc = vrift_farm__rename(tmp, out);
    if (rc < 0) {
        vr_unlinkat(AT_FDCWD, tmp, 0);
        return rc;
    }
    return (int)n;
}

#endif /* VRIFT_FARM_H */
