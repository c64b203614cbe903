// Programmatic dependent launch (Hopper and later). Decode runs ~7 small kernels per layer, and
// each launch normally waits for the kernel before it to drain: a kernel started with
// launch_pdl may begin while that one is still running. It must call pdl_wait() before touching
// anything the earlier kernels write (until then it may only read constants such as weights),
// and calls pdl_trigger() to let the next kernel start early. Both are no-ops below sm_90 or
// when the kernel was launched normally. Each CudaForward decides for the launches it makes
// (PdlScope around its work; off with LAZYLLM_CUDA_PDL=0 when it is created).
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "kernels/cuda/cuda_check.h"

namespace lazyllm::cuda {

// Whether LAZYLLM_CUDA_PDL leaves PDL on (anything but 0/off).
bool pdl_env_allows();

// Allows or forbids PDL for the launches this thread makes while it lives.
class PdlScope {
 public:
  explicit PdlScope(bool allow);
  ~PdlScope();
  PdlScope(const PdlScope&) = delete;
  PdlScope& operator=(const PdlScope&) = delete;

 private:
  bool saved_;
};

// Compute capability 9.0 or later on the current device, and allowed by the PdlScope this
// thread is in (allowed outside any scope).
bool pdl_enabled();

#ifdef __CUDACC__  // kernels and launches: .cu files only

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Launches `kernel` in thread-block clusters of `cluster` blocks along x (1: no clusters; the
// grid a multiple of it), with programmatic dependent launch where it is on.
template <typename... KArgs, typename... Args>
void launch_pdl_clustered(const char* name, void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
                          cudaStream_t stream, int cluster, Args&&... args) {
  const bool pdl = pdl_enabled();
  if (!pdl && cluster == 1) {
    kernel<<<grid, block, smem, stream>>>(std::forward<Args>(args)...);
    return check_launch(name);
  }
  cudaLaunchAttribute attr[2] = {};
  unsigned n = 0;
  if (pdl) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (cluster > 1) {
    attr[n].id = cudaLaunchAttributeClusterDimension;
    attr[n++].val.clusterDim = {static_cast<unsigned>(cluster), 1, 1};
  }
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = n;
  check(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...), name);
}

template <typename... KArgs, typename... Args>
void launch_pdl(const char* name, void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                Args&&... args) {
  launch_pdl_clustered(name, kernel, grid, block, smem, stream, 1, std::forward<Args>(args)...);
}

#endif  // __CUDACC__

}  // namespace lazyllm::cuda
