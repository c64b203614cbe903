// Block formats of the quantized tensor types (GGUF spec) and conversion to and from float.
#pragma once

#include <cstdint>

#include "format/dtype.h"

namespace lazyllm {

// IEEE half and bfloat16 conversions (round-to-nearest-even when narrowing).
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);
float bf16_to_fp32(uint16_t h);
uint16_t fp32_to_bf16(float f);

// Decodes `n` values (a multiple of the block size) of type `t` starting at `src`.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

// Encodes `n` floats into type `t`. Supported for every DType (the K-quants use a simple
// reference quantizer: good enough for test models and gen-model, not tuned for quality).
void quantize_row(DType t, const float* src, void* dst, int64_t n);

}  // namespace lazyllm
