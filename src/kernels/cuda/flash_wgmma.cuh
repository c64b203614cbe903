// Prefill attention on Hopper's warpgroup MMA (wgmma, sm_90a), head size 128: the
// FlashAttention-2 schedule of flash_fwd_kernel with each warpgroup (4 warps) owning 64 query
// rows, two warpgroups a block, two blocks a multiprocessor (128 registers a thread). S = Q K^T
// takes Q and K from shared memory; O += P V takes the probabilities straight from the score
// accumulators (registers) and V from shared memory. One wgmma covers a 64-row slab, so there
// are 8x fewer tensor-core instructions than with mma.sync and no ldmatrix.
//
// Tiles live in shared memory in the 128-byte swizzled layout wgmma reads at full rate: a
// [rows][128] tile is two [rows][64] halves, each row 128 bytes, 16-byte unit j of row r stored at
// unit j ^ (r % 8). K and V share one layout (K read K-major for S, V read MN-major for O).
// Consecutive threads copy consecutive 16-byte units of one row (coalesced global reads, and the
// XOR spreads them over all banks). Loads are cp.async (V(t) under S and the softmax, K(t+1)
// under P V), fenced for the async proxy before wgmma reads them. Masking, positions and listed
// keys follow flash_fwd_kernel exactly. Included by attention.cu inside its anonymous namespace.
//
// Measured on an H100 (bench_cuda, llama2-7b attention shape, causal): 377 TFLOP/s at 32K and
// 357 at 16K against 268 / 253 for flash_fwd_kernel. The same kernel on the unswizzled
// core-matrix layout (8 rows of 16 bytes a contiguous 128-byte block) reached only 278 / 261:
// wgmma's shared-memory reads, not the schedule, were the limit.

constexpr int kWgHd = 128;                     // head size this kernel takes
constexpr int kWgBc = 64;                      // keys per tile
constexpr int kWgChunks = kWgHd / 8;           // 16-byte chunks per row
constexpr int wg_tile_halves(int rows) { return rows * kWgHd; }

// GROUPS warpgroups per block (64 query rows each), MIN_BLOCKS blocks per multiprocessor.
template <int GROUPS, int MIN_BLOCKS>
struct WgCfg {
  static constexpr int kRows = 64 * GROUPS, kThreads = 128 * GROUPS;
  static constexpr size_t kSmem = sizeof(__half) * wg_tile_halves(kRows + 2 * kWgBc) + sizeof(int) * kWgBc;
};

// Element offset (in halves) of row r, 16-byte chunk c (0-15) of a ROWS-row tile: two 64-column
// halves of ROWS rows of 128 bytes, unit c % 8 of row r stored at unit (c % 8) ^ (r % 8).
template <int ROWS>
__device__ __forceinline__ int sw_tile_offset(int r, int c) {
  return (c >> 3) * (ROWS * 64) + r * 64 + (((c & 7) ^ (r & 7)) << 3);
}

template <int GROUPS, int MIN_BLOCKS>
__global__ void __launch_bounds__(128 * GROUPS, MIN_BLOCKS) flash_wgmma_kernel(AttentionArgs a, float scale_log2) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = WgCfg<GROUPS, MIN_BLOCKS>;
  constexpr int HD = kWgHd, BR = C::kRows, BC = kWgBc, T = C::kThreads, CPR = kWgChunks;
  extern __shared__ __align__(1024) unsigned char smem[];
  __half* sQ = reinterpret_cast<__half*>(smem);
  __half* sK = sQ + wg_tile_halves(BR);
  __half* sV = sK + wg_tile_halves(BC);
  int* sKpos = reinterpret_cast<int*>(sV + wg_tile_halves(BC));

  const int rb = gridDim.x - 1 - blockIdx.x;  // longest row blocks first
  const int r0 = rb * BR, h = blockIdx.y, g = h / (a.n_heads / a.n_kv_heads);
  const int wg = threadIdx.x >> 7, warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
  const int gq = lane >> 2, tq = lane & 3;
  const int qd = a.n_heads * HD, kvd = a.n_kv_heads * HD;
  const __half* q = reinterpret_cast<const __half*>(a.q);
  const __half* kc = reinterpret_cast<const __half*>(a.k_cache) + g * HD;
  const __half* vc = reinterpret_cast<const __half*>(a.v_cache) + g * HD;
  const int last_row = min(a.m, r0 + BR) - 1;
  const int key_end = a.key_slots ? a.n_keys : a.n_old + last_row + 1;
  const int n_tiles = (key_end + BC - 1) / BC;

  auto chunk_of = [](int idx, int& r, int& c) {  // consecutive threads: consecutive chunks of a row
    r = idx / CPR;
    c = idx % CPR;
  };
  for (int idx = threadIdx.x; idx < BR * CPR; idx += T) {
    int r, c;
    chunk_of(idx, r, c);
    const bool valid = r0 + r < a.m;
    cp_async16(sQ + sw_tile_offset<BR>(r, c), q + (valid ? static_cast<int64_t>(r0 + r) * qd + h * HD + c * 8 : 0), valid);
  }
  auto load_kv = [&](__half* dst, const __half* src, int k0) {
    for (int idx = threadIdx.x; idx < BC * CPR; idx += T) {
      int j, c;
      chunk_of(idx, j, c);
      const bool valid = k0 + j < key_end;
      const int slot = valid ? (a.key_slots ? a.key_slots[k0 + j] : k0 + j) : 0;
      cp_async16(dst + sw_tile_offset<BC>(j, c), src + static_cast<int64_t>(slot) * kvd + c * 8, valid);
    }
  };
  auto load_k = [&](int k0) {
    load_kv(sK, kc, k0);
    for (int j = threadIdx.x; j < BC; j += T) {
      if (k0 + j < key_end) cp_async4(sKpos + j, a.kpos + (a.key_slots ? a.key_slots[k0 + j] : k0 + j));
      else sKpos[j] = INT_MAX;
    }
  };
  load_k(0);
  cp_async_commit();

  const int wg_row0 = r0 + wg * 64;
  int qp[2];
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    const int row = wg_row0 + warp * 16 + gq + 8 * hh;
    qp[hh] = row < a.m ? a.qpos[row] : INT_MIN;
  }
  cp_async_wait_all();
  fence_proxy_async_smem();
  __syncthreads();

  float o[HD / 8][4];
#pragma unroll
  for (int n = 0; n < HD / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m_run[2] = {kNegInf, kNegInf}, l_run[2] = {0.0f, 0.0f};

  for (int t = 0; t < n_tiles; ++t) {
    const int k0 = t * BC;
    if (t > 0) {
      cp_async_wait_all();  // K(t) has landed
      fence_proxy_async_smem();
      __syncthreads();  // ... for every thread, and every warpgroup is done with V(t-1)
    }
    load_kv(sV, vc, k0);
    cp_async_commit();

    // S = Q K^T over the head dimension, 16 at a time.
    float s[BC / 8][4];
    auto& s_flat = *reinterpret_cast<float(*)[BC / 2]>(&s[0][0]);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk)
      // 16 columns = 32 bytes of one 64-column half; 8-row atoms 1024 bytes apart.
      wgmma_m64n64k16_ss(s_flat, wgmma_desc(sQ + (kk >> 2) * BR * 64 + wg * 64 * 64 + (kk & 3) * 16, 16, 1024, true),
                         wgmma_desc(sK + (kk >> 2) * BC * 64 + (kk & 3) * 16, 16, 1024, true), kk > 0);
    wgmma_commit();
    wgmma_wait_all();

    const bool masked = a.key_slots != nullptr || k0 + BC > a.n_old + wg_row0 + 1;
    if (masked) {
#pragma unroll
      for (int n = 0; n < BC / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int kp = sKpos[n * 8 + 2 * tq + e];
          if (kp > qp[0]) s[n][e] = kNegInf;
          if (kp > qp[1]) s[n][2 + e] = kNegInf;
        }
      }
    }
    float mx0 = m_run[0], mx1 = m_run[1];
#pragma unroll
    for (int n = 0; n < BC / 8; ++n) {
      mx0 = fmaxf(mx0, fmaxf(s[n][0], s[n][1]));
      mx1 = fmaxf(mx1, fmaxf(s[n][2], s[n][3]));
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float mu0 = mx0 == kNegInf ? 0.0f : mx0 * scale_log2;
    const float mu1 = mx1 == kNegInf ? 0.0f : mx1 * scale_log2;
    const float al0 = ex2(m_run[0] * scale_log2 - mu0), al1 = ex2(m_run[1] * scale_log2 - mu1);
    float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
    for (int n = 0; n < BC / 8; ++n) {
      s[n][0] = ex2(fmaf(s[n][0], scale_log2, -mu0));
      s[n][1] = ex2(fmaf(s[n][1], scale_log2, -mu0));
      s[n][2] = ex2(fmaf(s[n][2], scale_log2, -mu1));
      s[n][3] = ex2(fmaf(s[n][3], scale_log2, -mu1));
      sum0 += s[n][0] + s[n][1];
      sum1 += s[n][2] + s[n][3];
    }
    l_run[0] = l_run[0] * al0 + sum0;
    l_run[1] = l_run[1] * al1 + sum1;
    m_run[0] = mx0, m_run[1] = mx1;
#pragma unroll
    for (int n = 0; n < HD / 8; ++n) {
      o[n][0] *= al0, o[n][1] *= al0;
      o[n][2] *= al1, o[n][3] *= al1;
    }

    cp_async_wait_all();  // V(t) has landed
    fence_proxy_async_smem();
    __syncthreads();  // ... for every thread, and every warpgroup is done with K(t)
    if (t + 1 < n_tiles) {
      load_k(k0 + BC);
      cp_async_commit();
    }

    // O += P V, 16 keys (two 8-key groups of the tile) at a time. All of P is packed before the
    // fence, so no register the wgmmas read changes while they run.
    uint32_t pa[BC / 16][4];
#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk) {
      pa[kk][0] = pack_half2(s[2 * kk][0], s[2 * kk][1]);
      pa[kk][1] = pack_half2(s[2 * kk][2], s[2 * kk][3]);
      pa[kk][2] = pack_half2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pa[kk][3] = pack_half2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
    }
    auto& o_flat = *reinterpret_cast<float(*)[HD / 2]>(&o[0][0]);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk)
      // 16 keys = two 8-row atoms; the two 64-column halves are BC rows apart (the MN-major
      // operand's leading offset).
      wgmma_m64n128k16_rs_bt(o_flat, pa[kk], wgmma_desc(sV + kk * 16 * 64, BC * 128, 1024, true), 1);
    wgmma_commit();
    wgmma_wait_all();
  }

  const int row0 = wg_row0 + warp * 16 + gq, row1 = row0 + 8;
  store_rows<HD>(a, o, l_run[0], l_run[1], row0, row1, h, tq);
#else
  __trap();  // launched only on sm_90 devices, which load the sm_90a build of this kernel
#endif
}

// Whether this build and device can run flash_wgmma_kernel (compute capability 9.0 exactly: the
// sm_90a machine code runs nowhere else).
bool wgmma_available() {
  static const bool ok = [] {
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    return major == 9 && minor == 0;
  }();
  return ok;
}

template <int GROUPS, int MIN_BLOCKS>
void prepare_flash_wgmma_one() {
  check(cudaFuncSetAttribute(flash_wgmma_kernel<GROUPS, MIN_BLOCKS>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(WgCfg<GROUPS, MIN_BLOCKS>::kSmem)),
        "cudaFuncSetAttribute(flash_wgmma_kernel)");
}

void prepare_flash_wgmma() { prepare_flash_wgmma_one<2, 2>(); }

template <int GROUPS, int MIN_BLOCKS>
void launch_flash_wgmma(const AttentionArgs& a, cudaStream_t stream) {
  using C = WgCfg<GROUPS, MIN_BLOCKS>;
  dim3 grid((a.m + C::kRows - 1) / C::kRows, a.n_heads);
  flash_wgmma_kernel<GROUPS, MIN_BLOCKS><<<grid, C::kThreads, C::kSmem, stream>>>(a, a.scale * 1.4426950408889634f);
  check_launch("flash_wgmma_kernel");
}
