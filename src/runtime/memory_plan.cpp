#include "runtime/memory_plan.h"

#include <algorithm>
#include <string>
#include <vector>

#include "format/gguf.h"
#include "model/weights.h"
#include "runtime/gpu_weight_plan.h"
#include "util/byte_size.h"
#include "util/thread_pool.h"

namespace lazyllm {
namespace {

constexpr int64_t kF32 = 4, kHalf = 2, kI32 = 4;

// Shapes every estimate uses, as int64 so products of them never overflow.
struct Dims {
  int64_t d, qd, kvd, hd, ff, layers, heads, vocab, ctx, lists;
  Dims(const ModelConfig& c, int n_ctx, const PruneSchedule& prune)
      : d(c.n_embd),
        qd(int64_t{c.n_heads} * c.head_dim),
        kvd(int64_t{c.n_kv_heads} * c.head_dim),
        hd(c.head_dim),
        ff(c.n_ff),
        layers(c.n_layers),
        heads(c.n_heads),
        vocab(c.n_vocab),
        ctx(n_ctx),
        lists(static_cast<int64_t>(prune.points.size()) + 1) {}
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The CPU (runtime/cpu/cpu_forward.cpp): the file's tensors are mapped whole; the K/V rows of
// every layer (LayerKV), the Aux Cache's rows (AuxCache), and CpuForward::Scratch at a prefill of
// the whole context (FFN buffers in chunks of 512 rows, attention in blocks of 64 query rows per
// thread), plus the matmul paths' staging (a bf16 or 8-bit copy of the activations, per-thread
// tiles of decoded weights).
MemoryEstimate estimate_cpu(const Model& model, const SessionOptions& o, const Dims& s) {
  MemoryEstimate e;
  for (const GGUFTensor& t : model.file().tensors()) e.weights += t.n_bytes;
  const int64_t kv_elem = o.kv_f16 ? kHalf : kF32;
  e.kv_cache = o.kv_pool ? 0 : s.layers * s.ctx * (2 * s.kvd * kv_elem + kI32);  // a pool's pages are its own
  const bool pruning = !o.prune.empty();
  if (pruning) e.aux_cache = s.ctx * s.d * kF32;
  const int64_t threads = o.n_threads > 0 ? o.n_threads : ThreadPool::default_threads();
  const int64_t n = s.ctx, ffn_rows = std::min<int64_t>(n, 512), widest = std::max({s.d, s.qd, s.ff});
  int64_t floats = n * s.d                             // hidden
                   + n * s.d                           // xn
                   + 2 * n * s.qd                      // q, att
                   + 2 * n * s.kvd                     // k, v
                   + 2 * ffn_rows * s.ff               // gate, up
                   + ffn_rows * s.d                    // ffn_out
                   + threads * 64 * n                  // attention score blocks
                   + threads * 32 * std::max(n, s.hd)  // and their packed keys or values
                   + s.vocab + s.d;                    // logits, the last row's norm
  // K and V widened to float for prefill's products (and gathered for decode batches that revive)
  if (o.kv_f16 || pruning) floats += 2 * n * s.kvd;
  if (pruning) floats += s.heads * n + n + n * s.d;  // importance per head, averaged; a revival batch
  e.scratch = floats * kF32 + s.lists * n * kI32;
  // matmul: the activations rounded once (bf16 or 8-bit codes with scales), and per thread a
  // 32-row tile of decoded and packed weights.
  e.scratch += n * widest * kHalf + threads * 32 * widest * (kF32 + kHalf);
  return e;
}

// CUDA (runtime/cuda/cuda_forward_pass.cpp and cuda_decode.cpp): the weights in their GPU form
// (runtime/gpu_weight_plan.h); K/V in half with each slot's position; the Aux Cache's rows; the
// activations of CudaForward::ensure_rows at its largest (the context plus one row; FFN buffers
// in chunks of 8192 rows), the dequantization scratch, and the buffers made at construction
// (RoPE tables, index lists, logits, one decode row's attention partials over the context,
// importance and its scratch). With a schedule: the prefill's alive lists, the steady decode's
// slot tables and the gathered keys of large revival batches.
MemoryEstimate estimate_cuda(const Model& model, const SessionOptions& o, const Dims& s) {
  MemoryEstimate e;
  const GpuWeightPlan plan = plan_gpu_weights(model.config(), model.weights(), o.gpu_weights);
  e.weights = plan.weight_bytes;
  // K/V rows from a pool are the pool's (allocated when it was made); the positions stay here.
  e.kv_cache = s.layers * s.ctx * ((o.kv_pool ? 0 : 2 * s.kvd * kHalf) + kI32);
  const bool pruning = !o.prune.empty();
  if (pruning) e.aux_cache = s.ctx * s.d * kF32;
  const int64_t m = s.ctx + 1, ffn_rows = std::min<int64_t>(m, 8192), n = s.ctx;
  const int64_t bucket = ceil_div(n, 1024) * 1024;
  int64_t bytes = plan.scratch_elems * kHalf                            // dequantization scratch
                  + 2 * m * s.d * kF32                                  // h (two)
                  + m * std::max(s.d, s.qd) * kHalf                     // xn
                  + m * (s.qd + 2 * s.kvd) * kF32                       // qkv
                  + 2 * m * s.qd * kHalf                                // q, att
                  + 3 * ffn_rows * s.ff * kHalf                         // gate|up, act
                  + n * (s.hd / 2) * 2 * kF32                           // RoPE cos, sin
                  + 7 * (n + 1) * kI32                                  // token, position and index lists
                  + s.vocab * kF32                                      // logits
                  + s.heads * ceil_div(bucket, 64) * (s.hd + 4) * kF32  // a decode row's attention partials
                  + n * kF32                                            // importance
                  + s.heads * (n + ceil_div(n, 128) + 2) * kF32;        // its scratch
  bytes += s.lists * n * kI32;  // prefill's alive lists
  if (pruning)
    bytes += s.layers * n * kI32 + n * kI32 + s.lists * (n + 1) * kI32  // slot table, depths, kept keys
             + n * (2 * s.kvd * kHalf + kI32);                           // gathered keys
  e.scratch = bytes;
  return e;
}

}  // namespace

MemoryEstimate estimate_memory(const Model& model, const SessionOptions& options) {
  const int n_ctx = options.n_ctx > 0 ? options.n_ctx : model.config().n_ctx_train;
  const Dims dims(model.config(), n_ctx, options.prune);
  return options.device == Device::Cuda ? estimate_cuda(model, options, dims) : estimate_cpu(model, options, dims);
}

std::string memory_shortfall(const Model& model, const SessionOptions& options, int64_t free_bytes,
                             bool weights_resident) {
  auto needed = [&](const SessionOptions& o) {
    const MemoryEstimate e = estimate_memory(model, o);
    return e.total() - (weights_resident && o.gpu_weights == options.gpu_weights ? e.weights : 0);
  };
  const MemoryEstimate e = estimate_memory(model, options);
  if (needed(options) <= free_bytes) return "";
  const int n_ctx = options.n_ctx > 0 ? options.n_ctx : model.config().n_ctx_train;
  std::string msg = "needs " + format_gib(needed(options)) + ": weights " +
                    (weights_resident ? "already loaded" : format_gib(e.weights)) + ", KV cache " +
                    format_gib(e.kv_cache) + (e.aux_cache ? ", Aux Cache " + format_gib(e.aux_cache) : "") +
                    ", scratch " + format_gib(e.scratch) + " for a context of " + std::to_string(n_ctx) +
                    " tokens; the device has " + format_gib(free_bytes) + " free";
  // The longest context that fits (the estimate grows with the context), in steps of 256.
  SessionOptions o = options;
  int lo = 0, hi = n_ctx;
  while (lo + 1 < hi) {
    const int mid = lo + (hi - lo) / 2;
    o.n_ctx = mid;
    (needed(o) <= free_bytes ? lo : hi) = mid;
  }
  const int fits = lo >= 256 ? lo / 256 * 256 : lo;
  std::vector<std::string> tries;
  if (fits > 0) tries.push_back("--ctx " + std::to_string(fits));
  if (options.gpu_weights == GpuWeights::kBf16) {
    o = options;
    o.gpu_weights = GpuWeights::kNative;
    if (estimate_memory(model, o).weights < e.weights) tries.push_back("--gpu-weights native");
  }
  if (tries.empty()) return msg + "; the weights alone need " + format_gib(e.weights) + ": use a device with more memory";
  msg += "; try " + tries[0];
  for (size_t i = 1; i < tries.size(); ++i) msg += " or " + tries[i];
  return msg;
}

}  // namespace lazyllm
