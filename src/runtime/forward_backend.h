// The seam between a session and the device that computes it. The CPU forward pass
// (CpuForward) and the CUDA one implement the same contract: prefill with LazyLLM's progressive
// pruning and Aux Cache, decode with re-selection and revival, the same counters.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "lazyllm/lazyllm.h"
#include "prune/work_counters.h"

namespace lazyllm {

struct LayerSchedule;

// How decode steps ran: lazy steady steps a device ran without a host round trip, attempts it
// gave back to the host plan because a kept token had to revive, and batched steps.
struct DecodePathStats {
  int64_t device_steps = 0;
  int64_t device_misses = 0;
  int64_t shared_steps = 0;  // decode steps whose weight products served several sequences at once
  int64_t shared_prefills = 0;  // prompts (or chunks) whose weight products served other sequences' rows too
  int64_t copy_products = 0;    // products that read a prefill's bf16 weight copies (runtime/cuda/weight_copies.h)
  int64_t key_run_batches = 0;  // decode batches whose attention read two runs of keys in place (key_runs)
};

class ForwardBackend {
 public:
  virtual ~ForwardBackend() = default;
  // Computes tokens at positions [n_past(), n_past() + n) and the last one's logits, under the
  // schedule `s` (prune/lazy_plan.h: which layers prune, how much, and how tokens are chosen).
  virtual void prefill(std::span<const int32_t> tokens, const LayerSchedule& s,
                       const std::function<void(int, int)>& progress = {}) = 0;
  // Computes one new token at position n_past() and its logits, executing the plan of
  // prune/lazy_plan.h layer by layer.
  virtual void decode(int32_t token, const LayerSchedule& s) = 0;
  virtual const std::vector<float>& logits() const = 0;
  virtual int n_past() const = 0;
  virtual int n_ctx() const = 0;
  virtual void clear() = 0;
  // Forgets the tokens from position n on and keeps the K/V of [0, n), where that is exact (the
  // baseline's state: every token at every layer) and the backend supports it; false changes
  // nothing. logits() mean nothing until the next prefill.
  virtual bool keep_prefix(int n) { return false; }
  // Forgets the context and takes a copy of the K/V of src's tokens [0, n) (src: a backend of the
  // same kind and model, in the baseline's state), reserving its K/V pages first; false, with
  // the context forgotten and nothing copied, where that is not possible. logits() mean nothing
  // until the next prefill.
  virtual bool copy_prefix_from(const ForwardBackend& src, int n) { return false; }
  virtual const ForwardCounters& counters() const = 0;
  virtual int64_t aux_bytes() const = 0;
  virtual int64_t aux_entries() const = 0;
  // Number of layers (from 0) at which token t (its position) has K/V: which layers it was
  // alive at. Backends that follow the same schedule on the same inputs agree on it.
  virtual int kv_depth(int t) const = 0;
  // When set, decode() records the tokens the new token attended to at each layer.
  virtual void set_record_selection(bool on) = 0;
  virtual const std::vector<std::vector<int>>& last_selection() const = 0;
  virtual DecodePathStats decode_path_stats() const { return {}; }
  // GPU memory in use (a GPU backend; zero elsewhere).
  virtual Session::DeviceMemory device_memory() const { return {}; }
  // K/V from a KvPool (cache/kv_pool.h), for backends made with one: room for `tokens` tokens
  // (at most the context), taking the pages missing; false, changing nothing, when the pool has
  // too few free. release_kv() forgets the context and gives every page back; kv_pages() counts
  // the pages held. Without a pool: always true, clear(), 0.
  virtual bool reserve_kv(int tokens) { return true; }
  virtual void release_kv() { clear(); }
  virtual int64_t kv_pages() const { return 0; }
};

}  // namespace lazyllm
