#include "runtime/cuda/weight_copies.h"

#include <algorithm>

#include "kernels/cuda/cuda_check.h"

namespace lazyllm::cuda_pass {

bool WeightCopies::prepare(const cuda::CudaWeights& w, int first_layer) {
  if (!enabled_ || first_layer < 0 || first_layer >= static_cast<int>(w.layers.size())) return false;
  if (first_layer_ >= 0 && first_layer >= first_layer_) return true;
  // The layout: each quantized matrix of the layers from first_layer on, in order.
  std::unordered_map<const void*, Entry> at;
  size_t elems = 0;
  auto add = [&](const cuda::MatrixPart& part, int64_t cols) {
    if (part.ref.format == cuda::WeightFormat::kBf16 || part.ref.w == nullptr) return;
    at[part.ref.w] = Entry{elems, false};
    elems += static_cast<size_t>(part.rows * cols);
  };
  for (size_t l = static_cast<size_t>(first_layer); l < w.layers.size(); ++l) {
    const cuda::CudaLayerWeights& L = w.layers[l];
    for (const cuda::CudaMatrix* m : {&L.wqkv, &L.wo, &L.wgu, &L.wdown})
      for (const cuda::MatrixPart& part : m->parts) add(part, m->cols);
  }
  if (elems == 0) return false;
  size_t free_b = 0, total_b = 0;
  cuda::check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
  const size_t reserve = std::max(kMinFreeBytes, total_b / 20);
  const size_t need = elems * sizeof(cuda::bf16_t), held = buf_.size() * sizeof(cuda::bf16_t);
  if (free_b + held < need + reserve) return false;
  // Drop the smaller room first, so both are never held at once.
  at_.clear(), first_layer_ = -1, buf_ = {};
  try {
    buf_.ensure(elems);
  } catch (const Error&) {  // taken meanwhile: the prefill runs without copies
    cudaGetLastError();
    return false;
  }
  at_ = std::move(at);
  first_layer_ = first_layer;
  return true;
}

WeightCopy WeightCopies::make(const cuda::WeightRef& w) {
  auto it = at_.find(w.w);
  if (it == at_.end()) return {};
  it->second.made = true;  // the caller's dequantization, queued before any reader's product
  return {buf_.get() + it->second.offset, false};
}

WeightCopy WeightCopies::made(const cuda::WeightRef& w) const {
  auto it = at_.find(w.w);
  if (it == at_.end() || !it->second.made) return {};
  return {buf_.get() + it->second.offset, true};
}

}  // namespace lazyllm::cuda_pass
