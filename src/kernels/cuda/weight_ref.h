// A weight matrix as the CUDA kernels read it: bf16 rows, or quantized GGUF blocks split into
// their quants and their scales (the same bytes as the file's blocks, arranged so that a warp
// reads a row's quants with aligned 16-byte loads: a Q8_0 block is 34 bytes, a Q4_0 block 18,
// neither a multiple of 16).
#pragma once

#include <cstdint>

namespace lazyllm::cuda {

enum class WeightFormat : uint8_t { kBf16, kQ8_0, kQ4_0 };

constexpr int kQBlock = 32;  // elements per Q8_0 / Q4_0 block

// Rows of k elements.
//   kBf16: w holds rows of k bf16 values; scales is null.
//   kQ8_0: w holds rows of k int8 quants (each block's qs, in order); scales rows of k / 32 f16
//          (each block's d): value = q * d.
//   kQ4_0: w holds rows of k / 2 bytes (each block's 16 qs bytes as stored: byte j holds element
//          j in its low nibble and element j + 16 in its high one); scales as for kQ8_0:
//          value = (q - 8) * d.
struct WeightRef {
  WeightFormat format = WeightFormat::kBf16;
  const void* w = nullptr;
  const uint16_t* scales = nullptr;
};

// Bytes of one row's quants (or bf16 values).
constexpr int64_t weight_row_bytes(WeightFormat f, int64_t k) {
  switch (f) {
    case WeightFormat::kBf16: return 2 * k;
    case WeightFormat::kQ8_0: return k;
    case WeightFormat::kQ4_0: return k / 2;
  }
  return 0;
}

// Rows [r0, ...) of a matrix of rows of k.
inline WeightRef weight_rows(const WeightRef& w, int64_t r0, int64_t k) {
  WeightRef out = w;
  out.w = static_cast<const uint8_t*>(w.w) + r0 * weight_row_bytes(w.format, k);
  if (w.scales) out.scales = w.scales + r0 * (k / kQBlock);
  return out;
}

}  // namespace lazyllm::cuda
