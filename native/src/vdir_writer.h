// The VDir writer: the only code that changes a VDir (layout and protocols
// in shim/vrift_vdir.h). Plain C++17, no N-API: addon.cc wraps it for JS.
//
// A VdirWriter owns one mounted tree's object at /dev/shm/vrift.<uid>.<name>.
// Every Apply() is one seqlock window, validated completely before the
// first byte changes, so a rejected batch leaves the VDir untouched.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "vrift_vdir.h"

namespace vrift {

// Thrown for every failure; `code` is a positive errno value
// (EINVAL bad input, ENOENT missing path/parent, ENOTDIR parent not a dir,
// ENOTEMPTY dir still has children, EEXIST, ENOSPC past the format's
// limits, others from the system calls).
class VdirError : public std::runtime_error {
 public:
  VdirError(int code, const std::string& msg) : std::runtime_error(msg), code(code) {}
  int code;
};

struct VdirCreateOptions {
  std::string name;        // object name ([A-Za-z0-9._-], 1..255 bytes)
  std::string cas_root;    // absolute, < VRIFT_VDIR_CAS_ROOT_MAX bytes
  std::string mount_root;  // absolute, < VRIFT_VDIR_MOUNT_ROOT_MAX bytes
  uint32_t capacity = 1024;     // entries besides the root
  uint64_t pool_bytes = 0;      // string pool bytes besides the root's; 0 = capacity * 64
};

struct VdirUpsert {
  std::string_view path;
  uint32_t mode = 0;       // full st_mode
  uint32_t mtime_sec = 0;
  uint64_t size = 0;       // ignored for symlinks (the target length is stored)
  uint32_t flags = 0;      // VRIFT_VDIR_F_*
  const uint8_t* digest = nullptr;  // 32 bytes: regular files; a VRIFT_VDIR_F_CLAIM directory's claim inode (u64)
  uint64_t ctime_ns = 0;            // regular files: the blob's ctime when known good (vrift_vdir.h), 0 = unknown
  std::string_view target;          // symlinks only
};

struct VdirFound {
  uint32_t index = 0;
  vrift_vdir_entry entry{};
  std::string target;  // symlinks
};

struct VdirStats {
  uint32_t entries, capacity, buckets, hwm;
  uint64_t mapped_bytes, pool_used, pool_cap, pool_garbage, generation;
  uint32_t resizes, compactions;
  std::string shm_path;
};

struct VdirProbeStats {
  uint32_t max_probe;       // longest distance from home bucket
  uint32_t displaced;       // entries not in their home bucket
  uint32_t tag_collisions;  // entries whose lookup meets another entry with the same tag first
};

class VdirWriter {
 public:
  // Builds the object under a temporary name and renames it over the stable
  // name, superseding a stale object of the same name (section 5).
  explicit VdirWriter(const VdirCreateOptions& opt);
  // Publishes a copy of `image` (the bytes of an object another writer of
  // the same cas_root built, see Image()) under opt.name at opt.mount_root:
  // same entries, slots, buckets and hash seed; a new volume_id; every
  // entry's mtime set to `mtime_sec` unless it is negative. opt.capacity and
  // opt.pool_bytes are ignored (the image's geometry is kept). Throws
  // EINVAL for an image that is not a complete object of this layout.
  VdirWriter(const VdirCreateOptions& opt, const uint8_t* image, size_t len, int64_t mtime_sec);
  ~VdirWriter();
  VdirWriter(const VdirWriter&) = delete;
  VdirWriter& operator=(const VdirWriter&) = delete;

  // Removals first (deepest paths first), then upserts in order, as one
  // seqlock window; grows the object first if the batch needs room.
  void Apply(const std::vector<VdirUpsert>& upserts, const std::vector<std::string_view>& removals);

  // Apply() of a whole tree into a VDir that holds only its root, for a
  // caller that promises what ParseTree (tree_parse.h) checked: every path
  // distinct, and each one's parent the root or a directory earlier in the
  // batch. Only each entry's own fields are checked (no map of the batch:
  // most of the cost of a 100 000-entry mount). A VDir that holds more than
  // its root gets Apply()'s full check.
  void ApplyFreshTree(const std::vector<VdirUpsert>& upserts);

  // Apply() of the entries that are new: an entry whose path is taken (in
  // the VDir, or by an earlier entry of this batch) or whose parent is not a
  // directory there is left out. Returns the indices of those left out, in
  // order. For the daemon's burst of creates (a `tar -x`): one call per
  // batch instead of a probe per entry.
  std::vector<uint32_t> ApplyNew(const std::vector<VdirUpsert>& upserts);

  // header.upper_published (vrift_vdir.h section 6), kept across resizes.
  void SetUpperPublished(uint64_t n, bool awake = false);

  bool Lookup(std::string_view path, VdirFound* out) const;
  // Names of a directory's children, in list order. Throws ENOENT/ENOTDIR.
  std::vector<std::string> List(std::string_view dir) const;
  VdirStats Stats() const;
  // The object's bytes as they are between batches ([0, total_size)).
  const uint8_t* ImageData() const { return map_.base; }
  size_t ImageSize() const { return map_.size; }
  VdirProbeStats ProbeStats() const;

  // Retires the object (readers get -ESTALE) and, if `unlink`, removes
  // its name. Idempotent; the destructor closes without unlinking.
  void Close(bool unlink);
  bool closed() const { return map_.base == nullptr; }

 private:
  struct Map {
    int fd = -1;
    uint8_t* base = nullptr;
    size_t size = 0;
    vrift_vdir_header* hdr = nullptr;
    vrift_vdir_node* node = nullptr;  // the entries' nodes and data records (vrift_vdir.h section 2)
    vrift_vdir_data* data = nullptr;
    vrift_vdir_bucket* buckets = nullptr;
    char* pool = nullptr;
  };
  struct Plan;
  uint64_t upper_published_ = 0;

  void Init(const VdirCreateOptions& opt);
  void Publish(const std::string& tmp);
  Map Build(uint32_t entry_cap, uint64_t pool_cap, std::string* tmp_path);
  void Unmap(Map* m);
  void Grow(uint32_t entry_cap, uint64_t pool_cap);
  void Compact();
  void BeginWrite();
  void EndWrite();

  int64_t Find(std::string_view path, uint64_t h) const;
  int64_t Find(std::string_view path) const;
  std::string_view PathOf(uint32_t i) const;
  uint32_t NextOf(uint32_t i) const;          // slot i's sibling link (index + 1, 0 = end)
  void SetNext(uint32_t i, uint32_t link);
  void Recheck(uint32_t i);
  uint32_t AppendString(std::string_view s);
  void InsertBucket(uint32_t i);
  void EraseBucket(uint32_t i);
  void Remove(uint32_t i);
  void Upsert(const VdirUpsert& u);
  uint32_t Insert(std::string_view path, uint64_t h, uint32_t parent, bool recheck);
  void SetFields(uint32_t i, const VdirUpsert& u);
  void InsertFresh(const std::vector<VdirUpsert>& upserts);
  Plan Validate(const std::vector<VdirUpsert>& upserts, const std::vector<std::string_view>& removals) const;
  static uint32_t CheckFields(const VdirUpsert& u);
  void Commit(const Plan& plan, const std::vector<VdirUpsert>& upserts, bool fresh = false);

  std::string name_, shm_path_, cas_root_, mount_root_;
  uint64_t seed_ = 0, volume_id_ = 0;
  Map map_;
  // Writer-private per-slot state (not in shared memory): the path hash
  // (for rehashing and backward-shift deletion) and the previous sibling
  // (index + 1), for O(1) unlinking from a directory's list.
  std::vector<uint64_t> hash_;
  std::vector<uint32_t> prev_;
  std::vector<uint32_t> free_;  // free slots below entry_hwm
  uint32_t resizes_ = 0, compactions_ = 0, tmp_counter_ = 0;
};

}  // namespace vrift
