// treeBlobList(tree: Buffer) -> { digests, sizes, exec, table, bytes }
//
// The distinct file blobs of an encoded tree (docs/tree-format.md), in
// tree order (the order of each blob's first entry): what a lazy mount's
// accounting, its trace check and the resolver's sizes read
// (src/node/store/tree-blobs.ts), for 100 000 entries in a few ms instead
// of a decode and a Map of hex strings.
//
//   digests  Buffer, 32 raw bytes per blob
//   sizes    Float64Array, one per blob
//   exec     Uint8Array, 1 when some entry of that blob is executable
//   table    Int32Array, an open-addressing index: a power of two of slots
//            (at least twice the blobs), slot = position + 1 (0: empty),
//            probed linearly from the digest's first four bytes read
//            big-endian, masked to the table's size
//   bytes    the blobs' total size
//   first    Int32Array, per blob: its first file entry (entries count the
//            tree's files only, in order)
//   next     Int32Array, per file entry: the next entry of the same blob,
//            -1 after its last
//   paths    Float64Array, per file entry: its path's byte offset in `tree`
//            and its length
//
// The bytes need not have been checked as a tree (ParseTree does that):
// every field is bounds-checked and a file's digest must be 64 lowercase
// hex, or it throws "malformed tree: …" (code EINVAL). Nothing here
// decides what a mount shows; a tree that passed ParseTree gives the same
// blobs as the TypeScript decoder would.
#include "tree_blobs.h"

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "layout.h"

namespace vrift {
namespace {

[[noreturn]] void Bad(Napi::Env env, const char* why) {
  Napi::Error e = Napi::Error::New(env, std::string("malformed tree: ") + why);
  e.Set("code", Napi::String::New(env, "EINVAL"));
  e.Set("errno", Napi::Number::New(env, EINVAL));
  throw e;
}

Napi::Value TreeBlobList(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsBuffer()) throw Napi::TypeError::New(env, "treeBlobList(tree): tree must be a Buffer");
  auto buf = info[0].As<Napi::Buffer<char>>();
  static const char kHeader[] = VRIFT_TREE_HEADER;
  const size_t hl = sizeof(kHeader) - 1;
  if (buf.Length() < hl || memcmp(buf.Data(), kHeader, hl) != 0) Bad(env, "bad header");
  std::string_view text(buf.Data() + hl, buf.Length() - hl);
  size_t pos = 0;
  bool truncated = false;
  auto field = [&](char stop) -> std::string_view {
    size_t e = text.find(stop, pos);
    if (e == std::string_view::npos) {
      truncated = true;
      return {};
    }
    std::string_view f = text.substr(pos, e - pos);
    pos = e + 1;
    return f;
  };

  // Sized once for the most files the bytes can hold (an entry takes at least 72 of them): no rehash.
  const size_t most = text.size() / 72 + 1;
  size_t slots = 16;
  while (slots < most * 2) slots *= 2;
  std::vector<uint8_t> raw;  // 32 bytes per distinct blob
  std::vector<double> sizes;
  std::vector<uint8_t> exec;
  std::vector<int32_t> first, last;  // per blob: its first and last file entry
  std::vector<int32_t> next;          // per file entry: the next entry of its blob, -1 after the last
  std::vector<double> paths;          // per file entry: its path's offset in the bytes, and length
  raw.reserve(std::min<size_t>(most, 1 << 20) * 32);
  sizes.reserve(std::min<size_t>(most, 1 << 20));
  std::vector<int32_t> table(slots, 0);
  size_t mask = table.size() - 1;
  double bytes = 0;
  auto slotOf = [&](const uint8_t* d) -> size_t {
    return ((size_t{d[0]} << 24) | (size_t{d[1]} << 16) | (size_t{d[2]} << 8) | size_t{d[3]}) & mask;
  };
  auto grow = [&]() {
    std::vector<int32_t> bigger(table.size() * 2, 0);
    table.swap(bigger);
    mask = table.size() - 1;
    const size_t n = sizes.size();
    for (size_t i = 0; i < n; i++) {
      size_t s = slotOf(&raw[i * 32]);
      while (table[s] != 0) s = (s + 1) & mask;
      table[s] = static_cast<int32_t>(i + 1);
    }
  };
  uint8_t d[32];
  while (pos < text.size()) {
    std::string_view kind = field(' ');
    std::string_view mode = field(' ');
    std::string_view size = field(' ');
    std::string_view ref = field(' ');
    std::string_view path = field('\0');
    if (truncated) Bad(env, "truncated entry");
    if (kind.size() != 1) Bad(env, "bad kind");
    if (kind[0] == VRIFT_TREE_KIND_SYMLINK) {
      field('\0');  // the target
      if (truncated) Bad(env, "truncated entry");
    }
    if (kind[0] != VRIFT_TREE_KIND_FILE) continue;
    if (size.empty() || size.size() > 16) Bad(env, "bad size");
    double sz = 0;
    for (char c : size) {
      if (c < '0' || c > '9') Bad(env, "bad size");
      sz = sz * 10 + (c - '0');
    }
    if (ref.size() != VRIFT_LAYOUT_DIGEST_HEX) Bad(env, "bad digest");
    if (!DecodeDigestHex(ref.data(), d)) Bad(env, "bad digest");
    int m = mode.empty() || mode.size() > 4 ? -1 : 0;
    for (char c : mode) m = m >= 0 && c >= '0' && c <= '7' ? m * 8 + (c - '0') : -1;
    const bool isExec = m == VRIFT_TREE_MODE_EXEC;
    const int32_t entry = static_cast<int32_t>(next.size());
    next.push_back(-1);
    paths.push_back(static_cast<double>(path.data() - buf.Data()));
    paths.push_back(static_cast<double>(path.size()));
    size_t s = slotOf(d);
    bool found = false;
    while (table[s] != 0) {
      size_t at = static_cast<size_t>(table[s] - 1);
      if (memcmp(&raw[at * 32], d, 32) == 0) {
        if (isExec) exec[at] = 1;
        next[static_cast<size_t>(last[at])] = entry;
        last[at] = entry;
        found = true;
        break;
      }
      s = (s + 1) & mask;
    }
    if (found) continue;
    table[s] = static_cast<int32_t>(sizes.size() + 1);
    raw.insert(raw.end(), d, d + 32);
    sizes.push_back(sz);
    exec.push_back(isExec ? 1 : 0);
    first.push_back(entry);
    last.push_back(entry);
    bytes += sz;
    if (sizes.size() * 2 > table.size()) grow();
  }

  const size_t n = sizes.size();
  Napi::Object out = Napi::Object::New(env);
  out.Set("digests", Napi::Buffer<uint8_t>::Copy(env, raw.data(), raw.size()));
  Napi::Float64Array js = Napi::Float64Array::New(env, n);
  if (n) memcpy(js.Data(), sizes.data(), n * sizeof(double));
  out.Set("sizes", js);
  Napi::Uint8Array je = Napi::Uint8Array::New(env, n);
  if (n) memcpy(je.Data(), exec.data(), n);
  out.Set("exec", je);
  Napi::Int32Array jt = Napi::Int32Array::New(env, table.size());
  memcpy(jt.Data(), table.data(), table.size() * sizeof(int32_t));
  out.Set("table", jt);
  out.Set("bytes", Napi::Number::New(env, bytes));
  Napi::Int32Array jf = Napi::Int32Array::New(env, n);
  if (n) memcpy(jf.Data(), first.data(), n * sizeof(int32_t));
  out.Set("first", jf);
  Napi::Int32Array jn = Napi::Int32Array::New(env, next.size());
  if (!next.empty()) memcpy(jn.Data(), next.data(), next.size() * sizeof(int32_t));
  out.Set("next", jn);
  Napi::Float64Array jp = Napi::Float64Array::New(env, paths.size());
  if (!paths.empty()) memcpy(jp.Data(), paths.data(), paths.size() * sizeof(double));
  out.Set("paths", jp);
  return out;
}

}  // namespace

void InitTreeBlobs(Napi::Env env, Napi::Object exports) {
  exports.Set("treeBlobList", Napi::Function::New(env, TreeBlobList));
}

}  // namespace vrift
