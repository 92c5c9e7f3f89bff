// Every error code vrift raises, in one list: what it means, the usual fix,
// and the status the CLI exits with. VriftError takes only these codes (its
// `code` is an ErrorCode), docs/errors.md is generated from this list
// (scripts/gen-errors-doc.mjs) and test/layout/error-codes.spec.ts checks
// that the code, the list and the doc agree. A new code is one new line here.

/** One code: its meaning, the usual fix, and the exit status(es) the CLI gives. */
export interface ErrorCodeInfo {
  readonly meaning: string;
  readonly fix: string;
  /** Exit status of `vrift` for this code; a list when it depends on the case (the meaning says when). */
  readonly exit: number | readonly number[];
}

/**
 * The errnos a change inside a mount can fail with (src/node/mount/writes.ts).
 * Their codes end in the errno (ERR_VRIFT_MOUNTFS_ENOTEMPTY); shim/ipc.c
 * turns them back into that errno for the program.
 */
export const MOUNTFS_ERRNOS = ['EBUSY', 'EEXIST', 'EINVAL', 'EIO', 'EISDIR', 'ENAMETOOLONG', 'ENOENT', 'ENOTDIR', 'ENOTEMPTY', 'EPERM', 'ESTALE'] as const;
export type MountErrno = (typeof MOUNTFS_ERRNOS)[number];

const MOUNTFS_MEANING: Record<MountErrno, string> = {
  EBUSY: 'a program tried to change the root of a mount',
  EEXIST: 'a program created a path inside a mount that already exists',
  EINVAL: 'a change inside a mount named an invalid path or missed a field',
  EIO: 'the daemon could not apply a change inside a mount',
  EISDIR: 'a program used a directory inside a mount as a file',
  ENAMETOOLONG: 'a path inside a mount is too long',
  ENOENT: 'a program changed a path inside a mount that does not exist',
  ENOTDIR: 'a path component inside a mount is not a directory',
  ENOTEMPTY: 'a program removed or replaced a non-empty directory inside a mount',
  EPERM: 'a program made a change the mount does not allow',
  ESTALE: 'a change inside a mount raced with another one and lost',
};

const mountfs = Object.fromEntries(
  MOUNTFS_ERRNOS.map((e) => [`ERR_VRIFT_MOUNTFS_${e}`, { meaning: MOUNTFS_MEANING[e], fix: `the program sees ${e}; fix what it does, as on any filesystem`, exit: 1 }]),
) as Record<`ERR_VRIFT_MOUNTFS_${MountErrno}`, ErrorCodeInfo>;

const CODES = {
  ERR_VRIFT_ARCHIVE_MALFORMED: { meaning: 'a blob archive (from a peer or a pack) breaks its format', fix: 'the blobs that arrived whole were kept; fetch the rest again', exit: 2 },
  ERR_VRIFT_ARCHIVE_TRUNCATED: { meaning: 'a blob archive ended before its end frame', fix: 'the blobs that arrived whole were kept; fetch the rest again', exit: 2 },
  ERR_VRIFT_ARG_BLOB: { meaning: '`vrift cat` got neither a blob digest nor <tree>:<path>', fix: 'use a 64-hex digest, or <tree|ref>:<path>', exit: 2 },
  ERR_VRIFT_ARG_SIZE: { meaning: 'a size argument or setting is not a size', fix: 'use a number with an optional unit: 500M, 10G, 1T', exit: 2 },
  ERR_VRIFT_BAO_CHANGED: { meaning: 'a blob file changed while its verification outboard was computed', fix: 'blobs are immutable: find what outside vrift changed the file', exit: 2 },
  ERR_VRIFT_BAO_MISMATCH: { meaning: 'streamed bytes do not match their digest (verified prefix kept)', fix: 'the source sent corrupt bytes: fetch the blob from another source', exit: 2 },
  ERR_VRIFT_CAS_CORRUPT: { meaning: 'a stored blob no longer matches its digest; it was quarantined', fix: 'restore or pull the tree again, or ingest the files again; `vrift verify` checks the store', exit: 2 },
  ERR_VRIFT_CAS_DIGEST_MISMATCH: { meaning: 'bytes offered to the store do not hash to the digest they were sent as', fix: 'the source sent corrupt or wrong bytes; they were discarded: fetch again', exit: 2 },
  ERR_VRIFT_CAS_MISSING: { meaning: 'a blob is not in the local store (nor, when fetched, in any reachable tier)', fix: 'pull or restore the tree from a shared tier, or push it from a node that has it', exit: 1 },
  ERR_VRIFT_CLUSTER_HOST: { meaning: 'the configured cluster host is not an address of this machine', fix: "set cluster.host to one of this host's addresses, or 0.0.0.0", exit: 2 },
  ERR_VRIFT_CLUSTER_OFF: { meaning: 'a cluster request reached a node with no cluster secret', fix: 'set VRIFT_CLUSTER_SECRET (cluster.secret) for the daemon and restart it', exit: 2 },
  ERR_VRIFT_CLUSTER_PORT_DENIED: { meaning: 'a cluster port needs privileges the daemon lacks', fix: 'set the port to one above 1023', exit: 2 },
  ERR_VRIFT_CLUSTER_PORT_TAKEN: { meaning: 'a cluster port is already in use', fix: 'set the port to a free one, or stop what listens on it', exit: 2 },
  ERR_VRIFT_CONFIG_INVALID: { meaning: 'config.json or a VRIFT_* variable is invalid (every mistake is listed)', fix: 'fix the variable or the file; docs/configuration.md lists every setting', exit: 2 },
  ERR_VRIFT_DAEMON: { meaning: 'the daemon refused a request without naming a code (another version)', fix: 'run the same vrift version for the client and the daemon', exit: [1, 2] },
  ERR_VRIFT_DAEMON_ACCESS: { meaning: "the daemon's socket belongs to another user", fix: 'use your own VRIFT_HOME, or run as the daemon\'s user', exit: 2 },
  ERR_VRIFT_DAEMON_DOWN: { meaning: 'no daemon listens on the socket', fix: 'start one with `vrift up --detach`', exit: 3 },
  ERR_VRIFT_DAEMON_GONE: { meaning: 'the connection to the daemon broke during a request', fix: 'check `vrift status` and the daemon log', exit: 2 },
  ERR_VRIFT_DAEMON_LOCK: { meaning: "the daemon's lock file cannot be taken", fix: 'remove the file if no daemon is running', exit: 2 },
  ERR_VRIFT_DAEMON_RUNNING: { meaning: 'a daemon already runs for this home', fix: 'use it, or stop it with `vrift down`', exit: 2 },
  ERR_VRIFT_DAEMON_START: { meaning: 'the daemon failed or stalled while starting (70 when it crashed)', fix: 'read the daemon log it names', exit: [2, 70] },
  ERR_VRIFT_DAEMON_STARTING: { meaning: 'the daemon is still starting', fix: 'try again in a moment', exit: 2 },
  ERR_VRIFT_DAEMON_STOP: { meaning: 'the daemon did not stop within 10 s', fix: 'kill the pid it names', exit: 2 },
  ERR_VRIFT_DIGEST_INVALID: { meaning: 'a digest argument is not 64 lowercase hex characters', fix: 'pass a BLAKE3-256 digest in hex', exit: 2 },
  ERR_VRIFT_FETCH_TIMEOUT: { meaning: "a blob a mount's program reads did not arrive in time", fix: 'check the remote tiers (`vrift status`), or materialize the tree', exit: 1 },
  ERR_VRIFT_FS_ACCESS: { meaning: 'permission denied on a path', fix: 'check its owner and mode', exit: 2 },
  ERR_VRIFT_FS_FULL: { meaning: 'the filesystem is full', fix: 'free space on that filesystem or run `vrift gc --max-size SIZE`', exit: 2 },
  ERR_VRIFT_FS_IO: { meaning: 'a filesystem operation failed for another reason (the message has it)', fix: 'read the system error in the message', exit: 2 },
  ERR_VRIFT_FS_LOOP: { meaning: 'too many levels of symbolic links', fix: 'break the symlink loop', exit: 2 },
  ERR_VRIFT_FS_NOT_DIR: { meaning: 'a path component is not a directory', fix: 'check the path', exit: 2 },
  ERR_VRIFT_FS_NOT_FOUND: { meaning: 'no such file or directory', fix: 'check the path', exit: 2 },
  ERR_VRIFT_FS_READONLY: { meaning: 'the filesystem is read-only', fix: 'choose a writable location', exit: 2 },
  ERR_VRIFT_HOME_UNSAFE: { meaning: 'VRIFT_HOME (or a parent) is not owned by this user or others can write it', fix: 'fix its owner and mode as the message says, or choose another VRIFT_HOME', exit: 1 },
  ERR_VRIFT_HSM_BAD_ID: { meaning: 'a streamed blob was given an id vrift-keeper cannot take', fix: 'a bug: report it (ids are [A-Za-z0-9._-], at most 128 characters)', exit: 2 },
  ERR_VRIFT_HSM_BAD_PATH: { meaning: 'a path with a newline or NUL cannot be watched by vrift-keeper', fix: 'use another VRIFT_HOME path', exit: 2 },
  ERR_VRIFT_HSM_BAD_SIZE: { meaning: 'a streamed blob was given an invalid size', fix: 'a bug: report it', exit: 2 },
  ERR_VRIFT_HSM_KEEPER_GONE: { meaning: 'the connection to vrift-keeper closed', fix: 'see keeper.log in the run dir', exit: 2 },
  ERR_VRIFT_HSM_KEEPER_REFUSED: { meaning: 'vrift-keeper refused a request (the message has its errno)', fix: 'see keeper.log in the run dir', exit: 2 },
  ERR_VRIFT_HSM_STREAM_ENDED: { meaning: 'a streamed blob was written to after it ended', fix: 'a bug: report it', exit: 2 },
  ERR_VRIFT_INGEST_CHANGED: { meaning: 'a file changed while it was read for ingest', fix: 'stop whatever is writing it, then ingest again', exit: 2 },
  ERR_VRIFT_INGEST_HOME: { meaning: 'the directory to ingest is inside the vrift store', fix: 'ingest a directory outside $VRIFT_HOME', exit: 2 },
  ERR_VRIFT_INGEST_NOT_DIR: { meaning: 'ingest was given something that is not a directory', fix: 'ingest takes a directory', exit: 2 },
  ERR_VRIFT_INGEST_NOT_FILE: { meaning: 'a path to store is not a regular file', fix: 'only regular files have content to store', exit: 2 },
  ERR_VRIFT_INGEST_PATH: { meaning: 'a file name or symlink target is not valid UTF-8', fix: 'rename it; trees store UTF-8 paths so every machine agrees on them', exit: 2 },
  ERR_VRIFT_INTERNAL: { meaning: 'the daemon met an unexpected error while serving a request', fix: 'a bug: report it with the daemon log', exit: 2 },
  ERR_VRIFT_KEY_FILE: { meaning: '--key-from names no file, or a file that cannot be read', fix: 'name the files the directory is built from, e.g. --key-from package-lock.json', exit: 2 },
  ERR_VRIFT_MATERIALIZE_NOT_EMPTY: { meaning: 'the target directory is not empty (or is not a directory)', fix: 'choose an empty directory or pass --force to replace its contents', exit: 2 },
  ERR_VRIFT_MESH_ADDR: { meaning: 'an address to join is not a libp2p TCP multiaddr', fix: 'use the address another node shows in `vrift status`', exit: 2 },
  ERR_VRIFT_MESH_DOWN: { meaning: "the daemon's cluster mesh is not running", fix: 'check the daemon log', exit: 2 },
  ERR_VRIFT_MESH_JOIN: { meaning: 'joining another node failed (or named this node)', fix: 'join another node of the cluster; check its address and the cluster secret', exit: 2 },
  ERR_VRIFT_META_FULL: { meaning: 'the disk is full under the metadata database', fix: 'free space or run `vrift gc --max-size SIZE`; earlier data is intact', exit: 2 },
  ERR_VRIFT_META_OPEN: { meaning: 'the metadata database cannot be opened', fix: 'check the disk and permissions of $VRIFT_HOME; `vrift verify` can check the store', exit: 2 },
  ERR_VRIFT_META_WRITE: { meaning: 'writing the metadata database failed', fix: 'read the system error in the message', exit: 2 },
  ERR_VRIFT_MOUNT_EXISTS: { meaning: 'the directory is already mounted', fix: 'snapshot or unmount it first', exit: 2 },
  ERR_VRIFT_MOUNT_NESTED: { meaning: 'the mount point overlaps another mount', fix: 'mounts cannot nest: choose another directory', exit: 2 },
  ERR_VRIFT_MOUNT_NOT_FOUND: { meaning: 'the path is not mounted', fix: 'see `vrift status`', exit: 1 },
  ERR_VRIFT_MOUNT_PATH: { meaning: 'the mount point is not absolute, is a system directory, or overlaps the store', fix: 'mount at an absolute path of your own, outside the store', exit: 2 },
  ERR_VRIFT_NATIVE_MISSING: { meaning: 'the native addon is not built', fix: 'run `npm run build` (it needs a C++ toolchain)', exit: 2 },
  ERR_VRIFT_OP_ABANDONED: { meaning: 'an operation in the daemon was dropped because its client went away', fix: 'run the command again', exit: 2 },
  ERR_VRIFT_OP_ELSEWHERE: { meaning: 'the daemon runs with another configuration or mount namespace; the CLI runs the operation itself', fix: 'restart the daemon from this environment to share its fetches', exit: 2 },
  ERR_VRIFT_PEER_CUT: { meaning: "a peer's bulk connection closed before its end frame (the peer died, or the connection was cut); the part resumes on another peer", fix: 'nothing: other peers and tiers are tried; see the peer\'s log if it repeats', exit: 2 },
  ERR_VRIFT_PEER_FORGED: { meaning: "a frame on a peer's bulk connection failed its authentication tag (altered on the way, or the peer lies); nothing of it was used and the peer is penalised", fix: 'check the network between the nodes; a node that keeps doing it is avoided (`vrift node peers`)', exit: 2 },
  ERR_VRIFT_PEER_FRAME: { meaning: "a peer's bulk connection sent a frame longer than 1 MiB or after its end; the connection was closed", fix: 'run the same vrift version on every node', exit: 2 },
  ERR_VRIFT_PEER_TLS_PIN: { meaning: "a peer's TLS certificate is not this cluster's (another cluster secret?); reported as an auth failure of the peer tier", fix: 'give every node the same cluster secret (VRIFT_CLUSTER_SECRET)', exit: 2 },
  ERR_VRIFT_PROTO_FIELD: { meaning: 'a control request lacks a field or has a wrong one', fix: 'client and daemon versions may differ: run the same version', exit: 2 },
  ERR_VRIFT_PROTO_MAGIC: { meaning: 'something that is not a vrift client wrote to the control socket', fix: 'point only vrift at the control socket', exit: 2 },
  ERR_VRIFT_PROTO_PAYLOAD: { meaning: 'a control frame has a malformed payload', fix: 'client and daemon versions may differ: run the same version', exit: 2 },
  ERR_VRIFT_PROTO_REPLY: { meaning: 'the daemon sent a reply the client cannot read', fix: 'client and daemon versions may differ: run the same version', exit: 2 },
  ERR_VRIFT_PROTO_TOO_LARGE: { meaning: 'a control frame exceeds the size limit', fix: 'client and daemon versions may differ: run the same version', exit: 2 },
  ERR_VRIFT_PROTO_TYPE: { meaning: 'a control request has a message type the daemon does not know', fix: 'client and daemon versions may differ: run the same version', exit: 2 },
  ERR_VRIFT_PROTO_VERSION: { meaning: 'the control protocol version is not supported', fix: 'run the same vrift version for the client and the daemon', exit: 2 },
  ERR_VRIFT_PUSH_FAILED: { meaning: 'no remote tier took a push', fix: 'fix the tiers the message names and push again', exit: 2 },
  ERR_VRIFT_REF_KEY: { meaning: 'the ref signing key cannot be used', fix: 'point refs.signingKey (VRIFT_SIGNING_KEY) at a PEM Ed25519 private key, or remove the node key to make a new one', exit: 1 },
  ERR_VRIFT_REF_NAME: { meaning: 'a ref name is invalid', fix: 'use names like ci/node_modules/<key>', exit: 2 },
  ERR_VRIFT_REF_NOT_FOUND: { meaning: 'no tree or ref has that name here (or in the tiers asked)', fix: 'list refs with `vrift ref list`; save or push it from a node that has it', exit: 1 },
  ERR_VRIFT_RESTORE_MISS: { meaning: 'a cache miss: no tier holds the ref (2 when a tier is misconfigured)', fix: 'build the directory, then `vrift save` it', exit: [1, 2] },
  ERR_VRIFT_RUN_ARGS: { meaning: '`vrift run` got no mount, no command or an unknown option', fix: 'vrift run --mount <dir>=<tree> -- <command> [args]', exit: 2 },
  ERR_VRIFT_RUN_MOUNT_POINT: { meaning: 'a `vrift run` mount point exists and is not an empty directory', fix: 'mount at an empty or new directory', exit: 2 },
  ERR_VRIFT_RUN_MOUNT_SPEC: { meaning: 'a --mount value is not <dir>=<tree>', fix: 'use --mount <dir>=<tree id or ref>', exit: 2 },
  ERR_VRIFT_RUN_NOT_FOUND: { meaning: 'the command to run is not found', fix: 'check the name and PATH', exit: 127 },
  ERR_VRIFT_RUN_NO_SHIM: { meaning: 'the shim library (or its helpers) is not built (126 inside the namespace helper)', fix: 'build it with `npm run build` (needs a C compiler)', exit: [2, 126] },
  ERR_VRIFT_RUN_SPAWN: { meaning: 'the command could not be started', fix: 'check the command', exit: 127 },
  ERR_VRIFT_RUN_UNSHIMMABLE: { meaning: 'the command is static or setuid (the shim cannot load) and no private mount namespace was available', fix: 'materialize the tree instead (`vrift materialize <tree> <dir>`) and run it there', exit: 126 },
  ERR_VRIFT_SAVE_FAILED: { meaning: 'a save was kept locally but no remote tier took it', fix: 'fix the tiers the message names and run `vrift push` with the ref', exit: 2 },
  ERR_VRIFT_TIER_AUTH: { meaning: 'a tier refused our credentials', fix: 'fix the credentials of that tier (see docs/configuration.md)', exit: 2 },
  ERR_VRIFT_TIER_CONFIG: { meaning: "a tier's configuration is wrong (bucket, URL …)", fix: 'fix that section of the configuration', exit: 2 },
  ERR_VRIFT_TIER_CORRUPT: { meaning: 'a tier returned data that fails verification', fix: 'remove or overwrite the damaged object in that tier (push again)', exit: 2 },
  ERR_VRIFT_TIER_IO: { meaning: 'a tier failed while reading or writing (retried)', fix: 'check the tier server and the network', exit: 2 },
  ERR_VRIFT_TIER_MISSING: { meaning: 'a tree or some of its blobs are in no reachable tier (2 when a tier is misconfigured)', fix: 'push the tree from a node that has it', exit: [1, 2] },
  ERR_VRIFT_TIER_NONE: { meaning: 'a push needs a remote tier and none is configured', fix: 'set VRIFT_S3_BUCKET (and VRIFT_S3_ENDPOINT) or VRIFT_REDIS_URL', exit: 2 },
  ERR_VRIFT_TIER_UNAVAILABLE: { meaning: 'a tier cannot be reached (retried; trips its circuit breaker)', fix: 'check that the tier server runs and is reachable', exit: 2 },
  ERR_VRIFT_TREE_IS_DIR: { meaning: '`vrift cat` was given a directory of a tree', fix: 'list it with `vrift ls <tree> <path>`', exit: 2 },
  ERR_VRIFT_TREE_MALFORMED: { meaning: 'a tree blob is damaged or was not written by vrift', fix: 'ingest or pull the tree again', exit: 2 },
  ERR_VRIFT_TREE_NOT_FOUND: { meaning: 'the tree is not in the local store', fix: 'pull the tree from a shared tier, or ingest it first', exit: 1 },
  ERR_VRIFT_TREE_NO_PATH: { meaning: 'the path is not in the tree', fix: 'list the tree with `vrift ls`', exit: 1 },
  ERR_VRIFT_TREE_PATH: { meaning: 'a tree entry has an invalid, duplicate or out-of-order path', fix: 'rename the file', exit: 2 },
  ERR_VRIFT_VDIR_ACCESS: { meaning: 'a VDir in /dev/shm cannot be opened (permissions)', fix: 'check the owner and mode of /dev/shm and of the object', exit: 2 },
  ERR_VRIFT_VDIR_CLOSED: { meaning: 'a VDir was used after it was closed', fix: 'a bug: report it', exit: 2 },
  ERR_VRIFT_VDIR_EXISTS: { meaning: 'a VDir name in /dev/shm is taken', fix: 'check /dev/shm for objects planted there', exit: 2 },
  ERR_VRIFT_VDIR_FULL: { meaning: 'a VDir is full (16 777 214 entries, 4 GiB of paths) or /dev/shm is', fix: 'split the mount, or free space in /dev/shm', exit: 2 },
  ERR_VRIFT_VDIR_INVALID: { meaning: 'a VDir change names an invalid path or entry', fix: 'paths are relative, "/"-separated, without "." or ".."; files need a digest, symlinks a target', exit: 2 },
  ERR_VRIFT_VDIR_IO: { meaning: 'a VDir operation failed with another errno', fix: 'read the system error in the message', exit: 2 },
  ERR_VRIFT_VDIR_NO_MEMORY: { meaning: 'out of memory for a VDir', fix: 'free memory or space in /dev/shm', exit: 2 },
  ERR_VRIFT_VDIR_NOT_DIR: { meaning: 'a VDir change adds a child to a non-directory', fix: 'only directories can have children', exit: 2 },
  ERR_VRIFT_VDIR_NOT_EMPTY: { meaning: 'a VDir change removes a non-empty directory', fix: 'remove the children first, or in the same batch', exit: 2 },
  ERR_VRIFT_VDIR_NOT_FOUND: { meaning: 'a VDir change names a missing parent or entry', fix: 'add the parent directory first; removals must name existing paths', exit: 2 },
  ERR_VRIFT_ZSTD: { meaning: 'a zstd-compressed pack is damaged or was cut', fix: 'push the tree again', exit: 2 },
  ERR_VRIFT_ZSTD_BOMB: { meaning: 'a zstd stream decompresses to more than it declared', fix: 'the object is damaged or hostile; push the tree again', exit: 2 },
  ERR_VRIFT_ZSTD_MISSING: { meaning: 'a pack is zstd-compressed but libzstd.so.1 cannot be loaded', fix: 'install the libzstd1 package', exit: 2 },
} as const satisfies Record<string, ErrorCodeInfo>;

/** A code vrift raises: one of ERROR_CODES. */
export type ErrorCode = keyof typeof CODES | `ERR_VRIFT_MOUNTFS_${MountErrno}`;

/** Every code, sorted, with its meaning, fix and exit status. */
export const ERROR_CODES: Readonly<Record<ErrorCode, ErrorCodeInfo>> = Object.fromEntries(
  Object.entries({ ...CODES, ...mountfs }).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
) as Record<ErrorCode, ErrorCodeInfo>;

/** True for a code in the list. */
export function isErrorCode(s: string): s is ErrorCode {
  return Object.hasOwn(ERROR_CODES, s);
}

/**
 * A code that arrived from another process (the daemon's reply, a start-up
 * report). It is kept as sent even when this version does not list it (the
 * daemon may be another version), so it is the one place a string becomes
 * an ErrorCode unchecked.
 */
export function foreignCode(s: string): ErrorCode {
  return s as ErrorCode;
}
