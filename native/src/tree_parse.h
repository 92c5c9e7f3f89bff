// A tree's encoding (docs/tree-format.md) parsed in place: what the link
// farm (link_farm.cc), a VDir built straight from a tree (addon.cc,
// applyTree) and the admission of a tree (checkTreeEncoding) read. Also a
// tree's names blob (its lazy index's listing: the same entries without
// the ref field), which a partial mount publishes and indexes.
// Checked as decodeTree checks it (fields, modes, sizes, paths, strict
// order, every parent a directory), but for UTF-8, which the caller checks
// (isUtf8); the records point into the caller's bytes.
#pragma once
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "vrift_layout.h"

namespace vrift {

// The encoding's letters, modes and limits are those of shim/vrift_layout.h.
struct TreeRec {
  size_t at;  // where the entry begins, in the caller's bytes
  char kind;  // VRIFT_TREE_KIND_*
  bool exec;
  uint64_t size;
  std::string_view digest;  // files: 64 lowercase hex (empty in a names blob)
  std::string_view path;
  std::string_view target;  // symlinks
};

struct MalformedTree : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/** What the bytes are: a tree's encoding, or its names blob (no ref field). */
enum class TreeForm { kListing, kNames };

/** The records of an encoded tree (or names blob), in order; throws MalformedTree. */
std::vector<TreeRec> ParseTree(const char* data, size_t len, TreeForm form = TreeForm::kListing);

/** ParseTree without the vector: `each` gets every record, in order, as it is checked (a large
 * tree's build keeps no second copy of its records). Throws MalformedTree, possibly after some. */
void ParseTreeEach(const char* data, size_t len, TreeForm form, const std::function<void(const TreeRec&)>& each);

}  // namespace vrift
