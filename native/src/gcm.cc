// AES-256-GCM in place for the bulk port's frames (gcm.h). The cipher
// context is set up with its key once; each frame only sets its IV. On a
// CPU with VAES and VPCLMULQDQ (AVX-512) frames go through gcm_vaes.cc
// instead: Node 20's OpenSSL 3.0 has no such path, and its best (AVX,
// _aesni_ctr32_ghash_6x) took 0.19 s per GiB here against 0.08 s.
#include "gcm.h"

#include "gcm_vaes.h"

#include <memory>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace vrift {
namespace {

constexpr size_t kKey = 32;
constexpr size_t kTag = 16;
constexpr size_t kIv = 12;

class GcmCipher : public Napi::ObjectWrap<GcmCipher> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "GcmCipher",
                       {InstanceMethod<&GcmCipher::Seal>("seal"), InstanceMethod<&GcmCipher::Open>("open"), InstanceMethod<&GcmCipher::Check>("check"),
                        InstanceMethod<&GcmCipher::Plain>("plain")});
  }

  explicit GcmCipher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GcmCipher>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsBoolean()) throw Napi::TypeError::New(env, "new GcmCipher(key: Uint8Array(32), encrypt: boolean)");
    Napi::Uint8Array key = info[0].As<Napi::Uint8Array>();
    if (key.ByteLength() != kKey) throw Napi::TypeError::New(env, "GcmCipher: the key must be 32 bytes");
    encrypt_ = info[1].As<Napi::Boolean>();
    if (UseVaes()) {
      vaes_ = std::make_unique<GcmVaesKey>();
      GcmVaesInit(vaes_.get(), key.Data());
      return;
    }
    ctx_ = EVP_CIPHER_CTX_new();
    if (!ctx_) throw Napi::Error::New(env, "gcm: EVP_CIPHER_CTX_new failed");
    // The IV length is GCM's default (12 bytes); the IV itself is set per frame.
    int ok = encrypt_ ? EVP_EncryptInit_ex(ctx_, EVP_aes_256_gcm(), nullptr, key.Data(), nullptr)
                      : EVP_DecryptInit_ex(ctx_, EVP_aes_256_gcm(), nullptr, key.Data(), nullptr);
    if (ok != 1) throw Napi::Error::New(env, "gcm: cannot set up AES-256-GCM");
  }

  ~GcmCipher() override {
    // Frees the expanded key schedule too (OpenSSL cleanses it).
    if (ctx_) EVP_CIPHER_CTX_free(ctx_);
    if (vaes_) OPENSSL_cleanse(vaes_.get(), sizeof(GcmVaesKey));
  }

 private:
  struct Args {
    uint8_t* aad;
    size_t aad_len;
    uint8_t* body;
    size_t body_len;
    uint8_t* tag;
  };

  // (aad, body, tag): three Uint8Arrays; the tag exactly 16 bytes; body and aad at most INT_MAX.
  static Args Parse(const Napi::CallbackInfo& info, const char* usage) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsTypedArray()) throw Napi::TypeError::New(env, usage);
    Napi::Uint8Array aad = info[0].As<Napi::Uint8Array>();
    Napi::Uint8Array body = info[1].As<Napi::Uint8Array>();
    Napi::Uint8Array tag = info[2].As<Napi::Uint8Array>();
    if (tag.ByteLength() != kTag) throw Napi::TypeError::New(env, "GcmCipher: the tag must be 16 bytes");
    if (aad.ByteLength() > INT_MAX || body.ByteLength() > INT_MAX) throw Napi::TypeError::New(env, "GcmCipher: a frame of more than 2 GiB");
    return {aad.Data(), aad.ByteLength(), body.Data(), body.ByteLength(), tag.Data()};
  }

  // The next nonce: 4 zero bytes, then the frame counter (u64 big-endian).
  bool NextIv(uint8_t iv[kIv]) {
    if (counter_ == UINT64_MAX) return false;  // never in practice: 2^64 frames
    std::memset(iv, 0, 4);
    for (int i = 0; i < 8; i++) iv[4 + i] = static_cast<uint8_t>(counter_ >> (56 - 8 * i));
    counter_++;
    return true;
  }

  Napi::Value Seal(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Args a = Parse(info, "seal(aad: Uint8Array, body: Uint8Array, tag: Uint8Array(16))");
    if (!encrypt_) throw Napi::TypeError::New(env, "seal: this cipher decrypts");
    uint8_t iv[kIv];
    if (vaes_) {
      if (!NextIv(iv)) throw Napi::Error::New(env, "gcm: sealing a frame failed");
      GcmVaesCrypt(vaes_.get(), iv, a.aad, a.aad_len, a.body, a.body_len, true, a.tag);
      return env.Undefined();
    }
    int n = 0;
    if (!NextIv(iv) || EVP_EncryptInit_ex(ctx_, nullptr, nullptr, nullptr, iv) != 1 ||
        (a.aad_len && EVP_EncryptUpdate(ctx_, nullptr, &n, a.aad, static_cast<int>(a.aad_len)) != 1) ||
        (a.body_len && EVP_EncryptUpdate(ctx_, a.body, &n, a.body, static_cast<int>(a.body_len)) != 1) ||
        EVP_EncryptFinal_ex(ctx_, a.body + a.body_len, &n) != 1 ||  // GCM writes nothing here
        EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_GCM_GET_TAG, kTag, a.tag) != 1) {
      throw Napi::Error::New(env, "gcm: sealing a frame failed");
    }
    return env.Undefined();
  }

  Napi::Value Open(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Args a = Parse(info, "open(aad: Uint8Array, body: Uint8Array, tag: Uint8Array(16))");
    if (encrypt_) throw Napi::TypeError::New(env, "open: this cipher encrypts");
    uint8_t iv[kIv];
    if (vaes_) {
      if (!NextIv(iv)) throw Napi::Error::New(env, "gcm: opening a frame failed");
      uint8_t tag[kTag];
      GcmVaesCrypt(vaes_.get(), iv, a.aad, a.aad_len, a.body, a.body_len, false, tag);
      return Napi::Boolean::New(env, CRYPTO_memcmp(tag, a.tag, kTag) == 0);
    }
    int n = 0;
    if (!NextIv(iv) || EVP_DecryptInit_ex(ctx_, nullptr, nullptr, nullptr, iv) != 1 ||
        (a.aad_len && EVP_DecryptUpdate(ctx_, nullptr, &n, a.aad, static_cast<int>(a.aad_len)) != 1) ||
        (a.body_len && EVP_DecryptUpdate(ctx_, a.body, &n, a.body, static_cast<int>(a.body_len)) != 1) ||
        EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_GCM_SET_TAG, kTag, a.tag) != 1) {
      throw Napi::Error::New(env, "gcm: opening a frame failed");
    }
    // The tag is checked here; a forged, cut or reordered frame fails it.
    return Napi::Boolean::New(env, EVP_DecryptFinal_ex(ctx_, a.body + a.body_len, &n) == 1);
  }

  // The CPU's VAES path (gcm_vaes.cc), unless VRIFT_GCM_OPENSSL=1 asks for OpenSSL's (tests compare the two).
  static bool UseVaes() {
    static const bool use = [] {
      const char* force = std::getenv("VRIFT_GCM_OPENSSL");
      return GcmVaesAvailable() && !(force && std::strcmp(force, "1") == 0);
    }();
    return use;
  }

  std::unique_ptr<GcmVaesKey> vaes_;
  // check(aad, body, tag) -> bool: authenticates the next frame. With VAES its body stays ciphertext (GHASH
  // alone: nothing is decrypted unless the tag verifies), and plain() decrypts it piece by piece wherever the
  // caller wants each piece (a blob's bytes straight into their batch: no copy after the cipher). With
  // OpenSSL it is open(), and plain() copies.
  Napi::Value Check(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Args a = Parse(info, "check(aad: Uint8Array, body: Uint8Array, tag: Uint8Array(16))");
    if (encrypt_) throw Napi::TypeError::New(env, "check: this cipher encrypts");
    checked_ = false;
    if (!vaes_) {
      checked_ = Open(info).As<Napi::Boolean>();
      return Napi::Boolean::New(env, checked_);
    }
    if (!NextIv(checked_iv_)) throw Napi::Error::New(env, "gcm: opening a frame failed");
    uint8_t tag[kTag];
    GcmVaesTag(vaes_.get(), checked_iv_, a.aad, a.aad_len, a.body, a.body_len, tag);
    checked_ = CRYPTO_memcmp(tag, a.tag, kTag) == 0;
    return Napi::Boolean::New(env, checked_);
  }

  // plain(src, at, dst): the plaintext of `src` (the bytes of the last frame check() passed, from `at` bytes
  // into its body) into `dst` (as long; the same memory or apart).
  Napi::Value Plain(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsTypedArray() || !info[1].IsNumber() || !info[2].IsTypedArray()) {
      throw Napi::TypeError::New(env, "plain(src: Uint8Array, at: number, dst: Uint8Array)");
    }
    if (!checked_) throw Napi::Error::New(env, "plain: no frame passed check()");
    Napi::Uint8Array src = info[0].As<Napi::Uint8Array>();
    Napi::Uint8Array dst = info[2].As<Napi::Uint8Array>();
    double at = info[1].As<Napi::Number>().DoubleValue();
    if (dst.ByteLength() != src.ByteLength() || !(at >= 0) || at > static_cast<double>(INT_MAX)) throw Napi::TypeError::New(env, "plain: bad range");
    if (vaes_) GcmVaesCtr(vaes_.get(), checked_iv_, static_cast<size_t>(at), src.Data(), dst.Data(), src.ByteLength());
    else if (src.Data() != dst.Data()) std::memmove(dst.Data(), src.Data(), src.ByteLength());
    return env.Undefined();
  }

  EVP_CIPHER_CTX* ctx_ = nullptr;
  bool checked_ = false;
  uint8_t checked_iv_[kIv] = {0};
  bool encrypt_ = true;
  uint64_t counter_ = 0;
};

}  // namespace

void InitGcm(Napi::Env env, Napi::Object exports) { exports.Set("GcmCipher", GcmCipher::Define(env)); }

}  // namespace vrift
