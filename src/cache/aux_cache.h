// LazyLLM's Aux Cache: the hidden state of a pruned token entering the layer where it stopped
// (that layer is the token's KV depth). A revived token resumes from here instead of being
// recomputed from the embedding; a token has at most one entry.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace lazyllm {

class AuxCache {
 public:
  AuxCache(int n_embd, int n_ctx) : d_(n_embd), slot_(n_ctx, -1) {}

  bool has(int t) const { return slot_[t] >= 0; }
  const float* get(int t) const { return data_.data() + static_cast<size_t>(slot_[t]) * d_; }
  void put(int t, const float* h) {
    int s = slot_[t];
    if (s < 0) {
      if (!free_.empty()) {
        s = free_.back();
        free_.pop_back();
      } else {
        s = static_cast<int>(data_.size() / d_);
        data_.resize(data_.size() + d_);
      }
      slot_[t] = s;
      ++entries_;
    }
    std::copy(h, h + d_, data_.begin() + static_cast<size_t>(s) * d_);
  }
  void erase(int t) {
    if (slot_[t] < 0) return;
    free_.push_back(slot_[t]);
    slot_[t] = -1;
    --entries_;
  }
  int64_t entries() const { return entries_; }
  int64_t bytes() const { return entries_ * d_ * static_cast<int64_t>(sizeof(float)); }
  void clear() {
    data_.clear();
    free_.clear();
    std::fill(slot_.begin(), slot_.end(), -1);
    entries_ = 0;
  }

 private:
  int d_;
  std::vector<float> data_;
  std::vector<int32_t> free_;
  std::vector<int32_t> slot_;
  int64_t entries_ = 0;
};

}  // namespace lazyllm
