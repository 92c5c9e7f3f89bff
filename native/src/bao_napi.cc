// exports.bao and the argument helpers its three files share (bao_napi.h).
#include "bao_napi.h"

#include <cmath>

#include "bao_tree.h"
#include "layout.h"

namespace vrift::bao {

void ArgBytes(const Napi::CallbackInfo& info, size_t i, const char* call, const uint8_t** data, size_t* len) {
  Napi::Env env = info.Env();
  napi_typedarray_type type = napi_int16_array;
  void* p = nullptr;
  *len = 0;
  if (info.Length() > i && info[i].IsTypedArray())
    NAPI_THROW_IF_FAILED_VOID(env, napi_get_typedarray_info(env, info[i], &type, len, &p, nullptr, nullptr));
  if (type != napi_uint8_array) throw Napi::TypeError::New(env, std::string(call) + ": expected a Buffer or Uint8Array");
  *data = static_cast<const uint8_t*>(p);
}

void ArgDigest(const Napi::CallbackInfo& info, size_t i, const char* call, uint8_t out[32]) {
  Napi::Env env = info.Env();
  std::string s = info.Length() > i && info[i].IsString() ? info[i].As<Napi::String>().Utf8Value() : std::string();
  if (s.size() != 64) throw Napi::TypeError::New(env, std::string(call) + ": expected a digest (64 lowercase hex)");
  if (!DecodeDigestHex(s.data(), out)) throw Napi::TypeError::New(env, std::string(call) + ": expected a digest (64 lowercase hex)");
}

unsigned ArgGroupLog(const Napi::CallbackInfo& info, size_t i, const char* call) {
  const double v = info.Length() > i && info[i].IsNumber() ? info[i].As<Napi::Number>().DoubleValue() : -1;
  if (!(v >= 0 && v <= kMaxGroupLog && std::floor(v) == v))
    throw Napi::RangeError::New(info.Env(), std::string(call) + ": groupLog must be an integer 0 … 12");
  return static_cast<unsigned>(v);
}

uint64_t ArgSize(const Napi::CallbackInfo& info, size_t i, const char* call) {
  const double v = info.Length() > i && info[i].IsNumber() ? info[i].As<Napi::Number>().DoubleValue() : -1;
  if (!(v >= 0 && v <= 9007199254740991.0 && std::floor(v) == v))
    throw Napi::RangeError::New(info.Env(), std::string(call) + ": expected a non-negative integer");
  return static_cast<uint64_t>(v);
}

Napi::String HexDigest(Napi::Env env, const uint8_t digest[32]) {
  char hex[VRIFT_LAYOUT_DIGEST_HEX];
  vrift_layout_hex(digest, hex);
  return Napi::String::New(env, hex, sizeof hex);
}

void InitBao(Napi::Env env, Napi::Object exports) {
  Napi::Object bao = Napi::Object::New(env);
  InitOutboard(env, bao);
  InitVerify(env, bao);
  InitStream(env, bao);
  exports.Set("bao", bao);
}

}  // namespace vrift::bao
