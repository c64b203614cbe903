// KV cache indexed by layer. Under LazyLLM each layer holds only the tokens computed at that
// layer, so every layer has its own slots, each tagged with the token's original position.
// A token's layers with KV always form a prefix [0, depth): it stops at some layer when pruned
// and resumes exactly there when revived. K and V are stored as IEEE half floats by default, as
// llama.cpp does (half the memory and decode bandwidth), or as f32 for exact comparisons.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cache/kv_index.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/vec_ops.h"

namespace lazyllm {

class LayerKV {
 public:
  // max_slots: the context size, which bounds the storage.
  LayerKV(int kv_dim, bool f16, int max_slots) : kv_dim_(kv_dim), f16_(f16), max_slots_(max_slots) {}

  int size() const { return static_cast<int>(pos_.size()); }
  int kv_dim() const { return kv_dim_; }
  // Makes room for `n` more slots without reallocating during a batch. Storage grows by half
  // again at least, capped at the context, so decode's one slot per step does not copy the
  // layer's rows at every step, and a full context holds exactly max_slots rows.
  void reserve_more(int n) {
    const size_t need = pos_.size() + static_cast<size_t>(n);
    if (need <= pos_.capacity()) return;
    const size_t slots = std::max(need, std::min(pos_.capacity() + pos_.capacity() / 2, static_cast<size_t>(max_slots_)));
    const size_t elems = slots * kv_dim_;
    if (f16_) {
      k16_.reserve(elems);
      v16_.reserve(elems);
    } else {
      k32_.reserve(elems);
      v32_.reserve(elems);
    }
    pos_.reserve(slots);
  }
  // Appends a slot; returns its index. K must already be rotated for `pos`.
  int append(int32_t pos, const float* k, const float* v) {
    if (f16_) {
      const size_t at = k16_.size();
      k16_.resize(at + kv_dim_);
      v16_.resize(at + kv_dim_);
      f32_to_f16(k, k16_.data() + at, kv_dim_);
      f32_to_f16(v, v16_.data() + at, kv_dim_);
    } else {
      k32_.insert(k32_.end(), k, k + kv_dim_);
      v32_.insert(v32_.end(), v, v + kv_dim_);
    }
    pos_.push_back(pos);
    return size() - 1;
  }
  bool is_f16() const { return f16_; }
  // Storage of one slot: half floats when is_f16(), else floats.
  const uint16_t* k16(int slot) const { return k16_.data() + static_cast<size_t>(slot) * kv_dim_; }
  const uint16_t* v16(int slot) const { return v16_.data() + static_cast<size_t>(slot) * kv_dim_; }
  const float* k32(int slot) const { return k32_.data() + static_cast<size_t>(slot) * kv_dim_; }
  const float* v32(int slot) const { return v32_.data() + static_cast<size_t>(slot) * kv_dim_; }
  int32_t pos(int slot) const { return pos_[slot]; }
  // Storage held: K, V and the slots' positions.
  int64_t bytes() const {
    return static_cast<int64_t>((k16_.capacity() + v16_.capacity()) * 2 + (k32_.capacity() + v32_.capacity()) * 4 +
                                pos_.capacity() * sizeof(int32_t));
  }
  void clear() {
    k16_.clear(), v16_.clear(), k32_.clear(), v32_.clear();
    pos_.clear();
  }
  // Clears and frees the storage.
  void release() {
    std::vector<uint16_t>().swap(k16_), std::vector<uint16_t>().swap(v16_);
    std::vector<float>().swap(k32_), std::vector<float>().swap(v32_);
    std::vector<int32_t>().swap(pos_);
  }
  // Becomes a copy of src's first n slots (n <= src.size(), same shape and format).
  void assign_prefix(const LayerKV& src, int n) {
    const size_t elems = static_cast<size_t>(n) * kv_dim_;
    if (f16_) {
      k16_.assign(src.k16_.begin(), src.k16_.begin() + static_cast<ptrdiff_t>(elems));
      v16_.assign(src.v16_.begin(), src.v16_.begin() + static_cast<ptrdiff_t>(elems));
    } else {
      k32_.assign(src.k32_.begin(), src.k32_.begin() + static_cast<ptrdiff_t>(elems));
      v32_.assign(src.v32_.begin(), src.v32_.begin() + static_cast<ptrdiff_t>(elems));
    }
    pos_.assign(src.pos_.begin(), src.pos_.begin() + n);
  }
  // Keeps the first n slots (n <= size()).
  void truncate(int n) {
    const size_t elems = static_cast<size_t>(n) * kv_dim_;
    if (f16_) k16_.resize(elems), v16_.resize(elems);
    else k32_.resize(elems), v32_.resize(elems);
    pos_.resize(n);
  }

 private:
  int kv_dim_;
  bool f16_;
  int max_slots_;
  std::vector<uint16_t> k16_, v16_;
  std::vector<float> k32_, v32_;
  std::vector<int32_t> pos_;
};

// The CPU's K/V storage per layer, addressed through the shared KVIndex (cache/kv_index.h),
// which the LazyLLM plan (prune/lazy_plan.h) keeps: slots are handed out there, in order, and
// the rows are appended here in the same order.
class KVCache {
 public:
  KVCache(int n_layers, int kv_dim, int n_ctx, bool f16)
      : layers_(n_layers, LayerKV(kv_dim, f16, n_ctx)), index_(n_layers, n_ctx) {}

  LayerKV& layer(int l) { return layers_[l]; }
  const LayerKV& layer(int l) const { return layers_[l]; }
  int n_layers() const { return static_cast<int>(layers_.size()); }
  KVIndex& index() { return index_; }
  const KVIndex& index() const { return index_; }
  // Number of layers (from 0) at which token `t` (its position) has KV.
  int depth(int t) const { return index_.depth(t); }
  // Slot of token t at layer l, or -1.
  int slot(int l, int t) const { return index_.slot(l, t); }

  // Writes the K/V of token t at layer l into the next slot: the one the index gave it (decode),
  // or one it will book after the layer (prefill books every layer at its end). A pair the index
  // already holds elsewhere (stored twice) throws.
  void write(int l, int slot, int t, const float* k, const float* v) {
    const int booked = index_.slot(l, t);
    if (slot != layers_[l].size() || (booked != slot && booked != -1))
      throw std::logic_error("KVCache::write: slot " + std::to_string(slot) + " of layer " + std::to_string(l) +
                             " does not follow the index");
    layers_[l].append(t, k, v);
  }
  // Throws std::logic_error unless every slot of layer l from `from` on is the one the index
  // gives its token (prefill writes first and books after the layer; this checks the booking).
  void check_follows_index(int l, int from) const {
    for (int slot = from; slot < layers_[l].size(); ++slot)
      if (index_.slot(l, layers_[l].pos(slot)) != slot)
        throw std::logic_error("KVCache: slot " + std::to_string(slot) + " of layer " + std::to_string(l) +
                               " does not follow the index");
  }
  void clear() {
    for (auto& l : layers_) l.clear();
    index_.clear();
  }
  // Room for `tokens` slots at every layer (storage from a KvPool's reservation).
  void reserve(int tokens) {
    for (auto& l : layers_) l.reserve_more(tokens - l.size());
  }
  // Clears and frees every layer's storage.
  void release() {
    for (auto& l : layers_) l.release();
    index_.clear();
  }
  // Keeps tokens [0, n) and forgets the rest, where the index allows it (KVIndex::keep_prefix).
  bool keep_prefix(int n) {
    if (!index_.keep_prefix(n)) return false;
    for (auto& l : layers_) l.truncate(n);
    return true;
  }
  // Becomes a copy of src's tokens [0, n), where the index allows it (KVIndex::copy_prefix) and
  // both store rows of the same shape and format; false, changing nothing, otherwise.
  bool copy_prefix(const KVCache& src, int n) {
    if (src.n_layers() != n_layers()) return false;
    for (int l = 0; l < n_layers(); ++l)
      if (src.layers_[l].kv_dim() != layers_[l].kv_dim() || src.layers_[l].is_f16() != layers_[l].is_f16() ||
          src.layers_[l].size() < n)
        return false;
    if (!index_.copy_prefix(src.index_, n)) return false;
    for (int l = 0; l < n_layers(); ++l) layers_[l].assign_prefix(src.layers_[l], n);
    return true;
  }
  // Storage held by every layer.
  int64_t bytes() const {
    int64_t n = 0;
    for (const auto& l : layers_) n += l.bytes();
    return n;
  }

 private:
  std::vector<LayerKV> layers_;
  KVIndex index_;
};

}  // namespace lazyllm
