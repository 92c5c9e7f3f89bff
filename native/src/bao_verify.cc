// Verifying one range of a blob against its digest and outboard, before
// the rest of the blob is there (bao_tree.h has the tree). In exports.bao:
//
// verifyRange(root, size, groupLog, outboard, offset, bytes) -> boolean
// verifyOutboard(root, size, groupLog, outboard) -> boolean
//   Whether the outboard is the one of the blob with this root and size
//   (every parent checked; the groups' content is not needed).
//   Whether `bytes` are the blob's bytes [offset, offset + bytes.length).
//   The range starts on a group boundary and ends on one or at the end of
//   the blob, and is not empty unless the blob is. Walking down from the
//   root, each outboard parent on the way is checked against the chaining
//   value its own parent vouched for; a node the range covers whole is
//   hashed from the bytes in one call (the SIMD path of plain hashing)
//   and compared, so the outboard parents below it are never needed.
//   A misplaced range or an outboard of the wrong size is a RangeError.
#include <cstring>
#include <string>

#include "bao_napi.h"
#include "bao_tree.h"

namespace vrift::bao {
namespace {

struct Range {
  const Tree& t;
  const uint8_t* outboard;
  uint64_t off;
  uint64_t end;
  const uint8_t* bytes;  // byte `off` of the blob
};

bool VerifyNode(const Range& r, const Node& n, const uint8_t expected[kCv]) {
  const uint64_t s = r.t.Start(n), e = r.t.End(n);
  if (r.off <= s && e <= r.end) {
    uint8_t cv[kCv];
    NodeCv(r.t, n, r.bytes + (s - r.off), cv);
    return std::memcmp(cv, expected, kCv) == 0;
  }
  // Partly covered, so a parent (the range is whole groups).
  const uint8_t* pair = r.outboard + n.pair * kPair;
  if (!ParentMatches(n, pair, expected)) return false;
  const Node left = n.Left(), right = n.Right();
  if (r.off < r.t.End(left) && !VerifyNode(r, left, pair)) return false;
  if (r.end > r.t.Start(right) && !VerifyNode(r, right, pair + kCv)) return false;
  return true;
}

Napi::Value VerifyRange(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* call = "verifyRange(root, size, groupLog, outboard, offset, bytes)";
  uint8_t root[kCv];
  ArgDigest(info, 0, call, root);
  const Tree t{ArgSize(info, 1, call), ArgGroupLog(info, 2, call)};
  const uint8_t *ob, *bytes;
  size_t ob_len, len;
  ArgBytes(info, 3, call, &ob, &ob_len);
  const uint64_t off = ArgSize(info, 4, call);
  ArgBytes(info, 5, call, &bytes, &len);
  const uint64_t end = off + len;
  if (ob_len != OutboardSize(t.size, t.group_log))
    throw Napi::RangeError::New(env, std::string(call) + ": the outboard has the wrong size for this blob");
  if (off % t.GroupBytes() != 0 || end > t.size || (end % t.GroupBytes() != 0 && end != t.size) || (len == 0 && t.size != 0))
    throw Napi::RangeError::New(env, std::string(call) + ": the range must be whole groups within the blob (the last may be short)");
  const Range r{t, ob, off, end, bytes};
  return Napi::Boolean::New(env, VerifyNode(r, t.Root(), root));
}

// Every parent of the outboard, from the root down, against the chaining
// value its own parent vouched for. The groups' own chaining values (the
// lowest parents' halves) need the content; everything above them is
// fixed by the root, so an outboard that passes is the blob's outboard.
bool OutboardNode(const uint8_t* outboard, const Node& n, const uint8_t expected[kCv]) {
  if (n.m <= 1) return true;
  const uint8_t* pair = outboard + n.pair * kPair;
  if (!ParentMatches(n, pair, expected)) return false;
  return OutboardNode(outboard, n.Left(), pair) && OutboardNode(outboard, n.Right(), pair + kCv);
}

Napi::Value VerifyOutboard(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* call = "verifyOutboard(root, size, groupLog, outboard)";
  uint8_t root[kCv];
  ArgDigest(info, 0, call, root);
  const Tree t{ArgSize(info, 1, call), ArgGroupLog(info, 2, call)};
  const uint8_t* ob;
  size_t ob_len;
  ArgBytes(info, 3, call, &ob, &ob_len);
  if (ob_len != OutboardSize(t.size, t.group_log)) return Napi::Boolean::New(env, false);
  // A blob of one group has no parents: nothing above the content to check.
  return Napi::Boolean::New(env, OutboardNode(ob, t.Root(), root));
}

}  // namespace

void InitVerify(Napi::Env env, Napi::Object bao) {
  bao.Set("verifyRange", Napi::Function::New(env, VerifyRange));
  bao.Set("verifyOutboard", Napi::Function::New(env, VerifyOutboard));
}

}  // namespace vrift::bao
