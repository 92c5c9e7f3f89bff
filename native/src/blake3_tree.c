// See blake3_tree.h. This file compiles the vendored blake3.c itself (it is
// not built separately), so the two helpers below can use its internal
// static functions without modifying it.
#include "blake3.c"

#include "blake3_tree.h"

void vrift_blake3_subtree(const uint8_t *input, size_t len, uint64_t chunk_counter, uint8_t out[64]) {
  compress_subtree_to_parent_node(input, len, IV, chunk_counter, 0, out);
}

void vrift_blake3_push_subtree(blake3_hasher *h, const uint8_t cvs[64], size_t len) {
  // Exactly what blake3_hasher_update does with one subtree of this size
  // (the "lazy merging" of two CVs): the second one stays unmerged, so the
  // root is never compressed before finalize.
  uint64_t chunks = len / BLAKE3_CHUNK_LEN;
  uint8_t pair[64];
  memcpy(pair, cvs, 64);
  hasher_push_cv(h, pair, h->chunk.chunk_counter);
  hasher_push_cv(h, &pair[BLAKE3_OUT_LEN], h->chunk.chunk_counter + chunks / 2);
  h->chunk.chunk_counter += chunks;
}

uint64_t vrift_blake3_chunk_counter(const blake3_hasher *h) { return h->chunk.chunk_counter; }

// The output of a node is finished the same way whatever its kind: the
// ROOT flag (output_root_bytes) only on the top node, a chaining value
// everywhere else.
static void finish_output(const output_t *o, int is_root, uint8_t out[32]) {
  if (is_root) {
    output_root_bytes(o, 0, out, BLAKE3_OUT_LEN);
  } else {
    output_chaining_value(o, out);
  }
}

void vrift_blake3_node_cv(const uint8_t *input, size_t len, uint64_t chunk_counter, int is_root, uint8_t out[32]) {
  if (len <= BLAKE3_CHUNK_LEN) {
    blake3_chunk_state cs;
    chunk_state_init(&cs, IV, 0);
    cs.chunk_counter = chunk_counter;
    chunk_state_update(&cs, input, len);
    output_t o = chunk_state_output(&cs);
    finish_output(&o, is_root, out);
    return;
  }
  // compress_subtree_to_parent_node takes any length (the one-shot hash
  // of the Rust crate uses it the same way) and stops short of the top
  // parent, which is compressed here with the right flags.
  uint8_t pair[2 * BLAKE3_OUT_LEN];
  compress_subtree_to_parent_node(input, len, IV, chunk_counter, 0, pair);
  output_t o = parent_output(pair, IV, 0);
  finish_output(&o, is_root, out);
}

void vrift_blake3_parent_cv(const uint8_t pair[64], int is_root, uint8_t out[32]) {
  output_t o = parent_output(pair, IV, 0);
  finish_output(&o, is_root, out);
}
