// LazyLLM's Aux Cache on the CPU: the hidden state of a pruned token entering the layer where it
// stopped (that layer is the token's KV depth). A revived token resumes from here instead of being
// recomputed from the embedding. Rows are addressed by position; which tokens are in the cache is
// the shared KVIndex's to say (the LazyLLM plan keeps it), so this holds only the rows.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cache/kv_index.h"

namespace lazyllm {

class AuxCache {
 public:
  AuxCache(int n_embd, const KVIndex& index) : d_(n_embd), index_(index) {}

  bool has(int t) const { return index_.in_aux(t); }
  const float* get(int t) const { return data_.data() + static_cast<size_t>(t) * d_; }
  // Stores token t's row (membership is set by the plan in the index).
  void put(int t, const float* h) {
    const size_t end = static_cast<size_t>(t + 1) * d_;
    if (end > data_.size()) {
      // Doubling, capped at a row per context position; reserved exactly so the vector's own
      // growth never takes it past that bound.
      const size_t n = std::max(end, std::min(2 * data_.size(), static_cast<size_t>(index_.n_ctx()) * d_));
      data_.reserve(n);
      data_.resize(n);
    }
    std::copy(h, h + d_, data_.begin() + static_cast<size_t>(t) * d_);
  }
  int64_t entries() const { return index_.aux_entries(); }
  int64_t bytes() const { return entries() * d_ * static_cast<int64_t>(sizeof(float)); }
  // Storage held (rows are kept by position, so this is above bytes() once tokens revive).
  int64_t capacity_bytes() const { return static_cast<int64_t>(data_.capacity() * sizeof(float)); }

 private:
  int d_;
  const KVIndex& index_;
  std::vector<float> data_;
};

}  // namespace lazyllm
