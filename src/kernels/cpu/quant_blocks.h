// Byte layouts of the quantized blocks, exactly as GGUF files store them (ggml's block_*).
// Shared by the scalar codecs (quant.cpp) and the SIMD kernels (dot_kernels.cpp).
#pragma once

#include <cstdint>

namespace lazyllm::qblock {

constexpr int kQK = 32;    // elements per Q4_0 / Q8_0 block
constexpr int kQKK = 256;  // elements per K-quant super-block

// value = (q - 8) * d; byte j holds element j (low nibble) and element j + 16 (high nibble).
struct Q4_0 {
  uint16_t d;  // f16
  uint8_t qs[kQK / 2];
};

// value = q * d
struct Q8_0 {
  uint16_t d;  // f16
  int8_t qs[kQK];
};

// Eight groups of 32; group j: value = d * sc[j] * q - dmin * m[j] with 6-bit sc/m packed in
// `scales` (see scale_min_k4). qs[32 c + l] holds group 2c element l (low nibble) and
// group 2c + 1 element l (high nibble).
struct Q4_K {
  uint16_t d;     // f16, scale of the group scales
  uint16_t dmin;  // f16, scale of the group mins
  uint8_t scales[12];
  uint8_t qs[kQKK / 2];
};

// Q4_K with a fifth bit per value: the same d, dmin and packed 6-bit scales and mins, and
// value = d * sc[j] * q - dmin * m[j] with q = 0..31. The low 4 bits of q sit in qs as Q4_K's;
// the high bit of group j's element l is bit j of qh[l].
struct Q5_K {
  uint16_t d;     // f16, scale of the group scales
  uint16_t dmin;  // f16, scale of the group mins
  uint8_t scales[12];
  uint8_t qh[kQKK / 8];
  uint8_t qs[kQKK / 2];
};

// Sixteen groups of 16; value = d * scales[g] * (q - 32) with a 6-bit q split over ql (low 4
// bits) and qh (high 2 bits). Per 128-element half h, for l < 32:
//   element l      : ql[64h + l]      low nibble,  qh[32h + l] bits 0-1
//   element l + 32 : ql[64h + l + 32] low nibble,  qh[32h + l] bits 2-3
//   element l + 64 : ql[64h + l]      high nibble, qh[32h + l] bits 4-5
//   element l + 96 : ql[64h + l + 32] high nibble, qh[32h + l] bits 6-7
struct Q6_K {
  uint8_t ql[kQKK / 2];
  uint8_t qh[kQKK / 4];
  int8_t scales[kQKK / 16];
  uint16_t d;  // f16
};

static_assert(sizeof(Q4_0) == 18 && sizeof(Q8_0) == 34);
static_assert(sizeof(Q4_K) == 144 && sizeof(Q5_K) == 176 && sizeof(Q6_K) == 210);
static_assert(alignof(Q4_0) == 2 && alignof(Q6_K) == 2);

// Group j's 6-bit scale and min in a Q4_K (or Q5_K) `scales` array: groups 0-3 use the low 6 bits of
// bytes j and j + 4; groups 4-7 take 4 bits from byte j + 4 and their top 2 bits from the
// spare high bits of bytes j - 4 (scale) and j (min).
inline void scale_min_k4(int j, const uint8_t* s, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

}  // namespace lazyllm::qblock
