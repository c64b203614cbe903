// Entry points of the CUDA backend (runtime/cuda/cuda_forward.h) and its test hooks.
#include "runtime/cuda/cuda_forward.h"

#include <cstdio>

#include "runtime/cuda/cuda_forward_pass.h"

namespace lazyllm {

using cuda_pass::CudaForward;
using cuda::check;
using cuda::DeviceBuffer;
using cuda::bf16_t;
using cuda_pass::set_weight;
using cuda_pass::weight_gemm;

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

std::string cuda_device_description() {
  const int n = cuda_device_count();
  if (n == 0) return "no CUDA device";
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  char buf[640];
  std::snprintf(buf, sizeof buf, "%s, %d SMs, %.1f GiB", prop.name, prop.multiProcessorCount,
                prop.totalGlobalMem / double(1 << 30));
  return buf;
}

std::vector<int32_t> cuda_select_top_dest(std::span<const float> scores, int k) {
  if (cuda_device_count() == 0) throw Error("CUDA backend: no usable GPU");
  check(cudaSetDevice(0), "cudaSetDevice");
  const int n = static_cast<int>(scores.size());
  DeviceBuffer<float> s(std::max(n, 1));
  DeviceBuffer<int32_t> dest(n + 1);
  if (n > 0) check(cudaMemcpy(s.get(), scores.data(), n * sizeof(float), cudaMemcpyHostToDevice), "scores to device");
  cuda::select_top(s.get(), n, k, dest.get(), nullptr);
  std::vector<int32_t> out(n + 1);
  check(cudaMemcpy(out.data(), dest.get(), (n + 1) * sizeof(int32_t), cudaMemcpyDeviceToHost), "dest to host");
  return out;
}

int cuda_gemv_cluster() {
  if (cuda_device_count() == 0) throw Error("CUDA backend: no usable GPU");
  check(cudaSetDevice(0), "cudaSetDevice");
  return cuda::gemv_cluster();
}

std::vector<float> cuda_weight_product(const CudaProductCase& c) {
  if (cuda_device_count() == 0) throw Error("CUDA backend: no usable GPU");
  check(cudaSetDevice(0), "cudaSetDevice");
  cuda::prepare_kernels();
  const cuda::PdlScope pdl(false);  // on the legacy default stream; the forward's own tests cover PDL
  const int m = c.m, k = c.k, n_out = c.n_out, w_rows = c.swiglu ? 2 * n_out : n_out;
  const bool norm = !c.norm_w.empty();
  if (c.x.size() != static_cast<size_t>(m) * k || (norm && c.norm_w.size() != static_cast<size_t>(k)) ||
      (!c.y0.empty() && c.y0.size() != static_cast<size_t>(m) * n_out) || (c.swiglu && !c.y0.empty()))
    throw Error("cuda_weight_product: inconsistent case");
  WeightView v;
  v.type = c.type, v.data = c.w, v.rows = w_rows, v.cols = k;
  int64_t bytes = 0;
  const cuda::CudaMatrix W = cuda::upload_matrix({&v}, GpuWeights::kNative, bytes);

  std::vector<uint16_t> xb(c.x.size());
  for (size_t i = 0; i < xb.size(); ++i) xb[i] = fp32_to_bf16(c.x[i]);
  DeviceBuffer<float> xf_d(c.x.size()), nw_d(std::max(1, k)), y_d(static_cast<size_t>(m) * n_out);
  DeviceBuffer<bf16_t> xb_d(c.x.size() + c.x_offset), gu_d(static_cast<size_t>(m) * 2 * n_out),
      act_d(static_cast<size_t>(m) * n_out);
  DeviceBuffer<bf16_t> scratch(static_cast<size_t>(std::max(1, c.scratch_rows)) * k);
  check(cudaMemcpy(xf_d.get(), c.x.data(), c.x.size() * sizeof(float), cudaMemcpyHostToDevice), "x to device");
  check(cudaMemcpy(xb_d.get() + c.x_offset, xb.data(), xb.size() * sizeof(uint16_t), cudaMemcpyHostToDevice),
        "x to device");
  if (norm) check(cudaMemcpy(nw_d.get(), c.norm_w.data(), k * sizeof(float), cudaMemcpyHostToDevice), "norm to device");
  if (!c.y0.empty())
    check(cudaMemcpy(y_d.get(), c.y0.data(), c.y0.size() * sizeof(float), cudaMemcpyHostToDevice), "y to device");
  cublasHandle_t blas = nullptr;
  check(cublasCreate(&blas), "cublasCreate");
  const float beta = c.y0.empty() ? 0.0f : 1.0f;
  try {
    if (cuda::gemv_applies(W.ref.format, m, k)) {  // as layer_kernels' decode-sized batches
      const int cluster = cuda::gemv_cluster();
      if (c.gemv_cluster) cuda::set_gemv_cluster(c.gemv_cluster);
      struct Restore {
        int c;
        ~Restore() { cuda::set_gemv_cluster(c); }
      } restore{cluster};
      cuda::GemvArgs g;
      set_weight(g, W.ref);
      g.n_out = n_out, g.k = k, g.m = m;
      if (norm) g.norm_in = xf_d.get(), g.norm_w = nw_d.get(), g.eps = c.eps;
      else g.x = xb_d.get() + c.x_offset;
      if (c.swiglu) g.swiglu = true, g.y = act_d.get(), g.y_f32 = false;
      else g.y = y_d.get(), g.y_f32 = true, g.beta = beta;
      cuda::gemv(g, nullptr);
    } else {  // as its prefill
      if (c.x_offset != 0) throw Error("cuda_weight_product: an offset X only for the matrix-vector kernels");
      if (norm) cuda::rmsnorm_bf16(xf_d.get(), nw_d.get(), m, k, c.eps, xb_d.get(), nullptr);
      if (c.swiglu) {
        weight_gemm(blas, nullptr, W.ref, 2 * n_out, k, xb_d.get(), m, gu_d.get(), CUDA_R_16BF, 0.0f, scratch.get(),
                    scratch.size());
        cuda::swiglu_bf16(gu_d.get(), m, n_out, act_d.get(), nullptr);
      } else {
        weight_gemm(blas, nullptr, W.ref, n_out, k, xb_d.get(), m, y_d.get(), CUDA_R_32F, beta, scratch.get(),
                    scratch.size());
      }
    }
    check(cudaDeviceSynchronize(), "cuda_weight_product");
  } catch (...) {
    cublasDestroy(blas);
    throw;
  }
  cublasDestroy(blas);
  std::vector<float> out(static_cast<size_t>(m) * n_out);
  if (c.swiglu) {
    std::vector<uint16_t> a(out.size());
    check(cudaMemcpy(a.data(), act_d.get(), a.size() * sizeof(uint16_t), cudaMemcpyDeviceToHost), "y to host");
    for (size_t i = 0; i < a.size(); ++i) out[i] = bf16_to_fp32(a[i]);
  } else {
    check(cudaMemcpy(out.data(), y_d.get(), out.size() * sizeof(float), cudaMemcpyDeviceToHost), "y to host");
  }
  return out;
}

int64_t cuda_free_memory() {
  check(cudaSetDevice(0), "cudaSetDevice");
  size_t free = 0, total = 0;
  check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
  return static_cast<int64_t>(free);
}

std::unique_ptr<ForwardBackend> make_cuda_forward(const Model& model, int n_ctx, GpuWeights gpu_weights, bool warm_up,
                                                  KvPool* kv_pool, bool weight_copies) {
  if (cuda_device_count() == 0) throw Error("CUDA backend: no usable GPU");
  return std::make_unique<CudaForward>(model, n_ctx, gpu_weights, warm_up, kv_pool, weight_copies);
}

}  // namespace lazyllm
