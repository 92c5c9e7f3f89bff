// BLAKE3 subtrees hashed apart (on several threads) and then joined, on
// top of the vendored official C implementation (third_party/blake3).
//
// A complete subtree of BLAKE3's tree is a run of 2^k chunks (1 KiB each)
// starting at a chunk index that is a multiple of 2^k. Its two child
// chaining values can be computed independently of everything else; a
// hasher then takes them in order as if it had hashed those bytes itself.
#ifndef VRIFT_BLAKE3_TREE_H
#define VRIFT_BLAKE3_TREE_H

#include <stddef.h>
#include <stdint.h>

#include "blake3.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * The two child chaining values (64 bytes into `out`) of the subtree of
 * `len` bytes starting at chunk `chunk_counter`. `len` must be a power of
 * two, at least 2 chunks (2048 bytes), and `chunk_counter` a multiple of
 * len / 1024. Thread-safe (no shared state).
 */
void vrift_blake3_subtree(const uint8_t *input, size_t len, uint64_t chunk_counter, uint8_t out[64]);  // plain (unkeyed) hashing

/**
 * Appends a subtree computed by vrift_blake3_subtree to `h`, which must
 * hold a whole number of such subtrees so far (nothing else was fed to it
 * since init) and be positioned at `chunk_counter` it was computed for.
 * More input must follow before finalize (the subtree is never the root).
 */
void vrift_blake3_push_subtree(blake3_hasher *h, const uint8_t cvs[64], size_t len);

/** The chunk index the hasher will take next (where a pushed subtree must start). */
uint64_t vrift_blake3_chunk_counter(const blake3_hasher *h);

/**
 * The chaining value (32 bytes into `out`) of the node of BLAKE3's tree
 * that covers `len` bytes starting at chunk `chunk_counter`: one chunk
 * (len <= 1024, 0 only for the empty input) or a subtree of any length
 * (BLAKE3's left-heavy shape inside it). With `is_root` it is the ROOT
 * output instead, that is the digest of the whole input (chunk_counter 0).
 * The caller makes sure such a node exists in the tree it checks against
 * (verified streaming: see bao_tree.h). Thread-safe.
 */
void vrift_blake3_node_cv(const uint8_t *input, size_t len, uint64_t chunk_counter, int is_root, uint8_t out[32]);

/** The chaining value of a parent node from its children's (64 bytes); the digest with `is_root`. */
void vrift_blake3_parent_cv(const uint8_t pair[64], int is_root, uint8_t out[32]);

#ifdef __cplusplus
}
#endif

#endif
