#include "runtime/cuda/cuda_weights.h"

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <functional>
#include <thread>

#include "kernels/cpu/quant.h"
#include "kernels/cpu/quant_blocks.h"
#include "model/weights.h"
#include "runtime/cuda/cuda_forward.h"
#include "runtime/gpu_weight_plan.h"

namespace lazyllm::cuda {
namespace {

// Runs work(r0, r1) over [0, rows) in parallel.
void parallel_rows(int64_t rows, const std::function<void(int64_t, int64_t)>& work) {
  const int n_threads =
      static_cast<int>(std::clamp<int64_t>(rows / 256, 1, std::max(1u, std::thread::hardware_concurrency())));
  std::vector<std::thread> threads;
  const int64_t per = (rows + n_threads - 1) / n_threads;
  for (int t = 0; t < n_threads; ++t) {
    const int64_t r0 = t * per, r1 = std::min(rows, r0 + per);
    if (r0 < r1) threads.emplace_back(work, r0, r1);
  }
  for (auto& th : threads) th.join();
}

// Converts the rows of w to bf16 at dst (rows of w.cols).
void rows_to_bf16(const WeightView& w, uint16_t* dst) {
  const int64_t cols = w.cols;
  parallel_rows(w.rows, [&](int64_t r0, int64_t r1) {
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
  });
}

// Splits the Q8_0 / Q4_0 blocks of w's rows into quants (at q, rows of q_row bytes) and scales
// (at d, rows of cols / 32).
template <typename Block>
void split_blocks(const WeightView& w, uint8_t* q, uint16_t* d) {
  const int64_t nb = w.cols / qblock::kQK;
  constexpr size_t kQs = sizeof(Block::qs);
  parallel_rows(w.rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const auto* blocks = reinterpret_cast<const Block*>(w.data + r * w.row_stride());
      for (int64_t b = 0; b < nb; ++b) {
        std::memcpy(q + (r * nb + b) * kQs, blocks[b].qs, kQs);
        d[r * nb + b] = blocks[b].d;
      }
    }
  });
}

// Copies the Q4_K / Q5_K rows of w as stored (at q, rows of q_row bytes).
void copy_rows(const WeightView& w, uint8_t* q, int64_t q_row) {
  parallel_rows(w.rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) std::memcpy(q + r * q_row, w.data + r * w.row_stride(), q_row);
  });
}

// Splits the Q6_K blocks of w's rows into their first 208 bytes (ql, qh, scales; at q) and their
// d (at d, rows of cols / 256), so that every block starts 16-byte aligned.
void split_q6_k(const WeightView& w, uint8_t* q, uint16_t* d) {
  const int64_t nb = w.cols / qblock::kQKK;
  constexpr size_t kBody = offsetof(qblock::Q6_K, d);
  static_assert(kBody == 208);
  parallel_rows(w.rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const auto* blocks = reinterpret_cast<const qblock::Q6_K*>(w.data + r * w.row_stride());
      for (int64_t b = 0; b < nb; ++b) {
        std::memcpy(q + (r * nb + b) * kBody, &blocks[b], kBody);
        d[r * nb + b] = blocks[b].d;
      }
    }
  });
}

WeightFormat format_of(DType t) {
  switch (t) {
    case DType::Q8_0: return WeightFormat::kQ8_0;
    case DType::Q4_0: return WeightFormat::kQ4_0;
    case DType::Q4_K: return WeightFormat::kQ4_K;
    case DType::Q5_K: return WeightFormat::kQ5_K;
    case DType::Q6_K: return WeightFormat::kQ6_K;
    default: return WeightFormat::kBf16;
  }
}

}  // namespace

CudaMatrix upload_matrix(std::initializer_list<const WeightView*> parts, GpuWeights mode, int64_t& bytes,
                         bool split_types) {
  CudaMatrix m;
  m.cols = (*parts.begin())->cols;
  for (const WeightView* p : parts) m.rows += p->rows;
  if (split_types && gpu_split_parts(parts, mode)) {
    const std::vector<const WeightView*> v(parts);
    int64_t row0 = 0;
    size_t i = 0;
    for (const int n : gpu_split_groups(parts, mode)) {
      m.split.push_back(n == 2 ? upload_matrix({v[i], v[i + 1]}, mode, bytes) : upload_matrix({v[i]}, mode, bytes));
      m.parts.push_back({m.split.back().ref, row0, m.split.back().rows});
      row0 += m.split.back().rows;
      i += n;
    }
    return m;
  }
  const DType t = gpu_matrix_type(parts, mode);
  const WeightFormat f = format_of(t);
  const int64_t total = gpu_matrix_bytes(t, m.rows, m.cols);
  const int64_t q_bytes = m.rows * weight_row_bytes(f, m.cols);  // the scales follow the quants
  std::vector<uint8_t> host(static_cast<size_t>(total));
  int64_t r = 0;
  for (const WeightView* p : parts) {
    if (f == WeightFormat::kBf16) {
      rows_to_bf16(*p, reinterpret_cast<uint16_t*>(host.data()) + r * m.cols);
    } else {
      uint8_t* q = host.data() + r * weight_row_bytes(f, m.cols);
      uint16_t* d = reinterpret_cast<uint16_t*>(host.data() + q_bytes) + r * weight_row_scales(f, m.cols);
      switch (f) {
        case WeightFormat::kQ8_0: split_blocks<qblock::Q8_0>(*p, q, d); break;
        case WeightFormat::kQ4_0: split_blocks<qblock::Q4_0>(*p, q, d); break;
        case WeightFormat::kQ6_K: split_q6_k(*p, q, d); break;
        default: copy_rows(*p, q, weight_row_bytes(f, m.cols));
      }
    }
    r += p->rows;
  }
  m.data = DeviceBuffer<uint8_t>(host.size());
  check(cudaMemcpy(m.data.get(), host.data(), host.size(), cudaMemcpyHostToDevice), "upload weights");
  bytes += total;
  m.ref.format = f;
  m.ref.w = m.data.get();
  if (weight_row_scales(f, m.cols) > 0) m.ref.scales = reinterpret_cast<const uint16_t*>(m.data.get() + q_bytes);
  m.parts.push_back({m.ref, 0, m.rows});
  return m;
}

namespace {

DeviceBuffer<float> upload_floats(const float* src, int64_t n, int64_t& bytes) {
  DeviceBuffer<float> d(n);
  check(cudaMemcpy(d.get(), src, n * sizeof(float), cudaMemcpyHostToDevice), "upload vector");
  bytes += n * static_cast<int64_t>(sizeof(float));
  return d;
}

std::shared_ptr<CudaWeights> upload(const Model& model, GpuWeights mode) {
  const ModelConfig& c = model.config();
  const ModelWeights& w = model.weights();
  const GpuWeightPlan plan = plan_gpu_weights(c, w, mode);
  if (mode == GpuWeights::kNative)
    for (const std::string& t : plan.converted)
      std::fprintf(stderr, "note: %s weights in matrices whose parts differ in type go to the GPU as bf16\n",
                   t.c_str());
  auto out = std::make_shared<CudaWeights>();
  out->scratch_elems = plan.scratch_elems;
  int64_t& bytes = out->bytes;
  out->token_embd = upload_matrix({&w.token_embd}, mode, bytes);
  if (w.output.data == w.token_embd.data && w.output.type == w.token_embd.type) {
    out->output = out->token_embd.ref;
  } else {
    out->output_own = upload_matrix({&w.output}, mode, bytes);
    out->output = out->output_own.ref;
  }
  out->output_norm = upload_floats(w.output_norm, c.n_embd, bytes);
  const int qd = c.n_heads * c.head_dim, kvd = c.n_kv_heads * c.head_dim;
  out->layers.resize(c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = w.layers[l];
    CudaLayerWeights& G = out->layers[l];
    G.attn_norm = upload_floats(L.attn_norm, c.n_embd, bytes);
    G.ffn_norm = upload_floats(L.ffn_norm, c.n_embd, bytes);
    G.wqkv = upload_matrix({&L.wq, &L.wk, &L.wv}, mode, bytes, /*split_types=*/true);
    if (L.bq) {
      std::vector<float> b(L.bq, L.bq + qd);
      b.insert(b.end(), L.bk, L.bk + kvd);
      b.insert(b.end(), L.bv, L.bv + kvd);
      G.bqkv = upload_floats(b.data(), static_cast<int64_t>(b.size()), bytes);
    }
    G.wo = upload_matrix({&L.wo}, mode, bytes);
    G.wgu = upload_matrix({&L.w_gate, &L.w_up}, mode, bytes);
    G.wdown = upload_matrix({&L.w_down}, mode, bytes);
  }
  return out;
}

std::string cache_key(GpuWeights mode) { return "cuda_weights_" + std::string(gpu_weights_name(mode)); }

}  // namespace

std::shared_ptr<const CudaWeights> cuda_weights_for(const Model& model, GpuWeights mode) {
  // Kept by the model, so sessions created one after another share one upload (per form).
  const std::string key = cache_key(mode);
  return std::static_pointer_cast<const CudaWeights>(
      model.backend_cache(key, [&] { return std::static_pointer_cast<void>(upload(model, mode)); }));
}

}  // namespace lazyllm::cuda

namespace lazyllm {

bool cuda_weights_resident(const Model& model, GpuWeights mode) {
  return model.has_backend_cache(cuda::cache_key(mode));
}

}  // namespace lazyllm
