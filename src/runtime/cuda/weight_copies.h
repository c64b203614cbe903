// bf16 copies of quantized layer matrices that a LazyLLM prefill leaves for the decode steps
// after it. Prefill dequantizes each quantized matrix into bf16 before its cuBLAS products
// (weight_gemm.h); a pruned prefill defers rows at its deeper layers, and the decode step that
// completes them (or revives them) multiplies the same matrices again over more than 64 rows,
// which would dequantize them a second time. Where free device memory allows, the prefill instead
// dequantizes those layers' matrices into copies kept here, and later products over them read the
// copies. The copies hold the same bf16 values the scratch would and are multiplied in the same
// chunks of rows, so the results are bit for bit the same with or without them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>

#include "kernels/cuda/device_buffer.h"
#include "runtime/cuda/cuda_weights.h"
#include "runtime/cuda/weight_gemm.h"

namespace lazyllm::cuda_pass {

class WeightCopies {
 public:
  // Free device memory that making the copies must leave: the larger of this and 5% of the total.
  static constexpr size_t kMinFreeBytes = size_t{1} << 30;

  explicit WeightCopies(bool enabled) : enabled_(enabled) {}

  // Room for copies of the quantized matrices of layers [first_layer, n_layers) of `w`, made
  // before a prefill that defers rows from first_layer on. Allocates only where free memory stays
  // above the reserve after it; false (no copies for this prefill) when off or it would not fit.
  // Growing the room (an earlier first layer) drops the copies made so far.
  bool prepare(const cuda::CudaWeights& w, int first_layer);

  // The copy of matrix `w` (its data pointer) to make now: dequantized into by the caller, then
  // read by later products. {} when it has no room here.
  WeightCopy make(const cuda::WeightRef& w);
  // The copy of `w` to read, {} unless made.
  WeightCopy made(const cuda::WeightRef& w) const;

  int64_t bytes() const { return static_cast<int64_t>(buf_.size() * sizeof(cuda::bf16_t)); }

 private:
  struct Entry {
    size_t offset = 0;  // elements into buf_
    bool made = false;
  };
  bool enabled_;
  int first_layer_ = -1;  // the layers with room: [first_layer_, n_layers); -1 none
  cuda::DeviceBuffer<cuda::bf16_t> buf_;
  std::unordered_map<const void*, Entry> at_;
};

}  // namespace lazyllm::cuda_pass
