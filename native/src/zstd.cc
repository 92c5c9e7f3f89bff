// zstd streams for packs, with libzstd loaded at run time (dlopen of
// libzstd.so.1, present on nearly every Linux system; no headers needed
// at build time). Without the library, zstdAvailable() is false and
// callers store packs uncompressed.
//
// new ZstdStream(compress: boolean, level: number)
// stream.transform(input: Buffer, end: boolean, maxOut?: number) -> Promise<Buffer>
//   Feeds `input` through the (de)compressor on the libuv thread pool and
//   resolves with everything it produced; `end` finishes the frame
//   (compression) or checks the input ended on a frame boundary
//   (decompression: a truncated frame rejects). Calls must not overlap.
//   With `maxOut` (decompression), a call stops once it has produced that
//   many bytes (give or take one 1 MiB step): a few KiB of input can
//   declare gigabytes (a zstd bomb), so output is never gathered whole.
//   stream.consumed() then says how much of `input` was read; the caller
//   passes the rest (or an empty buffer, while stream.pending() says the
//   decompressor still holds output) to the next call.
#include "zstd.h"

#include <dlfcn.h>

#include <cstring>
#include <string>
#include <vector>

namespace vrift {
namespace {

// The stable subset of zstd.h (v1.4+ ABI) this file uses.
struct ZInBuffer {
  const void* src;
  size_t size;
  size_t pos;
};
struct ZOutBuffer {
  void* dst;
  size_t size;
  size_t pos;
};
enum { kZstdContinue = 0, kZstdEnd = 2 };
constexpr int kZstdCompressionLevel = 100;

struct ZstdApi {
  void* (*createCCtx)();
  size_t (*freeCCtx)(void*);
  size_t (*cctxSetParameter)(void*, int, int);
  size_t (*compressStream2)(void*, ZOutBuffer*, ZInBuffer*, int);
  void* (*createDCtx)();
  size_t (*freeDCtx)(void*);
  size_t (*decompressStream)(void*, ZOutBuffer*, ZInBuffer*);
  unsigned (*isError)(size_t);
  const char* (*getErrorName)(size_t);
  bool ok = false;
};

const ZstdApi& Api() {
  static ZstdApi api = [] {
    ZstdApi a{};
    void* h = dlopen("libzstd.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) return a;
    auto sym = [h](const char* n) { return dlsym(h, n); };
    a.createCCtx = reinterpret_cast<void* (*)()>(sym("ZSTD_createCCtx"));
    a.freeCCtx = reinterpret_cast<size_t (*)(void*)>(sym("ZSTD_freeCCtx"));
    a.cctxSetParameter = reinterpret_cast<size_t (*)(void*, int, int)>(sym("ZSTD_CCtx_setParameter"));
    a.compressStream2 = reinterpret_cast<size_t (*)(void*, ZOutBuffer*, ZInBuffer*, int)>(sym("ZSTD_compressStream2"));
    a.createDCtx = reinterpret_cast<void* (*)()>(sym("ZSTD_createDCtx"));
    a.freeDCtx = reinterpret_cast<size_t (*)(void*)>(sym("ZSTD_freeDCtx"));
    a.decompressStream = reinterpret_cast<size_t (*)(void*, ZOutBuffer*, ZInBuffer*)>(sym("ZSTD_decompressStream"));
    a.isError = reinterpret_cast<unsigned (*)(size_t)>(sym("ZSTD_isError"));
    a.getErrorName = reinterpret_cast<const char* (*)(size_t)>(sym("ZSTD_getErrorName"));
    a.ok = a.createCCtx && a.freeCCtx && a.cctxSetParameter && a.compressStream2 && a.createDCtx && a.freeDCtx &&
           a.decompressStream && a.isError && a.getErrorName;
    return a;
  }();
  return api;
}

constexpr size_t kOutChunk = 1 << 20;

class ZstdStream : public Napi::ObjectWrap<ZstdStream> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ZstdStream", {InstanceMethod<&ZstdStream::Transform>("transform"), InstanceMethod<&ZstdStream::Consumed>("consumed"),
                                           InstanceMethod<&ZstdStream::Pending>("pending")});
  }

  explicit ZstdStream(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ZstdStream>(info) {
    const ZstdApi& z = Api();
    if (!z.ok) throw Napi::Error::New(info.Env(), "libzstd.so.1 is not available");
    compress_ = info[0].As<Napi::Boolean>().Value();
    if (compress_) {
      ctx_ = z.createCCtx();
      if (ctx_) z.cctxSetParameter(ctx_, kZstdCompressionLevel, info[1].As<Napi::Number>().Int32Value());
    } else {
      ctx_ = z.createDCtx();
    }
    if (!ctx_) throw Napi::Error::New(info.Env(), "zstd: out of memory");
  }

  ~ZstdStream() override {
    if (!ctx_) return;
    if (compress_)
      Api().freeCCtx(ctx_);
    else
      Api().freeDCtx(ctx_);
  }

  // Runs one transform step on the thread pool.
  class Step : public Napi::AsyncWorker {
   public:
    Step(Napi::Env env, ZstdStream* s, Napi::Buffer<char> in, bool end, size_t maxOut)
        : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), s_(s), inRef_(Napi::Persistent(in)), in_(in.Data()), len_(in.Length()), end_(end), maxOut_(maxOut) {
      selfRef_ = Napi::Persistent(s->Value());
    }
    Napi::Promise Promise() { return deferred_.Promise(); }

    void Execute() override {
      const ZstdApi& z = Api();
      ZInBuffer in{in_, len_, 0};
      std::vector<char> chunk(kOutChunk);
      for (;;) {
        ZOutBuffer out{chunk.data(), chunk.size(), 0};
        size_t r;
        if (s_->compress_) {
          r = z.compressStream2(s_->ctx_, &out, &in, end_ ? kZstdEnd : kZstdContinue);
        } else if (in.size > 0 || s_->pending_) {
          size_t before = in.pos;
          r = z.decompressStream(s_->ctx_, &out, &in);
          // A call that neither read nor wrote (all input used, output drained) says nothing
          // about the frame; at a frame boundary it would report the next frame's header size.
          if (!z.isError(r) && (in.pos > before || out.pos > 0)) s_->frameDone_ = r == 0;
          // A full output buffer may leave decoded bytes inside zstd: the next call (even without input) must ask.
          s_->pending_ = !z.isError(r) && out.pos == out.size;
        } else {
          // No input (the end-of-stream call): earlier calls drained the output already.
          r = 0;
        }
        if (z.isError(r)) {
          SetError(std::string("zstd: ") + z.getErrorName(r));
          return;
        }
        result_.insert(result_.end(), chunk.data(), chunk.data() + out.pos);
        s_->consumed_ = in.pos;
        bool inputDone = in.pos == in.size;
        // Bounded step: the caller comes back for the rest of the input and of zstd's output.
        if (!s_->compress_ && maxOut_ > 0 && result_.size() >= maxOut_ && (!inputDone || s_->pending_)) break;
        if (s_->compress_) {
          // With e_end, r == 0 means the frame is complete; with e_continue, stop once input is consumed.
          if (end_ ? r == 0 : (inputDone && out.pos < out.size)) break;
        } else {
          if (inputDone && out.pos < out.size) {
            // At the end of the stream the last frame must be complete.
            if (end_ && !s_->frameDone_) SetError("zstd: the compressed stream is truncated");
            break;
          }
        }
      }
    }

    void OnOK() override {
      // Hand the bytes over without a copy: the Buffer owns the vector from now on.
      auto* owned = new std::vector<char>(std::move(result_));
      deferred_.Resolve(Napi::Buffer<char>::New(Env(), owned->data(), owned->size(), [](Napi::Env, char*, std::vector<char>* v) { delete v; }, owned));
    }
    void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

   private:
    Napi::Promise::Deferred deferred_;
    ZstdStream* s_;
    Napi::Reference<Napi::Buffer<char>> inRef_;
    Napi::ObjectReference selfRef_;
    const char* in_;
    size_t len_;
    bool end_;
    size_t maxOut_;
    std::vector<char> result_;
  };

  Napi::Value Transform(const Napi::CallbackInfo& info) {
    size_t maxOut = info.Length() > 2 && info[2].IsNumber() ? static_cast<size_t>(info[2].As<Napi::Number>().Int64Value()) : 0;
    auto* step = new Step(info.Env(), this, info[0].As<Napi::Buffer<char>>(), info[1].As<Napi::Boolean>().Value(), maxOut);
    Napi::Promise p = step->Promise();
    step->Queue();
    return p;
  }

  Napi::Value Consumed(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(consumed_)); }
  Napi::Value Pending(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), pending_); }

 private:
  bool compress_ = false;
  bool frameDone_ = false;  // decompression: the input so far ends on a frame boundary
  bool pending_ = false;    // decompression: the last step filled its output; zstd may hold more
  size_t consumed_ = 0;     // input bytes the last step read
  void* ctx_ = nullptr;
};

}  // namespace

void InitZstd(Napi::Env env, Napi::Object exports) {
  exports.Set("zstdAvailable", Napi::Boolean::New(env, Api().ok));
  exports.Set("ZstdStream", ZstdStream::Define(env));
}

}  // namespace vrift
