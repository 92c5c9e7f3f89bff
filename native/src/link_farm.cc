// Materializing a tree as a link farm from its encoding (docs/tree-format.md):
//   checkTree(tree, casDir, threads[, all]) -> Promise<Float64Array [entryIndex, problem, …]>
//     (with `all`: every distinct blob file, [entryIndex, problem, ctimeSec, ctimeNsec, …],
//     the ctime 0 unless problem is 0)
//     one fstatat per distinct blob file the tree links (the .x twin for
//     executable entries): problem 1 = missing, 2 = not untouched (size or
//     the canonical mtime differ: vrift_layout.h). The caller re-hashes those.
//   linkTree(tree, root, casDir, threads) -> Promise<{ dirs, files, symlinks, failures }>
//     mkdir every directory (level by level), hard-link every file from the
//     CAS, then create the symlinks (last, so no path ever runs through one).
//     failures: [phase, entryIndex, errno, …] (phase 1 mkdir, 2 link, 3 symlink).
// The tree is parsed and validated again here (paths relative, no "." /
// ".." / empty components, every parent a directory of the tree).
// Malformed input rejects (it cannot happen for a tree that passed its
// digest check and decodeTree when it was admitted; defence in depth).
//
// Both run on native threads off the JavaScript thread (a daemon keeps
// serving while a 100 000-file restore is written), and every path is
// looked up one component at a time: a blob relative to a descriptor of
// its shard directory, a link relative to a descriptor of its parent, so
// the kernel never walks the whole absolute path of either (the walks
// were most of the cost).
#include "link_farm.h"

#include "buffer_worker.h"
#include "layout.h"
#include "tree_parse.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace vrift {
namespace {

// Runs fn(i) for i in [0, n) on `threads` threads, each a contiguous range.
template <typename Fn>
void ParallelRanges(size_t n, unsigned threads, Fn fn) {
  if (n == 0) return;
  threads = std::max(1u, std::min<unsigned>(threads, (n + 255) / 256));
  if (threads == 1) {
    for (size_t i = 0; i < n; i++) fn(i);
    return;
  }
  std::vector<std::thread> pool;
  size_t per = (n + threads - 1) / threads;
  for (unsigned t = 0; t < threads; t++) {
    size_t lo = t * per, hi = std::min(n, lo + per);
    if (lo >= hi) break;
    pool.emplace_back([lo, hi, &fn] {
      for (size_t i = lo; i < hi; i++) fn(i);
    });
  }
  for (auto& th : pool) th.join();
}

struct Failure {
  uint32_t phase;
  uint32_t index;
  int err;
};

class Collector {
 public:
  void Add(uint32_t phase, uint32_t i, int err) {
    // Failures are rare; a spinlock keeps the common path free of locking.
    while (lock_.test_and_set(std::memory_order_acquire)) {
    }
    fails_.push_back({phase, i, err});
    lock_.clear(std::memory_order_release);
  }
  std::vector<Failure>& Get() { return fails_; }

 private:
  std::atomic_flag lock_ = ATOMIC_FLAG_INIT;
  std::vector<Failure> fails_;
};

// The blob's name inside its shard directory: "<64 hex>" or "<64 hex>.x".
void BlobName(const TreeRec& r, char* out) {
  memcpy(out, r.digest.data(), VRIFT_LAYOUT_DIGEST_HEX);
  size_t n = VRIFT_LAYOUT_DIGEST_HEX;
  if (r.exec) {
    memcpy(out + n, VRIFT_LAYOUT_EXEC_SUFFIX, sizeof(VRIFT_LAYOUT_EXEC_SUFFIX) - 1);
    n += sizeof(VRIFT_LAYOUT_EXEC_SUFFIX) - 1;
  }
  out[n] = '\0';
}

static_assert(VRIFT_LAYOUT_SHARD_HEX == 2, "Shards below assumes 256 shard directories named by two hex digits");

// Descriptors (O_PATH) of the CAS shard directories a tree uses, opened once
// up front: -1 for a shard that does not exist (its blobs are all missing).
class Shards {
 public:
  Shards(const std::string& casDir, const std::vector<TreeRec>& recs) {
    fds_.fill(-1);
    int cas = open(casDir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cas < 0) return;  // every blob is then missing, and reported so
    std::array<bool, 256> used{};
    for (const auto& r : recs)
      if (r.kind == VRIFT_TREE_KIND_FILE) used[Index(r)] = true;
    for (int i = 0; i < 256; i++) {
      if (!used[i]) continue;
      char name[3] = {"0123456789abcdef"[i >> 4], "0123456789abcdef"[i & 15], 0};
      fds_[i] = openat(cas, name, O_PATH | O_DIRECTORY | O_CLOEXEC);
    }
    close(cas);
  }
  ~Shards() {
    for (int fd : fds_)
      if (fd >= 0) close(fd);
  }
  Shards(const Shards&) = delete;
  Shards& operator=(const Shards&) = delete;
  int Of(const TreeRec& r) const { return fds_[Index(r)]; }

 private:
  static int Index(const TreeRec& r) { return kHexDigits.v[static_cast<uint8_t>(r.digest[0])] * 16 + kHexDigits.v[static_cast<uint8_t>(r.digest[1])]; }
  std::array<int, 256> fds_;
};

// What checkTree and linkTree share: a promise, the tree's bytes kept alive
// while the threads read them (BufferWorker), and parsing them (a malformed
// tree rejects).
class TreeWorker : public BufferWorker {
 public:
  using BufferWorker::BufferWorker;

 protected:
  /** The tree's records; false (and the promise rejects) when it is malformed. */
  bool Parse(std::vector<TreeRec>& recs) {
    try {
      recs = ParseTree(data_, len_);
      return true;
    } catch (const MalformedTree& e) {
      SetError(e.what());
      return false;
    }
  }
};

// --- checkTree ---------------------------------------------------------------

class CheckTreeWorker : public TreeWorker {
 public:
  CheckTreeWorker(Napi::Env env, Napi::Buffer<char> tree, std::string casDir, unsigned threads, bool all)
      : TreeWorker(env, tree), casDir_(std::move(casDir)), threads_(threads), all_(all) {}

  void Execute() override {
    std::vector<TreeRec> recs;
    if (!Parse(recs)) return;
    // Distinct blob files (digest + twin flag), the first entry of each: sorted, not hashed (no allocation per entry).
    std::vector<uint32_t> files;
    for (uint32_t i = 0; i < recs.size(); i++)
      if (recs[i].kind == VRIFT_TREE_KIND_FILE) files.push_back(i);
    auto key = [&](uint32_t i) { return std::make_pair(recs[i].digest, recs[i].exec); };
    std::stable_sort(files.begin(), files.end(), [&](uint32_t a, uint32_t b) { return key(a) < key(b); });
    files.erase(std::unique(files.begin(), files.end(), [&](uint32_t a, uint32_t b) { return key(a) == key(b); }), files.end());
    Shards shards(casDir_, recs);
    std::vector<uint8_t> problem(files.size(), 0);
    ctimes_.assign(all_ ? files.size() : 0, {0, 0});
    ParallelRanges(files.size(), threads_, [&](size_t k) {
      const TreeRec& r = recs[files[k]];
      char name[VRIFT_LAYOUT_DIGEST_HEX + 4];
      BlobName(r, name);
      struct stat st;
      int shard = shards.Of(r);
      if (shard < 0 || fstatat(shard, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        problem[k] = 1;
      else if (static_cast<uint64_t>(st.st_size) != r.size || st.st_mtim.tv_sec != VRIFT_LAYOUT_BLOB_MTIME_SEC || st.st_mtim.tv_nsec != 0)
        problem[k] = 2;
      else if (all_)
        ctimes_[k] = {static_cast<double>(st.st_ctim.tv_sec), static_cast<double>(st.st_ctim.tv_nsec)};
    });
    if (all_) {
      // Every distinct blob file, in entry order, with its inode change time (the caller compares it with the index).
      for (size_t k = 0; k < files.size(); k++) all_out_.push_back({files[k], problem[k], ctimes_[k].first, ctimes_[k].second});
      std::sort(all_out_.begin(), all_out_.end(), [](const auto& a, const auto& b) { return a[0] < b[0]; });
      return;
    }
    for (size_t k = 0; k < files.size(); k++)
      if (problem[k]) out_.push_back({files[k], problem[k]});
    std::sort(out_.begin(), out_.end());
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (all_) {
      Napi::Float64Array arr = Napi::Float64Array::New(env, all_out_.size() * 4);
      for (size_t i = 0; i < all_out_.size(); i++)
        for (size_t j = 0; j < 4; j++) arr[i * 4 + j] = all_out_[i][j];
      deferred_.Resolve(arr);
      return;
    }
    Napi::Float64Array arr = Napi::Float64Array::New(env, out_.size() * 2);
    for (size_t i = 0; i < out_.size(); i++) {
      arr[i * 2] = out_[i].first;
      arr[i * 2 + 1] = out_[i].second;
    }
    deferred_.Resolve(arr);
  }

 private:
  std::string casDir_;
  unsigned threads_;
  bool all_;
  std::vector<std::pair<double, double>> ctimes_;
  std::vector<std::array<double, 4>> all_out_;
  std::vector<std::pair<uint32_t, int>> out_;
};

// --- linkTree ----------------------------------------------------------------

class LinkTreeWorker : public TreeWorker {
 public:
  LinkTreeWorker(Napi::Env env, Napi::Buffer<char> tree, std::string root, std::string casDir, unsigned threads)
      : TreeWorker(env, tree), root_(std::move(root)), casDir_(std::move(casDir)), threads_(threads) {}

  void Execute() override {
    std::vector<TreeRec> recs;
    if (!Parse(recs)) return;
    int rootfd = open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) {
      rootErrno_ = errno;
      SetError(std::string("cannot open ") + root_ + ": " + strerror(errno));
      return;
    }
    // Directories by depth: a level is made once the one above it is.
    std::vector<std::vector<uint32_t>> levels;
    std::vector<uint32_t> files, links;
    for (uint32_t i = 0; i < recs.size(); i++) {
      const TreeRec& r = recs[i];
      if (r.kind == VRIFT_TREE_KIND_DIR) {
        size_t d = static_cast<size_t>(std::count(r.path.begin(), r.path.end(), '/'));
        if (levels.size() <= d) levels.resize(d + 1);
        levels[d].push_back(i);
        dirs_++;
      } else if (r.kind == VRIFT_TREE_KIND_FILE) {
        files.push_back(i);
      } else {
        links.push_back(i);
      }
    }
    files_ = files.size();
    symlinks_ = links.size();
    Collector fails;
    for (auto& level : levels) {
      ParallelRanges(level.size(), threads_, [&](size_t k) {
        std::string p(recs[level[k]].path);
        if (mkdirat(rootfd, p.c_str(), VRIFT_TREE_MODE_DIR) != 0 && errno != EEXIST) fails.Add(1, level[k], errno);
      });
    }
    {
      Shards shards(casDir_, recs);
      ParallelRanges(files.size(), threads_, [&](size_t k) {
        const TreeRec& r = recs[files[k]];
        char name[VRIFT_LAYOUT_DIGEST_HEX + 4];
        BlobName(r, name);
        std::string p(r.path);
        int shard = shards.Of(r);
        if (shard < 0)
          fails.Add(2, files[k], ENOENT);
        else if (linkat(shard, name, rootfd, p.c_str(), 0) != 0)
          fails.Add(2, files[k], errno);
      });
    }
    ParallelRanges(links.size(), threads_, [&](size_t k) {
      const TreeRec& r = recs[links[k]];
      std::string p(r.path), t(r.target);
      if (symlinkat(t.c_str(), rootfd, p.c_str()) != 0) fails.Add(3, links[k], errno);
    });
    close(rootfd);
    failures_ = std::move(fails.Get());
    std::sort(failures_.begin(), failures_.end(), [](const Failure& a, const Failure& b) { return a.index < b.index; });
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Array arr = Napi::Array::New(env, failures_.size() * 3);
    for (size_t i = 0; i < failures_.size(); i++) {
      arr.Set(i * 3, Napi::Number::New(env, failures_[i].phase));
      arr.Set(i * 3 + 1, Napi::Number::New(env, failures_[i].index));
      arr.Set(i * 3 + 2, Napi::Number::New(env, failures_[i].err));
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("dirs", Napi::Number::New(env, static_cast<double>(dirs_)));
    out.Set("files", Napi::Number::New(env, static_cast<double>(files_)));
    out.Set("symlinks", Napi::Number::New(env, static_cast<double>(symlinks_)));
    out.Set("failures", arr);
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error& e) override {
    if (rootErrno_ != 0) e.Set("errno", Napi::Number::New(Env(), rootErrno_));
    deferred_.Reject(e.Value());
  }

 private:
  std::string root_;
  std::string casDir_;
  unsigned threads_;
  int rootErrno_ = 0;
  size_t dirs_ = 0, files_ = 0, symlinks_ = 0;
  std::vector<Failure> failures_;
};

// --- blobInodes -----------------------------------------------------------------
//   blobInodes(casDir, names, threads) -> Promise<Float64Array [dev, ino, …]>
//     names: NUL-terminated blob names ("<64 hex>" or "<64 hex>.x"); for each,
//     the device and inode of its file in the CAS, or [-1, -1] when absent.
//     Ingest uses it to know a file that is still a link into the store.

class BlobInodesWorker : public Napi::AsyncWorker {
 public:
  BlobInodesWorker(Napi::Env env, std::string casDir, Napi::Buffer<char> names, unsigned threads)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), casDir_(std::move(casDir)), names_(Napi::Persistent(names)), data_(names.Data()),
        len_(names.Length()), threads_(threads) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    std::vector<const char*> names;
    for (size_t off = 0; off < len_;) {
      const char* name = data_ + off;
      size_t n = strnlen(name, len_ - off);
      if (n == len_ - off) break;  // not NUL-terminated: ignored
      names.push_back(name);
      off += n + 1;
    }
    out_.assign(names.size() * 2, -1);
    int cas = open(casDir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cas < 0) return;
    ParallelRanges(names.size(), threads_, [&](size_t k) {
      const char* name = names[k];
      if (strnlen(name, VRIFT_LAYOUT_DIGEST_HEX + 1) < VRIFT_LAYOUT_DIGEST_HEX) return;
      char rel[VRIFT_LAYOUT_DIGEST_HEX + 8];
      snprintf(rel, sizeof rel, "%.2s/%s", name, name);
      struct stat st;
      if (fstatat(cas, rel, &st, AT_SYMLINK_NOFOLLOW) != 0) return;
      out_[k * 2] = static_cast<double>(st.st_dev);
      out_[k * 2 + 1] = static_cast<double>(st.st_ino);
    });
    close(cas);
  }

  void OnOK() override {
    Napi::Float64Array arr = Napi::Float64Array::New(Env(), out_.size());
    if (!out_.empty()) std::memcpy(arr.Data(), out_.data(), out_.size() * sizeof(double));
    deferred_.Resolve(arr);
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::string casDir_;
  Napi::Reference<Napi::Buffer<char>> names_;
  const char* data_;
  size_t len_;
  unsigned threads_;
  std::vector<double> out_;
};

unsigned Threads(const Napi::Value& v) { return std::max(1u, std::min(v.As<Napi::Number>().Uint32Value(), 16u)); }

Napi::Value CheckTree(const Napi::CallbackInfo& info) {
  bool all = info.Length() > 3 && info[3].IsBoolean() && info[3].As<Napi::Boolean>().Value();
  auto* w = new CheckTreeWorker(info.Env(), info[0].As<Napi::Buffer<char>>(), info[1].As<Napi::String>(), Threads(info[2]), all);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value LinkTree(const Napi::CallbackInfo& info) {
  auto* w = new LinkTreeWorker(info.Env(), info[0].As<Napi::Buffer<char>>(), info[1].As<Napi::String>(), info[2].As<Napi::String>(), Threads(info[3]));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value BlobInodes(const Napi::CallbackInfo& info) {
  auto* w = new BlobInodesWorker(info.Env(), info[0].As<Napi::String>(), info[1].As<Napi::Buffer<char>>(), Threads(info[2]));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace

void InitLinkFarm(Napi::Env env, Napi::Object fastFs) {
  fastFs.Set("checkTree", Napi::Function::New(env, CheckTree));
  fastFs.Set("linkTree", Napi::Function::New(env, LinkTree));
  fastFs.Set("blobInodes", Napi::Function::New(env, BlobInodes));
}

}  // namespace vrift
