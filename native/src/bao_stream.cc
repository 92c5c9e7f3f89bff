// Verifying a blob that arrives in order, piece by piece (bao_tree.h has
// the tree). In exports.bao:
//
// new StreamVerifier(root, size, groupLog, outboard | null)
//   With an outboard: push(content) -> number, the count of leading
//   content bytes verified so far (or -1 once a mismatch was found).
//   A node whose bytes have all arrived is hashed whole in one call; one
//   that has only partly arrived is split by its outboard parent (checked
//   first), down to the group still arriving, whose bytes are kept until
//   it is whole: the verifier holds at most one group.
//   Without one (null): push(encoded) takes the combined encoding (the
//   parents interleaved with the groups in pre-order, as a serving tier
//   without a separate outboard would send it) and returns the content
//   bytes it verified in this call, as an array of Uint8Arrays (or null
//   after a mismatch): views of the pushed bytes, except for a group that
//   straddled two pushes, which is a copy. A view shares the pushed
//   bytes' memory: the caller must not reuse it while it needs the view.
//   Either way a pushed byte past the end of the blob is a RangeError.
// verifier.verified   content bytes verified so far
// verifier.complete   true once the whole blob was verified
// verifier.failedAt   the content offset of the node that did not match
//                     (its whole subtree is suspect), or -1
// The empty blob is verified at construction (its one empty group).
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "bao_napi.h"
#include "bao_tree.h"

namespace vrift::bao {
namespace {

class StreamVerifier : public Napi::ObjectWrap<StreamVerifier> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "StreamVerifier",
                       {InstanceMethod<&StreamVerifier::Push>("push"), InstanceAccessor<&StreamVerifier::Verified>("verified"),
                        InstanceAccessor<&StreamVerifier::Complete>("complete"),
                        InstanceAccessor<&StreamVerifier::FailedAt>("failedAt")});
  }

  explicit StreamVerifier(const Napi::CallbackInfo& info) : Napi::ObjectWrap<StreamVerifier>(info) {
    const char* call = "new StreamVerifier(root, size, groupLog, outboard | null)";
    Frame root;
    ArgDigest(info, 0, call, root.cv);
    tree_ = Tree{ArgSize(info, 1, call), ArgGroupLog(info, 2, call)};
    combined_ = info.Length() < 4 || info[3].IsNull() || info[3].IsUndefined();
    if (!combined_) {
      const uint8_t* ob;
      size_t len;
      ArgBytes(info, 3, call, &ob, &len);
      if (len != OutboardSize(tree_.size, tree_.group_log))
        throw Napi::RangeError::New(info.Env(), std::string(call) + ": the outboard has the wrong size for this blob");
      outboard_.assign(ob, ob + len);
    }
    root.n = tree_.Root();
    stack_.push_back(root);
    static const uint8_t kNone = 0;
    Run(&kNone, 0);  // the empty blob; with an outboard, the parents down to the first group
  }

 private:
  struct Frame {
    Node n;
    uint8_t cv[kCv];
  };

  // Bytes the top of the stack needs before Run can take it: a whole group,
  // or in the combined encoding a parent's 64 bytes.
  size_t Need() const {
    const Node& n = stack_.back().n;
    if (combined_ && n.m > 1) return kPair;
    return static_cast<size_t>(tree_.End(n) - tree_.Start(n));
  }

  // Takes what it can from p[0, len): returns the bytes used; stops at the
  // first item still short of bytes, at the end, or at a mismatch.
  size_t Run(const uint8_t* p, size_t len) {
    size_t used = 0;
    while (!stack_.empty() && failed_at_ < 0) {
      const Frame top = stack_.back();
      const uint64_t bytes = tree_.End(top.n) - tree_.Start(top.n);
      const size_t avail = len - used;
      if ((top.n.m == 1 || !combined_) && bytes <= avail) {
        // Every byte of this node is here: hash it whole.
        uint8_t cv[kCv];
        NodeCv(tree_, top.n, p + used, cv);
        if (std::memcmp(cv, top.cv, kCv) != 0) return Fail(top.n, used);
        if (combined_ && bytes > 0) Emit(p + used, static_cast<size_t>(bytes));
        stack_.pop_back();
        used += static_cast<size_t>(bytes);
        verified_ += bytes;
        continue;
      }
      if (top.n.m == 1) break;  // a group still arriving
      const uint8_t* pair;
      if (combined_) {
        if (avail < kPair) break;
        pair = p + used;
        used += kPair;
      } else {
        pair = outboard_.data() + top.n.pair * kPair;
      }
      if (!ParentMatches(top.n, pair, top.cv)) return Fail(top.n, used);
      stack_.pop_back();
      Frame left{top.n.Left(), {}}, right{top.n.Right(), {}};
      std::memcpy(left.cv, pair, kCv);
      std::memcpy(right.cv, pair + kCv, kCv);
      stack_.push_back(right);
      stack_.push_back(left);
    }
    return used;
  }

  size_t Fail(const Node& n, size_t used) {
    failed_at_ = static_cast<int64_t>(tree_.Start(n));
    return used;
  }

  // Records verified content (combined): pointers into the pushed bytes or
  // into completed_, joined when one piece continues the last.
  void Emit(const uint8_t* p, size_t len) {
    const bool own = p >= completed_.data() && p < completed_.data() + completed_.size();
    if (!pieces_.empty() && pieces_.back().own == own && pieces_.back().p + pieces_.back().len == p) {
      pieces_.back().len += len;
    } else {
      pieces_.push_back(Piece{p, len, own});
    }
  }

  Napi::Value Push(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    napi_typedarray_type type = napi_int16_array;
    size_t len = 0, offset = 0;
    void* data = nullptr;
    napi_value ab = nullptr;
    if (info.Length() > 0 && info[0].IsTypedArray())
      NAPI_THROW_IF_FAILED(env, napi_get_typedarray_info(env, info[0], &type, &len, &data, &ab, &offset), Napi::Value());
    if (type != napi_uint8_array) throw Napi::TypeError::New(env, "push(bytes): expected a Buffer or Uint8Array");
    const uint8_t* p = static_cast<const uint8_t*>(data);
    pieces_.clear();
    if (failed_at_ < 0) Take(env, p, len);
    if (failed_at_ >= 0) return combined_ ? env.Null() : Napi::Number::New(env, -1);
    if (!combined_) return Napi::Number::New(env, static_cast<double>(verified_));
    // The content leaves as views of the pushed bytes (no copy: in a
    // memory-bound run the copy cost as much as the hashing); only a group
    // that straddled two pushes was kept here, and is copied out.
    Napi::Array out = Napi::Array::New(env, pieces_.size());
    for (size_t i = 0; i < pieces_.size(); i++) {
      const Piece& c = pieces_[i];
      if (c.own) {
        out.Set(static_cast<uint32_t>(i), Napi::Buffer<uint8_t>::Copy(env, c.p, c.len));
        continue;
      }
      napi_value view;
      NAPI_THROW_IF_FAILED(env, napi_create_typedarray(env, napi_uint8_array, c.len, ab, offset + static_cast<size_t>(c.p - p), &view), Napi::Value());
      out.Set(static_cast<uint32_t>(i), Napi::Value(env, view));
    }
    return out;
  }

  void Take(Napi::Env env, const uint8_t* p, size_t len) {
    if (!pending_.empty()) {
      // Complete the item that was short, then go on from the new bytes.
      const size_t take = std::min(len, Need() - pending_.size());
      pending_.insert(pending_.end(), p, p + take);
      p += take;
      len -= take;
      if (pending_.size() < Need()) return;
      // Kept apart until the push returns: Emit may point into it.
      completed_.swap(pending_);
      pending_.clear();
      Run(completed_.data(), completed_.size());
      if (failed_at_ >= 0) return;
    }
    const size_t used = Run(p, len);
    if (failed_at_ >= 0) return;
    if (stack_.empty() && used < len) throw Napi::RangeError::New(env, "push(bytes): more bytes than the blob has");
    pending_.assign(p + used, p + len);
  }

  Napi::Value Verified(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(verified_)); }
  Napi::Value Complete(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), stack_.empty()); }
  Napi::Value FailedAt(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(failed_at_)); }

  Tree tree_{0, 0};
  bool combined_ = false;
  std::vector<uint8_t> outboard_;
  // Pre-order work still to do: each node with the chaining value its
  // parent (or the digest, for the root) vouched for; the top comes next.
  std::vector<Frame> stack_;
  std::vector<uint8_t> pending_;  // bytes of the top item, not yet all here
  std::vector<uint8_t> completed_;  // the item pending_ held, completed in this push
  struct Piece {
    const uint8_t* p;
    size_t len;
    bool own;  // in completed_, not in the pushed bytes
  };
  std::vector<Piece> pieces_;  // combined: content verified in this push
  uint64_t verified_ = 0;
  int64_t failed_at_ = -1;
};

}  // namespace

void InitStream(Napi::Env env, Napi::Object bao) { bao.Set("StreamVerifier", StreamVerifier::Define(env)); }

}  // namespace vrift::bao
