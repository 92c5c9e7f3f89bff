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
