#include "cache/kv_index.h"

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>

namespace lazyllm {

KVIndex::KVIndex(int n_layers, int n_ctx)
    : size_(n_layers, 0),
      in_order_(n_layers, 1),
      slot_(static_cast<size_t>(n_layers) * n_ctx, -1),
      depth_(n_ctx, 0),
      aux_(n_ctx, 0),
      prompt_(n_ctx, 0) {}

void KVIndex::refuse_store(int l, int t) const {
  if (t < 0 || t >= n_ctx() || l < 0 || l >= n_layers())
    throw std::logic_error("KVIndex::store: token " + std::to_string(t) + " or layer " + std::to_string(l) +
                           " out of range");
  throw std::logic_error("KVIndex::store: token " + std::to_string(t) + " has K/V at " + std::to_string(depth_[t]) +
                         " layers, cannot store layer " + std::to_string(l) + (depth_[t] > l ? " twice" : ""));
}

int KVIndex::store_rows(int l, std::span<const int32_t> tokens) {
  if (l < 0 || l >= n_layers()) refuse_store(l, tokens.empty() ? 0 : tokens[0]);
  const int first = size_[l], ctx = n_ctx(), n = static_cast<int>(tokens.size());
  int32_t* slots = slot_.data() + static_cast<size_t>(l) * depth_.size();
  int32_t* depth = depth_.data();
  bool in_order = in_order_[l] != 0;
  auto book = [&](int stored) {
    size_[l] = first + stored;
    in_order_[l] = in_order;
    if (l == 0) n_tokens_ += stored;
    if (l + 1 == n_layers()) n_full_ += stored;
  };
  for (int j = 0; j < n; ++j) {
    const int32_t t = tokens[j];
    if (t < 0 || t >= ctx || depth[t] != l) {
      book(j);
      refuse_store(l, t);
    }
    slots[t] = first + j;
    depth[t] = l + 1;
    in_order = in_order && first + j == t;
  }
  book(n);
  return first;
}

int KVIndex::store(int l, int t) {
  const int32_t token = t;
  return store_rows(l, {&token, 1});
}

void KVIndex::clear() {
  std::fill(size_.begin(), size_.end(), 0);
  std::fill(slot_.begin(), slot_.end(), -1);
  std::fill(depth_.begin(), depth_.end(), 0);
  std::fill(aux_.begin(), aux_.end(), 0);
  std::fill(prompt_.begin(), prompt_.end(), 0);
  std::fill(in_order_.begin(), in_order_.end(), 1);
  aux_entries_ = 0;
  n_full_ = n_tokens_ = 0;
}

bool KVIndex::baseline_state() const {
  if (!all_full() || aux_entries_ != 0) return false;
  for (int l = 0; l < n_layers(); ++l)
    if (!slots_are_positions(l) || size_[l] != n_tokens_) return false;
  return true;
}

bool KVIndex::prefix_in_place(int n) const {
  if (n < 0 || n > n_tokens_) return false;
  const size_t ctx = depth_.size();
  for (int l = 0; l < n_layers(); ++l) {
    if (slots_are_positions(l) && size_[l] >= n) continue;  // slots 0.. hold tokens 0.. in order
    const int32_t* slots = slot_.data() + l * ctx;
    for (int t = 0; t < n; ++t)
      if (slots[t] != t) return false;
  }
  return true;
}

// Tokens [0, n) hold slots [0, n) at every layer, so every other token's slots come after them:
// cutting each layer at n forgets exactly the tokens from n on.
bool KVIndex::keep_prefix(int n) {
  if (!prefix_in_place(n)) return false;
  const size_t ctx = depth_.size();
  for (int l = 0; l < n_layers(); ++l) {
    std::fill(slot_.begin() + static_cast<ptrdiff_t>(l * ctx + n), slot_.begin() + static_cast<ptrdiff_t>(l * ctx + n_tokens_), -1);
    size_[l] = n;
    in_order_[l] = 1;
  }
  for (int t = n; t < n_tokens_; ++t) aux_erase(t);
  std::fill(depth_.begin() + n, depth_.begin() + n_tokens_, 0);
  std::fill(prompt_.begin() + n, prompt_.begin() + n_tokens_, 0);
  n_full_ = n_tokens_ = n;
  return true;
}

bool KVIndex::copy_prefix(const KVIndex& src, int n) {
  if (&src == this || src.n_layers() != n_layers() || n > n_ctx() || !src.prefix_in_place(n)) return false;
  clear();
  const size_t ctx = depth_.size();
  for (int l = 0; l < n_layers(); ++l) {
    for (int t = 0; t < n; ++t) slot_[l * ctx + t] = t;
    size_[l] = n;
  }
  std::fill(depth_.begin(), depth_.begin() + n, n_layers());
  std::copy(src.prompt_.begin(), src.prompt_.begin() + n, prompt_.begin());
  n_full_ = n_tokens_ = n;
  return true;
}

}  // namespace lazyllm
