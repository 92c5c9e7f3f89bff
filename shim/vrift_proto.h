/*
 * vrift_proto.h — the control-socket protocol between vriftd and its
 * clients (the `vrift` CLI and the LD_PRELOAD shim).
 *
 * This header is the specification. src/node/control/protocol.ts mirrors it in
 * TypeScript, and test/daemon/proto.spec.ts checks that both encode the
 * same frames byte for byte.
 *
 * TRANSPORT
 *   A Unix stream socket, $VRIFT_HOME/run/vriftd.sock (vrift_layout.h), mode 0600 inside a
 *   0700 directory: only the owner of the store can connect.
 *
 * FRAMES
 *   Every message, either way, is one frame: a 16-byte header followed by
 *   `length` bytes of payload. All integers are little-endian.
 *
 *     offset size field
 *     0      4    magic    VRIFT_PROTO_MAGIC ("VRFT")
 *     4      2    version  VRIFT_PROTO_VERSION
 *     6      2    type     a VRIFT_MSG_* request, or VRIFT_MSG_OK / VRIFT_MSG_ERROR
 *     8      4    id       chosen by the client, echoed in the reply
 *     12     4    length   payload bytes, at most VRIFT_PROTO_MAX_PAYLOAD
 *
 *   The payload is a sequence of fields, each
 *
 *     offset size field
 *     0      2    tag      a VRIFT_F_* tag
 *     2      4    length   bytes of value
 *     6      len  value    strings are UTF-8 without a terminator; integers
 *                          are u32 or u64 little-endian as the tag says
 *
 *   Fields may come in any order; unknown tags are ignored (so a newer
 *   client can add fields). A tag may repeat where a request says so.
 *
 * REQUESTS AND REPLIES
 *   The server answers each request with exactly one frame of the same id:
 *   VRIFT_MSG_OK with the fields listed below, or VRIFT_MSG_ERROR with
 *   VRIFT_F_ERR_CODE (e.g. "ERR_VRIFT_MOUNT_EXISTS") and VRIFT_F_ERR_MSG.
 *   Requests on one connection are answered in order.
 *
 *   A frame with a bad magic, an unsupported version or a length above the
 *   limit gets a VRIFT_MSG_ERROR reply (code ERR_VRIFT_PROTO_*) and the
 *   connection is closed; a malformed payload gets an error reply and the
 *   connection stays usable. Either way the daemon keeps running.
 */
#ifndef VRIFT_PROTO_H
#define VRIFT_PROTO_H

#include <stdint.h>
#include <string.h>

#define VRIFT_PROTO_MAGIC 0x54465256u /* "VRFT" read as little-endian u32 */
#define VRIFT_PROTO_VERSION 1
#define VRIFT_PROTO_HEADER_SIZE 16
#define VRIFT_PROTO_MAX_PAYLOAD (1u << 20)
#define VRIFT_PROTO_FIELD_HEADER_SIZE 6

/* Message types. Requests are < 0x100; replies are 0x100 and 0x101. */
enum vrift_msg_type {
  VRIFT_MSG_HELLO = 1,    /* -> OK: PID, VERSION (daemon build), HOME */
  VRIFT_MSG_STATUS = 2,   /* -> OK: JSON (the daemon's status document) */
  VRIFT_MSG_MOUNT = 3,    /* TREE (id or ref), PATH (absolute dir), [PROJECT] -> OK: TREE (id), SHM_NAME */
  VRIFT_MSG_UNMOUNT = 4,  /* PATH -> OK */
  /* 5: retired (COMMIT of a staged file; writes now go to the mount's upper
     layer, see VRIFT_MSG_UPPER). Errors of the change requests (7-11, 15,
     21, 22) end in an errno name: ERR_VRIFT_MOUNTFS_ENOTEMPTY, ..._EEXIST ... */
  VRIFT_MSG_FETCH = 6,    /* DIGEST, [PATH], [REL], [MODE], [STREAM] -> OK: CTIME once the blob is in
                             the local CAS and checked (and, for an executable MODE, its exec twin);
                             with REL (the entry that was opened), the entry's ctime in the VDir is
                             renewed too; with STREAM, OK: PATH as soon as a large blob can be read
                             while it streams in */
  VRIFT_MSG_MKDIR = 7,    /* PATH, REL, MODE -> OK */
  VRIFT_MSG_UNLINK = 8,   /* PATH, REL, [ASYNC] -> OK (files and symlinks; with ASYNC the client
                             has unlinked the path's upper file itself: the entry goes only
                             if no newer file took its place) */
  VRIFT_MSG_RMDIR = 9,    /* PATH, REL -> OK (empty directories) */
  VRIFT_MSG_RENAME = 10,  /* PATH, REL (from), REL2 (to) -> OK */
  VRIFT_MSG_SYMLINK = 11, /* PATH, REL, TARGET -> OK */
  VRIFT_MSG_SNAPSHOT = 12,/* PATH -> OK: TREE (id of the mount's current state) */
  VRIFT_MSG_SHUTDOWN = 13,/* -> OK, then the daemon stops */
  VRIFT_MSG_MOUNTS = 14,  /* -> OK: one MOUNT_ENTRY per mount ("<shm name>\t<path>\t<tree>") */
  VRIFT_MSG_CHMOD = 15,   /* PATH, REL, MODE -> OK (trees keep a file's executable bit only) */
  /* The cluster (src/node/cluster/cluster.ts); on a node without a cluster secret
     each fails with ERR_VRIFT_CLUSTER_OFF. */
  VRIFT_MSG_NODE_JOIN = 16,     /* ADDR (a libp2p multiaddr) -> OK: JSON {"peer","addr"}; the
                                   address is remembered and dialed again after a restart */
  VRIFT_MSG_NODE_LEAVE = 17,    /* [ADDR] -> OK: JSON {"forgot":[…],"left"}: forget one address,
                                   or (without ADDR) leave the mesh until the next join */
  VRIFT_MSG_NODE_PEERS = 18,    /* [TREE (digest)], [DIGEST, repeated, at most 16384] -> OK: JSON
                                   {"self","left","peers":[…]}, best first for that tree/those blobs */
  VRIFT_MSG_NODE_PENALIZE = 19, /* PEER (peer id), [ERR_MSG (why)] -> OK: the peer sent wrong bytes;
                                   it is avoided for cluster.penaltyMs */
  /* An operation of the CLI run by the daemon (src/node/ops/: save, restore,
     pull, push, materialize), so every command of the host shares its one
     resolver. */
  VRIFT_MSG_OP = 20,            /* JSON {"op","args","env","mntns"} -> any number of EVENT frames
                                   (same id) while it runs, then OK: JSON (its result) or ERROR.
                                   ERROR ERR_VRIFT_OP_ELSEWHERE: run it in the client's own process
                                   (the client's configuration or mount namespace differs).
                                   The operation is abandoned if the client disconnects. */
  /* Writes inside a mount (src/node/mount/upper.ts). */
  VRIFT_MSG_UPPER = 21,         /* PATH, REL, DIGEST (64 hex: a file the client copied up in
                                   <home>/upper/<vdir name>/), BASE (the lower digest it was
                                   copied from) -> OK once REL names that file in the VDir; ESTALE
                                   when REL is no longer that lower file (copied up by another
                                   process meanwhile: use its file). Creates are not requests:
                                   they are announced in the journal (below). */
  VRIFT_MSG_LINK = 22,          /* PATH, REL (existing file), REL2 (new name) -> OK: REL2 names
                                   the same upper file (a hard link) or the same blob */
  /* Programs the shim cannot see (static, Go, setuid) run in a private mount
     namespace where each mount is an overlayfs (shim/ns/vrift-ns.c,
     src/node/mount/ns.ts). */
  VRIFT_MSG_NSFARM = 23,        /* PATH (mount root) -> OK: PATH (a new run directory under
                                   $VRIFT_HOME/tmp/: lower/ = a hard-link farm of the mount as it
                                   is now, upper/ and work/ empty), SIZE (entries linked) */
  VRIFT_MSG_NSMERGE = 24,       /* PATH (mount root), RUN_DIR (the run directory) -> OK: JSON
                                   {"files","dirs","symlinks","removed"}: upper/ (files, dirs,
                                   symlinks, whiteouts, opaque dirs) applied to the mount; the run
                                   directory is then deleted */
  VRIFT_MSG_JOURNAL = 25,       /* PATH (mount root), [NOW], [SEQ, CHANGE, REL, MODE] -> NO reply: the
                                   mount's journal has news (a wake-up), or, with SEQ, one record
                                   the client could not append to it (a full disk). A client
                                   exiting with unread replies would reset its connection and lose
                                   what it sent after them, hence no reply. */
  VRIFT_MSG_OK = 0x100,
  VRIFT_MSG_ERROR = 0x101,      /* ERR_CODE, ERR_MSG, [HINT], [EXIT (u32: the CLI's exit status)] */
  VRIFT_MSG_EVENT = 0x102       /* JSON: progress, a warning or a notice of a running request
                                   (not its reply: the reply still follows) */
};

/* Field tags. */
enum vrift_field_tag {
  VRIFT_F_TREE = 1,       /* string: tree id or ref */
  VRIFT_F_PATH = 2,       /* string: absolute path (a mount root) */
  VRIFT_F_PROJECT = 3,    /* string */
  VRIFT_F_REL = 4,        /* string: path relative to the mount root */
  /* 5: retired (STAGED) */
  VRIFT_F_MODE = 6,       /* u32 */
  VRIFT_F_DIGEST = 7,     /* string: 64 hex */
  VRIFT_F_JSON = 8,       /* string: a JSON document */
  VRIFT_F_ERR_CODE = 9,   /* string */
  VRIFT_F_ERR_MSG = 10,   /* string */
  VRIFT_F_SHM_NAME = 11,  /* string: VDir name (see vrift_vdir.h) */
  VRIFT_F_TARGET = 12,    /* string: symlink target */
  VRIFT_F_REL2 = 13,      /* string: second relative path (rename target) */
  VRIFT_F_PID = 14,       /* u32 */
  VRIFT_F_VERSION = 15,   /* string */
  VRIFT_F_SIZE = 16,      /* u64 */
  VRIFT_F_HOME = 17,      /* string: $VRIFT_HOME of the daemon */
  VRIFT_F_MOUNT_ENTRY = 18,/* string, repeated */
  VRIFT_F_ADDR = 19,      /* string: a libp2p multiaddr */
  VRIFT_F_PEER = 20,      /* string: a libp2p peer id */
  VRIFT_F_HINT = 21,      /* string: how to fix what an ERROR reports */
  VRIFT_F_EXIT = 22,      /* u32: the exit status a CLI should end with for an ERROR */
  VRIFT_F_BASE = 23,      /* string: 64 hex, the lower digest a copy-up replaces (UPPER) */
  VRIFT_F_RUN_DIR = 24,   /* string: a namespaced run's directory (NSMERGE) */
  /* 25: retired (ASYNC) */
  VRIFT_F_SEQ = 26,       /* u64: an announcement's number in the mount's .issued count (JOURNAL) */
  VRIFT_F_CHANGE = 27,    /* u32: a VRIFT_CHANGE_* (JOURNAL) */
  VRIFT_F_NOW = 28,       /* u32 1: a reader waits for the journal: work through it at once (JOURNAL) */
  VRIFT_F_STREAM = 29,    /* u32 1: the opener can read a large blob while it arrives (FETCH): the reply
                             may carry PATH, a file of the blob's full size whose reads the kernel holds
                             until their range is verified (docs/lazy.md "Large files stream") */
  VRIFT_F_CTIME = 30      /* u64: a blob file's inode change time in ns (FETCH's reply: the blob the
                             opener should open -- its .x twin for an executable MODE -- as the daemon
                             checked it; vrift_vdir.h, union vrift_vdir_data) */
};

/*
 * The journal: changes the shim made itself in a mount's upper layer and
 * announces without waiting (src/node/mount/journal.ts, shim/journal.c).
 * Each writing process appends records to its own file,
 * <home>/upper/<vdir name>/.journal/<pid>.<nonce>, one write() each
 * (O_APPEND). A record, little-endian:
 *
 *   offset size field
 *     0      4    len      24 + rellen: the whole record
 *     4      4    change   a VRIFT_CHANGE_*
 *     8      8    seq      its number: the value of the mount's .issued
 *                          count after the client added one for it
 *    16      4    mode     CHANGE_FILE: the file's permission bits; CHANGE_DIR:
 *                          the mode asked for; else 0
 *    20      4    rellen
 *    24 rellen    rel      the path relative to the mount root (no NUL)
 *
 * The change is made first (the real file or directory exists, or is
 * gone), then counted, then recorded: the daemon applies records in seq
 * order, each against the upper layer as it then is (the real files are
 * the truth, a record says which path to look at), and stores in the
 * VDir header how far it got (vrift_vdir.h section 6).
 */
#define VRIFT_JOURNAL_REC_HEADER 24u
enum vrift_change {
  VRIFT_CHANGE_FILE = 1, /* made REL's upper file (O_CREAT|O_EXCL) */
  VRIFT_CHANGE_DIR = 2,  /* made REL's claim directory (mkdir) */
  VRIFT_CHANGE_GONE = 3  /* unlinked REL's upper file */
};

/* Encoding helpers (header-only, no allocation). Each returns the number of
 * bytes written, or 0 when `cap` is too small. */

static inline void vrift_proto_put_u16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}
static inline void vrift_proto_put_u32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void vrift_proto_put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t vrift_proto_get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t vrift_proto_get_u32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t vrift_proto_get_u64(const uint8_t *p) {
  return (uint64_t)vrift_proto_get_u32(p) | ((uint64_t)vrift_proto_get_u32(p + 4) << 32);
}

/* Writes a frame header for a payload of `length` bytes. */
static inline size_t vrift_proto_header(uint8_t *out, size_t cap, uint16_t type, uint32_t id, uint32_t length) {
  if (cap < VRIFT_PROTO_HEADER_SIZE) return 0;
  vrift_proto_put_u32(out, VRIFT_PROTO_MAGIC);
  vrift_proto_put_u16(out + 4, VRIFT_PROTO_VERSION);
  vrift_proto_put_u16(out + 6, type);
  vrift_proto_put_u32(out + 8, id);
  vrift_proto_put_u32(out + 12, length);
  return VRIFT_PROTO_HEADER_SIZE;
}

/* Appends a field with a raw value. */
static inline size_t vrift_proto_field(uint8_t *out, size_t cap, uint16_t tag, const void *value, uint32_t len) {
  if (cap < VRIFT_PROTO_FIELD_HEADER_SIZE + (size_t)len) return 0;
  vrift_proto_put_u16(out, tag);
  vrift_proto_put_u32(out + 2, len);
  if (len) memcpy(out + VRIFT_PROTO_FIELD_HEADER_SIZE, value, len);
  return VRIFT_PROTO_FIELD_HEADER_SIZE + len;
}

static inline size_t vrift_proto_field_str(uint8_t *out, size_t cap, uint16_t tag, const char *s) {
  return vrift_proto_field(out, cap, tag, s, (uint32_t)strlen(s));
}

static inline size_t vrift_proto_field_u32(uint8_t *out, size_t cap, uint16_t tag, uint32_t v) {
  uint8_t b[4];
  vrift_proto_put_u32(b, v);
  return vrift_proto_field(out, cap, tag, b, 4);
}

/*
 * Finds the first field `tag` in a payload. On success sets *value and *len
 * and returns 1; returns 0 when absent, -1 when the payload is malformed
 * (a field runs past the end).
 */
static inline int vrift_proto_find(const uint8_t *payload, size_t plen, uint16_t tag, const uint8_t **value, uint32_t *len) {
  size_t off = 0;
  while (off < plen) {
    if (plen - off < VRIFT_PROTO_FIELD_HEADER_SIZE) return -1;
    uint16_t t = vrift_proto_get_u16(payload + off);
    uint32_t l = vrift_proto_get_u32(payload + off + 2);
    if (plen - off - VRIFT_PROTO_FIELD_HEADER_SIZE < l) return -1;
    if (t == tag) {
      *value = payload + off + VRIFT_PROTO_FIELD_HEADER_SIZE;
      *len = l;
      return 1;
    }
    off += VRIFT_PROTO_FIELD_HEADER_SIZE + l;
  }
  return 0;
}

#endif /* VRIFT_PROTO_H */
