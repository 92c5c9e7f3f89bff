// vrift_native: the N-API addon. Exposes VDirWriter (a JS class around
// vrift::VdirWriter), fastFs (fast_fs.cc: batched filesystem calls) and
// blobIo (blob_io.cc: batched reads of files and writes of blobs),
// blake3 (blake3_hash.cc: hashing on native threads), bao (bao_napi.h:
// verified streaming: outboards, range and stream verifiers), layout (layout.cc:
// the constants of shim/vrift_layout.h) and
// ZstdStream (zstd.cc: pack compression through a run-time libzstd) and
// GcmCipher (gcm.cc: AES-256-GCM frames of the bulk port, in place). src/node/mount/vdir.ts is its only intended caller: it packs
// batches into one Buffer (layout below) so a 100 000-entry mount crosses
// the JS/C++ boundary once, and turns errors (Error with a numeric `code`,
// the errno) into VriftErrors.
//
// Upsert record (little-endian, no alignment):
//   0 u32 mode   4 u32 mtime_sec   8 u32 size_lo   12 u16 size_hi   14 u16 flags
//   16 u16 path_len   18 u16 target_len   20 u8 has_digest   21..23 zero
//   24 digest[32] (a directory with VRIFT_VDIR_F_CLAIM: its claim's u64 inode)
//   56 u64 ctime_ns (files: the blob's inode change time when known good, 0 = unknown)
//   64 path bytes   then target bytes
// Removal record: u16 path_len, path bytes.
#include <napi.h>

#include <cstring>
#include <sys/xattr.h>
#include <memory>

#include "bao_napi.h"
#include "blake3_hash.h"
#include "blob_io.h"
#include "buffer_worker.h"
#include "fast_fs.h"
#include "gcm.h"
#include "layout.h"
#include "tree_blobs.h"
#include "tree_parse.h"
#include "vdir_writer.h"
#include "zstd.h"

namespace {

constexpr size_t kRecHeader = 64;

template <typename T>
T Rd(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

[[noreturn]] void ThrowCode(Napi::Env env, int code, const std::string& msg) {
  Napi::Error err = Napi::Error::New(env, msg);
  err.Set("code", Napi::Number::New(env, code));
  throw err;
}

[[noreturn]] void ThrowBadBatch(Napi::Env env, const char* why) {
  ThrowCode(env, EINVAL, std::string("malformed VDir batch: ") + why);
}

// One lowercase hex digit's value (ParseTree checked the digits).
uint8_t HexNibble(char c) { return static_cast<uint8_t>(c <= '9' ? c - '0' : c - 'a' + 10); }

std::string_view View(const uint8_t* p, size_t n) { return std::string_view(reinterpret_cast<const char*>(p), n); }

class VDirWriterWrap : public Napi::ObjectWrap<VDirWriterWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "VDirWriter",
                       {InstanceMethod<&VDirWriterWrap::Apply>("apply"),
                        InstanceMethod<&VDirWriterWrap::ApplyNew>("applyNew"),
                        InstanceMethod<&VDirWriterWrap::ApplyTree>("applyTree"),
                        InstanceMethod<&VDirWriterWrap::ApplyNamesAsync>("applyNamesAsync"),
                        InstanceMethod<&VDirWriterWrap::Lookup>("lookup"),
                        InstanceMethod<&VDirWriterWrap::Probe>("probe"),
                        InstanceMethod<&VDirWriterWrap::List>("list"),
                        InstanceMethod<&VDirWriterWrap::Stats>("stats"),
                        InstanceMethod<&VDirWriterWrap::ProbeStats>("probeStats"),
                        InstanceMethod<&VDirWriterWrap::Image>("image"),
                        InstanceMethod<&VDirWriterWrap::SetUpperPublished>("setUpperPublished"),
                        InstanceMethod<&VDirWriterWrap::Close>("close")});
  }

  // new VDirWriter(name, casRoot, mountRoot, capacity, poolBytes)
  // new VDirWriter(name, casRoot, mountRoot, image: Buffer, mtimeSec)  (-1: keep the image's mtimes)
  explicit VDirWriterWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<VDirWriterWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() >= 5 && info[0].IsString() && info[1].IsString() && info[2].IsString() && info[3].IsBuffer() &&
        info[4].IsNumber()) {
      vrift::VdirCreateOptions opt;
      opt.name = info[0].As<Napi::String>().Utf8Value();
      opt.cas_root = info[1].As<Napi::String>().Utf8Value();
      opt.mount_root = info[2].As<Napi::String>().Utf8Value();
      auto img = info[3].As<Napi::Buffer<uint8_t>>();
      const double mt = info[4].As<Napi::Number>().DoubleValue();
      if (!(mt >= -1 && mt <= 4294967295.0)) ThrowCode(env, EINVAL, "VDir image: mtimeSec out of range");
      try {
        writer_ = std::make_unique<vrift::VdirWriter>(opt, img.Data(), img.Length(), static_cast<int64_t>(mt));
      } catch (const vrift::VdirError& e) {
        ThrowCode(env, e.code, e.what());
      }
      return;
    }
    if (info.Length() < 5 || !info[0].IsString() || !info[1].IsString() || !info[2].IsString() || !info[3].IsNumber() ||
        !info[4].IsNumber())
      ThrowCode(env, EINVAL, "VDirWriter(name, casRoot, mountRoot, capacity, poolBytes): bad arguments");
    vrift::VdirCreateOptions opt;
    opt.name = info[0].As<Napi::String>().Utf8Value();
    opt.cas_root = info[1].As<Napi::String>().Utf8Value();
    opt.mount_root = info[2].As<Napi::String>().Utf8Value();
    double cap = info[3].As<Napi::Number>().DoubleValue(), pool = info[4].As<Napi::Number>().DoubleValue();
    if (!(cap >= 0 && cap < VRIFT_VDIR_MAX_ENTRIES) || !(pool >= 0 && pool < 4294967296.0))
      ThrowCode(env, EINVAL, "VDir capacity or poolBytes out of range");
    opt.capacity = static_cast<uint32_t>(cap);
    opt.pool_bytes = static_cast<uint64_t>(pool);
    try {
      writer_ = std::make_unique<vrift::VdirWriter>(opt);
    } catch (const vrift::VdirError& e) {
      ThrowCode(env, e.code, e.what());
    }
  }

 private:
  // setUpperPublished(n, awake?): header.upper_published (vrift_vdir.h section 6)
  Napi::Value SetUpperPublished(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) ThrowCode(env, EINVAL, "setUpperPublished(n): bad arguments");
    const bool awake = info.Length() > 1 && info[1].ToBoolean().Value();
    if (writer_) writer_->SetUpperPublished(static_cast<uint64_t>(info[0].As<Napi::Number>().DoubleValue()), awake);
    return env.Undefined();
  }

  // The upsert records of apply() and applyNew() (the format is vdir.ts encodeUpserts').
  static std::vector<vrift::VdirUpsert> ParseUpserts(Napi::Env env, const Napi::Buffer<uint8_t>& ub, uint32_t nu) {
    std::vector<vrift::VdirUpsert> ups;
    ups.reserve(nu);
    const uint8_t* p = ub.Data();
    const uint8_t* end = p + ub.Length();
    for (uint32_t k = 0; k < nu; k++) {
      if (static_cast<size_t>(end - p) < kRecHeader) ThrowBadBatch(env, "truncated upsert record");
      vrift::VdirUpsert u;
      u.mode = Rd<uint32_t>(p);
      u.mtime_sec = Rd<uint32_t>(p + 4);
      u.size = Rd<uint32_t>(p + 8) | (uint64_t{Rd<uint16_t>(p + 12)} << 32);
      u.flags = Rd<uint16_t>(p + 14);
      const size_t plen = Rd<uint16_t>(p + 16), tlen = Rd<uint16_t>(p + 18);
      if (p[20]) u.digest = p + 24;
      u.ctime_ns = Rd<uint64_t>(p + 56);
      if (static_cast<size_t>(end - p) < kRecHeader + plen + tlen) ThrowBadBatch(env, "truncated upsert path");
      u.path = View(p + kRecHeader, plen);
      u.target = View(p + kRecHeader + plen, tlen);
      ups.push_back(u);
      p += kRecHeader + plen + tlen;
    }
    return ups;
  }

  // apply(upserts: Buffer, nUpserts, removals: Buffer, nRemovals)
  Napi::Value Apply(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 4 || !info[0].IsBuffer() || !info[1].IsNumber() || !info[2].IsBuffer() || !info[3].IsNumber())
      ThrowCode(env, EINVAL, "apply(upserts, nUpserts, removals, nRemovals): bad arguments");
    auto ub = info[0].As<Napi::Buffer<uint8_t>>();
    auto rb = info[2].As<Napi::Buffer<uint8_t>>();
    const uint32_t nu = info[1].As<Napi::Number>().Uint32Value(), nr = info[3].As<Napi::Number>().Uint32Value();
    std::vector<vrift::VdirUpsert> ups = ParseUpserts(env, ub, nu);
    std::vector<std::string_view> rems;
    rems.reserve(nr);
    const uint8_t* p = rb.Data();
    const uint8_t* end = p + rb.Length();
    for (uint32_t k = 0; k < nr; k++) {
      if (end - p < 2) ThrowBadBatch(env, "truncated removal record");
      const size_t len = Rd<uint16_t>(p);
      if (static_cast<size_t>(end - p) < 2 + len) ThrowBadBatch(env, "truncated removal path");
      rems.push_back(View(p + 2, len));
      p += 2 + len;
    }
    try {
      writer_->Apply(ups, rems);
    } catch (const vrift::VdirError& e) {
      ThrowCode(env, e.code, e.what());
    }
    return env.Undefined();
  }

  // applyNew(upserts: Buffer, nUpserts) -> Uint32Array: the indices of the
  // entries left out (path taken, parent not a directory); the rest applied.
  Napi::Value ApplyNew(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsBuffer() || !info[1].IsNumber())
      ThrowCode(env, EINVAL, "applyNew(upserts, nUpserts): bad arguments");
    std::vector<vrift::VdirUpsert> ups = ParseUpserts(env, info[0].As<Napi::Buffer<uint8_t>>(), info[1].As<Napi::Number>().Uint32Value());
    std::vector<uint32_t> left;
    try {
      left = writer_->ApplyNew(ups);
    } catch (const vrift::VdirError& e) {
      ThrowCode(env, e.code, e.what());
    }
    Napi::Uint32Array out = Napi::Uint32Array::New(env, left.size());
    for (size_t k = 0; k < left.size(); k++) out[k] = left[k];
    return out;
  }

  // applyTree(tree: Buffer, mtimeSec, ctimes?: BigUint64Array, names?: boolean): every entry of an
  // encoded tree (docs/tree-format.md) as one batch, parsed here instead of decoded
  // and packed in JavaScript (most of a large cold mount's start). ctimes[i]:
  // entry i's blob ctime when known good (files; 0 = unknown). With `names`, the
  // bytes are the tree's names blob: every file names the digest 0…0 (a partial
  // mount's files learn theirs when opened). Returns the number of entries.
  Napi::Value ApplyTree(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsBuffer() || !info[1].IsNumber() || (info.Length() > 2 && !info[2].IsUndefined() && !info[2].IsTypedArray()))
      ThrowCode(env, EINVAL, "applyTree(tree, mtimeSec, ctimes?, names?): bad arguments");
    const vrift::TreeForm form = info.Length() > 3 && info[3].ToBoolean().Value() ? vrift::TreeForm::kNames : vrift::TreeForm::kListing;
    auto tree = info[0].As<Napi::Buffer<char>>();
    const double mt = info[1].As<Napi::Number>().DoubleValue();
    if (!(mt >= 0 && mt <= 4294967295.0)) ThrowCode(env, EINVAL, "applyTree: mtimeSec out of range");
    const uint64_t* ctimes = nullptr;
    size_t nctimes = 0;
    if (info.Length() > 2 && info[2].IsTypedArray()) {
      auto ta = info[2].As<Napi::TypedArray>();
      if (ta.TypedArrayType() != napi_biguint64_array) ThrowCode(env, EINVAL, "applyTree: ctimes must be a BigUint64Array");
      auto arr = ta.As<Napi::TypedArrayOf<uint64_t>>();
      ctimes = arr.Data();
      nctimes = arr.ElementLength();
    }
    try {
      return Napi::Number::New(env, static_cast<double>(ApplyEncoded(*writer_, tree.Data(), tree.Length(), form, static_cast<uint32_t>(mt), ctimes, nctimes)));
    } catch (const vrift::MalformedTree& e) {
      ThrowCode(env, EINVAL, e.what());
    } catch (const vrift::VdirError& e) {
      ThrowCode(env, e.code, e.what());
    }
  }

  // applyNamesAsync(names: Buffer, mtimeSec) -> Promise<number>: applyTree(names, mtimeSec, undefined, true)
  // on a worker thread, so a lazy mount's build (tens of ms for 100 000 entries) leaves the daemon's
  // thread to the network meanwhile. The caller must not use this writer until the promise settles
  // (a fresh VDir nobody has been told the name of).
  Napi::Value ApplyNamesAsync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsBuffer() || !info[1].IsNumber()) ThrowCode(env, EINVAL, "applyNamesAsync(names, mtimeSec): bad arguments");
    const double mt = info[1].As<Napi::Number>().DoubleValue();
    if (!(mt >= 0 && mt <= 4294967295.0)) ThrowCode(env, EINVAL, "applyNamesAsync: mtimeSec out of range");
    if (!writer_ || building_) ThrowCode(env, EBUSY, "applyNamesAsync: the VDir is being built already");
    building_ = true;
    auto* w = new ApplyNamesWorker(env, this, info[0].As<Napi::Buffer<char>>(), static_cast<uint32_t>(mt));
    w->Queue();
    return w->Promise();
  }

  // Every entry of an encoded tree (or names blob) as one fresh batch: each record becomes its upsert
  // as it is parsed (no vector of records beside the upserts). Throws MalformedTree or VdirError.
  static size_t ApplyEncoded(vrift::VdirWriter& writer, const char* data, size_t len, vrift::TreeForm form, uint32_t mt, const uint64_t* ctimes, size_t nctimes) {
    static const uint8_t kNoDigest[32] = {};  // a names blob's files (no per-file copy: 3.7 MB for 116 000 files)
    std::vector<uint8_t> digests;             // the listing's, decoded in file order (pointed to once complete)
    std::vector<vrift::VdirUpsert> ups;
    // Room for every entry at once: a names blob's entries take ~62 bytes, a listing's ~2x that, and
    // a doubling copies megabytes of fresh memory (pages only reserved cost nothing until touched).
    ups.reserve(len / (form == vrift::TreeForm::kNames ? 32 : 48));
    vrift::ParseTreeEach(data, len, form, [&](const vrift::TreeRec& r) {
      vrift::VdirUpsert& u = ups.emplace_back();
      u.path = r.path;
      u.mtime_sec = mt;
      if (r.kind == VRIFT_TREE_KIND_DIR) {
        u.mode = VRIFT_VDIR_S_IFDIR | VRIFT_TREE_MODE_DIR;
      } else if (r.kind == VRIFT_TREE_KIND_SYMLINK) {
        u.mode = VRIFT_VDIR_S_IFLNK | VRIFT_TREE_MODE_SYMLINK;
        u.size = r.size;
        u.target = r.target;
      } else {
        u.mode = VRIFT_VDIR_S_IFREG | (r.exec ? VRIFT_TREE_MODE_EXEC : VRIFT_TREE_MODE_FILE);
        u.size = r.size;
        u.digest = kNoDigest;
        for (size_t k = 0; k < r.digest.size(); k += 2) digests.push_back(static_cast<uint8_t>(HexNibble(r.digest[k]) << 4 | HexNibble(r.digest[k + 1])));
      }
    });
    if (ctimes && nctimes != ups.size()) throw vrift::VdirError(EINVAL, "applyTree: ctimes must have one element per entry");
    size_t next = 0;  // the listing's files take their decoded digests, in order
    for (size_t i = 0; i < ups.size(); i++) {
      vrift::VdirUpsert& u = ups[i];
      if ((u.mode & VRIFT_VDIR_S_IFMT) != VRIFT_VDIR_S_IFREG) continue;
      if (!digests.empty()) u.digest = &digests[32 * next++];
      if (ctimes) u.ctime_ns = ctimes[i];
    }
    writer.ApplyFreshTree(ups);  // (ParseTree checked what it promises: distinct paths, parents before children)
    return ups.size();
  }

  // applyNamesAsync's work: the names and the wrapper (its writer) kept alive until it settles.
  class ApplyNamesWorker : public vrift::BufferWorker {
   public:
    ApplyNamesWorker(Napi::Env env, VDirWriterWrap* wrap, Napi::Buffer<char> names, uint32_t mt)
        : vrift::BufferWorker(env, names), self_(Napi::Persistent(wrap->Value())), wrap_(wrap), mt_(mt) {}
    void Execute() override {
      try {
        entries_ = ApplyEncoded(*wrap_->writer_, data_, len_, vrift::TreeForm::kNames, mt_, nullptr, 0);
      } catch (const vrift::MalformedTree& e) {
        Fail(EINVAL, e.what());
      } catch (const vrift::VdirError& e) {
        Fail(e.code, e.what());
      } catch (const std::exception& e) {
        Fail(EIO, e.what());
      }
    }
    void OnOK() override {
      wrap_->building_ = false;
      deferred_.Resolve(Napi::Number::New(Env(), static_cast<double>(entries_)));
    }
    void OnError(const Napi::Error& e) override {
      wrap_->building_ = false;
      vrift::BufferWorker::OnError(e);
    }

   private:
    Napi::ObjectReference self_;  // (keeps wrap_ alive)
    VDirWriterWrap* wrap_;
    uint32_t mt_;
    size_t entries_ = 0;
  };

  // lookup(path) -> { mode, size, mtimeSec, flags, index, digest?, ctimeNs?, target?, nchildren?, claimIno?, check } | undefined
  Napi::Value Lookup(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) ThrowCode(env, EINVAL, "lookup(path): path must be a string");
    std::string path = info[0].As<Napi::String>().Utf8Value();
    vrift::VdirFound f;
    try {
      if (!writer_->Lookup(path, &f)) return env.Undefined();
    } catch (const vrift::VdirError& e) {
      ThrowCode(env, e.code, e.what());
    }
    const vrift_vdir_entry& e = f.entry;
    Napi::Object o = Napi::Object::New(env);
    o.Set("mode", Napi::Number::New(env, e.mode));
    o.Set("size", Napi::Number::New(env, static_cast<double>(vrift_vdir_size_of(e.size_flags))));
    o.Set("mtimeSec", Napi::Number::New(env, e.mtime_sec));
    o.Set("flags", Napi::Number::New(env, vrift_vdir_flags_of(e.size_flags)));
    o.Set("index", Napi::Number::New(env, f.index));
    o.Set("check", Napi::Number::New(env, e.check));
    const uint32_t type = e.mode & VRIFT_VDIR_S_IFMT;
    if (type == VRIFT_VDIR_S_IFREG) {
      char d[VRIFT_LAYOUT_DIGEST_HEX];
      vrift_layout_hex(e.u.digest, d);
      o.Set("digest", Napi::String::New(env, d, sizeof d));
      o.Set("ctimeNs", Napi::BigInt::New(env, e.u.blob.ctime_ns));
    } else if (type == VRIFT_VDIR_S_IFLNK) {
      o.Set("target", Napi::String::New(env, f.target));
    } else {
      o.Set("nchildren", Napi::Number::New(env, e.u.dir.nchildren));
      if (vrift_vdir_flags_of(e.size_flags) & VRIFT_VDIR_F_CLAIM)
        o.Set("claimIno", Napi::Number::New(env, static_cast<double>(uint64_t{e.u.dir.claim_ino_lo} | uint64_t{e.u.dir.claim_ino_hi} << 32)));
    }
    return o;
  }

  // probe(path) -> -1 when absent, else the entry's type bits (mode & S_IFMT) + its flags * 2^16:
  // what the daemon asks per change, without an object of eight properties to build.
  Napi::Value Probe(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) ThrowCode(env, EINVAL, "probe(path): path must be a string");
    std::string path = info[0].As<Napi::String>().Utf8Value();
    vrift::VdirFound f;
    try {
      if (!writer_->Lookup(path, &f)) return Napi::Number::New(env, -1);
    } catch (const vrift::VdirError& e) {
      ThrowCode(env, e.code, e.what());
    }
    const double type = f.entry.mode & VRIFT_VDIR_S_IFMT;
    return Napi::Number::New(env, type + 65536.0 * vrift_vdir_flags_of(f.entry.size_flags));
  }

  Napi::Value List(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) ThrowCode(env, EINVAL, "list(dir): dir must be a string");
    std::vector<std::string> names;
    try {
      names = writer_->List(info[0].As<Napi::String>().Utf8Value());
    } catch (const vrift::VdirError& e) {
      ThrowCode(env, e.code, e.what());
    }
    Napi::Array a = Napi::Array::New(env, names.size());
    for (uint32_t i = 0; i < names.size(); i++) a.Set(i, Napi::String::New(env, names[i]));
    return a;
  }

  // image() -> Buffer: a copy of the whole object, for new VDirWriter(..., image, mtimeSec)
  Napi::Value Image(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (writer_->closed()) ThrowCode(env, EBADF, "image(): the VDir is closed");
    return Napi::Buffer<uint8_t>::Copy(env, writer_->ImageData(), writer_->ImageSize());
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    vrift::VdirStats s{};
    try {
      s = writer_->Stats();
    } catch (const vrift::VdirError& e) {
      ThrowCode(env, e.code, e.what());
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("entries", s.entries);
    o.Set("capacity", s.capacity);
    o.Set("buckets", s.buckets);
    o.Set("highWater", s.hwm);
    o.Set("mappedBytes", static_cast<double>(s.mapped_bytes));
    o.Set("poolUsed", static_cast<double>(s.pool_used));
    o.Set("poolCapacity", static_cast<double>(s.pool_cap));
    o.Set("poolGarbage", static_cast<double>(s.pool_garbage));
    o.Set("generation", static_cast<double>(s.generation));
    o.Set("resizes", s.resizes);
    o.Set("compactions", s.compactions);
    o.Set("shmPath", s.shm_path);
    return o;
  }

  Napi::Value ProbeStats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    vrift::VdirProbeStats s{};
    try {
      s = writer_->ProbeStats();
    } catch (const vrift::VdirError& e) {
      ThrowCode(env, e.code, e.what());
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("maxProbe", s.max_probe);
    o.Set("displaced", s.displaced);
    o.Set("tagCollisions", s.tag_collisions);
    return o;
  }

  // close(unlink: boolean)
  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (building_) ThrowCode(info.Env(), EBUSY, "the VDir is still being built (applyNamesAsync)");
    writer_->Close(info.Length() > 0 && info[0].ToBoolean().Value());
    return info.Env().Undefined();
  }

  std::unique_ptr<vrift::VdirWriter> writer_;
  bool building_ = false;  // an applyNamesAsync is running on a worker thread (only the main thread reads it)
};

// lgetxattr(path, name) -> Buffer | null (no such attribute). Reads
// overlayfs markers (trusted.overlay.opaque) for the namespace merge
// (src/node/mount/ns.ts); Node has no xattr calls.
// upperName(rel): the 64-hex name of a path's file in a mount's upper layer
// (vrift_vdir_upper_name, the same function the shim uses).
Napi::Value UpperName(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) ThrowCode(env, EINVAL, "upperName(rel): bad arguments");
  const std::string rel = info[0].As<Napi::String>().Utf8Value();
  uint8_t name[32];
  vrift_vdir_upper_name(rel.data(), rel.size(), name);
  static const char digits[] = "0123456789abcdef";
  char hex[64];
  for (int i = 0; i < 32; i++) {
    hex[2 * i] = digits[name[i] >> 4];
    hex[2 * i + 1] = digits[name[i] & 15];
  }
  return Napi::String::New(env, hex, 64);
}

// What checkTreeEncoding and checkNames count: entries, files, dirs, symlinks, bytes of files; with
// `starts`, where each file's entry begins. Counted as parsed, without a vector of records: that was
// ~9 MB of fresh memory for 116 000 entries, whose page faults cost a new daemon's first mount ~20 ms
// on a VM. Throws MalformedTree.
struct TreeCounts {
  double entries = 0, files = 0, dirs = 0, links = 0, bytes = 0;
  std::vector<uint32_t> fileStarts;

  TreeCounts(const char* data, size_t len, vrift::TreeForm form, bool starts) {
    if (starts) fileStarts.reserve(len / 32);  // (~62 bytes an entry)
    vrift::ParseTreeEach(data, len, form, [&](const vrift::TreeRec& r) {
      entries++;
      if (r.kind == VRIFT_TREE_KIND_FILE) {
        files++;
        bytes += static_cast<double>(r.size);
        if (starts) fileStarts.push_back(static_cast<uint32_t>(r.at));
      } else if (r.kind == VRIFT_TREE_KIND_DIR) {
        dirs++;
      } else {
        links++;
      }
    });
  }

  Napi::Float64Array Counts(Napi::Env env) const {
    Napi::Float64Array c = Napi::Float64Array::New(env, 5);
    c[0] = entries;
    c[1] = files;
    c[2] = dirs;
    c[3] = links;
    c[4] = bytes;
    return c;
  }

  /** checkNames' answer: { counts, fileStarts }. */
  Napi::Object Names(Napi::Env env) const {
    Napi::Uint32Array st = Napi::Uint32Array::New(env, fileStarts.size());
    if (!fileStarts.empty()) std::memcpy(st.Data(), fileStarts.data(), fileStarts.size() * sizeof(uint32_t));
    Napi::Object out = Napi::Object::New(env);
    out.Set("counts", Counts(env));
    out.Set("fileStarts", st);
    return out;
  }
};

// checkTreeEncoding(tree: Buffer) -> Float64Array [entries, files, dirs, symlinks, bytes of files]:
// an encoded tree (or, for checkNames, a tree's names blob) checked as decodeTree checks it (but
// for UTF-8: the caller's isUtf8), without a JS object per entry; throws "malformed tree: …" (code
// EINVAL). With `starts` (checkNames), also where each file's entry begins, in file order: a
// partial mount's path <-> file ordinal index.
Napi::Value CheckTree(const Napi::CallbackInfo& info, vrift::TreeForm form, bool starts) {
  Napi::Env env = info.Env();
  auto tree = info[0].As<Napi::Buffer<char>>();
  if (starts && tree.Length() > UINT32_MAX) ThrowCode(env, EINVAL, "checkNames: a names blob past 4 GiB");
  try {
    TreeCounts c(tree.Data(), tree.Length(), form, starts);
    if (!starts) return c.Counts(env);
    return c.Names(env);
  } catch (const vrift::MalformedTree& e) {
    ThrowCode(env, EINVAL, e.what());
  }
}

// checkNamesAsync's work: the names kept alive until it settles.
class CheckNamesWorker : public vrift::BufferWorker {
 public:
  using vrift::BufferWorker::BufferWorker;
  void Execute() override {
    try {
      counts_ = std::make_unique<TreeCounts>(data_, len_, vrift::TreeForm::kNames, true);
    } catch (const vrift::MalformedTree& e) {
      Fail(EINVAL, e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(counts_->Names(Env())); }

 private:
  std::unique_ptr<TreeCounts> counts_;
};

Napi::Value CheckTreeEncoding(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsBuffer()) ThrowCode(info.Env(), EINVAL, "checkTreeEncoding(tree): tree must be a Buffer");
  return CheckTree(info, vrift::TreeForm::kListing, false);
}

// checkNames(names: Buffer) -> { counts: Float64Array (as checkTreeEncoding's), fileStarts: Uint32Array }
Napi::Value CheckNames(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsBuffer()) ThrowCode(info.Env(), EINVAL, "checkNames(names): names must be a Buffer");
  return CheckTree(info, vrift::TreeForm::kNames, true);
}

// checkNamesAsync(names: Buffer) -> Promise of checkNames' answer, checked on a worker thread (a lazy
// mount's names: ~15 ms for 100 000 entries the daemon's thread spends on the network instead).
Napi::Value CheckNamesAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsBuffer()) ThrowCode(env, EINVAL, "checkNamesAsync(names): names must be a Buffer");
  if (info[0].As<Napi::Buffer<char>>().Length() > UINT32_MAX) ThrowCode(env, EINVAL, "checkNames: a names blob past 4 GiB");
  auto* w = new CheckNamesWorker(env, info[0].As<Napi::Buffer<char>>());
  w->Queue();
  return w->Promise();
}

Napi::Value LGetXattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    Napi::TypeError::New(env, "lgetxattr(path, name)").ThrowAsJavaScriptException();
    return env.Null();
  }
  std::string path = info[0].As<Napi::String>();
  std::string name = info[1].As<Napi::String>();
  char buf[4096];
  ssize_t n = lgetxattr(path.c_str(), name.c_str(), buf, sizeof buf);
  if (n < 0) {
    if (errno == ENODATA || errno == ENOTSUP) return env.Null();
    ThrowCode(env, errno, "lgetxattr " + path + ": " + strerror(errno));
  }
  return Napi::Buffer<char>::Copy(env, buf, static_cast<size_t>(n));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("lgetxattr", Napi::Function::New(env, LGetXattr));
  exports.Set("VDirWriter", VDirWriterWrap::Define(env));
  exports.Set("upperName", Napi::Function::New(env, UpperName));
  exports.Set("checkTreeEncoding", Napi::Function::New(env, CheckTreeEncoding));
  exports.Set("checkNames", Napi::Function::New(env, CheckNames));
  exports.Set("checkNamesAsync", Napi::Function::New(env, CheckNamesAsync));
  exports.Set("vdirLayoutVersion", Napi::Number::New(env, VRIFT_VDIR_VERSION));
  vrift::InitFastFs(env, exports);
  vrift::InitBlobIo(env, exports);
  vrift::InitBlake3(env, exports);
  vrift::bao::InitBao(env, exports);
  vrift::InitLayout(env, exports);
  vrift::InitZstd(env, exports);
  vrift::InitTreeBlobs(env, exports);
  vrift::InitGcm(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(vrift_native, Init)
