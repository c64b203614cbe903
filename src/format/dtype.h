// Tensor element types as numbered by the GGUF format (ggml_type), with their block layout.
// Quantized types store blocks of `block_elems` values in `block_bytes` bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace lazyllm {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q8_0 = 8,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  BF16 = 30,
};

struct DTypeInfo {
  DType type;
  std::string_view name;
  int64_t block_elems;
  int64_t block_bytes;
};

// Layout of a supported type; nullopt for a ggml type id this engine does not implement.
std::optional<DTypeInfo> dtype_info(uint32_t ggml_type);
const DTypeInfo& dtype_info(DType t);
std::string_view dtype_name(DType t);
// Parses "f32", "q8_0", ... (case-insensitive); nullopt when unknown.
std::optional<DType> parse_dtype(std::string_view name);
// Name of any ggml type id, including ones we do not support (for error messages).
std::string_view ggml_type_name(uint32_t ggml_type);

// Bytes taken by `n` elements (n must be a multiple of the block size).
inline int64_t row_bytes(DType t, int64_t n) {
  const DTypeInfo& i = dtype_info(t);
  return n / i.block_elems * i.block_bytes;
}

}  // namespace lazyllm
