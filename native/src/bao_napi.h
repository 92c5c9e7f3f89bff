// Verified streaming (Bao) for JavaScript: exports.bao, built from the
// three files that each own one concept (their heads document the calls):
//   bao_outboard.cc  outboard(buf, groupLog), outboardFile(path, groupLog,
//                    threads), encodeCombined(buf, groupLog)
//   bao_verify.cc    verifyRange(root, size, groupLog, outboard, offset, bytes)
//   bao_stream.cc    new StreamVerifier(root, size, groupLog, outboard | null)
// bao_tree.h describes the tree and the formats; src/lib/bao.ts wraps all
// of it and is the only intended caller.
#ifndef VRIFT_BAO_NAPI_H
#define VRIFT_BAO_NAPI_H

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace vrift::bao {

void InitBao(Napi::Env env, Napi::Object exports);
void InitOutboard(Napi::Env env, Napi::Object bao);
void InitVerify(Napi::Env env, Napi::Object bao);
void InitStream(Napi::Env env, Napi::Object bao);

// Argument helpers shared by the three (bao_napi.cc); each throws a
// TypeError naming `call` when the argument is not of its kind.

/** The bytes of a Buffer or Uint8Array argument (a subarray is itself). */
void ArgBytes(const Napi::CallbackInfo& info, size_t i, const char* call, const uint8_t** data, size_t* len);
/** A 64-hex digest argument, decoded. */
void ArgDigest(const Napi::CallbackInfo& info, size_t i, const char* call, uint8_t out[32]);
/** A group size argument: log2 of chunks per group, 0 … kMaxGroupLog. */
unsigned ArgGroupLog(const Napi::CallbackInfo& info, size_t i, const char* call);
/** A byte count or offset argument: a non-negative safe integer. */
uint64_t ArgSize(const Napi::CallbackInfo& info, size_t i, const char* call);

/** 64 lowercase hex characters of a 32-byte digest, as a JS string. */
Napi::String HexDigest(Napi::Env env, const uint8_t digest[32]);

}  // namespace vrift::bao

#endif
