// Batched blob I/O for ingest and archive admission: reading many small
// files, and writing many blobs into the CAS, on native threads. readFiles
// can hash each file it read on the same threads (ingest); writeBlobs can
// verify each blob's digest on its threads before writing it
// (blake3_hash.cc). Either way the JavaScript thread does not hash.
//
// readFiles(paths, expectedSizes, threads, hash) -> Promise<{ data, stats, digests }>
//   paths: Buffer of NUL-terminated paths; expectedSizes: Float64Array.
//   data:  one Buffer holding every file's bytes back to back, in order,
//          each at the offset the expected sizes imply.
//   digests: with `hash`, a Buffer of 64 hex characters per file: the
//          BLAKE3 of exactly the bytes in `data` (zeros where status != 0);
//          an empty Buffer without `hash`.
//   stats: Float64Array, STAT_FIELDS per file:
//          [status, size, mtimeMs, ctimeMs, dev, ino]
//          status 0 = read whole and unchanged while read; > 0 = errno;
//          -1 = the file changed (size or times moved, or it is not the
//          expected size any more): the caller retries it another way;
//          -2 = not a regular file.
//
// writeBlobs(tmpPrefix, casDir, data, offsets, digests, threads, verify) -> Promise<Float64Array>
//   Writes each slice data[offsets[2i], +offsets[2i+1]) to
//   its CAS path, <casDir>/<2 hex>/<digest> (vrift_layout.h): a temp file
//   <tmpPrefix>.n<seq>.tmp (O_EXCL, 0444; the prefix is unique to the calling process), then
//   renameat2(RENAME_NOREPLACE), so a blob appears whole or not at all and
//   an existing blob is never replaced. Blobs get the canonical mtime
//   (VRIFT_LAYOUT_BLOB_MTIME_SEC). Per blob: [status, created, 0]; status 0 or an errno
//   (ENOSPC …), created 1 when this call stored it. With `verify` each
//   slice is first hashed (BLAKE3, on the same threads) and written only if
//   it hashes to its digest; one that does not gets status -1 (kMismatch)
//   and nothing is written for it. This is how bytes from outside (peers,
//   packs) are admitted without hashing them on the JavaScript thread.
#include "blob_io.h"

#include "blake3_hash.h"
#include "layout.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace vrift {
namespace {

constexpr int kStatFields = 6;
constexpr int kWriteFields = 3;
constexpr int kMismatch = -1;  // writeBlobs with verify: the bytes do not hash to the digest

std::vector<std::string> SplitNulStrings(const Napi::Buffer<char>& buf) {
  std::vector<std::string> out;
  const char* p = buf.Data();
  const char* end = p + buf.Length();
  while (p < end) {
    const char* z = static_cast<const char*>(memchr(p, '\0', end - p));
    if (!z) break;
    out.emplace_back(p, z - p);
    p = z + 1;
  }
  return out;
}

double MsOf(const struct timespec& t) { return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) / 1e6; }

// Runs fn(i) for i in [0, n), work-stealing by an atomic counter so a few
// big files do not leave one thread with all the work.
template <typename Fn>
void Parallel(size_t n, unsigned threads, Fn fn) {
  threads = std::max(1u, std::min<unsigned>(threads, static_cast<unsigned>(std::min<size_t>(n, 16))));
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < n;) fn(i);
  };
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; t++) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
}

class ReadFilesWorker : public Napi::AsyncWorker {
 public:
  ReadFilesWorker(Napi::Env env, std::vector<std::string> paths, std::vector<double> sizes, unsigned threads, bool hash)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        paths_(std::move(paths)),
        sizes_(std::move(sizes)),
        threads_(threads),
        hash_(hash) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    size_t n = paths_.size();
    offsets_.resize(n + 1);
    offsets_[0] = 0;
    for (size_t i = 0; i < n; i++) offsets_[i + 1] = offsets_[i] + static_cast<size_t>(sizes_[i]);
    data_ = static_cast<char*>(malloc(std::max<size_t>(offsets_[n], 1)));
    if (!data_) {
      SetError("out of memory for a read batch");
      return;
    }
    stats_.assign(n * kStatFields, 0);
    if (hash_) digests_.assign(n * 64, '\0');
    Parallel(n, threads_, [&](size_t i) {
      ReadOne(i);
      if (hash_ && stats_[i * kStatFields] == 0) {
        std::string hex = Blake3Hex(data_ + offsets_[i], offsets_[i + 1] - offsets_[i]);
        std::memcpy(&digests_[i * 64], hex.data(), 64);
      }
    });
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object result = Napi::Object::New(env);
    size_t total = offsets_.back();
    char* data = data_;
    data_ = nullptr;
    result.Set("data", Napi::Buffer<char>::New(env, data, total, [](Napi::Env, char* p) { free(p); }));
    Napi::Float64Array stats = Napi::Float64Array::New(env, stats_.size());
    std::memcpy(stats.Data(), stats_.data(), stats_.size() * sizeof(double));
    result.Set("stats", stats);
    result.Set("digests", Napi::Buffer<char>::Copy(env, digests_.data(), digests_.size()));
    deferred_.Resolve(result);
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

  ~ReadFilesWorker() override { free(data_); }

 private:
  void ReadOne(size_t i) {
    double* st = &stats_[i * kStatFields];
    int fd = open(paths_[i].c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      st[0] = errno;
      return;
    }
    struct stat before, after;
    if (fstat(fd, &before) != 0) {
      st[0] = errno;
      close(fd);
      return;
    }
    if (!S_ISREG(before.st_mode)) {
      st[0] = -2;
      close(fd);
      return;
    }
    size_t want = offsets_[i + 1] - offsets_[i];
    if (static_cast<size_t>(before.st_size) != want) {
      st[0] = -1;  // changed since it was listed: the caller takes the slow path
      close(fd);
      return;
    }
    char* dst = data_ + offsets_[i];
    size_t got = 0;
    while (got < want) {
      ssize_t r = read(fd, dst + got, want - got);
      if (r < 0) {
        if (errno == EINTR) continue;
        st[0] = errno;
        close(fd);
        return;
      }
      if (r == 0) break;
      got += static_cast<size_t>(r);
    }
    // One more byte means the file grew while we read it.
    char extra;
    ssize_t more = got == want ? read(fd, &extra, 1) : 0;
    int fs = fstat(fd, &after);
    close(fd);
    if (fs != 0) {
      st[0] = errno;
      return;
    }
    bool changed = got != want || more > 0 || after.st_size != before.st_size || after.st_ino != before.st_ino ||
                   after.st_mtim.tv_sec != before.st_mtim.tv_sec || after.st_mtim.tv_nsec != before.st_mtim.tv_nsec ||
                   after.st_ctim.tv_sec != before.st_ctim.tv_sec || after.st_ctim.tv_nsec != before.st_ctim.tv_nsec;
    st[0] = changed ? -1 : 0;
    st[1] = static_cast<double>(after.st_size);
    st[2] = MsOf(after.st_mtim);
    st[3] = MsOf(after.st_ctim);
    st[4] = static_cast<double>(after.st_dev);
    st[5] = static_cast<double>(after.st_ino);
  }

  Napi::Promise::Deferred deferred_;
  std::vector<std::string> paths_;
  std::vector<double> sizes_;
  unsigned threads_;
  bool hash_;
  std::string digests_;
  std::vector<size_t> offsets_;
  std::vector<double> stats_;
  char* data_ = nullptr;
};

class WriteBlobsWorker : public Napi::AsyncWorker {
 public:
  WriteBlobsWorker(Napi::Env env, std::string tmpPrefix, std::string casDir, Napi::Buffer<char> data, std::vector<double> offsets,
                   std::vector<std::string> digests, unsigned threads, bool verify)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        tmpPrefix_(std::move(tmpPrefix)),
        casDir_(std::move(casDir)),
        dataRef_(Napi::Persistent(data)),
        data_(data.Data()),
        dataLen_(data.Length()),
        offsets_(std::move(offsets)),
        digests_(std::move(digests)),
        threads_(threads),
        verify_(verify) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    out_.assign(digests_.size() * kWriteFields, 0);
    static std::atomic<uint64_t> counter{0};
    uint64_t base = counter.fetch_add(digests_.size());
    Parallel(digests_.size(), threads_, [&](size_t i) { WriteOne(i, base + i); });
  }

  void OnOK() override {
    Napi::Float64Array out = Napi::Float64Array::New(Env(), out_.size());
    std::memcpy(out.Data(), out_.data(), out_.size() * sizeof(double));
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  void WriteOne(size_t i, uint64_t seq) {
    double* o = &out_[i * kWriteFields];
    const std::string& d = digests_[i];
    size_t off = static_cast<size_t>(offsets_[2 * i]);
    size_t len = static_cast<size_t>(offsets_[2 * i + 1]);
    if (d.size() != 64 || off + len > dataLen_) {
      o[0] = EINVAL;
      return;
    }
    if (verify_ && Blake3Hex(data_ + off, len) != d) {
      o[0] = kMismatch;
      return;
    }
    std::string tmp = tmpPrefix_ + ".n" + std::to_string(seq) + ".tmp";
    const std::string final = BlobPath(casDir_, d, false);
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, VRIFT_LAYOUT_BLOB_MODE);
    if (fd < 0) {
      o[0] = errno;
      return;
    }
    size_t done = 0;
    while (done < len) {
      ssize_t w = write(fd, data_ + off + done, len - done);
      if (w < 0) {
        if (errno == EINTR) continue;
        o[0] = errno;
        close(fd);
        unlink(tmp.c_str());
        return;
      }
      done += static_cast<size_t>(w);
    }
    // Every blob carries the canonical mtime (vrift_layout.h): a write into it shows.
    const struct timespec canonical[2] = {{VRIFT_LAYOUT_BLOB_MTIME_SEC, 0}, {VRIFT_LAYOUT_BLOB_MTIME_SEC, 0}};
    if (futimens(fd, canonical) != 0 || close(fd) != 0) {
      o[0] = errno;
      unlink(tmp.c_str());
      return;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
      // RENAME_NOREPLACE: the blob appears atomically, and one already there is never replaced.
      if (syscall(SYS_renameat2, AT_FDCWD, tmp.c_str(), AT_FDCWD, final.c_str(), RENAME_NOREPLACE) == 0) {
        o[1] = 1;
        return;
      }
      if (errno == EEXIST) {
        unlink(tmp.c_str());
        return;
      }
      int err = errno;
      if (err == ENOENT && attempt == 0) {
        // The shard directory is missing; EEXIST means another thread made it first.
        if (mkdir(ShardPath(casDir_, d).c_str(), 0755) == 0 || errno == EEXIST) continue;
        err = errno;
      }
      o[0] = err;
      unlink(tmp.c_str());
      return;
    }
    o[0] = errno;
    unlink(tmp.c_str());
  }

  Napi::Promise::Deferred deferred_;
  std::string tmpPrefix_, casDir_;
  Napi::Reference<Napi::Buffer<char>> dataRef_;  // keeps the bytes alive while threads read them
  const char* data_;
  size_t dataLen_;
  std::vector<double> offsets_;
  std::vector<std::string> digests_;
  unsigned threads_;
  bool verify_;
  std::vector<double> out_;
};

std::vector<double> ToVector(const Napi::Float64Array& a) { return std::vector<double>(a.Data(), a.Data() + a.ElementLength()); }

Napi::Value ReadFiles(const Napi::CallbackInfo& info) {
  auto* w = new ReadFilesWorker(info.Env(), SplitNulStrings(info[0].As<Napi::Buffer<char>>()), ToVector(info[1].As<Napi::Float64Array>()),
                                info[2].As<Napi::Number>().Uint32Value(), info.Length() > 3 && info[3].ToBoolean().Value());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value WriteBlobs(const Napi::CallbackInfo& info) {
  auto* w = new WriteBlobsWorker(info.Env(), info[0].As<Napi::String>(), info[1].As<Napi::String>(), info[2].As<Napi::Buffer<char>>(),
                                 ToVector(info[3].As<Napi::Float64Array>()), SplitNulStrings(info[4].As<Napi::Buffer<char>>()),
                                 info[5].As<Napi::Number>().Uint32Value(), info.Length() > 6 && info[6].ToBoolean().Value());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace

void InitBlobIo(Napi::Env env, Napi::Object exports) {
  Napi::Object io = Napi::Object::New(env);
  io.Set("readFiles", Napi::Function::New(env, ReadFiles));
  io.Set("writeBlobs", Napi::Function::New(env, WriteBlobs));
  exports.Set("blobIo", io);
}

}  // namespace vrift
