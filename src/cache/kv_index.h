// Host-side bookkeeping of LazyLLM's caches, shared by every backend: which (token, layer) pairs
// have K/V and in which slot, each token's KV depth, and which tokens wait in the Aux Cache.
// Backends own the storage (K/V rows, Aux Cache rows) and address it through this index, so the
// rules below are written and checked once.
//
// A token's layers with K/V always form a prefix [0, depth): it stops at some layer when pruned
// and resumes exactly there when revived. A token is in the Aux Cache while it has stopped short
// of the last layer and its hidden state entering layer `depth` is kept.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace lazyllm {

class KVIndex {
 public:
  KVIndex(int n_layers, int n_ctx);

  int n_layers() const { return static_cast<int>(size_.size()); }
  int n_ctx() const { return static_cast<int>(depth_.size()); }
  // Slots used at layer l (slots are handed out in order, from 0).
  int size(int l) const { return size_[l]; }
  // Slot of token t at layer l, or -1.
  int slot(int l, int t) const { return slot_[static_cast<size_t>(l) * depth_.size() + t]; }
  // Number of layers (from 0) at which token t has K/V.
  int depth(int t) const { return depth_[t]; }
  // Raw views for backends that mirror the index on a device: the slots of layer l by token
  // (n_ctx entries, -1 where none) and the depths by token.
  const int32_t* slots_of_layer(int l) const { return slot_.data() + static_cast<size_t>(l) * depth_.size(); }
  const int32_t* depths() const { return depth_.data(); }
  // True while every slot of layer l holds the token of that position (slot = position).
  bool slots_are_positions(int l) const { return in_order_[l] != 0; }
  // Tokens with K/V at every layer, and tokens with any K/V.
  int full_depth_tokens() const { return n_full_; }
  int tokens() const { return n_tokens_; }
  // True when every token with K/V has it at every layer (the baseline's state).
  bool all_full() const { return n_full_ == n_tokens_; }

  // Takes the next slot at layer l for token t and returns it. t must have K/V at every layer
  // below l and none at l: storing a (token, layer) pair twice, or skipping a layer, throws
  // std::logic_error (LazyLLM never computes a pair twice).
  int store(int l, int t);

  // store() for each of `tokens` in order (slots first, first + 1, ...); returns the first slot.
  // The same checks: what was stored before a refused token stays stored.
  int store_rows(int l, std::span<const int32_t> tokens);

  // Aux Cache membership.
  bool in_aux(int t) const { return aux_[t] != 0; }
  void aux_put(int t) {
    if (!aux_[t]) aux_[t] = 1, ++aux_entries_;
  }
  void aux_erase(int t) {
    if (aux_[t]) aux_[t] = 0, --aux_entries_;
  }
  int64_t aux_entries() const { return aux_entries_; }

  // Tokens that came in through prefill (counted as prompt work when computed).
  void mark_prompt(int t, bool prompt) { prompt_[t] = prompt ? 1 : 0; }
  bool is_prompt(int t) const { return prompt_[t] != 0; }

  void clear();
  // True when tokens [0, n) have K/V at every layer in slot = position (none of them, nor any
  // token before them, was pruned or revived): such a prefix does not depend on what came after.
  bool prefix_in_place(int n) const;
  // Forgets every token from position n on (their K/V at every layer, their Aux Cache entries),
  // keeping tokens [0, n) as they are. Only where prefix_in_place(n): returns false, changing
  // nothing, otherwise or when n is out of range.
  bool keep_prefix(int n);
  // Every token with K/V has it at every layer, slot = position, nothing in the Aux Cache.
  bool baseline_state() const;
  // Becomes the state of src's tokens [0, n): every one at every layer, slot = position, as
  // src holds them. Only where src.prefix_in_place(n) (as keep_prefix); returns false, changing
  // nothing, otherwise or when the shapes differ or n is out of range.
  bool copy_prefix(const KVIndex& src, int n);

 private:
  [[noreturn]] void refuse_store(int l, int t) const;  // store()'s error: says which rule was broken
  std::vector<int> size_;
  std::vector<uint8_t> in_order_;  // per layer: slot = position so far
  std::vector<int32_t> slot_;  // layer-major, n_layers x n_ctx
  std::vector<int32_t> depth_;
  std::vector<uint8_t> aux_, prompt_;
  int64_t aux_entries_ = 0;
  int n_full_ = 0, n_tokens_ = 0;
};

}  // namespace lazyllm
