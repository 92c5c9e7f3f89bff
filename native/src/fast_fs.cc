// Fast filesystem helpers: walking a tree for ingest (scanTree), and
// materializing one as a link farm (checkTree, linkTree) with the same
// mkdir/link/symlink calls `cp -al` makes, issued from native threads so
// tens of thousands of entries cost the syscalls and little else. Work is
// split across threads by directory level (mkdir) and by contiguous ranges
// (links), so each thread mostly touches its own directories.
#include "fast_fs.h"

#include "layout.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

namespace vrift {
namespace {

struct Failure {
  uint32_t index;
  int err;
};

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

class Collector {
 public:
  void Add(uint32_t i, int err) {
    // Failures are rare; a spinlock keeps the common path free of locking.
    while (lock_.test_and_set(std::memory_order_acquire)) {
    }
    fails_.push_back({i, err});
    lock_.clear(std::memory_order_release);
  }
  std::vector<Failure>& Get() { return fails_; }

 private:
  std::atomic_flag lock_ = ATOMIC_FLAG_INIT;
  std::vector<Failure> fails_;
};

int OpenRoot(Napi::Env env, const std::string& root) {
  int fd = open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    Napi::Error e = Napi::Error::New(env, std::string("cannot open ") + root + ": " + strerror(errno));
    e.Set("errno", Napi::Number::New(env, errno));
    throw e;
  }
  return fd;
}

// scanTree(root) -> { paths, stats, targets, error? }
//   Walks the tree under `root` without following symlinks (the root
//   itself must be a directory). Every entry below it, depth first, in
//   readdir order:
//     paths:   Buffer of NUL-terminated paths relative to root ('/'-separated)
//     stats:   Float64Array, 7 per entry: [kind, mode, size, mtimeMs, ctimeMs, dev, ino]
//              kind: 1 file, 2 dir, 3 symlink, 4 fifo, 5 socket, 6 block dev, 7 char dev
//     targets: Buffer of NUL-terminated symlink targets, one per symlink, in order
//   On the first error: error = { errno, path } (absolute) and the walk stops.
constexpr int kScanFields = 7;

int KindOf(mode_t m) {
  if (S_ISREG(m)) return 1;
  if (S_ISDIR(m)) return 2;
  if (S_ISLNK(m)) return 3;
  if (S_ISFIFO(m)) return 4;
  if (S_ISSOCK(m)) return 5;
  if (S_ISBLK(m)) return 6;
  return 7;
}

double Ms(const struct timespec& t) { return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) / 1e6; }

Napi::Value ScanTree(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string root = info[0].As<Napi::String>();
  std::string paths, targets;
  std::vector<double> stats;
  int err = 0;
  std::string errPath;
  // Stack of (open directory fd, relative path of that directory).
  struct Frame {
    DIR* dir;
    std::string rel;
  };
  std::vector<Frame> stack;
  int rootfd = open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0) {
    err = errno;
    errPath = root;
  } else {
    DIR* d = fdopendir(rootfd);
    if (!d) {
      err = errno;
      errPath = root;
      close(rootfd);
    } else
      stack.push_back({d, ""});
  }
  std::vector<char> link(4097);
  while (!stack.empty() && err == 0) {
    Frame& f = stack.back();
    errno = 0;
    struct dirent* de = readdir(f.dir);
    if (!de) {
      if (errno != 0) {
        err = errno;
        errPath = root + "/" + f.rel;
      }
      closedir(f.dir);
      stack.pop_back();
      continue;
    }
    const char* name = de->d_name;
    if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) continue;
    std::string rel = f.rel.empty() ? std::string(name) : f.rel + "/" + name;
    int dfd = dirfd(f.dir);
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      err = errno;
      errPath = root + "/" + rel;
      break;
    }
    int kind = KindOf(st.st_mode);
    if (kind == 3) {
      ssize_t n = readlinkat(dfd, name, link.data(), link.size() - 1);
      if (n < 0) {
        err = errno;
        errPath = root + "/" + rel;
        break;
      }
      targets.append(link.data(), n);
      targets.push_back('\0');
    }
    paths.append(rel);
    paths.push_back('\0');
    double row[kScanFields] = {static_cast<double>(kind), static_cast<double>(st.st_mode), static_cast<double>(st.st_size),
                               Ms(st.st_mtim), Ms(st.st_ctim), static_cast<double>(st.st_dev), static_cast<double>(st.st_ino)};
    stats.insert(stats.end(), row, row + kScanFields);
    if (kind == 2) {
      int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      DIR* sub = fd < 0 ? nullptr : fdopendir(fd);
      if (!sub) {
        err = errno;
        errPath = root + "/" + rel;
        if (fd >= 0) close(fd);
        break;
      }
      stack.push_back({sub, rel});  // invalidates f: not used below
    }
  }
  for (auto& f : stack) closedir(f.dir);
  Napi::Object out = Napi::Object::New(env);
  out.Set("paths", Napi::Buffer<char>::Copy(env, paths.data(), paths.size()));
  out.Set("targets", Napi::Buffer<char>::Copy(env, targets.data(), targets.size()));
  Napi::Float64Array arr = Napi::Float64Array::New(env, stats.size());
  if (!stats.empty()) std::memcpy(arr.Data(), stats.data(), stats.size() * sizeof(double));
  out.Set("stats", arr);
  if (err != 0) {
    Napi::Object e = Napi::Object::New(env);
    e.Set("errno", Napi::Number::New(env, err));
    e.Set("path", Napi::String::New(env, errPath));
    out.Set("error", e);
  }
  return out;
}

// --- materializing a tree straight from its encoding ---------------------
//
// A tree blob (docs/tree-format.md), already verified by its digest, is
// parsed here and validated again (paths relative, no "." / ".." / empty
// components, every parent a directory of the tree), then:
//   checkTree(tree, casDir, threads) -> Float64Array [entryIndex, problem, …]
//     one lstat per distinct blob file the tree links (the .x twin for
//     executable entries): problem 1 = missing, 2 = not untouched (size or
//     the canonical mtime differ: vrift_layout.h). The caller re-hashes those.
//   linkTree(tree, root, casDir, threads) -> { dirs, files, symlinks, failures }
//     mkdir every directory (level by level), hard-link every file from the
//     CAS, then create the symlinks (last, so no path ever runs through one).
//     failures: [phase, entryIndex, errno, …] (phase 1 mkdir, 2 link, 3 symlink).
// Malformed input throws (it cannot happen for a tree that passed its digest
// check and decodeTree when it was admitted; this is defence in depth).

// The encoding's letters, modes and limits are those of shim/vrift_layout.h.
struct TreeRec {
  char kind;  // VRIFT_TREE_KIND_*
  bool exec;
  uint64_t size;
  std::string_view digest;  // files
  std::string_view path;
  std::string_view target;  // symlinks
};

bool BadPath(std::string_view p) {
  if (p.empty() || p.front() == '/' || p.back() == '/') return true;
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find('/', start);
    if (end == std::string_view::npos) end = p.size();
    std::string_view c = p.substr(start, end - start);
    if (c.empty() || c == "." || c == ".." || c.size() > VRIFT_TREE_NAME_MAX) return true;
    start = end + 1;
  }
  return p.size() > VRIFT_TREE_PATH_MAX;
}

// A mode field: 1 to 4 octal digits (as the TypeScript decoder reads it); -1 when malformed.
int ParseMode(std::string_view f) {
  if (f.empty() || f.size() > 4) return -1;
  int v = 0;
  for (char c : f) {
    if (c < '0' || c > '7') return -1;
    v = v * 8 + (c - '0');
  }
  return v;
}

std::vector<TreeRec> ParseTree(Napi::Env env, const char* data, size_t len) {
  static const char kHeader[] = VRIFT_TREE_HEADER;
  const size_t hl = sizeof(kHeader) - 1;
  auto bad = [&](const char* why) -> void { throw Napi::Error::New(env, std::string("malformed tree: ") + why); };
  if (len < hl || memcmp(data, kHeader, hl) != 0) bad("bad header");
  std::vector<TreeRec> out;
  std::vector<std::string_view> dirs;  // sorted order makes a parent precede its children
  std::string_view text(data + hl, len - hl);
  size_t pos = 0;
  auto field = [&](char stop) -> std::string_view {
    size_t e = text.find(stop, pos);
    if (e == std::string_view::npos) bad("truncated entry");
    std::string_view f = text.substr(pos, e - pos);
    pos = e + 1;
    return f;
  };
  std::unordered_set<std::string_view> dirSet;
  while (pos < text.size()) {
    TreeRec r{};
    std::string_view kind = field(' ');
    const int mode = ParseMode(field(' '));
    std::string_view size = field(' ');
    std::string_view ref = field(' ');
    r.path = field('\0');
    if (kind.size() != 1 || (kind[0] != VRIFT_TREE_KIND_FILE && kind[0] != VRIFT_TREE_KIND_DIR && kind[0] != VRIFT_TREE_KIND_SYMLINK))
      bad("bad kind");
    r.kind = kind[0];
    if (size.empty() || size.size() > 16) bad("bad size");
    r.size = 0;
    for (char c : size) {
      if (c < '0' || c > '9') bad("bad size");
      r.size = r.size * 10 + static_cast<uint64_t>(c - '0');
    }
    if (BadPath(r.path)) bad("bad path");
    size_t slash = r.path.rfind('/');
    if (slash != std::string_view::npos && !dirSet.count(r.path.substr(0, slash))) bad("entry without a parent directory");
    if (r.kind == VRIFT_TREE_KIND_FILE) {
      if (ref.size() != VRIFT_LAYOUT_DIGEST_HEX || ref.find_first_not_of("0123456789abcdef") != std::string_view::npos) bad("bad digest");
      if (mode != VRIFT_TREE_MODE_FILE && mode != VRIFT_TREE_MODE_EXEC) bad("bad file mode");
      r.exec = mode == VRIFT_TREE_MODE_EXEC;
      r.digest = ref;
    } else if (r.kind == VRIFT_TREE_KIND_DIR) {
      if (mode != VRIFT_TREE_MODE_DIR || ref != VRIFT_TREE_NO_REF) bad("bad directory entry");
      dirSet.insert(r.path);
    } else {
      if (mode != VRIFT_TREE_MODE_SYMLINK || ref != VRIFT_TREE_NO_REF) bad("bad symlink entry");
      r.target = field('\0');
      if (r.target.empty()) bad("empty symlink target");
    }
    out.push_back(r);
  }
  return out;
}

std::string BlobPath(const std::string& casDir, const TreeRec& r) { return vrift::BlobPath(casDir, r.digest, r.exec); }

Napi::Value CheckTree(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto buf = info[0].As<Napi::Buffer<char>>();
  std::string casDir = info[1].As<Napi::String>();
  unsigned threads = info[2].As<Napi::Number>().Uint32Value();
  auto recs = ParseTree(env, buf.Data(), buf.Length());
  // Distinct blob files (digest + twin flag), first entry index for each.
  std::vector<uint32_t> firsts;
  std::unordered_set<std::string> seen;
  for (uint32_t i = 0; i < recs.size(); i++) {
    if (recs[i].kind != VRIFT_TREE_KIND_FILE) continue;
    std::string key(recs[i].digest);
    if (recs[i].exec) key.push_back('x');
    if (seen.insert(std::move(key)).second) firsts.push_back(i);
  }
  std::vector<int> problem(firsts.size(), 0);
  ParallelRanges(firsts.size(), threads, [&](size_t k) {
    const TreeRec& r = recs[firsts[k]];
    struct stat st;
    if (lstat(BlobPath(casDir, r).c_str(), &st) != 0)
      problem[k] = 1;
    else if (static_cast<uint64_t>(st.st_size) != r.size || st.st_mtim.tv_sec != VRIFT_LAYOUT_BLOB_MTIME_SEC || st.st_mtim.tv_nsec != 0)
      problem[k] = 2;
  });
  std::vector<double> out;
  for (size_t k = 0; k < firsts.size(); k++)
    if (problem[k]) out.insert(out.end(), {static_cast<double>(firsts[k]), static_cast<double>(problem[k])});
  Napi::Float64Array arr = Napi::Float64Array::New(env, out.size());
  if (!out.empty()) std::memcpy(arr.Data(), out.data(), out.size() * sizeof(double));
  return arr;
}

Napi::Value LinkTree(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto buf = info[0].As<Napi::Buffer<char>>();
  std::string root = info[1].As<Napi::String>();
  std::string casDir = info[2].As<Napi::String>();
  unsigned threads = info[3].As<Napi::Number>().Uint32Value();
  auto recs = ParseTree(env, buf.Data(), buf.Length());
  int rootfd = OpenRoot(env, root);
  std::vector<std::vector<uint32_t>> levels;
  std::vector<uint32_t> files, links;
  for (uint32_t i = 0; i < recs.size(); i++) {
    const TreeRec& r = recs[i];
    if (r.kind == VRIFT_TREE_KIND_DIR) {
      size_t d = static_cast<size_t>(std::count(r.path.begin(), r.path.end(), '/'));
      if (levels.size() <= d) levels.resize(d + 1);
      levels[d].push_back(i);
    } else if (r.kind == VRIFT_TREE_KIND_FILE)
      files.push_back(i);
    else
      links.push_back(i);
  }
  Collector fails;
  auto fail = [&](int phase, uint32_t i, int err) {
    fails.Add(i, err + phase * 100000);  // phase folded into the errno slot; unpacked below
  };
  for (auto& level : levels) {
    ParallelRanges(level.size(), threads, [&](size_t k) {
      std::string p(recs[level[k]].path);
      if (mkdirat(rootfd, p.c_str(), VRIFT_TREE_MODE_DIR) != 0 && errno != EEXIST) fail(1, level[k], errno);
    });
  }
  ParallelRanges(files.size(), threads, [&](size_t k) {
    const TreeRec& r = recs[files[k]];
    std::string p(r.path);
    if (linkat(AT_FDCWD, BlobPath(casDir, r).c_str(), rootfd, p.c_str(), 0) != 0) fail(2, files[k], errno);
  });
  ParallelRanges(links.size(), threads, [&](size_t k) {
    const TreeRec& r = recs[links[k]];
    std::string p(r.path), t(r.target);
    if (symlinkat(t.c_str(), rootfd, p.c_str()) != 0) fail(3, links[k], errno);
  });
  close(rootfd);
  auto& f = fails.Get();
  std::sort(f.begin(), f.end(), [](const Failure& a, const Failure& b) { return a.index < b.index; });
  Napi::Array arr = Napi::Array::New(env, f.size() * 3);
  for (size_t i = 0; i < f.size(); i++) {
    arr.Set(i * 3, Napi::Number::New(env, f[i].err / 100000));
    arr.Set(i * 3 + 1, Napi::Number::New(env, f[i].index));
    arr.Set(i * 3 + 2, Napi::Number::New(env, f[i].err % 100000));
  }
  Napi::Object out = Napi::Object::New(env);
  size_t ndirs = 0;
  for (auto& l : levels) ndirs += l.size();
  out.Set("dirs", Napi::Number::New(env, ndirs));
  out.Set("files", Napi::Number::New(env, files.size()));
  out.Set("symlinks", Napi::Number::New(env, links.size()));
  out.Set("failures", arr);
  return out;
}

}  // namespace

void InitFastFs(Napi::Env env, Napi::Object exports) {
  Napi::Object fs = Napi::Object::New(env);
  fs.Set("scanTree", Napi::Function::New(env, ScanTree));
  fs.Set("checkTree", Napi::Function::New(env, CheckTree));
  fs.Set("linkTree", Napi::Function::New(env, LinkTree));
  exports.Set("fastFs", fs);
}

}  // namespace vrift
