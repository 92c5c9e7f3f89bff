// The tree encoding's parser (tree_parse.h).
#include "tree_parse.h"

#include <cstring>
#include <functional>
#include <string>
#include <unordered_set>

namespace vrift {

// Sizes past this are refused, as by decodeTree (a JavaScript number holds them exactly).
constexpr uint64_t kMaxSafeInteger = (uint64_t{1} << 53) - 1;

static bool BadPath(std::string_view p) {
  if (p.empty() || p.front() == '/' || p.back() == '/') return true;
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find('/', start);
    if (end == std::string_view::npos) end = p.size();
    std::string_view c = p.substr(start, end - start);
    if (c.empty() || c == "." || c == ".." || c.size() > VRIFT_TREE_NAME_MAX) return true;
    start = end + 1;
  }
  return p.size() > VRIFT_TREE_PATH_MAX;
}

// A mode field: 1 to 4 octal digits (as the TypeScript decoder reads it); -1 when malformed.
static int ParseMode(std::string_view f) {
  if (f.empty() || f.size() > 4) return -1;
  int v = 0;
  for (char c : f) {
    if (c < '0' || c > '7') return -1;
    v = v * 8 + (c - '0');
  }
  return v;
}

std::vector<TreeRec> ParseTree(const char* data, size_t len, TreeForm form) {
  std::vector<TreeRec> out;
  out.reserve(len / 64);  // (about an entry's bytes in a names blob; a listing's are about twice that)
  ParseTreeEach(data, len, form, [&](const TreeRec& r) { out.push_back(r); });
  return out;
}

void ParseTreeEach(const char* data, size_t len, TreeForm form, const std::function<void(const TreeRec&)>& each) {
  const bool names = form == TreeForm::kNames;
  const char* header = names ? VRIFT_NAMES_HEADER : VRIFT_TREE_HEADER;
  const size_t hl = strlen(header);
  auto bad = [](const char* why) -> void { throw MalformedTree(std::string("malformed tree: ") + why); };
  if (len < hl || memcmp(data, header, hl) != 0) bad("bad header");
  std::string_view text(data + hl, len - hl);
  bool first = true;
  std::string_view prev;  // the entry before: paths are in strict order
  size_t pos = 0;
  auto field = [&](char stop) -> std::string_view {
    size_t e = text.find(stop, pos);
    if (e == std::string_view::npos) bad("truncated entry");
    std::string_view f = text.substr(pos, e - pos);
    pos = e + 1;
    return f;
  };
  std::unordered_set<std::string_view> dirSet;  // sorted order makes a parent precede its children
  while (pos < text.size()) {
    TreeRec r{};
    r.at = hl + pos;
    std::string_view kind = field(' ');
    const int mode = ParseMode(field(' '));
    std::string_view size = field(' ');
    // (a names blob has no ref field: a file's digest is unknown, the others' ref is "-")
    std::string_view ref = names ? std::string_view() : field(' ');
    r.path = field('\0');
    if (kind.size() != 1 || (kind[0] != VRIFT_TREE_KIND_FILE && kind[0] != VRIFT_TREE_KIND_DIR && kind[0] != VRIFT_TREE_KIND_SYMLINK))
      bad("bad kind");
    r.kind = kind[0];
    if (size.empty() || size.size() > 16 || (size.size() > 1 && size[0] == '0')) bad("bad size");
    r.size = 0;
    for (char c : size) {
      if (c < '0' || c > '9') bad("bad size");
      r.size = r.size * 10 + static_cast<uint64_t>(c - '0');
    }
    if (r.size > kMaxSafeInteger) bad("bad size");
    if (BadPath(r.path)) bad("bad path");
    if (!first && !(prev < r.path)) bad("entries out of order");
    size_t slash = r.path.rfind('/');
    if (slash != std::string_view::npos && !dirSet.count(r.path.substr(0, slash))) bad("entry without a parent directory");
    if (r.kind == VRIFT_TREE_KIND_FILE) {
      if (!names && (ref.size() != VRIFT_LAYOUT_DIGEST_HEX || ref.find_first_not_of("0123456789abcdef") != std::string_view::npos)) bad("bad digest");
      if (mode != VRIFT_TREE_MODE_FILE && mode != VRIFT_TREE_MODE_EXEC) bad("bad file mode");
      r.exec = mode == VRIFT_TREE_MODE_EXEC;
      r.digest = ref;
    } else if (r.kind == VRIFT_TREE_KIND_DIR) {
      if (mode != VRIFT_TREE_MODE_DIR || (!names && ref != VRIFT_TREE_NO_REF) || r.size != 0) bad("bad directory entry");
      dirSet.insert(r.path);
    } else {
      if (mode != VRIFT_TREE_MODE_SYMLINK || (!names && ref != VRIFT_TREE_NO_REF)) bad("bad symlink entry");
      r.target = field('\0');
      if (r.target.empty()) bad("empty symlink target");
      if (r.target.size() != r.size) bad("symlink size does not match its target");
    }
    each(r);
    prev = r.path;
    first = false;
  }
}

}  // namespace vrift
