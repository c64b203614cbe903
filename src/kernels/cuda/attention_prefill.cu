// Prefill attention (many query rows): FlashAttention-2-style kernels on the tensor cores (half
// inputs, float accumulation), causal by original position, so LazyLLM's compacted token sets
// attend exactly as in the full sequence. Head size 128 on Hopper takes the warp-specialized
// wgmma kernel (flash_wgmma_ws.cuh, every slot a key) or the wgmma one (flash_wgmma.cuh, listed
// keys); elsewhere the pipelined mma.sync kernel below. Row blocks skip key tiles past their last
// row.
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <mutex>
#include <string_view>

#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/attention_launch.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/mbarrier.cuh"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/pdl.h"
#include "kernels/cuda/wgmma.cuh"

namespace lazyllm::cuda {
namespace {

// The mma.sync kernel (head sizes 16-128, wherever no wgmma kernel runs): the FlashAttention-2
// schedule on m16n8k16, NW warps of MT x 16 query rows each (scores, probabilities and the output
// in registers), key/value tiles of 64 (32) brought into shared memory by cp.async so that loading
// overlaps computing: V(t) loads while S = Q K(t)^T and the softmax run, K(t+1) while O += P V(t)
// runs. With MT = 2 each K and V fragment read from shared memory feeds two row groups (half the
// shared-memory traffic per product; Q fragments are then re-read per tile instead of held in
// registers). Only tiles that reach past the block's first row (the diagonal, or any tile of
// listed keys) are masked by position. The softmax runs in base 2 with log2(e) folded into the
// scale. Every slot a key (prefill): tile rows are consecutive slots, no index lookup.
constexpr int kFwdBc = 64;

template <int HD, int NW, int MT>
struct FwdCfg {
  // Key tile: 64, or 32 where two row groups of 128-wide heads would not fit the registers.
  static constexpr int kBc = MT == 2 && HD == 128 ? 32 : kFwdBc;
  static constexpr int kRows = NW * 16 * MT, kLd = HD + 8, kThreads = NW * 32;
  static constexpr size_t kSmem = sizeof(__half) * (kRows + 2 * kBc) * kLd + sizeof(int) * kBc;
};

template <int HD, int NW, int MT>
__global__ void __launch_bounds__(NW * 32, NW == 4 ? 2 : 1) flash_fwd_kernel(AttentionArgs a, float scale_log2) {
  using C = FwdCfg<HD, NW, MT>;
  constexpr int BR = C::kRows, BC = C::kBc, LD = C::kLd, T = C::kThreads;
  constexpr int kVec = 8, CPR = HD / kVec;  // 16-byte chunks per row
  constexpr bool kQInRegs = MT == 1;
  extern __shared__ __align__(128) unsigned char smem[];
  __half* sQ = reinterpret_cast<__half*>(smem);
  __half* sK = sQ + BR * LD;
  __half* sV = sK + BC * LD;
  int* sKpos = reinterpret_cast<int*>(sV + BC * LD);

  const RowBlock<BR> b(a);
  const int r0 = b.r0, h = b.h, g = b.g;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int gq = lane >> 2, tq = lane & 3;
  const int qd = a.n_heads * HD, kvd = a.n_kv_heads * HD;
  const __half* q = reinterpret_cast<const __half*>(a.q);
  const __half* kc = reinterpret_cast<const __half*>(a.k_cache) + g * HD;
  const __half* vc = reinterpret_cast<const __half*>(a.v_cache) + g * HD;
  const int n_tiles = b.tiles(BC);

  for (int idx = threadIdx.x; idx < BR * CPR; idx += T) {
    const int r = idx / CPR, c = idx % CPR * kVec;
    const bool valid = r0 + r < a.m;
    cp_async16(sQ + r * LD + c, q + (valid ? static_cast<int64_t>(r0 + r) * qd + h * HD + c : 0), valid);
  }
  auto load_k = [&](int t) {  // K and key positions of tile t
    const int k0 = b.tile_k0(t, BC), key_end = b.tile_end(t, BC);
    for (int idx = threadIdx.x; idx < BC * CPR; idx += T) {
      const int j = idx / CPR, c = idx % CPR * kVec;
      const bool valid = k0 + j < key_end;
      const int slot = valid ? (a.key_slots ? a.key_slots[k0 + j] : k0 + j) : 0;
      cp_async16(sK + j * LD + c, kc + static_cast<int64_t>(slot) * kvd + c, valid);
    }
    for (int j = threadIdx.x; j < BC; j += T) {
      if (k0 + j < key_end) cp_async4(sKpos + j, a.kpos + (a.key_slots ? a.key_slots[k0 + j] : k0 + j));
      else sKpos[j] = INT_MAX;
    }
  };
  auto load_v = [&](int t) {
    const int k0 = b.tile_k0(t, BC), key_end = b.tile_end(t, BC);
    for (int idx = threadIdx.x; idx < BC * CPR; idx += T) {
      const int j = idx / CPR, c = idx % CPR * kVec;
      const bool valid = k0 + j < key_end;
      const int slot = valid ? (a.key_slots ? a.key_slots[k0 + j] : k0 + j) : 0;
      cp_async16(sV + j * LD + c, vc + static_cast<int64_t>(slot) * kvd + c, valid);
    }
  };
  load_k(0);
  cp_async_commit();

  // Rows of this thread: group mt, rows row[mt][0] (accumulators 0, 1) and row[mt][1] (2, 3).
  int qp[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int row = r0 + (warp * MT + mt) * 16 + gq + 8 * hh;
      qp[mt][hh] = row < a.m ? a.qpos[row] : INT_MIN;
    }
  }
  cp_async_wait_all();
  __syncthreads();

  auto q_frag = [&](uint32_t(&f)[4], int mt, int kk) {
    ldmatrix_x4(f, sQ + ((warp * MT + mt) * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + kk * 16 + (lane >> 4) * 8);
  };
  uint32_t qf[kQInRegs ? HD / 16 : 1][4];
  if constexpr (kQInRegs) {
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) q_frag(qf[kk], 0, kk);
  }

  float o[MT][HD / 8][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int n = 0; n < HD / 8; ++n) o[mt][n][0] = o[mt][n][1] = o[mt][n][2] = o[mt][n][3] = 0.0f;
  float m_run[MT][2], l_run[MT][2];  // running max of raw scores, per-thread partial sums
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) m_run[mt][0] = m_run[mt][1] = kNegInf, l_run[mt][0] = l_run[mt][1] = 0.0f;

  const UnmaskedKeys unmasked = UnmaskedKeys::of(a, r0);
  for (int t = 0; t < n_tiles; ++t) {
    const int k0 = b.tile_k0(t, BC);
    if (t > 0) {
      cp_async_wait_all();  // K(t) has landed
      __syncthreads();      // ... for every thread, and every warp is done with V(t-1)
    }
    load_v(t);
    cp_async_commit();

    float s[MT][BC / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int n = 0; n < BC / 8; ++n) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      uint32_t qa[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        if constexpr (kQInRegs) {
#pragma unroll
          for (int e = 0; e < 4; ++e) qa[mt][e] = qf[kk][e];
        } else {
          q_frag(qa[mt], mt, kk);
        }
      }
#pragma unroll
      for (int np = 0; np < BC / 16; ++np) {
        uint32_t kb[4];
        ldmatrix_x4(kb, sK + (np * 16 + (lane & 7) + (lane >> 4) * 8) * LD + kk * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_16816(s[mt][2 * np], qa[mt], kb[0], kb[1]);
          mma_16816(s[mt][2 * np + 1], qa[mt], kb[2], kb[3]);
        }
      }
    }

    if (unmasked.masked(a, k0, BC)) {
#pragma unroll
      for (int n = 0; n < BC / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int kp = sKpos[n * 8 + 2 * tq + e];
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            if (kp > qp[mt][0]) s[mt][n][e] = kNegInf;
            if (kp > qp[mt][1]) s[mt][n][2 + e] = kNegInf;
          }
        }
      }
    }
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      float al[2];
      online_softmax(s[mt], m_run[mt], l_run[mt], scale_log2, al);
#pragma unroll
      for (int n = 0; n < HD / 8; ++n) {
        o[mt][n][0] *= al[0], o[mt][n][1] *= al[0];
        o[mt][n][2] *= al[1], o[mt][n][3] *= al[1];
      }
    }

    cp_async_wait_all();  // V(t) has landed
    __syncthreads();      // ... for every thread, and every warp is done with K(t)
    if (t + 1 < n_tiles) {
      load_k(t + 1);
      cp_async_commit();
    }

    // O += P V: the probabilities (as half) are the A operand straight from registers.
#pragma unroll
    for (int kc2 = 0; kc2 < BC / 16; ++kc2) {
      uint32_t pa[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        pa[mt][0] = pack_half2(s[mt][2 * kc2][0], s[mt][2 * kc2][1]);
        pa[mt][1] = pack_half2(s[mt][2 * kc2][2], s[mt][2 * kc2][3]);
        pa[mt][2] = pack_half2(s[mt][2 * kc2 + 1][0], s[mt][2 * kc2 + 1][1]);
        pa[mt][3] = pack_half2(s[mt][2 * kc2 + 1][2], s[mt][2 * kc2 + 1][3]);
      }
#pragma unroll
      for (int dp = 0; dp < HD / 16; ++dp) {
        uint32_t vb[4];
        ldmatrix_x4_trans(vb, sV + (kc2 * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + dp * 16 + (lane >> 4) * 8);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_16816(o[mt][2 * dp], pa[mt], vb[0], vb[1]);
          mma_16816(o[mt][2 * dp + 1], pa[mt], vb[2], vb[3]);
        }
      }
    }
  }

#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    const int row0 = r0 + (warp * MT + mt) * 16 + gq, row1 = row0 + 8;
    store_rows<HD>(a, o[mt], l_run[mt][0], l_run[mt][1], row0, row1, h, tq);
  }
}

template <int HD, int NW, int MT>
void launch_flash_fwd(const AttentionArgs& a, cudaStream_t stream) {
  using C = FwdCfg<HD, NW, MT>;
  dim3 grid((a.m + C::kRows - 1) / C::kRows, a.n_heads);
  flash_fwd_kernel<HD, NW, MT><<<grid, C::kThreads, C::kSmem, stream>>>(a, a.scale * 1.4426950408889634f);
  check_launch("flash_fwd_kernel");
}

template <int HD, int NW, int MT>
void prepare_flash_fwd_one() {
  check(cudaFuncSetAttribute(flash_fwd_kernel<HD, NW, MT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(FwdCfg<HD, NW, MT>::kSmem)),
        "cudaFuncSetAttribute(flash_fwd_kernel)");
}

template <int HD>
void prepare_flash_fwd() {
  prepare_flash_fwd_one<HD, 4, 2>();
}

#include "kernels/cuda/flash_wgmma.cuh"
#include "kernels/cuda/flash_wgmma_ws.cuh"
// Which kernel, by $LAZYLLM_CUDA_ATTENTION (read at each call, so the tests and the kernel bench
// can compare them on the same inputs): by default ("ws") the warp-specialized wgmma kernel where
// it runs (head size 128 on compute capability 9.0, every slot a key), the wgmma kernel ("wg")
// where only the key list stands in its way, else the mma.sync one ("fwd2"). Each of the three is
// the one that runs for some shapes; forcing a later one checks an earlier one against it.
enum class PrefillKernel { kWs, kWgmma, kFwd2 };

PrefillKernel prefill_kernel() {
  const char* e = std::getenv("LAZYLLM_CUDA_ATTENTION");
  const std::string_view v = e ? e : "";
  if (v == "fwd2") return PrefillKernel::kFwd2;
  if (v == "wg") return PrefillKernel::kWgmma;
  return PrefillKernel::kWs;
}

template <int HD>
void launch_prefill(const AttentionArgs& a, cudaStream_t stream) {
  switch (prefill_kernel()) {
    case PrefillKernel::kWs:
      if constexpr (HD == kWgHd) {
        if (wgmma_available() && launch_flash_wgmma_ws(a, stream)) return;
      }
      [[fallthrough]];  // keys listed (decode with revivals), or no tensor maps: the wgmma kernel
    case PrefillKernel::kWgmma:
      if constexpr (HD == kWgHd) {
        if (wgmma_available()) return launch_flash_wgmma(a, stream);
      }
      [[fallthrough]];
    case PrefillKernel::kFwd2: return launch_flash_fwd<HD, 4, 2>(a, stream);
  }
}

}  // namespace

// Decode-sized batches go to the split-key kernels, which spread the keys over the whole GPU;
// the prefill kernels also take listed keys (LazyLLM decode with many revived rows).
bool prefill_attention_applies(const AttentionArgs& a) {
  return a.m > 16 && (a.head_dim == 16 || a.head_dim == 32 || a.head_dim == 64 || a.head_dim == 128);
}

void prefill_attention_prepare() {
  static std::once_flag once;
  std::call_once(once, [] {
    prepare_flash_fwd<16>();
    prepare_flash_fwd<32>();
    prepare_flash_fwd<64>();
    prepare_flash_fwd<128>();
    if (wgmma_available()) {
      prepare_flash_wgmma();
      prepare_flash_wgmma_ws();
    }
  });
}

void prefill_attention(const AttentionArgs& a, cudaStream_t stream) {
  switch (a.head_dim) {
    case 16: return launch_prefill<16>(a, stream);
    case 32: return launch_prefill<32>(a, stream);
    case 64: return launch_prefill<64>(a, stream);
    case 128: return launch_prefill<128>(a, stream);
  }
  throw Error("CUDA attention: no prefill kernel for head size " + std::to_string(a.head_dim));
}

}  // namespace lazyllm::cuda
