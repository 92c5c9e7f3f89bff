/*
 * vrift_layout.h — where a node keeps its files, how a blob is named on
 * disk, and the constants of the tree encoding.
 *
 * THIS HEADER IS THE SPECIFICATION, and the only place these names and
 * numbers are spelled. The shim (shim/, C) and the addon (native/, C++)
 * include it; the addon exports the values as `layout`, and
 * scripts/gen-layout.mjs writes them into src/gen/layout.ts at build time,
 * so TypeScript reads them without loading the addon at start-up.
 * test/node/layout-golden.spec.ts checks all three against literal golden
 * paths and values.
 *
 * All symbols use the prefix vrift_layout_ / VRIFT_LAYOUT_ (the home and
 * blob files) or VRIFT_TREE_ (the tree encoding).
 *
 * ---------------------------------------------------------------------
 * 1. THE HOME ($VRIFT_HOME, default ~/.vrift; directories 0700)
 * ---------------------------------------------------------------------
 *     cas/ab/<64 hex>        blobs, read-only, sharded by the first byte
 *     cas/ab/<64 hex>.x      executable twins of blobs some tree marks +x
 *     tmp/                   temp files, renamed into cas/ when complete
 *     upper/<vdir name>/     each mount's upper layer: one real file per
 *                            written path (beside cas/: one filesystem)
 *     farm/<vdir name>/      real names (hard links) for the loader and
 *                            programs the shim cannot see
 *     quarantine/            blobs `vrift verify` found corrupt
 *     meta/                  the LMDB environment (metadata)
 *     run/vriftd.sock        the daemon's control socket (vrift_proto.h)
 *     run/shim-warned.<id>   the shim's "warned once" marker of one `vrift run`
 *
 * ---------------------------------------------------------------------
 * 2. BLOB FILES
 * ---------------------------------------------------------------------
 * A blob is named by its BLAKE3-256 digest written as 64 lowercase hex
 * characters. It lives at
 *
 *     <home>/cas/<first 2 hex>/<64 hex>
 *
 * created in tmp/ with mode 0444 and renamed into place once every byte is
 * written (a crash never leaves a half blob under a real name). A tree
 * entry marked executable is materialized by hard link from the blob's
 * executable twin, <...>.x, a 0555 copy of the same bytes (a hard link
 * shares its inode's mode). Every blob and twin has the mtime
 * VRIFT_LAYOUT_BLOB_MTIME_SEC (as in the Nix store): a write into a blob
 * moves its mtime, so one lstat() tells an untouched blob from one that
 * must be hashed again before it is handed out.
 *
 * ---------------------------------------------------------------------
 * 3. THE TREE ENCODING (docs/tree-format.md has the grammar and rules)
 * ---------------------------------------------------------------------
 *     tree  = VRIFT_TREE_HEADER *entry
 *     entry = kind SP mode SP size SP ref SP path NUL [target NUL]
 * kind is one VRIFT_TREE_KIND_* letter, mode the octal VRIFT_TREE_MODE_*
 * digits of the kind, ref a file's 64-hex digest or VRIFT_TREE_NO_REF.
 */
#ifndef VRIFT_LAYOUT_H
#define VRIFT_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ */
/* 1. The home                                                        */
/* ------------------------------------------------------------------ */

/** Blobs and their executable twins. */
#define VRIFT_LAYOUT_CAS_DIR "cas"
/** Temp files of blobs being written (same filesystem as cas/). */
#define VRIFT_LAYOUT_TMP_DIR "tmp"
/** Each mount's upper layer: upper/<vdir name>/<64 hex>, one real file per
 *  written path (the VDir entry carries VRIFT_VDIR_F_UPPER and the name's
 *  32 bytes in place of a digest). Same filesystem as cas/. */
#define VRIFT_LAYOUT_UPPER_DIR "upper"
/** In each upper layer: the count of changes shims announced (a u64 at
 *  offset 0 of a 4096-byte file, mapped shared; vrift_vdir.h section 6). */
#define VRIFT_LAYOUT_UPPER_ISSUED ".issued"
/** In each upper layer: the announcements themselves, one append-only file
 *  per writing process (vrift_proto.h, "The journal"). */
#define VRIFT_LAYOUT_UPPER_JOURNAL ".journal"
/** Each mount's link farm: farm/<vdir name>/<rel>, real names for what the
 *  shim cannot serve (the dynamic loader's searches, static programs):
 *  hard links to CAS blobs and upper files, made on demand. */
#define VRIFT_LAYOUT_FARM_DIR "farm"
/** Corrupt blobs moved aside by `vrift verify`, kept for inspection. */
#define VRIFT_LAYOUT_QUARANTINE_DIR "quarantine"
/** The LMDB environment. */
#define VRIFT_LAYOUT_META_DIR "meta"
/** The daemon's socket and pid file, and the shim's markers. */
#define VRIFT_LAYOUT_RUN_DIR "run"
/** The control socket, in run/ (protocol: vrift_proto.h). */
#define VRIFT_LAYOUT_SOCKET_NAME "vriftd.sock"
/** run/<this><VRIFT_RUN_ID>: the shim of one `vrift run` has warned once. */
#define VRIFT_LAYOUT_SHIM_WARNED_PREFIX "shim-warned."

/* ------------------------------------------------------------------ */
/* 2. Blob files                                                      */
/* ------------------------------------------------------------------ */

/** Bytes of a BLAKE3-256 digest. */
#define VRIFT_LAYOUT_DIGEST_BYTES 32
/** Hex characters of a digest as written in names (lowercase). */
#define VRIFT_LAYOUT_DIGEST_HEX 64
/** Hex characters of the digest that name a blob's shard directory. */
#define VRIFT_LAYOUT_SHARD_HEX 2
/** Appended to a blob's name to name its executable twin. */
#define VRIFT_LAYOUT_EXEC_SUFFIX ".x"
/** Permission bits of a blob file. */
#define VRIFT_LAYOUT_BLOB_MODE 0444
/** Permission bits of an executable twin. */
#define VRIFT_LAYOUT_EXEC_MODE 0555
/** Every blob's and twin's mtime, in seconds since the epoch (nanoseconds 0). */
#define VRIFT_LAYOUT_BLOB_MTIME_SEC 1

/** Size of the longest blob path relative to cas/, "ab/<64 hex>.x", with its NUL. */
#define VRIFT_LAYOUT_BLOB_REL_SIZE \
  (VRIFT_LAYOUT_SHARD_HEX + 1 + VRIFT_LAYOUT_DIGEST_HEX + (sizeof VRIFT_LAYOUT_EXEC_SUFFIX - 1) + 1)

/* ------------------------------------------------------------------ */
/* 3. The tree encoding                                               */
/* ------------------------------------------------------------------ */

/** The first bytes of every tree (the version is in it). */
#define VRIFT_TREE_HEADER "vrift-tree 1\n"
/** The first bytes of a tree's names blob (its lazy index's listing): the
 * same entries without the ref field (docs/tree-format.md "Lazy index"). */
#define VRIFT_NAMES_HEADER "vrift-names 1\n"
/** Entry kinds. */
#define VRIFT_TREE_KIND_FILE 'f'
#define VRIFT_TREE_KIND_DIR 'd'
#define VRIFT_TREE_KIND_SYMLINK 'l'
/** The only modes a tree records: a file keeps only its owner's exec bit. */
#define VRIFT_TREE_MODE_FILE 0644
#define VRIFT_TREE_MODE_EXEC 0755
#define VRIFT_TREE_MODE_DIR 0755
#define VRIFT_TREE_MODE_SYMLINK 0777
/** The ref field of a directory or a symlink (only files carry a digest). */
#define VRIFT_TREE_NO_REF "-"
/** Longest entry path in bytes (PATH_MAX - 1), and longest path component. */
#define VRIFT_TREE_PATH_MAX 4095
#define VRIFT_TREE_NAME_MAX 255

/* ------------------------------------------------------------------ */
/* Helpers (static inline: the same code in the shim and the addon)   */
/* ------------------------------------------------------------------ */

/** Writes a digest as VRIFT_LAYOUT_DIGEST_HEX lowercase hex characters (no NUL). */
static inline void vrift_layout_hex(const uint8_t digest[VRIFT_LAYOUT_DIGEST_BYTES], char hex[VRIFT_LAYOUT_DIGEST_HEX])
{
  static const char digits[] = "0123456789abcdef";
  for (int i = 0; i < VRIFT_LAYOUT_DIGEST_BYTES; i++) {
    hex[2 * i] = digits[digest[i] >> 4];
    hex[2 * i + 1] = digits[digest[i] & 15];
  }
}

/**
 * Writes the path of a blob relative to cas/, "<shard>/<64 hex>", and when
 * `exec` is non-zero its twin, "<shard>/<64 hex>.x", NUL-terminated.
 *
 * @param hex  the digest as VRIFT_LAYOUT_DIGEST_HEX lowercase hex characters
 *             (not checked; need not be NUL-terminated)
 * @param out  at least VRIFT_LAYOUT_BLOB_REL_SIZE bytes
 * @return the length written, without the NUL
 */
static inline size_t vrift_layout_blob_rel(const char *hex, int exec, char *out)
{
  size_t n = 0;
  for (int i = 0; i < VRIFT_LAYOUT_SHARD_HEX; i++) out[n++] = hex[i];
  out[n++] = '/';
  for (int i = 0; i < VRIFT_LAYOUT_DIGEST_HEX; i++) out[n++] = hex[i];
  if (exec) {
    for (size_t i = 0; i < sizeof VRIFT_LAYOUT_EXEC_SUFFIX - 1; i++) out[n++] = VRIFT_LAYOUT_EXEC_SUFFIX[i];
  }
  out[n] = '\0';
  return n;
}

#endif /* VRIFT_LAYOUT_H */
