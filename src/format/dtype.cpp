#include "format/dtype.h"

#include <array>
#include <cctype>
#include <stdexcept>
#include <string>

namespace lazyllm {
namespace {

constexpr std::array<DTypeInfo, 8> kTypes = {{
    {DType::F32, "f32", 1, 4},
    {DType::F16, "f16", 1, 2},
    {DType::Q4_0, "q4_0", 32, 18},
    {DType::Q8_0, "q8_0", 32, 34},
    {DType::Q4_K, "q4_K", 256, 144},
    {DType::Q5_K, "q5_K", 256, 176},
    {DType::Q6_K, "q6_K", 256, 210},
    {DType::BF16, "bf16", 1, 2},
}};

}  // namespace

std::optional<DTypeInfo> dtype_info(uint32_t ggml_type) {
  for (const auto& t : kTypes)
    if (static_cast<uint32_t>(t.type) == ggml_type) return t;
  return std::nullopt;
}

const DTypeInfo& dtype_info(DType t) {
  for (const auto& i : kTypes)
    if (i.type == t) return i;
  throw std::logic_error("dtype_info: unsupported type");
}

std::string_view dtype_name(DType t) { return dtype_info(t).name; }

std::optional<DType> parse_dtype(std::string_view name) {
  std::string lower;
  for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& t : kTypes) {
    std::string n;
    for (char c : t.name) n += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (n == lower) return t.type;
  }
  return std::nullopt;
}

std::string_view ggml_type_name(uint32_t ggml_type) {
  static constexpr std::string_view kNames[] = {
      "f32",  "f16",  "q4_0", "q4_1", "q4_2", "q4_3", "q5_0",    "q5_1",    "q8_0", "q8_1",
      "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "q8_K", "iq2_xxs", "iq2_xs",  "iq3_xxs",
      "iq1_s", "iq4_nl", "iq3_s", "iq2_s", "iq4_xs", "i8", "i16", "i32", "i64", "f64",
      "iq1_m", "bf16"};
  if (ggml_type < std::size(kNames)) return kNames[ggml_type];
  return "unknown";
}

}  // namespace lazyllm
