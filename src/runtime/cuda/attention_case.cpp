// Test hook: one call of the prefill attention kernels on keys and per-row key counts given by
// the caller, as a LazyLLM completing or reviving batch makes them (runtime/cuda/cuda_forward.h).
#include <algorithm>
#include <cmath>

#include "kernels/cpu/quant.h"
#include "kernels/cpu/vec_ops.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/pdl.h"
#include "runtime/cuda/cuda_forward.h"

namespace lazyllm {

using cuda::check;
using cuda::DeviceBuffer;

namespace {

template <typename T>
DeviceBuffer<T> to_device(std::span<const T> v) {
  DeviceBuffer<T> d(std::max<size_t>(v.size(), 1));
  if (!v.empty()) check(cudaMemcpy(d.get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), "to device");
  return d;
}

DeviceBuffer<uint16_t> halves_to_device(std::span<const float> v) {
  std::vector<uint16_t> h(v.size());
  f32_to_f16(v.data(), h.data(), static_cast<int64_t>(v.size()));
  return to_device<uint16_t>(h);
}

}  // namespace

std::vector<float> cuda_attention_rows(const CudaAttentionCase& c) {
  if (cuda_device_count() == 0) throw Error("CUDA backend: no usable GPU");
  const size_t qd = static_cast<size_t>(c.n_heads) * c.head_dim, kvd = static_cast<size_t>(c.n_kv_heads) * c.head_dim;
  const size_t m = static_cast<size_t>(c.m), slots = static_cast<size_t>(c.n_slots);
  const bool runs = !c.row_key_end_b.empty();
  if (c.m <= 16 || c.n_kv_heads <= 0 || c.n_heads % c.n_kv_heads != 0 || c.q.size() != m * qd ||
      c.k.size() != slots * kvd || c.v.size() != slots * kvd || c.qpos.size() != m || c.kpos.size() != slots ||
      c.row_key_end.size() != m || (runs && c.row_key_end_b.size() != m) ||
      (runs && c.run_b + c.row_key_end_b.back() > c.n_slots) || (!runs && c.row_key_end.back() > c.n_slots))
    throw Error("cuda_attention_rows: inconsistent case");
  check(cudaSetDevice(0), "cudaSetDevice");
  cuda::prepare_kernels();
  const cuda::PdlScope pdl(false);  // on the legacy default stream
  const DeviceBuffer<uint16_t> q = halves_to_device(c.q), k = halves_to_device(c.k), v = halves_to_device(c.v);
  const DeviceBuffer<int32_t> qpos = to_device(c.qpos), kpos = to_device(c.kpos), ends = to_device(c.row_key_end);
  const DeviceBuffer<int32_t> ends_b = to_device(c.row_key_end_b);
  DeviceBuffer<uint16_t> out(m * qd);
  cuda::AttentionArgs a{};
  a.q = q.get(), a.m = c.m, a.qpos = qpos.get(), a.k_cache = k.get(), a.v_cache = v.get(), a.kpos = kpos.get();
  a.n_keys = runs ? c.run_b + c.row_key_end_b.back() : c.row_key_end.back();
  a.n_heads = c.n_heads, a.n_kv_heads = c.n_kv_heads, a.head_dim = c.head_dim;
  a.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim)), a.out = out.get();
  a.row_key_end = ends.get();
  if (runs) a.row_key_end_b = ends_b.get(), a.run_b = c.run_b;
  cuda::attention(a, nullptr, nullptr);
  check(cudaDeviceSynchronize(), "cuda_attention_rows");
  std::vector<uint16_t> o(m * qd);
  check(cudaMemcpy(o.data(), out.get(), o.size() * sizeof(uint16_t), cudaMemcpyDeviceToHost), "out to host");
  std::vector<float> r(o.size());
  for (size_t i = 0; i < o.size(); ++i) r[i] = bf16_to_fp32(o[i]);
  return r;
}

}  // namespace lazyllm
