// One forward over several sequences' rows (the CUDA batch step's shared part): each sequence's
// new tokens (a decode token, or a prompt or a chunk of one, all without pruning) are stacked in
// one sequence's activation buffers, every weight product runs once over all of them, and each
// sequence's rows attend to its own K/V: the decode rows in one launch per layer over their caches
// (tables of each row's cache pointers), each prompt's rows through the prefill's attention.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "runtime/cuda/cuda_forward_pass.h"

namespace lazyllm::cuda_pass {
namespace {

// The device half of a prompt whose rows a shared step computes: nothing to select (no pruning),
// and its one alive list is its positions, which PrefillWalk books at every layer.
class StackedPrompt final : public PrefillDevice {
 public:
  void prefill_embed(std::span<const int32_t>, std::span<const int32_t> pos, const PrefillPlan&) override {
    pos_.assign(pos.begin(), pos.end());
  }
  void prefill_select(int, int, int, std::span<const int32_t>) override {
    throw std::logic_error("shared step: a prompt with pruning cannot share a forward");
  }
  void prefill_layer(int, int, int, bool) override {}
  std::span<const int32_t> prefill_finish(const PrefillPlan&, int) override { return pos_; }

 private:
  std::vector<int32_t> pos_;
};

uint64_t address(const void* p) { return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)); }

}  // namespace

bool CudaForward::joins_shared_step(bool prefill, const LayerSchedule& s) const {
  if (!prefill) return baseline_decode_applies(s);
  return !s.any() && index_.all_full() && index_.tokens() == n_past_;
}

void CudaForward::step_together(std::span<const SharedRows> parts) {
  // The host: the longest context (its RoPE tables cover every row's position), and among those
  // the one whose buffers have grown the most, so that few sequences keep large buffers.
  CudaForward& host = *std::max_element(parts.begin(), parts.end(), [](const SharedRows& a, const SharedRows& b) {
                         return std::pair(a.seq->n_ctx_, a.seq->rows_cap_) < std::pair(b.seq->n_ctx_, b.seq->rows_cap_);
                       })->seq;
  const ModelConfig& c = host.c_;
  const int n = static_cast<int>(parts.size()), n_layers = c.n_layers, d = c.n_embd;
  const cuda::PdlScope pdl(host.pdl_);

  // Rows: the decode tokens first (one attention launch covers them), then each prompt's.
  std::vector<int> order;
  for (int pass = 0; pass < 2; ++pass)
    for (int i = 0; i < n; ++i)
      if (parts[i].prefill == (pass == 1)) order.push_back(i);
  std::vector<int> row0(n), last_row(n);
  std::vector<int32_t> tokens, pos, n_keys;
  int n_decode = 0;
  for (int i : order) {
    const SharedRows& p = parts[i];
    CudaForward& s = *p.seq;
    if (&s.c_ != &c || !s.shares_weights_with(host) || p.tokens.empty() || (!p.prefill && p.tokens.size() != 1) ||
        s.n_past_ + static_cast<int>(p.tokens.size()) > s.n_ctx_)
      throw std::logic_error("step_together: a sequence of another model, or rows that do not fit its context");
    row0[i] = static_cast<int>(tokens.size());
    for (size_t j = 0; j < p.tokens.size(); ++j) {
      tokens.push_back(p.tokens[j]);
      pos.push_back(s.n_past_ + static_cast<int>(j));
    }
    last_row[i] = static_cast<int>(tokens.size()) - 1;
    if (!p.prefill) {
      n_keys.push_back(s.n_past_ + 1);
      ++n_decode;
    }
  }
  const int m = static_cast<int>(tokens.size());

  // Prompts are checked, marked and planned by PrefillWalk (which books them at the end); the
  // decode rows' caches are listed per layer.
  std::vector<std::unique_ptr<StackedPrompt>> prompt_dev(n);
  std::vector<std::optional<PrefillWalk>> walk(n);
  const LayerSchedule baseline = LayerSchedule::baseline(n_layers);
  for (int i = 0; i < n; ++i) {
    if (!parts[i].prefill) continue;
    CudaForward& s = *parts[i].seq;
    prompt_dev[i] = std::make_unique<StackedPrompt>();
    walk[i].emplace(*prompt_dev[i], s.index_, s.counters_, parts[i].tokens, s.n_past_, c.n_vocab, baseline);
  }
  std::vector<uint64_t> caches(static_cast<size_t>(3) * n_layers * n_decode);
  for (int k = 0; k < n_decode; ++k) {
    CudaForward& s = *parts[order[k]].seq;
    if (s.record_selection_) s.selection_.assign(n_layers, {});
    for (int l = 0; l < n_layers; ++l) {
      const size_t at = static_cast<size_t>(3) * l * n_decode;
      caches[at + k] = address(s.k_cache_at(l));
      caches[at + n_decode + k] = address(s.v_cache_at(l));
      caches[at + 2 * n_decode + k] = address(s.kpos_at(l));
    }
  }

  host.ensure_rows(m);
  host.upload(host.tokens_d_, tokens);
  host.upload(host.pos_d_, pos);  // also each decode row's slot: slot = position without pruning
  if (n_decode > 0) {
    host.upload(host.row_keys_d_, n_keys);
    host.upload(host.row_caches_d_, caches);
  }
  const int max_keys = n_keys.empty() ? 0 : *std::max_element(n_keys.begin(), n_keys.end());
  float* h = host.h_[0].get();
  cuda::embed_rows_any(host.w_->token_embd.ref, host.tokens_d_.get(), m, d, h, host.stream_);
  for (int l = 0; l < n_layers; ++l) {
    const bool fused = host.fused_layer(l, m);
    host.layer_qkv(l, h, m, fused);
    if (n_decode > 0) {
      auto* table = reinterpret_cast<void* const*>(host.row_caches_d_.get() + static_cast<size_t>(3) * l * n_decode);
      cuda::SequenceRows rows;
      rows.k_cache = reinterpret_cast<half_t* const*>(table);
      rows.v_cache = reinterpret_cast<half_t* const*>(table + n_decode);
      rows.kpos = reinterpret_cast<int32_t* const*>(table + 2 * n_decode);
      rows.slot = host.pos_d_.get();
      rows.n_keys = host.row_keys_d_.get();
      host.layer_attention_rows(l, n_decode, rows, max_keys);
    }
    for (int i = 0; i < n; ++i) {
      if (!parts[i].prefill) continue;
      CudaForward& s = *parts[i].seq;
      if (walk[i]->begin_layer(l).slot0 != s.n_past_) throw std::logic_error("step_together: a prompt's slots moved");
      LayerCall call;  // causal over the sequence's own keys, the prefill's layout
      call.m = static_cast<int>(parts[i].tokens.size()), call.d_pos = host.pos_d_.get() + row0[i];
      call.slot0 = s.n_past_, call.n_keys = s.n_past_ + call.m, call.row0 = row0[i], call.kv = &s;
      host.layer_attention(l, call);
    }
    host.layer_output(l, h, m, fused);
  }

  // Logits of each sequence's last row, in the parts' order: with decode rows only, rows 0..n-1
  // in that order already; with prompts, gathered.
  const float* last = h;
  if (n_decode < n) {
    std::vector<int32_t> src(last_row.begin(), last_row.end());
    host.upload(host.src_idx_d_, src);
    cuda::copy_rows(h, nullptr, host.src_idx_d_.get(), nullptr, n, d, host.h_[1].get(), host.stream_);
    last = host.h_[1].get();
  }
  host.logits_kernels(last, n);
  const size_t v = c.n_vocab;
  host.logits_h_.ensure(n * v);
  check(cudaMemcpyAsync(host.logits_h_.get(), host.logits_d_.get(), n * v * sizeof(float), cudaMemcpyDeviceToHost,
                        host.stream_),
        "logits to host");
  host.sync_stream();
  for (int i = 0; i < n; ++i) {
    CudaForward& s = *parts[i].seq;
    s.logits_.assign(host.logits_h_.get() + i * v, host.logits_h_.get() + (i + 1) * v);
    if (parts[i].prefill) {
      walk[i]->finish();
      s.n_past_ += static_cast<int>(parts[i].tokens.size());
      s.mirror_dirty_ = true, s.last_revived_ = false, s.steady_backoff_ = s.steady_skip_ = 0;
      ++s.path_stats_.shared_prefills;
    } else {
      s.book_baseline_decode(pos[row0[i]]);
      ++s.path_stats_.shared_steps;
    }
  }
}

}  // namespace lazyllm::cuda_pass
