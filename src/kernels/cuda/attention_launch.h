// The attention kernels' families behind ops.h's attention(): prefill (attention_prefill.cu) and
// decode (attention_decode.cu). Internal to src/kernels/cuda.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/cuda/ops.h"

namespace lazyllm::cuda {

// Whether the prefill kernels take this call (more than 16 rows, head size 16-128).
bool prefill_attention_applies(const AttentionArgs& a);
// Sets the prefill kernels' shared-memory limits, once per process.
void prefill_attention_prepare();
void prefill_attention(const AttentionArgs& a, cudaStream_t stream);

// The split-key decode kernels: scratch for their partial results, and whether they can read the
// key count from device memory (decode graphs).
size_t decode_attention_scratch_floats(const AttentionArgs& a);
bool decode_attention_reads_key_count(int head_dim);
void decode_attention(const AttentionArgs& a, float* scratch, cudaStream_t stream);

}  // namespace lazyllm::cuda
