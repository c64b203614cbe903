// The CUDA decode paths: the baseline's graph, the steady LazyLLM step's graph (selection on the
// GPU, prune/lazy_plan.h's SteadyDecodePlan), and the host-planned step (DecodeStep).
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>

#include "runtime/cuda/cuda_forward_pass.h"

namespace lazyllm::cuda_pass {

// ------------------------------------------------------------------ decode

void CudaForward::decode_chain(int capacity) {
  const int32_t* token = step_d_.get();
  const int32_t* pos = step_d_.get() + 1;
  const int32_t* n_keys = step_d_.get() + 2;
  cuda::embed_rows_any(w_->token_embd.ref, token, 1, c_.n_embd, h_[0].get(), stream_);
  for (int l = 0; l < c_.n_layers; ++l) {
    LayerCall c;
    c.m = 1, c.d_pos = pos, c.slot0_dev = pos, c.n_keys = capacity, c.n_keys_dev = n_keys;
    layer_kernels(l, h_[0].get(), c);
  }
  logits_kernels(h_[0].get());
}

cudaGraphExec_t CudaForward::capture(const std::function<void()>& chain) {
  cudaGraph_t graph = nullptr;
  check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
  try {
    chain();
  } catch (...) {
    cudaStreamEndCapture(stream_, &graph);
    if (graph) cudaGraphDestroy(graph);
    throw;
  }
  check(cudaStreamEndCapture(stream_, &graph), "cudaStreamEndCapture");
  cudaGraphExec_t exec = nullptr;
  const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  check(e, "cudaGraphInstantiate");
  return exec;
}

cudaGraphExec_t CudaForward::decode_graph(int capacity) {
  auto it = graphs_.find(capacity);
  if (it != graphs_.end()) return it->second;
  return graphs_[capacity] = capture([&] { decode_chain(capacity); });
}

// Nothing pruned now or before: every earlier token has K/V at every layer in slot = position,
// and the new token attends to all of them. The token, its position and the key count go to the
// GPU in one small copy; the chain of kernels is replayed from a graph (or launched directly
// with LAZYLLM_CUDA_GRAPHS=0: the same kernels, the same results).
void CudaForward::decode_baseline(int32_t token) {
  const int p = n_past_;
  ensure_rows(1);
  step_h_[0] = token, step_h_[1] = p, step_h_[2] = p + 1;
  check(cudaMemcpyAsync(step_d_.get(), step_h_.get(), 3 * sizeof(int32_t), cudaMemcpyHostToDevice, stream_),
        "decode step to device");
  const int capacity = (p + 1 + kGraphBucket - 1) / kGraphBucket * kGraphBucket;
  if (use_graphs_) {
    check(cudaGraphLaunch(decode_graph(capacity), stream_), "cudaGraphLaunch");
  } else {
    decode_chain(capacity);
  }
  fetch_logits();  // also: step_h_ may be written again
  book_baseline_decode(p);
}

void CudaForward::book_baseline_decode(int p) {
  const int n_layers = c_.n_layers;
  mirror_dirty_ = true;
  index_.mark_prompt(p, false);
  for (int l = 0; l < n_layers; ++l) {
    if (index_.store(l, p) != p) throw std::logic_error("CUDA baseline decode: slot is not the position");
    if (record_selection_)
      for (int t = 0; t < p; ++t) selection_[l].push_back(t);
  }
  counters_.token_layers += n_layers;
  ++n_past_;
}

bool CudaForward::graph_kernels_apply() const {
  return cuda::attention_reads_key_count(c_.head_dim) && cuda::gemv_applies(1, c_.n_embd) &&
         cuda::gemv_applies(1, c_.n_ff) && cuda::gemv_applies(1, c_.n_heads * c_.head_dim);
}

bool CudaForward::baseline_decode_applies(const LayerSchedule& s) const {
  return !s.any() && index_.all_full() && index_.tokens() == n_past_ && graph_kernels_apply();
}

// ------------------------------------------------------------------ steady lazy decode

// Mirrors the index's slots (every layer, tokens [0, n)) and depths on the GPU for the steady
// graph; after a steady step the graph books the new token there itself.
void CudaForward::upload_index_mirror(int n) {
  const size_t L = c_.n_layers, pitch = static_cast<size_t>(n_ctx_) * sizeof(int32_t);
  if (slot_table_d_.empty()) {
    grow(slot_table_d_, L * n_ctx_);
    grow(depth_d_, static_cast<size_t>(n_ctx_));
  }
  if (n > 0) {
    check(cudaMemcpy2DAsync(slot_table_d_.get(), pitch, index_.slots_of_layer(0), pitch, n * sizeof(int32_t), L,
                            cudaMemcpyHostToDevice, stream_),
          "index slots to device");
    check(cudaMemcpyAsync(depth_d_.get(), index_.depths(), n * sizeof(int32_t), cudaMemcpyHostToDevice, stream_),
          "index depths to device");
  }
  mirror_dirty_ = false;
}

void CudaForward::steady_chain(int capacity, const SteadyDecodePlan& plan) {
  const int L = c_.n_layers;
  int32_t* sd = steady_d_.get();
  const int32_t *token = sd, *pos = sd + 1, *slot = sd + 3, *n_keys = sd + 3 + L, *nk = sd + 3 + 2 * L;
  int32_t* miss = sd + 2;
  cuda::embed_rows_any(w_->token_embd.ref, token, 1, c_.n_embd, h_[0].get(), stream_);
  const int32_t* keys = nullptr;  // the kept keys' positions since the last selection
  int32_t* keys_out = steady_keys_d_.get();
  for (int l = 0; l < L; ++l) {
    if (plan.selects[l]) {
      cuda::select_top_dev(importance_d_.get(), nk + 2 * l, dest_d_.get(), stream_);
      cuda::SteadyKeysArgs a{keys, dest_d_.get(), nk + 2 * l, pos, depth_d_.get(), plan.need_depth[l], capacity,
                             keys_out, miss};
      cuda::steady_keys(a, stream_);
      keys = keys_out;
      keys_out += n_ctx_ + 1;
    }
    LayerCall c;
    c.m = 1, c.d_pos = pos, c.slot0_dev = slot + l, c.n_keys = capacity, c.n_keys_dev = n_keys + l;
    if (l >= plan.first_listed) {
      cuda::listed_slots(slot_table_d_.get() + static_cast<size_t>(l) * n_ctx_, keys, n_keys + l, slot + l, capacity,
                         key_slots_d_.get(), stream_);
      c.key_slots = key_slots_d_.get();
    }
    c.want_importance = l + 1 < L && plan.selects[l + 1];
    layer_kernels(l, h_[0].get(), c);
  }
  logits_kernels(h_[0].get());
  cuda::steady_book(slot_table_d_.get(), n_ctx_, L, slot, pos, depth_d_.get(), stream_);
}

// One steady step as a graph. Returns false, having booked nothing, when the plan does not
// apply or a kept token had to revive (the GPU's work is then discarded: it wrote only slots
// past each layer's end, which the redone step overwrites, and the mirror, uploaded again).
bool CudaForward::decode_steady(int32_t token, const LayerSchedule& sched) {
  const std::optional<SteadyDecodePlan> plan = plan_steady_decode(index_, sched);
  if (!plan) return false;
  const int L = c_.n_layers, p = n_past_;
  std::vector<int32_t> sig(plan->selects.begin(), plan->selects.end());
  sig.insert(sig.end(), plan->need_depth.begin(), plan->need_depth.end());
  sig.push_back(plan->first_listed);
  if (sig != steady_sig_) {
    for (auto& [cap, exec] : steady_graphs_) cudaGraphExecDestroy(exec);
    steady_graphs_.clear();
    steady_sig_ = sig;
  }
  ensure_rows(1);
  const int n_lists = static_cast<int>(std::count(plan->selects.begin(), plan->selects.end(), 1));
  if (steady_keys_d_.size() < static_cast<size_t>(n_lists) * (n_ctx_ + 1))
    grow(steady_keys_d_, static_cast<size_t>(n_lists) * (n_ctx_ + 1));
  if (steady_d_.empty()) {
    grow(steady_d_, 3 + 4 * static_cast<size_t>(L));
    steady_h_.ensure(3 + 4 * static_cast<size_t>(L));
  }
  if (mirror_dirty_) upload_index_mirror(p);
  steady_h_[0] = token, steady_h_[1] = p, steady_h_[2] = 0;
  for (int l = 0; l < L; ++l) {
    steady_h_[3 + l] = plan->slot[l];
    steady_h_[3 + L + l] = plan->n_keys[l];
    steady_h_[3 + 2 * L + 2 * l] = l > 0 ? plan->n_keys[l - 1] - 1 : 0;
    steady_h_[3 + 2 * L + 2 * l + 1] = plan->n_keys[l] - 1;
  }
  check(cudaMemcpyAsync(steady_d_.get(), steady_h_.get(), (3 + 4 * L) * sizeof(int32_t), cudaMemcpyHostToDevice,
                        stream_),
        "decode step to device");
  // Keys at a layer never exceed p + 1; the capacity is bucketed as the baseline's, within the
  // buffers sized for the context.
  const int capacity = std::min(n_ctx_, (p + 1 + kGraphBucket - 1) / kGraphBucket * kGraphBucket);
  auto it = steady_graphs_.find(capacity);
  if (it == steady_graphs_.end())
    it = steady_graphs_.emplace(capacity, capture([&] { steady_chain(capacity, *plan); })).first;
  check(cudaGraphLaunch(it->second, stream_), "cudaGraphLaunch");
  check(cudaMemcpyAsync(steady_h_.get() + 2, steady_d_.get() + 2, sizeof(int32_t), cudaMemcpyDeviceToHost, stream_),
        "decode step flag to host");
  fetch_logits();  // waits for the stream
  if (steady_h_[2] != 0) {
    ++path_stats_.device_misses;
    return false;
  }
  if (record_selection_) {
    std::vector<int32_t> keys(static_cast<size_t>(n_lists) * (n_ctx_ + 1));
    check(cudaMemcpy(keys.data(), steady_keys_d_.get(), keys.size() * sizeof(int32_t), cudaMemcpyDeviceToHost),
          "kept keys to host");
    const int32_t* list = nullptr;
    for (int l = 0, e = 0; l < L; ++l) {
      if (plan->selects[l]) list = keys.data() + static_cast<size_t>(e++) * (n_ctx_ + 1);
      if (list) selection_[l].assign(list, list + plan->n_keys[l] - 1);
      else for (int t = 0; t < p; ++t) selection_[l].push_back(t);
    }
  }
  record_steady_decode(index_, counters_, *plan);
  ++path_stats_.device_steps;
  ++n_past_;
  return true;
}

void CudaForward::decode(int32_t token, const LayerSchedule& sched) {
  const cuda::PdlScope pdl(pdl_);
  const int n_layers = c_.n_layers;
  const int p = n_past_;
  if (p >= n_ctx_) throw Error("context is full (" + std::to_string(n_ctx_) + " tokens)");
  if (token < 0 || token >= c_.n_vocab) throw Error("token id " + std::to_string(token) + " is out of the vocabulary");
  if (record_selection_) selection_.assign(n_layers, {});

  // Baseline fast path: nothing pruned now or before, so every earlier token has K/V at every
  // layer (in slot = position) and the new token attends to all slots; no per-layer host work.
  if (baseline_decode_applies(sched)) return decode_baseline(token);

  // A re-selecting step: first as a graph, unless host steps are reviving tokens now or a recent
  // attempt missed (each miss doubles the wait, each success halves it).
  if (use_steady_ && graph_kernels_apply() && sched.any() && !last_revived_ && steady_skip_ == 0) {
    if (decode_steady(token, sched)) {
      steady_backoff_ /= 2;
      return;
    }
    if (record_selection_) selection_.assign(n_layers, {});
    steady_backoff_ = std::min(64, std::max(1, 2 * steady_backoff_));
    steady_skip_ = steady_backoff_;
  } else if (steady_skip_ > 0) {
    --steady_skip_;
  }
  const int64_t revived = counters_.revived;
  decode_planned(token, sched);
  last_revived_ = counters_.revived != revived;
  mirror_dirty_ = true;
}

void CudaForward::stash_stopped_rows(const DecodeLayerPlan& plan, const float* rows, float* aux) {
  if (plan.stop_rows.empty()) return;
  upload(src_idx_d_, plan.stop_rows);
  upload(dst_idx_d_, plan.stop_tokens);
  cuda::copy_rows(rows, nullptr, src_idx_d_.get(), dst_idx_d_.get(), static_cast<int>(plan.stop_rows.size()), c_.n_embd,
                  aux, stream_);
}

void CudaForward::gather_planned_rows(const DecodeLayerPlan& plan, const float* rows, const float* aux, float* out) {
  const int m = static_cast<int>(plan.rows.size());
  std::vector<int32_t> src(m);  // copy_rows' encoding: a carried row's index, or -(position + 1) from aux
  for (int i = 0; i < m; ++i) src[i] = plan.row_src[i] >= 0 ? plan.row_src[i] : -plan.rows[i] - 1;
  upload(src_idx_d_, src);
  cuda::copy_rows(rows, aux, src_idx_d_.get(), nullptr, m, c_.n_embd, out, stream_);
}

LayerCall CudaForward::planned_call(const DecodeLayerPlan& plan, DeviceBuffer<int32_t>& row_keys) {
  LayerCall c;
  c.m = static_cast<int>(plan.rows.size()), c.slot0 = plan.slot0, c.n_keys = static_cast<int>(plan.keys.size());
  if (!plan.all_keys) {
    upload(key_slots_d_, plan.key_slots);
    c.key_slots = key_slots_d_.get();
    if (c.m > 16) {  // batches the flash kernels take: each block of rows stops at its own keys
      std::vector<int32_t> runs;
      if (use_key_runs_ && cuda::attention_reads_key_runs(c.m, c_.head_dim) && lazyllm::key_runs(plan, runs)) {
        upload(row_keys, runs);
        c.row_key_end = row_keys.get(), c.row_key_end_b = row_keys.get() + c.m;
        c.key_extent = plan.slot0 + runs[2 * c.m - 1];
        ++path_stats_.key_run_batches;
      } else {
        upload(row_keys, plan.row_keys);
        c.row_key_end = row_keys.get();
        c.gather_keys = c.m >= kGatherRows;
      }
    }
  }
  c.want_importance = plan.want_importance;
  return c;
}

void CudaForward::decode_planned(int32_t token, const LayerSchedule& sched) {
  const int d = c_.n_embd, n_layers = c_.n_layers;
  const int p = n_past_;

  // At most the new token and every token short of full depth are computed at one layer: room
  // for them now, before the embedding (growing loses contents).
  ensure_rows(1 + index_.tokens() - index_.full_depth_tokens());
  if (sched.any()) ensure_aux();
  int cur = 0;
  upload(tokens_d_, std::vector<int32_t>{token});
  cuda::embed_rows_any(w_->token_embd.ref, tokens_d_.get(), 1, d, h_[cur].get(), stream_);

  DecodeStep step(index_, counters_, sched, p);
  std::span<const float> importance;
  int prev_rows = 1;
  for (int l = 0; l < n_layers; ++l) {
    const DecodeLayerPlan& plan = step.next_layer(importance);
    const int m = static_cast<int>(plan.rows.size());
    stash_stopped_rows(plan, h_[cur].get(), aux_.get());
    // The rows move only when the batch changes (a revival, a stop); the new token alone stays.
    bool same_rows = m == prev_rows;
    for (int i = 0; i < m && same_rows; ++i) same_rows = plan.row_src[i] == i;
    if (!same_rows) {
      gather_planned_rows(plan, h_[cur].get(), aux_.get(), h_[1 - cur].get());
      cur = 1 - cur;
    }
    prev_rows = m;
    upload(pos_d_, plan.rows);
    LayerCall c = planned_call(plan, row_keys_d_);
    c.d_pos = pos_d_.get();
    layer_kernels(l, h_[cur].get(), c);
    if (c.want_importance) {
      importance_h_.ensure(std::max(c.n_keys, 1));
      check(cudaMemcpyAsync(importance_h_.get(), importance_d_.get(), c.n_keys * sizeof(float), cudaMemcpyDeviceToHost,
                            stream_),
            "importance to host");
      sync_stream();
      importance = {importance_h_.get(), static_cast<size_t>(c.n_keys)};
    }
    if (record_selection_) selection_[l].assign(step.selected().begin(), step.selected().end());
  }
  // Rows still carried after the last layer now have K/V at every layer: nothing to keep.
  logits_kernels(h_[cur].get() + static_cast<size_t>(prev_rows - 1) * d);
  fetch_logits();
  ++n_past_;
}

}  // namespace lazyllm::cuda_pass
