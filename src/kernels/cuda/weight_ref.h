// A weight matrix as the CUDA kernels read it: bf16 rows, or quantized GGUF blocks, kept at the
// file's bytes but arranged for 16-byte loads where the file's blocks are not a multiple of 16
// bytes (Q8_0 34, Q4_0 18, Q6_K 210): their f16 scale goes to a separate array.
#pragma once

#include <cstdint>

namespace lazyllm::cuda {

enum class WeightFormat : uint8_t { kBf16, kQ8_0, kQ4_0, kQ4_K, kQ5_K, kQ6_K };

constexpr int kQBlock = 32;    // elements per Q8_0 / Q4_0 block
constexpr int kQKBlock = 256;  // elements per K-quant super-block

// Rows of k elements.
//   kBf16: w holds rows of k bf16 values; scales is null.
//   kQ8_0: w holds rows of k int8 quants (each block's qs, in order); scales rows of k / 32 f16
//          (each block's d): value = q * d.
//   kQ4_0: w holds rows of k / 2 bytes (each block's 16 qs bytes as stored: byte j holds element
//          j in its low nibble and element j + 16 in its high one); scales as for kQ8_0:
//          value = (q - 8) * d.
//   kQ4_K, kQ5_K: w holds rows of k / 256 blocks exactly as stored (144 and 176 bytes, d and dmin
//          first); scales is null.
//   kQ6_K: w holds rows of k / 256 blocks of the stored ql, qh and scales (208 bytes); scales
//          rows of k / 256 f16 (each block's d, stored last in the file's 210 bytes).
struct WeightRef {
  WeightFormat format = WeightFormat::kBf16;
  const void* w = nullptr;
  const uint16_t* scales = nullptr;
};

// Bytes of one row's quants (or bf16 values), the scales array aside.
constexpr int64_t weight_row_bytes(WeightFormat f, int64_t k) {
  switch (f) {
    case WeightFormat::kBf16: return 2 * k;
    case WeightFormat::kQ8_0: return k;
    case WeightFormat::kQ4_0: return k / 2;
    case WeightFormat::kQ4_K: return k / kQKBlock * 144;
    case WeightFormat::kQ5_K: return k / kQKBlock * 176;
    case WeightFormat::kQ6_K: return k / kQKBlock * 208;
  }
  return 0;
}

// Entries of one row in the scales array (0 where there is none).
constexpr int64_t weight_row_scales(WeightFormat f, int64_t k) {
  switch (f) {
    case WeightFormat::kQ8_0:
    case WeightFormat::kQ4_0: return k / kQBlock;
    case WeightFormat::kQ6_K: return k / kQKBlock;
    default: return 0;
  }
}

// Elements a row length must be a multiple of.
constexpr int weight_block_elems(WeightFormat f) {
  switch (f) {
    case WeightFormat::kBf16: return 1;
    case WeightFormat::kQ8_0:
    case WeightFormat::kQ4_0: return kQBlock;
    default: return kQKBlock;
  }
}

constexpr bool is_k_quant(WeightFormat f) {
  return f == WeightFormat::kQ4_K || f == WeightFormat::kQ5_K || f == WeightFormat::kQ6_K;
}

// Rows [r0, ...) of a matrix of rows of k.
inline WeightRef weight_rows(const WeightRef& w, int64_t r0, int64_t k) {
  WeightRef out = w;
  out.w = static_cast<const uint8_t*>(w.w) + r0 * weight_row_bytes(w.format, k);
  if (w.scales) out.scales = w.scales + r0 * weight_row_scales(w.format, k);
  return out;
}

}  // namespace lazyllm::cuda
