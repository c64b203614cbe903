#include "runtime/gpu_weight_plan.h"

#include <algorithm>

#include "kernels/cpu/matmul.h"
#include "model/weights.h"

namespace lazyllm {

bool gpu_native_type(DType t) {
  return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K;
}

DType gpu_matrix_type(std::initializer_list<const WeightView*> parts, GpuWeights mode) {
  const DType t = (*parts.begin())->type;
  if (mode != GpuWeights::kNative || !gpu_native_type(t)) return DType::BF16;
  for (const WeightView* p : parts)
    if (p->type != t) return DType::BF16;
  return t;
}

bool gpu_split_parts(std::initializer_list<const WeightView*> parts, GpuWeights mode) {
  if (mode != GpuWeights::kNative) return false;
  bool mixed = false;
  for (const WeightView* p : parts) {
    if (!gpu_native_type(p->type)) return false;
    mixed = mixed || p->type != (*parts.begin())->type;
  }
  return mixed;
}

std::vector<int> gpu_split_groups(std::initializer_list<const WeightView*> parts, GpuWeights mode) {
  std::vector<int> groups;
  if (!gpu_split_parts(parts, mode)) return groups;
  const std::vector<const WeightView*> v(parts);
  for (size_t i = 0; i < v.size(); i += groups.back())
    groups.push_back(i + 1 < v.size() && v[i + 1]->type == v[i]->type ? 2 : 1);
  return groups;
}

int64_t gpu_matrix_bytes(DType t, int64_t rows, int64_t cols) {
  if (t == DType::BF16) return rows * cols * 2;
  return rows * row_bytes(t, cols);  // the same bytes as the file's blocks, arranged differently
}

GpuWeightPlan plan_gpu_weights(const ModelConfig& c, const ModelWeights& w, GpuWeights mode) {
  GpuWeightPlan p;
  auto note = [&](std::initializer_list<const WeightView*> parts, DType t) {
    for (const WeightView* v : parts) {
      const DType s = v->type;
      const bool quantized = s != DType::F32 && s != DType::F16 && s != DType::BF16;
      const std::string name(dtype_name(s));
      if (quantized && t == DType::BF16 && std::find(p.converted.begin(), p.converted.end(), name) == p.converted.end())
        p.converted.push_back(name);
    }
  };
  // Bytes a layer's dequantization moves for a matrix kept quantized: blocks read, bf16 written.
  auto dequantized = [&](std::initializer_list<const WeightView*> parts) {
    for (const WeightView* v : parts) p.dequant_bytes.back() += double(v->rows) * (v->row_stride() + 2.0 * v->cols);
  };
  // A matrix of `parts`; `staged` rows at a time go through the bf16 scratch in prefill.
  auto matrix = [&](std::initializer_list<const WeightView*> parts, bool layer, int64_t staged_rows,
                    bool split_types = false) {
    const int64_t cols = (*parts.begin())->cols;
    if (split_types && gpu_split_parts(parts, mode)) {  // each part in its own blocks
      for (const WeightView* v : parts) p.weight_bytes += gpu_matrix_bytes(v->type, v->rows, cols);
      if (layer) {
        p.scratch_elems = std::max(p.scratch_elems, staged_rows * cols);
        dequantized(parts);
      }
      return;
    }
    const DType t = gpu_matrix_type(parts, mode);
    int64_t rows = 0;
    for (const WeightView* v : parts) rows += v->rows;
    p.weight_bytes += gpu_matrix_bytes(t, rows, cols);
    if (layer && t != DType::BF16) {
      p.scratch_elems = std::max(p.scratch_elems, staged_rows * cols);
      dequantized(parts);
    }
    note(parts, t);
  };
  const int64_t f = sizeof(float);
  matrix({&w.token_embd}, false, 0);
  if (!(w.output.data == w.token_embd.data && w.output.type == w.token_embd.type)) matrix({&w.output}, false, 0);
  p.weight_bytes += c.n_embd * f;  // output norm
  const int64_t qd = int64_t{c.n_heads} * c.head_dim, kvd = int64_t{c.n_kv_heads} * c.head_dim;
  for (const LayerWeights& L : w.layers) {
    p.dequant_bytes.push_back(0);
    p.weight_bytes += 2 * c.n_embd * f;  // norms
    matrix({&L.wq, &L.wk, &L.wv}, true, qd + 2 * kvd, /*split_types=*/true);
    if (L.bq) p.weight_bytes += (qd + 2 * kvd) * f;
    matrix({&L.wo}, true, L.wo.rows);
    matrix({&L.w_gate, &L.w_up}, true, L.w_gate.rows);
    matrix({&L.w_down}, true, L.w_down.rows);
  }
  return p;
}

Model::GpuWeightBytes Model::gpu_weight_bytes(GpuWeights mode) const {
  const GpuWeightPlan p = plan_gpu_weights(config(), weights(), mode);
  return {p.weight_bytes, p.scratch_elems * 2};
}

GpuWeights parse_gpu_weights(std::string_view name) {
  if (name == "native") return GpuWeights::kNative;
  if (name == "bf16") return GpuWeights::kBf16;
  throw Error("unknown GPU weight form '" + std::string(name) + "' (expected native or bf16)");
}

std::string_view gpu_weights_name(GpuWeights w) { return w == GpuWeights::kNative ? "native" : "bf16"; }

}  // namespace lazyllm
