// flash_wgmma_kernel's math with warp specialization (FlashAttention-3's layout): a producer
// warpgroup streams K and V tiles into a ring of three buffers each with TMA (one thread issues
// a tile's two 128 x 64 boxes, which land already in the 128-byte swizzled layout wgmma reads),
// and two consumer warpgroups of 64 query rows each run the wgmma products and the softmax.
// Buffers change hands through mbarriers instead of a block-wide barrier per tile, and the
// producer gives most of its registers to the consumers (setmaxnreg). The consumers take turns
// issuing their products (ping-pong, two named barriers), so one's softmax runs while the other's
// products occupy the tensor cores; within a consumer S(t+1) and P(t) V(t) still overlap as in
// flash_wgmma_kernel. Keys must be the slots themselves (prefill: no key list), as TMA reads
// rectangles. Same tiles, masking and results as flash_wgmma_kernel.
//
// Measured on an H100 (bench_cuda, llama2-7b attention shape, causal, TFLOP/s at 4K / 16K / 32K):
// 510 / 662 / 600 against flash_wgmma_kernel's 300 / 332 / 385. The same kernel loading with
// cp.async from all 128 producer threads (a gather through a key list) reached only 260 / 325 /
// 330: the address arithmetic per 16-byte copy starved the producer. Without ping-pong 498 / 657 /
// 591; two buffers instead of three 503 / 584 / 607.
// Included by attention.cu inside its anonymous namespace, after flash_wgmma.cuh.

constexpr int kWsThreads = 384;  // producer warpgroup + two consumer warpgroups

constexpr int kWsStages = 3;     // K and V buffers each
constexpr size_t kWsSmem = sizeof(__half) * wg_tile_halves(kWgRows + 2 * kWsStages * kWgBc) +
                           sizeof(int) * kWsStages * kWgBc + sizeof(uint64_t) * (1 + 4 * kWsStages);

// tk, tv: tensor maps of the layer's K and V slots ([rows][n_kv_heads * 128] halves, boxes of 128
// rows x 64 columns, 128-byte swizzle; kv_tensor_map).
__global__ void __launch_bounds__(kWsThreads, 1)
    flash_wgmma_ws_kernel(AttentionArgs a, float scale_log2, const __grid_constant__ CUtensorMap tk,
                          const __grid_constant__ CUtensorMap tv) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int HD = kWgHd, BR = kWgRows, BC = kWgBc, STAGES = kWsStages;
  extern __shared__ __align__(1024) unsigned char smem[];
  __half* sQ = reinterpret_cast<__half*>(smem);
  __half* sK = sQ + wg_tile_halves(BR);           // STAGES buffers of BC rows
  __half* sV = sK + STAGES * wg_tile_halves(BC);  // STAGES buffers of BC rows
  int* sKpos = reinterpret_cast<int*>(sV + STAGES * wg_tile_halves(BC));
  uint64_t* q_full = reinterpret_cast<uint64_t*>(sKpos + STAGES * BC);
  uint64_t* k_full = q_full + 1;       // producer -> consumers, per stage
  uint64_t* v_full = k_full + STAGES;
  uint64_t* k_empty = v_full + STAGES;  // consumers -> producer, per stage
  uint64_t* v_empty = k_empty + STAGES;

  const RowBlock<kWgRows> b(a);
  const int r0 = b.r0, h = b.h, n_tiles = b.tiles(kWgBc);
  const int wg = threadIdx.x >> 7;

  if (threadIdx.x == 0) {
    mbar_init(q_full, 128);
    for (int s = 0; s < STAGES; ++s) {
      mbar_init(k_full + s, 128);  // every producer thread's key positions, and the TMA bytes
      mbar_init(v_full + s, 1);    // the TMA bytes
      mbar_init(k_empty + s, 8);  // every consumer warp
      mbar_init(v_empty + s, 8);
    }
  }
  __syncthreads();

  if (wg == 0) {
    warpgroup_regs_shrink<40>();
    const int tid = threadIdx.x;
    load_q_tile(sQ, a, r0, h, tid, 128);
    mbar_arrive_cp_async(q_full);
    const int g_col = b.g * HD;  // this head's columns in the K and V rows
    for (int t = 0; t < n_tiles; ++t) {
      const int s = t % STAGES, k0 = b.tile_k0(t, BC), key_end = b.tile_end(t, BC);
      const uint32_t parity = (t / STAGES) & 1;
      if (t >= STAGES) mbar_wait(k_empty + s, parity ^ 1);  // the consumers' release of tile t - STAGES
      __half* k_dst = sK + s * wg_tile_halves(BC);
      __half* v_dst = sV + s * wg_tile_halves(BC);
      if (tid == 0) {
        mbar_expect_tx(k_full + s, sizeof(__half) * wg_tile_halves(BC));
        tma_load_2d(k_dst, &tk, g_col, k0, k_full + s);
        tma_load_2d(k_dst + BC * 64, &tk, g_col + 64, k0, k_full + s);
      }
      if (k0 + tid < key_end) cp_async4(sKpos + s * BC + tid, a.kpos + k0 + tid);  // past key_end: masked by index
      mbar_arrive_cp_async(k_full + s);
      if (tid == 0) {
        if (t >= STAGES) mbar_wait(v_empty + s, parity ^ 1);
        mbar_arrive_expect_tx(v_full + s, sizeof(__half) * wg_tile_halves(BC));
        tma_load_2d(v_dst, &tv, g_col, k0, v_full + s);
        tma_load_2d(v_dst + BC * 64, &tv, g_col + 64, k0, v_full + s);
      }
    }
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    return;
  }

  warpgroup_regs_grow<232>();
  const int cw = wg - 1;  // which consumer: rows cw * 64 .. + 63 of the block
  WgRows w;
  w.init(a, r0 + cw * 64);
  auto k_tile = [&](int t) { return sK + (t % STAGES) * wg_tile_halves(BC); };
  auto v_tile = [&](int t) { return sV + (t % STAGES) * wg_tile_halves(BC); };
  auto kp_tile = [&](int t) { return sKpos + (t % STAGES) * BC; };
  auto full = [&](uint64_t* bars, int t) {  // until tile t has landed in its buffer
    mbar_wait(bars + t % STAGES, (t / STAGES) & 1);
  };
  auto release = [&](uint64_t* bars, int t) {  // this warp is done with tile t's buffer
    __syncwarp();
    if ((threadIdx.x & 31) == 0) mbar_arrive(bars + t % STAGES);
  };
  // Ping-pong: wait for this consumer's turn to issue products; after issuing, hand the turn over
  // (except after the last issue of the second consumer, which nobody waits for).
  auto my_turn = [&] { named_bar_sync(1 + cw, 256); };
  auto turn_done = [&](bool last) {
    if (!(last && cw == 1)) named_bar_arrive(2 - cw, 256);
  };

  if (cw == 1) named_bar_arrive(1, 256);  // the first consumer goes first
  float al[2];
  mbar_wait(q_full, 0);
  full(k_full, 0);
  fence_proxy_async_smem();
  my_turn();
  wgmma_fence();
  w.issue_s(sQ, cw, k_tile(0));
  turn_done(false);
  wgmma_wait_all();
  w.fence_s();
  w.softmax(a, b.tile_k0(0, BC), b.tile_end(0, BC), kp_tile(0), scale_log2, al);  // O is still zero: nothing to rescale
  release(k_empty, 0);
  w.pack_p();

  for (int t = 0; t + 1 < n_tiles; ++t) {
    full(k_full, t + 1);
    full(v_full, t);
    fence_proxy_async_smem();
    w.fence_s();
    w.fence_o();
    my_turn();
    wgmma_fence();
    w.issue_s(sQ, cw, k_tile(t + 1));
    w.issue_pv(v_tile(t));
    turn_done(false);
    wgmma_wait_all_but_one();  // S(t+1) is done; P(t) V(t) may still run
    w.fence_s();
    w.softmax(a, b.tile_k0(t + 1, BC), b.tile_end(t + 1, BC), kp_tile(t + 1), scale_log2, al);
    release(k_empty, t + 1);
    wgmma_wait_all();
    w.fence_o();
    release(v_empty, t);
    w.rescale(al);
    w.pack_p();
  }
  full(v_full, n_tiles - 1);
  fence_proxy_async_smem();
  my_turn();
  w.issue_last_pv(v_tile(n_tiles - 1));
  turn_done(true);
  w.finish(a, h);
#else
  __trap();
#endif
}

void prepare_flash_wgmma_ws() {
  check(cudaFuncSetAttribute(flash_wgmma_ws_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(kWsSmem)),
        "cudaFuncSetAttribute(flash_wgmma_ws_kernel)");
}

// The driver's tensor-map encoder, reached through the runtime (no link against libcuda); null
// where the driver lacks it.
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess) {
      cudaGetLastError();
      return static_cast<PFN_cuTensorMapEncodeTiled_v12000>(nullptr);
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

// A tensor map over `rows` slots of a K or V cache (half, n_kv_heads * 128 a row) in the boxes and
// swizzle flash_wgmma_ws_kernel reads; false where it cannot be made.
bool kv_tensor_map(CUtensorMap& map, const void* base, int kvd, int rows) {
  const auto encode = tensor_map_encoder();
  if (encode == nullptr || reinterpret_cast<uintptr_t>(base) % 16 != 0) return false;
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(kvd), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(kvd) * sizeof(__half)};
  const cuuint32_t box[2] = {64, static_cast<cuuint32_t>(kWgBc)}, elem_strides[2] = {1, 1};
  return encode(&map, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, const_cast<void*>(base), dims, strides, box, elem_strides,
                CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// Launches flash_wgmma_ws_kernel where it applies (every slot a key, tensor maps made); false
// where the caller must use another kernel.
bool launch_flash_wgmma_ws(const AttentionArgs& a, cudaStream_t stream) {
  if (a.key_slots != nullptr) return false;
  // The keys are slots 0 .. n_old + m - 1, or 0 .. n_keys - 1 (gathered, or two runs: row_key_end
  // set); rows past them read as zeros.
  const int kvd = a.n_kv_heads * kWgHd, rows = a.row_key_end ? a.n_keys : a.n_old + a.m;
  CUtensorMap tk{}, tv{};
  if (!kv_tensor_map(tk, a.k_cache, kvd, rows) || !kv_tensor_map(tv, a.v_cache, kvd, rows)) return false;
  dim3 grid((a.m + kWgRows - 1) / kWgRows, a.n_heads);
  flash_wgmma_ws_kernel<<<grid, kWsThreads, kWsSmem, stream>>>(a, a.scale * 1.4426950408889634f, tk, tv);
  check_launch("flash_wgmma_ws_kernel");
  return true;
}
