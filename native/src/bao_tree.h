// Verified streaming (Bao): the shape of BLAKE3's tree over chunk groups,
// shared by the outboard encoder, the range verifier and the stream
// verifiers (bao_outboard.cc, bao_verify.cc, bao_stream.cc).
//
// BLAKE3 hashes 1 KiB chunks into a binary tree that is left-heavy
// complete: a node of n > 1 chunks has a left child of the largest power
// of two of chunks strictly less than n. With chunk groups of G = 2^k
// chunks (vrift uses 16 KiB, k = 4, as bao-tree/iroh do), every split of
// a node larger than one group falls on a group boundary, so the tree
// over groups has the same rule: m > 1 groups split into the largest
// power of two strictly less than m, and the rest. Its leaves are the
// groups (the last may be short), hashed as BLAKE3 subtrees.
//
// The outboard is every parent node above the groups, in pre-order (a
// parent, its left subtree, its right subtree), each as its 64-byte
// message: the left child's chaining value then the right child's. m
// groups have m - 1 parents. No length header: vrift knows each blob's
// size from its metadata (the Bao spec's outboard is an 8-byte
// little-endian length followed by exactly these parents, with 1 KiB
// groups). The combined encoding interleaves the groups' bytes where
// pre-order meets them.
#ifndef VRIFT_BAO_TREE_H
#define VRIFT_BAO_TREE_H

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "blake3_tree.h"

namespace vrift::bao {

constexpr size_t kChunk = 1024;
constexpr size_t kPair = 64;  // one parent node in an outboard
constexpr size_t kCv = 32;
/** Groups of 2^0 (1 KiB, plain Bao) up to 2^12 chunks (4 MiB). */
constexpr unsigned kMaxGroupLog = 12;

/** Groups of `size` bytes: at least one (the empty blob is one empty group). */
inline uint64_t GroupCount(uint64_t size, unsigned group_log) {
  const uint64_t g = uint64_t{kChunk} << group_log;
  return size == 0 ? 1 : (size + g - 1) / g;
}

/** Bytes of the outboard: one 64-byte parent per group but one. */
inline uint64_t OutboardSize(uint64_t size, unsigned group_log) { return (GroupCount(size, group_log) - 1) * kPair; }

/** Groups in the left child of a node of m > 1 groups: the largest power of two < m. */
inline uint64_t LeftGroups(uint64_t m) {
  uint64_t p = 1;
  while (p * 2 < m) p *= 2;
  return p;
}

/**
 * A node of the tree: groups [g0, g0 + m), its parent's index in the
 * pre-order outboard (meaningful when m > 1), and whether it is the root.
 * Its left child's parent (if any) is at pair + 1, its right child's at
 * pair + LeftGroups(m): the left subtree holds LeftGroups(m) - 1 parents.
 */
struct Node {
  uint64_t g0;
  uint64_t m;
  uint64_t pair;
  bool root;

  Node Left() const { return Node{g0, LeftGroups(m), pair + 1, false}; }
  Node Right() const {
    const uint64_t l = LeftGroups(m);
    return Node{g0 + l, m - l, pair + l, false};
  }
};

/** The geometry of one blob: its size and group size, and byte offsets of nodes. */
struct Tree {
  uint64_t size;
  unsigned group_log;

  uint64_t GroupBytes() const { return uint64_t{kChunk} << group_log; }
  Node Root() const { return Node{0, GroupCount(size, group_log), 0, true}; }
  uint64_t Start(const Node& n) const { return n.g0 * GroupBytes(); }
  /** End of a node's bytes (the blob's end for the last node on the right edge). */
  uint64_t End(const Node& n) const {
    const uint64_t e = (n.g0 + n.m) * GroupBytes();
    return e < size ? e : size;
  }
  uint64_t ChunkCounter(const Node& n) const { return n.g0 << group_log; }
};

/** The chaining value of a node (the digest if it is the root) from its bytes. */
inline void NodeCv(const Tree& t, const Node& n, const uint8_t* bytes, uint8_t out[kCv]) {
  vrift_blake3_node_cv(bytes, static_cast<size_t>(t.End(n) - t.Start(n)), t.ChunkCounter(n), n.root ? 1 : 0, out);
}

/** True when the parent message `pair` hashes to `expected` (flags as for node n). */
inline bool ParentMatches(const Node& n, const uint8_t pair[kPair], const uint8_t expected[kCv]) {
  uint8_t cv[kCv];
  vrift_blake3_parent_cv(pair, n.root ? 1 : 0, cv);
  return std::memcmp(cv, expected, kCv) == 0;
}

}  // namespace vrift::bao

#endif
