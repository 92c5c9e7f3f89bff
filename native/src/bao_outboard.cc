// Bao encoders (the formats are in bao_tree.h). In exports.bao:
//
// outboard(buf, groupLog) -> { outboard: Buffer, root: string }
//   The outboard of a blob in memory and its BLAKE3 digest, computed in
//   the same pass (synchronously, on the calling thread).
// outboardFile(path, groupLog, threads) -> Promise<{ outboard, root, size } | null>
//   The same for a file, on `threads` native threads: nodes of at most
//   kSegment bytes are mapped (WithFileBytes: straight from the page
//   cache, as hashFile does) and encoded independently, each into its own
//   place in the pre-order outboard (a subtree's parents are contiguous
//   there), then the few parents above them are joined. Memory: one
//   segment mapped per thread. Resolves null when the file shrank while it
//   was read; rejects with an Error whose `code` is the errno.
// encodeCombined(buf, groupLog) -> Buffer
//   The combined encoding: the outboard's parents with the groups'
//   bytes interleaved in pre-order (no length header).
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bao_napi.h"
#include "bao_tree.h"
#include "blake3_hash.h"

namespace vrift::bao {
namespace {

// Nodes this big or smaller are one task for one thread (4 MiB: a whole
// number of groups for every group size allowed).
constexpr uint64_t kSegment = uint64_t{4} << 20;

/**
 * Encodes node n from its bytes (`bytes` is its first byte): its parents
 * go into `out` at their pre-order places, and its chaining value (the
 * digest for the root) into `cv`. With `combined`, `out` is the combined
 * encoding: a node's first parent or group byte sits at
 * pair * 64 + Start(n) (every parent and group before it in pre-order).
 */
void Encode(const Tree& t, const Node& n, const uint8_t* bytes, uint8_t* out, bool combined, uint8_t cv[kCv]) {
  const uint64_t at = n.pair * kPair + (combined ? t.Start(n) : 0);
  if (n.m == 1) {
    NodeCv(t, n, bytes, cv);
    if (combined) std::memcpy(out + at, bytes, static_cast<size_t>(t.End(n) - t.Start(n)));
    return;
  }
  const Node l = n.Left(), r = n.Right();
  uint8_t pair[kPair];
  Encode(t, l, bytes, out, combined, pair);
  Encode(t, r, bytes + (t.Start(r) - t.Start(n)), out, combined, pair + kCv);
  std::memcpy(out + at, pair, kPair);
  vrift_blake3_parent_cv(pair, n.root ? 1 : 0, cv);
}

Napi::Value Outboard(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint8_t* data;
  size_t len;
  ArgBytes(info, 0, "outboard(buf, groupLog)", &data, &len);
  const Tree t{len, ArgGroupLog(info, 1, "outboard(buf, groupLog)")};
  Napi::Buffer<uint8_t> ob = Napi::Buffer<uint8_t>::New(env, static_cast<size_t>(OutboardSize(t.size, t.group_log)));
  uint8_t root[kCv];
  Encode(t, t.Root(), data, ob.Data(), false, root);
  Napi::Object r = Napi::Object::New(env);
  r.Set("outboard", ob);
  r.Set("root", HexDigest(env, root));
  return r;
}

Napi::Value EncodeCombined(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint8_t* data;
  size_t len;
  ArgBytes(info, 0, "encodeCombined(buf, groupLog)", &data, &len);
  const Tree t{len, ArgGroupLog(info, 1, "encodeCombined(buf, groupLog)")};
  Napi::Buffer<uint8_t> out = Napi::Buffer<uint8_t>::New(env, static_cast<size_t>(OutboardSize(t.size, t.group_log) + len));
  uint8_t root[kCv];
  Encode(t, t.Root(), data, out.Data(), true, root);
  return out;
}

class OutboardFileWorker : public Napi::AsyncWorker {
 public:
  OutboardFileWorker(Napi::Env env, std::string path, unsigned group_log, unsigned threads)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        path_(std::move(path)),
        group_log_(group_log),
        threads_(std::max(1u, std::min(threads, 16u))) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    int fd = open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      errno_ = errno;
      SetError("open " + path_ + ": " + strerror(errno_));
      return;
    }
    Run(fd);
    close(fd);
    if (errno_ != 0) SetError("read " + path_ + ": " + strerror(errno_));
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (changed_) return deferred_.Resolve(env.Null());
    Napi::Object r = Napi::Object::New(env);
    r.Set("outboard", Napi::Buffer<uint8_t>::Copy(env, outboard_.data(), outboard_.size()));
    r.Set("root", HexDigest(env, root_));
    r.Set("size", Napi::Number::New(env, static_cast<double>(tree_.size)));
    deferred_.Resolve(r);
  }

  void OnError(const Napi::Error& e) override {
    e.Value().Set("code", Napi::Number::New(Env(), errno_));
    deferred_.Reject(e.Value());
  }

 private:
  struct Task {
    Node node;
    uint8_t cv[kCv];
  };

  // The nodes of at most kSegment bytes that cover the blob, left to right.
  void CollectTasks(const Node& n) {
    if (n.m == 1 || tree_.End(n) - tree_.Start(n) <= kSegment) {
      tasks_.push_back(Task{n, {}});
      return;
    }
    CollectTasks(n.Left());
    CollectTasks(n.Right());
  }

  // The parents above the tasks, from the tasks' chaining values (in the
  // same left-to-right order CollectTasks met them).
  void Join(const Node& n, size_t& next, uint8_t cv[kCv]) {
    if (n.m == 1 || tree_.End(n) - tree_.Start(n) <= kSegment) {
      std::memcpy(cv, tasks_[next++].cv, kCv);
      return;
    }
    uint8_t pair[kPair];
    Join(n.Left(), next, pair);
    Join(n.Right(), next, pair + kCv);
    std::memcpy(outboard_.data() + n.pair * kPair, pair, kPair);
    vrift_blake3_parent_cv(pair, n.root ? 1 : 0, cv);
  }

  void Run(int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0) {
      errno_ = errno;
      return;
    }
#ifdef POSIX_FADV_SEQUENTIAL
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    tree_ = Tree{static_cast<uint64_t>(st.st_size), group_log_};
    outboard_.assign(static_cast<size_t>(OutboardSize(tree_.size, group_log_)), 0);
    CollectTasks(tree_.Root());
    std::atomic<size_t> next{0};
    std::atomic<int> err{0};
    struct Job {
      const Tree* tree;
      Task* task;
      uint8_t* outboard;
    };
    auto work = [&] {
      std::vector<uint8_t> fallback;  // only where the file cannot be mapped
      for (size_t i; err == 0 && (i = next.fetch_add(1)) < tasks_.size();) {
        Job job{&tree_, &tasks_[i], outboard_.data()};
        const uint64_t start = tree_.Start(job.task->node), len = tree_.End(job.task->node) - start;
        const int r = WithFileBytes(fd, start, static_cast<size_t>(len), fallback, [](void* ctx, const uint8_t* bytes) {
          auto* j = static_cast<Job*>(ctx);
          Encode(*j->tree, j->task->node, bytes, j->outboard, false, j->task->cv);
        }, &job);
        if (r != 0) err = r;  // -1: the file shrank
      }
    };
    const unsigned n = static_cast<unsigned>(std::min<size_t>(threads_, tasks_.size()));
    std::vector<std::thread> pool;
    for (unsigned k = 1; k < n; k++) pool.emplace_back(work);
    work();
    for (auto& th : pool) th.join();
    if (err == -1) {
      changed_ = true;
      return;
    }
    if (err != 0) {
      errno_ = err;
      return;
    }
    size_t k = 0;
    Join(tree_.Root(), k, root_);
  }

  Napi::Promise::Deferred deferred_;
  std::string path_;
  unsigned group_log_;
  unsigned threads_;
  Tree tree_{0, 0};
  std::vector<Task> tasks_;
  std::vector<uint8_t> outboard_;
  uint8_t root_[kCv] = {};
  bool changed_ = false;
  int errno_ = 0;
};

Napi::Value OutboardFile(const Napi::CallbackInfo& info) {
  const char* call = "outboardFile(path, groupLog, threads)";
  if (info.Length() < 3 || !info[0].IsString()) throw Napi::TypeError::New(info.Env(), std::string(call) + ": bad arguments");
  const unsigned group_log = ArgGroupLog(info, 1, call);
  const unsigned threads = static_cast<unsigned>(std::min<uint64_t>(ArgSize(info, 2, call), 16));
  auto* w = new OutboardFileWorker(info.Env(), info[0].As<Napi::String>().Utf8Value(), group_log, threads);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace

void InitOutboard(Napi::Env env, Napi::Object bao) {
  bao.Set("outboard", Napi::Function::New(env, Outboard));
  bao.Set("outboardFile", Napi::Function::New(env, OutboardFile));
  bao.Set("encodeCombined", Napi::Function::New(env, EncodeCombined));
}

}  // namespace vrift::bao
