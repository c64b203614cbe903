// Causal attention over a layer's cached keys, tagged with original positions, so LazyLLM's
// compacted token sets attend exactly as in the full sequence: many query rows go to the prefill
// kernels (attention_prefill.cu), a few to the split-key decode kernels (attention_decode.cu).
// LazyLLM's importance and selection kernels are in lazy_select.cu.
#include <string>

#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/attention_launch.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemv.h"
#include "kernels/cuda/ops.h"

namespace lazyllm::cuda {
namespace {

bool prefill_takes(const AttentionArgs& a) {
  return prefill_attention_applies(a) && a.n_keys_dev == nullptr && a.seqs.k_cache == nullptr;
}

}  // namespace

size_t attention_scratch_floats(const AttentionArgs& a) {
  return prefill_takes(a) ? 0 : decode_attention_scratch_floats(a);
}

bool attention_reads_key_count(int head_dim) { return decode_attention_reads_key_count(head_dim); }

bool attention_reads_key_runs(int m, int head_dim) {
  AttentionArgs a{};
  a.m = m, a.head_dim = head_dim;
  return prefill_takes(a);
}

void attention(const AttentionArgs& a, float* scratch, cudaStream_t stream) {
  if (a.m == 0) return;
  if (a.head_dim > kMaxHeadDim) throw Error("CUDA attention: head size above 256 is not supported");
  if (a.n_keys_dev && (a.row_key_end || !decode_attention_reads_key_count(a.head_dim)))
    throw Error("CUDA attention: a key count in device memory needs the decode kernel (head size 16-128)");
  if (a.seqs.k_cache && (a.key_slots || a.row_key_end || !decode_attention_reads_key_count(a.head_dim)))
    throw Error("CUDA attention: rows of several sequences need the decode kernel (head size 16-128), all keys");
  if (a.row_key_end_b && (a.key_slots || !a.row_key_end || !prefill_takes(a)))
    throw Error("CUDA attention: two runs of keys need the prefill kernels (more than 16 rows), unlisted keys");
  prefill_attention_prepare();
  if (prefill_takes(a)) return prefill_attention(a, stream);
  decode_attention(a, scratch, stream);
}

void prepare_kernels() {
  prefill_attention_prepare();
  gemv_prepare();
}

}  // namespace lazyllm::cuda
