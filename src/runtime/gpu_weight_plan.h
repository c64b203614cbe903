// What form each weight matrix takes on the GPU (GpuWeights), decided on the host so the CUDA
// upload, `info` and the byte counts agree and the non-CUDA build can report them too.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "format/dtype.h"
#include "lazyllm/lazyllm.h"

namespace lazyllm {

struct WeightView;

// The type a matrix made of `parts` (concatenated by rows: Q|K|V, gate|up) keeps on the GPU:
// its stored type when every part has it and the CUDA backend has kernels for it (Q8_0, Q4_0,
// Q4_K, Q5_K, Q6_K) in native mode, else BF16.
DType gpu_matrix_type(std::initializer_list<const WeightView*> parts, GpuWeights mode);

// Whether a matrix of `parts` goes to the GPU as parts of different quantized types, each in its
// own blocks (native mode, every part's type native, not all one type): Q|K|V of Q4_K_M files.
bool gpu_split_parts(std::initializer_list<const WeightView*> parts, GpuWeights mode);

// How a split matrix's parts are uploaded: the number of neighbouring parts each upload takes,
// two where two neighbours have one type (Q|K beside a V of another type: one product launch and
// one fused norm instead of two), else one; empty when the matrix does not split.
std::vector<int> gpu_split_groups(std::initializer_list<const WeightView*> parts, GpuWeights mode);

// Whether the CUDA backend reads matrices of type t in their blocks.
bool gpu_native_type(DType t);

// Bytes of a rows x cols matrix of gpu type t on the GPU (blocks: the quants, then the scales).
int64_t gpu_matrix_bytes(DType t, int64_t rows, int64_t cols);

struct GpuWeightPlan {
  int64_t weight_bytes = 0;
  // Elements of the largest bf16 staging a quantized layer matrix needs for prefill products
  // (gate and up are dequantized one at a time); 0 when nothing stays quantized.
  int64_t scratch_elems = 0;
  // Stored types that are quantized but go to the GPU as bf16 (in a matrix whose parts differ in
  // type and do not split, e.g. gate|up), by name.
  std::vector<std::string> converted;
  // Per layer, the bytes a prefill-sized batch moves to dequantize the layer's matrices that stay
  // quantized into bf16 before their products: the blocks read and 2 bytes an element written
  // (all zero in bf16 mode or without quantized layer matrices).
  std::vector<double> dequant_bytes;
};
GpuWeightPlan plan_gpu_weights(const ModelConfig& c, const ModelWeights& w, GpuWeights mode);

}  // namespace lazyllm
