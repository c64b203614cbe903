// Prefill attention on Hopper's warpgroup MMA (wgmma, sm_90a), head size 128. Each warpgroup (4
// warps) owns 64 query rows, two warpgroups a block, one block a multiprocessor. S = Q K^T takes Q
// and K from shared memory; O += P V takes the probabilities straight from the score
// accumulators (registers) and V from shared memory. Key tiles of 128, K and V double-buffered,
// and FlashAttention-3's intra-warpgroup overlap: S(t+1) and P(t) V(t) are issued together and
// the softmax of S(t+1) runs while P(t) V(t) is still on the tensor cores.
//
// Tiles live in shared memory in the 128-byte swizzled layout wgmma reads at full rate: a
// [rows][128] tile is two [rows][64] halves, each row 128 bytes, 16-byte unit j of row r stored at
// unit j ^ (r % 8). K and V share one layout (K read K-major for S, V read MN-major for O).
// Consecutive threads copy consecutive 16-byte units of one row (coalesced global reads, and the
// XOR spreads them over all banks). Loads are cp.async, one tile ahead, fenced for the async
// proxy before wgmma reads them. Masking, positions and listed keys follow flash_fwd_kernel
// exactly. Included by attention.cu inside its anonymous namespace.
//
// Measured on an H100 (bench_cuda, llama2-7b attention shape, causal), TFLOP/s at 32K: 389, against
// 268 for flash_fwd_kernel (mma.sync). Steps there: the same FlashAttention-2 schedule on wgmma with
// 64-key tiles and two blocks an SM reached 278 on unswizzled core-matrix tiles (8 rows of 16 bytes
// a contiguous 128-byte block) and 378 on swizzled ones: wgmma's shared-memory reads had been the
// limit; the overlap added the rest (it gained nothing on unswizzled tiles). Three warpgroups a
// block spill and serialize the wgmmas.

constexpr int kWgHd = 128;                     // head size this kernel takes
constexpr int kWgBc = 128;                     // keys per tile
constexpr int kWgChunks = kWgHd / 8;           // 16-byte chunks per row
constexpr int kWgRows = 128;                   // query rows a block: two warpgroups of 64
constexpr int wg_tile_halves(int rows) { return rows * kWgHd; }

// Element offset (in halves) of row r, 16-byte chunk c (0-15) of a ROWS-row tile: two 64-column
// halves of ROWS rows of 128 bytes, unit c % 8 of row r stored at unit (c % 8) ^ (r % 8).
template <int ROWS>
__device__ __forceinline__ int sw_tile_offset(int r, int c) {
  return (c >> 3) * (ROWS * 64) + r * 64 + (((c & 7) ^ (r & 7)) << 3);
}

// Q rows r0 .. r0 + kWgRows - 1 of head h into a swizzled tile (zeros past the last row), copied
// with cp.async by `threads` threads numbered from 0 by tid.
__device__ __forceinline__ void load_q_tile(__half* sQ, const AttentionArgs& a, int r0, int h, int tid, int threads) {
  const __half* q = reinterpret_cast<const __half*>(a.q);
  const int qd = a.n_heads * kWgHd;
  for (int idx = tid; idx < kWgRows * kWgChunks; idx += threads) {
    const int r = idx / kWgChunks, c = idx % kWgChunks;
    const bool valid = r0 + r < a.m;
    cp_async16(sQ + sw_tile_offset<kWgRows>(r, c),
               q + (valid ? static_cast<int64_t>(r0 + r) * qd + h * kWgHd + c * 8 : 0), valid);
  }
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

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// One warpgroup's 64 query rows in the wgmma kernels: the output and score accumulators, the
// probabilities packed as P V's A operand, the running softmax statistics, and the steps over
// one key tile (tiles in the swizzled layout above). Callers fence and wait the products.
struct WgRows {
  float o[kWgHd / 8][4];
  float s[kWgBc / 8][4];
  uint32_t pa[kWgBc / 16][4];
  float m_run[2], l_run[2];
  int qp[2];      // positions of this thread's two rows (INT_MIN past the last row)
  int first_row;  // the warpgroup's first row
  UnmaskedKeys unmasked;  // key tiles every row of the warpgroup sees whole

  __device__ __forceinline__ float (&s_flat())[kWgBc / 2] { return *reinterpret_cast<float(*)[kWgBc / 2]>(&s[0][0]); }
  __device__ __forceinline__ float (&o_flat())[kWgHd / 2] { return *reinterpret_cast<float(*)[kWgHd / 2]>(&o[0][0]); }
  __device__ __forceinline__ void fence_s() { wgmma_fence_operands(s_flat()); }
  __device__ __forceinline__ void fence_o() { wgmma_fence_operands(o_flat()); }

  __device__ __forceinline__ void init(const AttentionArgs& a, int row0) {
    const int warp = (threadIdx.x >> 5) & 3, gq = (threadIdx.x & 31) >> 2;
    first_row = row0;
    unmasked = UnmaskedKeys::of(a, row0);
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int row = row0 + warp * 16 + gq + 8 * hh;
      qp[hh] = row < a.m ? a.qpos[row] : INT_MIN;
      m_run[hh] = kNegInf, l_run[hh] = 0.0f;
    }
#pragma unroll
    for (int n = 0; n < kWgHd / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  }
  // S = Q K^T over one key tile, one committed group; the warpgroup's rows start at row
  // 64 * wg_in_tile of a Q tile of kWgRows rows.
  __device__ __forceinline__ void issue_s(const __half* q_tile, int wg_in_tile, const __half* k_tile) {
#pragma unroll
    for (int kk = 0; kk < kWgHd / 16; ++kk)
      wgmma_m64n128k16_ss(
          s_flat(), wgmma_desc(q_tile + (kk >> 2) * kWgRows * 64 + wg_in_tile * 64 * 64 + (kk & 3) * 16, 16, 1024, true),
          wgmma_desc(k_tile + (kk >> 2) * kWgBc * 64 + (kk & 3) * 16, 16, 1024, true), kk > 0);
    wgmma_commit();
  }
  // O += P V over one key tile, one committed group.
  __device__ __forceinline__ void issue_pv(const __half* v_tile) {
#pragma unroll
    for (int kk = 0; kk < kWgBc / 16; ++kk)
      wgmma_m64n128k16_rs_bt(o_flat(), pa[kk], wgmma_desc(v_tile + kk * 16 * 64, kWgBc * 128, 1024, true), 1);
    wgmma_commit();
  }
  // Softmax of the scores of the tile of keys k0 .. (positions kp_tile, the keys from key_end on
  // masked by index), exponentials left in s; returns the factors that rescale O. Only tiles that
  // reach past the keys the warpgroup's first row sees are masked by position.
  __device__ __forceinline__ void softmax(const AttentionArgs& a, int k0, int key_end, const int* kp_tile,
                                          float scale_log2, float (&al)[2]) {
    if (unmasked.masked(a, k0, kWgBc)) {
      const int tq = threadIdx.x & 3, n_valid = key_end - k0;
#pragma unroll
      for (int n = 0; n < kWgBc / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int col = n * 8 + 2 * tq + e;
          const int kp = col < n_valid ? kp_tile[col] : INT_MAX;
          if (kp > qp[0]) s[n][e] = kNegInf;
          if (kp > qp[1]) s[n][2 + e] = kNegInf;
        }
      }
    }
    online_softmax(s, m_run, l_run, scale_log2, al);
  }
  __device__ __forceinline__ void rescale(const float (&al)[2]) {
#pragma unroll
    for (int n = 0; n < kWgHd / 8; ++n) {
      o[n][0] *= al[0], o[n][1] *= al[0];
      o[n][2] *= al[1], o[n][3] *= al[1];
    }
  }
  __device__ __forceinline__ void pack_p() {
#pragma unroll
    for (int kk = 0; kk < kWgBc / 16; ++kk) {
      pa[kk][0] = pack_half2(s[2 * kk][0], s[2 * kk][1]);
      pa[kk][1] = pack_half2(s[2 * kk][2], s[2 * kk][3]);
      pa[kk][2] = pack_half2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pa[kk][3] = pack_half2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
    }
  }
  // The last tile's P V (no S after it), then the finished rows: waits for it and writes O.
  __device__ __forceinline__ void issue_last_pv(const __half* v_tile) {
    fence_o();
    wgmma_fence();
    issue_pv(v_tile);
  }
  __device__ __forceinline__ void finish(const AttentionArgs& a, int h) {
    wgmma_wait_all();
    fence_o();
    const int warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
    const int row0 = first_row + warp * 16 + (lane >> 2);
    store_rows<kWgHd>(a, o, l_run[0], l_run[1], row0, row0 + 8, h, lane & 3);
  }
};
#endif  // __CUDA_ARCH_FEAT_SM90_ALL

constexpr int kWgThreads = 256;
constexpr size_t kWgSmem = sizeof(__half) * wg_tile_halves(kWgRows + 4 * kWgBc) + sizeof(int) * 2 * kWgBc;

__global__ void __launch_bounds__(kWgThreads, 1) flash_wgmma_kernel(AttentionArgs a, float scale_log2) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int HD = kWgHd, BR = kWgRows, BC = kWgBc, T = kWgThreads, CPR = kWgChunks;
  extern __shared__ __align__(1024) unsigned char smem[];
  __half* sQ = reinterpret_cast<__half*>(smem);
  __half* sK = sQ + wg_tile_halves(BR);      // two buffers of BC rows
  __half* sV = sK + 2 * wg_tile_halves(BC);  // two buffers of BC rows
  int* sKpos = reinterpret_cast<int*>(sV + 2 * wg_tile_halves(BC));

  const RowBlock<kWgRows> b(a);
  const int r0 = b.r0, h = b.h, n_tiles = b.tiles(kWgBc);
  const int wg = threadIdx.x >> 7;
  const int kvd = a.n_kv_heads * HD;
  const __half* kc = reinterpret_cast<const __half*>(a.k_cache) + b.g * HD;
  const __half* vc = reinterpret_cast<const __half*>(a.v_cache) + b.g * HD;
  auto k_tile = [&](int t) { return sK + (t & 1) * wg_tile_halves(BC); };
  auto v_tile = [&](int t) { return sV + (t & 1) * wg_tile_halves(BC); };

  load_q_tile(sQ, a, r0, h, threadIdx.x, T);
  auto load_kv = [&](__half* dst, const __half* src, int t) {
    const int k0 = b.tile_k0(t, BC), key_end = b.tile_end(t, BC);
    for (int idx = threadIdx.x; idx < BC * CPR; idx += T) {
      const int j = idx / CPR, c = idx % CPR;
      const bool valid = k0 + j < key_end;
      const int slot = valid ? (a.key_slots ? a.key_slots[k0 + j] : k0 + j) : 0;
      cp_async16(dst + sw_tile_offset<BC>(j, c), src + static_cast<int64_t>(slot) * kvd + c * 8, valid);
    }
  };
  auto load_k = [&](int t) {  // K and key positions of tile t
    const int k0 = b.tile_k0(t, BC), key_end = b.tile_end(t, BC);
    load_kv(k_tile(t), kc, t);
    for (int j = threadIdx.x; j < BC && k0 + j < key_end; j += T)  // past key_end: masked by index
      cp_async4(sKpos + (t & 1) * BC + j, a.kpos + (a.key_slots ? a.key_slots[k0 + j] : k0 + j));
  };
  load_k(0);
  load_kv(v_tile(0), vc, 0);
  if (n_tiles > 1) load_k(1);
  cp_async_commit();

  WgRows w;
  w.init(a, r0 + wg * 64);
  cp_async_wait_all();
  fence_proxy_async_smem();
  __syncthreads();

  float al[2];
  wgmma_fence();
  w.issue_s(sQ, wg, k_tile(0));
  wgmma_wait_all();
  w.fence_s();
  w.softmax(a, b.tile_k0(0, BC), b.tile_end(0, BC), sKpos, scale_log2, al);  // O is still zero: nothing to rescale
  w.pack_p();

  // The wgmma issue below is unconditional (the last tile is peeled off), which lets the
  // compiler keep S(t+1) and P(t) V(t) in flight together.
  for (int t = 0; t + 1 < n_tiles; ++t) {
    // K(t+1) and V(t) have landed for every thread, and every warpgroup is done with K(t) (its
    // S was waited for) and V(t-1) (its P V too), whose buffers the next loads reuse.
    cp_async_wait_all();
    fence_proxy_async_smem();
    __syncthreads();
    if (t + 2 < n_tiles) load_k(t + 2);
    load_kv(v_tile(t + 1), vc, t + 1);
    cp_async_commit();

    w.fence_s();
    w.fence_o();
    wgmma_fence();
    w.issue_s(sQ, wg, k_tile(t + 1));
    w.issue_pv(v_tile(t));
    wgmma_wait_all_but_one();  // S(t+1) is done; P(t) V(t) may still run
    w.fence_s();
    w.softmax(a, b.tile_k0(t + 1, BC), b.tile_end(t + 1, BC), sKpos + ((t + 1) & 1) * BC, scale_log2, al);
    wgmma_wait_all();
    w.fence_o();
    w.rescale(al);
    w.pack_p();
  }
  cp_async_wait_all();  // the last V tile
  fence_proxy_async_smem();
  __syncthreads();
  w.issue_last_pv(v_tile(n_tiles - 1));
  w.finish(a, h);
#else
  __trap();
#endif
}

void prepare_flash_wgmma() {
  check(cudaFuncSetAttribute(flash_wgmma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kWgSmem)),
        "cudaFuncSetAttribute(flash_wgmma_kernel)");
}

void launch_flash_wgmma(const AttentionArgs& a, cudaStream_t stream) {
  dim3 grid((a.m + kWgRows - 1) / kWgRows, a.n_heads);
  flash_wgmma_kernel<<<grid, kWgThreads, kWgSmem, stream>>>(a, a.scale * 1.4426950408889634f);
  check_launch("flash_wgmma_kernel");
}
