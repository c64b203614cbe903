// One forward over several sequences' rows (the CUDA batch step's shared part): each sequence's
// new rows (a decode token; a prompt or a chunk of one without pruning; or a LazyLLM decode step's
// rows, which its DecodeStep plans layer by layer) are stacked in one sequence's activation
// buffers, every weight product runs once over all of them, and each sequence's rows attend to its
// own K/V: the baseline decode rows in one launch per layer over their caches (tables of each
// row's cache pointers), each prompt's rows through the prefill's attention, each LazyLLM step's
// rows over the keys and slots its plan lists, as the sequence alone runs them.
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
  if (!prefill) return true;  // a baseline decode row, or a LazyLLM step planned layer by layer
  return !s.any() && index_.all_full() && index_.tokens() == n_past_;
}

void CudaForward::step_together(std::span<const SharedRows> parts) {
  // The host: the longest context (its RoPE tables cover every row's position, its key gathers
  // every sequence's keys), and among those the one whose buffers have grown the most, so that
  // few sequences keep large buffers.
  CudaForward& host = *std::max_element(parts.begin(), parts.end(), [](const SharedRows& a, const SharedRows& b) {
                         return std::pair(a.seq->n_ctx_, a.seq->rows_cap_) < std::pair(b.seq->n_ctx_, b.seq->rows_cap_);
                       })->seq;
  const ModelConfig& c = host.c_;
  const int n = static_cast<int>(parts.size()), n_layers = c.n_layers, d = c.n_embd;
  const cuda::PdlScope pdl(host.pdl_);

  // Rows: the baseline decode tokens first (one attention launch covers them), then each
  // prompt's, then the planned decodes' (LazyLLM: the rows DecodeStep plans at each layer, whose
  // number changes from layer to layer).
  enum Kind { kDecode, kPrompt, kPlanned };
  std::vector<Kind> kind(n);
  for (int i = 0; i < n; ++i) {
    const SharedRows& p = parts[i];
    if (!p.seq || !p.schedule) throw std::logic_error("step_together: a part without its sequence or schedule");
    kind[i] = p.prefill ? kPrompt : p.seq->baseline_decode_applies(*p.schedule) ? kDecode : kPlanned;
  }
  std::vector<int> order;
  for (Kind k : {kDecode, kPrompt, kPlanned})
    for (int i = 0; i < n; ++i)
      if (kind[i] == k) order.push_back(i);
  std::vector<int> row0(n), last_row(n);
  std::vector<int32_t> tokens, pos, n_keys;
  int n_decode = 0, m_max = 0;
  for (int i : order) {
    const SharedRows& p = parts[i];
    CudaForward& s = *p.seq;
    if (&s.c_ != &c || !s.shares_weights_with(host) || p.tokens.empty() || (!p.prefill && p.tokens.size() != 1) ||
        s.n_past_ + static_cast<int>(p.tokens.size()) > s.n_ctx_)
      throw std::logic_error("step_together: a sequence of another model, or rows that do not fit its context");
    if (kind[i] == kPlanned) {  // its token only; at most it and every token short of full depth a layer
      tokens.push_back(p.tokens[0]);
      m_max += 1 + s.index_.tokens() - s.index_.full_depth_tokens();
      continue;
    }
    row0[i] = static_cast<int>(tokens.size());
    for (size_t j = 0; j < p.tokens.size(); ++j) {
      tokens.push_back(p.tokens[j]);
      pos.push_back(s.n_past_ + static_cast<int>(j));
    }
    last_row[i] = static_cast<int>(tokens.size()) - 1;
    if (kind[i] == kDecode) {
      n_keys.push_back(s.n_past_ + 1);
      ++n_decode;
    }
  }
  const int n_fixed = static_cast<int>(pos.size());  // rows at the same place at every layer
  m_max += n_fixed;

  // Prompts are checked, marked and planned by PrefillWalk (which books them at the end); the
  // decode rows' caches are listed per layer; each planned decode gets its DecodeStep.
  std::vector<std::unique_ptr<StackedPrompt>> prompt_dev(n);
  std::vector<std::optional<PrefillWalk>> walk(n);
  std::vector<std::optional<DecodeStep>> step(n);
  std::vector<int64_t> revived_before(n);
  const LayerSchedule baseline = LayerSchedule::baseline(n_layers);
  for (int i = 0; i < n; ++i) {
    CudaForward& s = *parts[i].seq;
    if (kind[i] == kPrompt) {
      prompt_dev[i] = std::make_unique<StackedPrompt>();
      walk[i].emplace(*prompt_dev[i], s.index_, s.counters_, parts[i].tokens, s.n_past_, c.n_vocab, baseline);
    }
    if (kind[i] != kPrompt && s.record_selection_) s.selection_.assign(n_layers, {});
  }
  std::vector<uint64_t> caches(static_cast<size_t>(3) * n_layers * n_decode);
  for (int k = 0; k < n_decode; ++k) {
    CudaForward& s = *parts[order[k]].seq;
    for (int l = 0; l < n_layers; ++l) {
      const size_t at = static_cast<size_t>(3) * l * n_decode;
      caches[at + k] = address(s.k_cache_at(l));
      caches[at + n_decode + k] = address(s.v_cache_at(l));
      caches[at + 2 * n_decode + k] = address(s.kpos_at(l));
    }
  }

  // Every buffer at its size before the first launch (growing loses contents). The stack of
  // rows is the host's h_[0]; a planned decode keeps its rows between layers in its own h_[1].
  host.ensure_rows(m_max);
  host.grow(host.pos_d_, static_cast<size_t>(m_max));
  for (int i = 0; i < n; ++i) {
    if (kind[i] != kPlanned) continue;
    CudaForward& s = *parts[i].seq;
    s.ensure_rows(1 + s.index_.tokens() - s.index_.full_depth_tokens());
    if (parts[i].schedule->any()) s.ensure_aux();
  }
  host.upload(host.tokens_d_, tokens);
  host.upload(host.pos_d_, pos);  // also each decode row's slot: slot = position without pruning
  if (n_decode > 0) {
    host.upload(host.row_keys_d_, n_keys);
    host.upload(host.row_caches_d_, caches);
  }
  const int max_keys = n_keys.empty() ? 0 : *std::max_element(n_keys.begin(), n_keys.end());
  float* h = host.h_[0].get();
  if (n_fixed > 0) cuda::embed_rows_any(host.w_->token_embd.ref, host.tokens_d_.get(), n_fixed, d, h, host.stream_);
  for (int i = 0, k = n_fixed; i < n; ++i) {
    if (kind[i] != kPlanned) continue;
    CudaForward& s = *parts[i].seq;
    cuda::embed_rows_any(host.w_->token_embd.ref, host.tokens_d_.get() + k++, 1, d, s.h_[1].get(), host.stream_);
    step[i].emplace(s.index_, s.counters_, *parts[i].schedule, s.n_past_);
    revived_before[i] = s.counters_.revived;
  }

  std::vector<int> off(n), rows(n, 1);  // a planned decode's rows in the stack at the layer
  std::vector<std::span<const float>> importance(n);
  std::vector<size_t> imp_at(n);
  std::vector<int32_t> planned_pos;
  int m = n_fixed;
  for (int l = 0; l < n_layers; ++l) {
    // The planned decodes' rows at this layer, gathered into the stack after the fixed rows.
    std::vector<const DecodeLayerPlan*> plan(n);
    planned_pos.clear();
    m = n_fixed;
    size_t imp_keys = 0;
    for (int i = 0; i < n; ++i) {
      if (kind[i] != kPlanned) continue;
      CudaForward& s = *parts[i].seq;
      const DecodeLayerPlan& pl = *(plan[i] = &step[i]->next_layer(importance[i]));
      host.stash_stopped_rows(pl, s.h_[1].get(), s.aux_.get());
      rows[i] = static_cast<int>(pl.rows.size());
      host.gather_planned_rows(pl, s.h_[1].get(), s.aux_.get(), h + static_cast<size_t>(m) * d);
      off[i] = m;
      m += rows[i];
      planned_pos.insert(planned_pos.end(), pl.rows.begin(), pl.rows.end());
      if (pl.want_importance) imp_at[i] = imp_keys, imp_keys += pl.keys.size();
    }
    if (!planned_pos.empty()) host.upload_at(host.pos_d_, n_fixed, planned_pos);
    if (imp_keys > 0) host.importance_h_.ensure(imp_keys);

    const bool fused = host.fused_layer(l, m);
    host.layer_qkv(l, h, m, fused);
    if (n_decode > 0) {
      auto* table = reinterpret_cast<void* const*>(host.row_caches_d_.get() + static_cast<size_t>(3) * l * n_decode);
      cuda::SequenceRows seq_rows;
      seq_rows.k_cache = reinterpret_cast<half_t* const*>(table);
      seq_rows.v_cache = reinterpret_cast<half_t* const*>(table + n_decode);
      seq_rows.kpos = reinterpret_cast<int32_t* const*>(table + 2 * n_decode);
      seq_rows.slot = host.pos_d_.get();
      seq_rows.n_keys = host.row_keys_d_.get();
      host.layer_attention_rows(l, n_decode, seq_rows, max_keys);
    }
    for (int i = 0; i < n; ++i) {
      CudaForward& s = *parts[i].seq;
      LayerCall call;
      if (kind[i] == kPrompt) {  // causal over the sequence's own keys, the prefill's layout
        if (walk[i]->begin_layer(l).slot0 != s.n_past_) throw std::logic_error("step_together: a prompt's slots moved");
        call.m = static_cast<int>(parts[i].tokens.size()), call.d_pos = host.pos_d_.get() + row0[i];
        call.slot0 = s.n_past_, call.n_keys = s.n_past_ + call.m, call.row0 = row0[i], call.kv = &s;
      } else if (kind[i] == kPlanned) {  // as decode_planned() calls it; row_keys_d_ holds the decode rows' counts
        call = host.planned_call(*plan[i], host.part_keys_d_);
        call.d_pos = host.pos_d_.get() + off[i], call.row0 = off[i], call.kv = &s;
      } else {
        continue;
      }
      host.layer_attention(l, call);
      if (call.want_importance)  // before the next sequence's attention overwrites it
        check(cudaMemcpyAsync(host.importance_h_.get() + imp_at[i], host.importance_d_.get(),
                              call.n_keys * sizeof(float), cudaMemcpyDeviceToHost, host.stream_),
              "importance to host");
    }
    host.layer_output(l, h, m, fused);
    for (int i = 0; i < n; ++i) {
      if (kind[i] != kPlanned) continue;
      CudaForward& s = *parts[i].seq;
      check(cudaMemcpyAsync(s.h_[1].get(), h + static_cast<size_t>(off[i]) * d, sizeof(float) * rows[i] * d,
                            cudaMemcpyDeviceToDevice, host.stream_),
            "planned rows back");
      if (s.record_selection_) s.selection_[l].assign(step[i]->selected().begin(), step[i]->selected().end());
    }
    if (imp_keys > 0) {
      host.sync_stream();
      for (int i = 0; i < n; ++i)
        if (kind[i] == kPlanned && plan[i]->want_importance)
          importance[i] = {host.importance_h_.get() + imp_at[i], plan[i]->keys.size()};
    }
  }
  for (int i = 0; i < n; ++i)
    if (kind[i] == kPlanned) last_row[i] = off[i] + rows[i] - 1;  // the new token, last of its rows

  // Logits of each sequence's last row, in the parts' order: with baseline decode rows only,
  // rows 0..n-1 in that order already; else gathered.
  const float* last = h;
  if (n_decode < n) {
    std::vector<int32_t> src_rows(last_row.begin(), last_row.end());
    host.upload(host.src_idx_d_, src_rows);
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
    if (kind[i] == kPrompt) {
      walk[i]->finish();
      s.n_past_ += static_cast<int>(parts[i].tokens.size());
      s.mirror_dirty_ = true, s.last_revived_ = false, s.steady_backoff_ = s.steady_skip_ = 0;
      ++s.path_stats_.shared_prefills;
    } else if (kind[i] == kDecode) {
      s.book_baseline_decode(pos[row0[i]]);
      ++s.path_stats_.shared_steps;
    } else {  // DecodeStep booked its layers as it planned them
      ++s.n_past_;
      s.last_revived_ = s.counters_.revived != revived_before[i];
      s.mirror_dirty_ = true;
      ++s.path_stats_.shared_steps;
    }
  }
}

}  // namespace lazyllm::cuda_pass
