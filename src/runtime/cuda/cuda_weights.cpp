#include "runtime/cuda/cuda_weights.h"

#include <algorithm>
#include <cstring>
#include <thread>

#include "kernels/cpu/quant.h"
#include "lazyllm/lazyllm.h"
#include "model/weights.h"

namespace lazyllm::cuda {
namespace {

// Converts rows [r0, r1) of w to bf16 at dst (rows of w.cols), in parallel over rows.
void rows_to_bf16(const WeightView& w, uint16_t* dst) {
  const int64_t rows = w.rows, cols = w.cols;
  auto work = [&](int64_t r0, int64_t r1) {
    std::vector<float> tmp(cols);
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* src = w.data + r * w.row_stride();
      uint16_t* out = dst + r * cols;
      if (w.type == DType::BF16) {
        std::memcpy(out, src, cols * sizeof(uint16_t));
        continue;
      }
      dequantize_row(w.type, src, tmp.data(), cols);
      for (int64_t c = 0; c < cols; ++c) out[c] = fp32_to_bf16(tmp[c]);
    }
  };
  const int n_threads = static_cast<int>(std::clamp<int64_t>(rows / 256, 1, std::max(1u, std::thread::hardware_concurrency())));
  std::vector<std::thread> threads;
  const int64_t per = (rows + n_threads - 1) / n_threads;
  for (int t = 0; t < n_threads; ++t) {
    const int64_t r0 = t * per, r1 = std::min(rows, r0 + per);
    if (r0 < r1) threads.emplace_back(work, r0, r1);
  }
  for (auto& th : threads) th.join();
}

// Uploads the row-wise concatenation of `parts` (same column count) as one bf16 matrix.
DeviceBuffer<bf16_t> upload_matrix(std::initializer_list<const WeightView*> parts, int64_t& bytes) {
  int64_t rows = 0, cols = (*parts.begin())->cols;
  for (const WeightView* p : parts) rows += p->rows;
  std::vector<uint16_t> host(static_cast<size_t>(rows * cols));
  int64_t r = 0;
  for (const WeightView* p : parts) {
    rows_to_bf16(*p, host.data() + r * cols);
    r += p->rows;
  }
  DeviceBuffer<bf16_t> d(host.size());
  check(cudaMemcpy(d.get(), host.data(), host.size() * sizeof(uint16_t), cudaMemcpyHostToDevice), "upload weights");
  bytes += static_cast<int64_t>(host.size() * sizeof(uint16_t));
  return d;
}

DeviceBuffer<float> upload_floats(const float* src, int64_t n, int64_t& bytes) {
  DeviceBuffer<float> d(n);
  check(cudaMemcpy(d.get(), src, n * sizeof(float), cudaMemcpyHostToDevice), "upload vector");
  bytes += n * static_cast<int64_t>(sizeof(float));
  return d;
}

std::shared_ptr<CudaWeights> upload(const Model& model) {
  const ModelConfig& c = model.config();
  const ModelWeights& w = model.weights();
  auto out = std::make_shared<CudaWeights>();
  int64_t& bytes = out->bytes;
  out->token_embd = upload_matrix({&w.token_embd}, bytes);
  if (w.output.data == w.token_embd.data && w.output.type == w.token_embd.type) {
    out->output = out->token_embd.get();
  } else {
    out->output_own = upload_matrix({&w.output}, bytes);
    out->output = out->output_own.get();
  }
  out->output_norm = upload_floats(w.output_norm, c.n_embd, bytes);
  const int qd = c.n_heads * c.head_dim, kvd = c.n_kv_heads * c.head_dim;
  out->layers.resize(c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = w.layers[l];
    CudaLayerWeights& G = out->layers[l];
    G.attn_norm = upload_floats(L.attn_norm, c.n_embd, bytes);
    G.ffn_norm = upload_floats(L.ffn_norm, c.n_embd, bytes);
    G.wqkv = upload_matrix({&L.wq, &L.wk, &L.wv}, bytes);
    if (L.bq) {
      std::vector<float> b(L.bq, L.bq + qd);
      b.insert(b.end(), L.bk, L.bk + kvd);
      b.insert(b.end(), L.bv, L.bv + kvd);
      G.bqkv = upload_floats(b.data(), static_cast<int64_t>(b.size()), bytes);
    }
    G.wo = upload_matrix({&L.wo}, bytes);
    G.wgu = upload_matrix({&L.w_gate, &L.w_up}, bytes);
    G.wdown = upload_matrix({&L.w_down}, bytes);
  }
  return out;
}

}  // namespace

std::shared_ptr<const CudaWeights> cuda_weights_for(const Model& model) {
  // Kept by the model, so sessions created one after another share one upload.
  return std::static_pointer_cast<const CudaWeights>(
      model.backend_cache("cuda_weights", [&] { return std::static_pointer_cast<void>(upload(model)); }));
}

}  // namespace lazyllm::cuda
