// BLAKE3-256 in native code (the vendored official C implementation,
// third_party/blake3), for the places where JavaScript hashing on the main
// thread was the bottleneck. exports.blake3:
//
// hash(buf) -> string
//   The digest (64 lowercase hex characters) of a Buffer or Uint8Array,
//   synchronously: src/lib/digest.ts hashBuffer, vrift's one BLAKE3.
//   Called per blob, mostly on small buffers: the digest goes straight
//   from a stack buffer into a JS string (no heap string in between).
// new Hasher(); hasher.update(buf); hasher.digest() -> string
//   Incremental, synchronously (digest.ts StreamHasher); digest() does not
//   end the hasher (more updates may follow).
// hashFile(path, threads) -> Promise<string | null>
//   A file's digest, hashed on `threads` native threads: the file is cut
//   into kSegment-sized complete subtrees of BLAKE3's tree, each thread
//   maps one (mmap, MAP_POPULATE), hashes it and unmaps it, and the
//   subtrees are joined in order (blake3_tree.h); the tail after the last
//   whole segment is read to EOF and hashed last. Memory: one segment
//   mapped per thread, whatever the file size. Resolves null when the file
//   shrank while it was hashed, including a truncation under a mapping
//   (SIGBUS, caught: see OnSigbus) (the caller hashes it another way); rejects
//   with an Error whose `code` is the errno on an I/O error.
#include "blake3_hash.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "blake3_tree.h"
#include "vrift_layout.h"

namespace vrift {
namespace {

// A power of two (a complete subtree of 4096 chunks), mapped, hashed and
// unmapped by one thread at a time: hashing straight from the page cache
// (no copy) on two threads beats a read() of the file on this machine.
constexpr size_t kSegment = 4 << 20;
// The tail after the last whole segment is read into a buffer this big.
constexpr size_t kTailBuf = 512 << 10;

void FinalHex(const blake3_hasher& h, char hex[VRIFT_LAYOUT_DIGEST_HEX]) {
  uint8_t out[BLAKE3_OUT_LEN];
  blake3_hasher_finalize(&h, out, BLAKE3_OUT_LEN);
  vrift_layout_hex(out, hex);
}

std::string FinalHex(const blake3_hasher& h) {
  char hex[VRIFT_LAYOUT_DIGEST_HEX];
  FinalHex(h, hex);
  return std::string(hex, sizeof hex);
}

// A digest as a JS string (latin1: the hex is ASCII, nothing to decode).
Napi::Value HexString(Napi::Env env, const blake3_hasher& h) {
  char hex[VRIFT_LAYOUT_DIGEST_HEX];
  FinalHex(h, hex);
  napi_value s;
  NAPI_THROW_IF_FAILED(env, napi_create_string_latin1(env, hex, sizeof hex, &s), Napi::Value());
  return Napi::Value(env, s);
}

// Reads exactly `len` bytes at `off` unless EOF comes first; returns the bytes read or -errno.
ssize_t PreadFull(int fd, uint8_t* dst, size_t len, off_t off) {
  size_t got = 0;
  while (got < len) {
    ssize_t r = pread(fd, dst + got, len - got, off + static_cast<off_t>(got));
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return static_cast<ssize_t>(got);
}

struct FreeDeleter {
  void operator()(uint8_t* p) const { free(p); }
};
using Block = std::unique_ptr<uint8_t, FreeDeleter>;

Block AllocBlock(size_t n) { return Block(static_cast<uint8_t*>(aligned_alloc(4096, n))); }

// A mapped file truncated under us raises SIGBUS on the next access to a
// page past its new end. The hashing threads catch it (siglongjmp back to
// the segment) and report the file as changed; any other SIGBUS goes to
// whatever handled it before (by default: the process dies, as without us).
// Installed once, at the first hashFile; a SIGBUS handler installed after
// it (a JS process.on('SIGBUS')) would take its place — nothing in vrift does.
thread_local sigjmp_buf* tlJump = nullptr;
struct sigaction prevBus;

void OnSigbus(int sig, siginfo_t* si, void* ctx) {
  if (sigjmp_buf* j = tlJump) siglongjmp(*j, 1);
  if ((prevBus.sa_flags & SA_SIGINFO) && prevBus.sa_sigaction) {
    prevBus.sa_sigaction(sig, si, ctx);
  } else if (!(prevBus.sa_flags & SA_SIGINFO) && prevBus.sa_handler != SIG_DFL && prevBus.sa_handler != SIG_IGN) {
    prevBus.sa_handler(sig);
  } else {
    signal(SIGBUS, SIG_DFL);
    raise(SIGBUS);
  }
}

void InstallSigbus() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = OnSigbus;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &prevBus);
  });
}

}  // namespace

int WithFileBytes(int fd, uint64_t off, size_t len, std::vector<uint8_t>& fallback, void (*fn)(void* ctx, const uint8_t* bytes), void* ctx) {
  InstallSigbus();
  // MAP_POPULATE: one call faults the whole range in from the page cache.
  void* m = off % static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) == 0 && len > 0
                ? mmap(nullptr, len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, static_cast<off_t>(off))
                : MAP_FAILED;
  if (m != MAP_FAILED) {
    sigjmp_buf jump;
    int status = 0;
    tlJump = nullptr;  // first touch of the thread-local outside the handler
    if (sigsetjmp(jump, 0) == 0) {
      tlJump = &jump;
      fn(ctx, static_cast<const uint8_t*>(m));
    } else {
      status = -1;  // SIGBUS: the file was truncated while mapped
    }
    tlJump = nullptr;
    munmap(m, len);
    return status;
  }
  // Not mappable (some filesystems, an unaligned offset, nothing to map): read it instead.
  if (fallback.size() < std::max<size_t>(len, 1)) fallback.resize(std::max<size_t>(len, 1));  // never a null pointer for fn
  ssize_t n = PreadFull(fd, fallback.data(), len, static_cast<off_t>(off));
  if (n < 0) return static_cast<int>(-n);
  if (static_cast<size_t>(n) != len) return -1;
  fn(ctx, fallback.data());
  return 0;
}

namespace {

// Hashes whole segment i into cvs (64 bytes): 0, an errno, or -1 when the
// file is shorter than the segment (it shrank since the fstat).
int HashSegment(int fd, size_t i, std::vector<uint8_t>& fallback, uint8_t* cvs) {
  struct Job {
    uint64_t counter;
    uint8_t* cvs;
  } job{i * (kSegment / BLAKE3_CHUNK_LEN), cvs};
  return WithFileBytes(fd, i * kSegment, kSegment, fallback, [](void* ctx, const uint8_t* bytes) {
    auto* j = static_cast<Job*>(ctx);
    vrift_blake3_subtree(bytes, kSegment, j->counter, j->cvs);
  }, &job);
}

class HashFileWorker : public Napi::AsyncWorker {
 public:
  HashFileWorker(Napi::Env env, std::string path, unsigned threads)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), path_(std::move(path)), threads_(std::max(1u, std::min(threads, 16u))) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    InstallSigbus();
    int fd = open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      errno_ = errno;
      SetError(std::string("open ") + path_ + ": " + strerror(errno_));
      return;
    }
    Run(fd);
    close(fd);
    if (errno_ != 0) SetError(std::string("read ") + path_ + ": " + strerror(errno_));
  }

  void OnOK() override {
    Napi::Env env = Env();
    deferred_.Resolve(changed_ ? env.Null() : Napi::String::New(env, digest_));
  }

  void OnError(const Napi::Error& e) override {
    e.Value().Set("code", Napi::Number::New(Env(), errno_));
    deferred_.Reject(e.Value());
  }

 private:
  void Run(int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0) {
      errno_ = errno;
      return;
    }
#ifdef POSIX_FADV_SEQUENTIAL
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    size_t size = static_cast<size_t>(st.st_size);
    // Whole segments; the last byte always goes to the tail (a pushed subtree is never the root).
    size_t segs = size == 0 ? 0 : (size - 1) / kSegment;
    std::vector<uint8_t> cvs(segs * 64);
    std::atomic<size_t> next{0};
    std::atomic<int> err{0};
    std::atomic<bool> changed{false};
    auto work = [&] {
      std::vector<uint8_t> buf;  // only if mmap fails
      for (size_t i; err == 0 && !changed && (i = next.fetch_add(1)) < segs;) {
        int r = HashSegment(fd, i, buf, &cvs[i * 64]);
        if (r > 0) err = r;
        if (r < 0) changed = true;  // the file shrank
      }
    };
    unsigned nthreads = static_cast<unsigned>(std::min<size_t>(threads_, std::max<size_t>(segs, 1)));
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < nthreads; t++) pool.emplace_back(work);
    work();
    for (auto& th : pool) th.join();
    if (err != 0) {
      errno_ = err;
      return;
    }
    if (changed) {
      changed_ = true;
      return;
    }
    blake3_hasher h;
    blake3_hasher_init(&h);
    for (size_t i = 0; i < segs; i++) vrift_blake3_push_subtree(&h, &cvs[i * 64], kSegment);
    // The tail: read to EOF (a file that grew since the fstat is hashed whole).
    Block buf = AllocBlock(kTailBuf);
    if (!buf) {
      errno_ = ENOMEM;
      return;
    }
    for (off_t off = static_cast<off_t>(segs * kSegment);;) {
      ssize_t n = PreadFull(fd, buf.get(), kTailBuf, off);
      if (n < 0) {
        errno_ = static_cast<int>(-n);
        return;
      }
      if (n == 0) break;
      blake3_hasher_update(&h, buf.get(), static_cast<size_t>(n));
      off += n;
    }
    digest_ = FinalHex(h);
  }

  Napi::Promise::Deferred deferred_;
  std::string path_;
  unsigned threads_;
  std::string digest_;
  bool changed_ = false;
  int errno_ = 0;
};

// The bytes of a Buffer / Uint8Array argument (napi_get_typedarray_info
// gives the view's own start: a subarray is hashed as itself).
void BytesOf(const Napi::CallbackInfo& info, const char* what, const uint8_t** data, size_t* len) {
  Napi::Env env = info.Env();
  napi_typedarray_type type = napi_int16_array;
  void* p = nullptr;
  if (info.Length() >= 1 && info[0].IsTypedArray())
    NAPI_THROW_IF_FAILED_VOID(env, napi_get_typedarray_info(env, info[0], &type, len, &p, nullptr, nullptr));
  if (type != napi_uint8_array) throw Napi::TypeError::New(env, std::string(what) + ": buf must be a Buffer or Uint8Array");
  *data = static_cast<const uint8_t*>(p);
}

Napi::Value Hash(const Napi::CallbackInfo& info) {
  const uint8_t* data;
  size_t len;
  BytesOf(info, "hash(buf)", &data, &len);
  blake3_hasher h;
  blake3_hasher_init(&h);
  blake3_hasher_update(&h, data, len);
  return HexString(info.Env(), h);
}

Napi::Value HashFile(const Napi::CallbackInfo& info) {
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber())
    throw Napi::TypeError::New(info.Env(), "hashFile(path, threads): bad arguments");
  auto* w = new HashFileWorker(info.Env(), info[0].As<Napi::String>(), info[1].As<Napi::Number>().Uint32Value());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

class HasherWrap : public Napi::ObjectWrap<HasherWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Hasher", {InstanceMethod<&HasherWrap::Update>("update"), InstanceMethod<&HasherWrap::Digest>("digest")});
  }

  explicit HasherWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<HasherWrap>(info) { blake3_hasher_init(&h_); }

 private:
  Napi::Value Update(const Napi::CallbackInfo& info) {
    const uint8_t* data;
    size_t len;
    BytesOf(info, "update(buf)", &data, &len);
    blake3_hasher_update(&h_, data, len);
    return info.Env().Undefined();
  }

  Napi::Value Digest(const Napi::CallbackInfo& info) { return HexString(info.Env(), h_); }

  blake3_hasher h_;
};

}  // namespace

std::string Blake3Hex(const void* data, size_t len) {
  blake3_hasher h;
  blake3_hasher_init(&h);
  blake3_hasher_update(&h, data, len);
  return FinalHex(h);
}

void InitBlake3(Napi::Env env, Napi::Object exports) {
  Napi::Object b = Napi::Object::New(env);
  b.Set("hash", Napi::Function::New(env, Hash));
  b.Set("hashFile", Napi::Function::New(env, HashFile));
  b.Set("Hasher", HasherWrap::Define(env));
  b.Set("version", Napi::String::New(env, blake3_version()));
  exports.Set("blake3", b);
}

}  // namespace vrift
