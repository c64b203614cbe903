// GGUF (v2, v3) reader. Every count, length, dimension, type and offset is checked against
// the bytes actually present before it is used, so a corrupt or truncated file gives an Error
// naming what is wrong, never an out-of-bounds read.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "format/dtype.h"

namespace lazyllm {

class MappedFile;

enum class GGUFType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
  BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
std::string_view gguf_type_name(GGUFType t);

// One metadata value. Scalars are widened on read; arrays point into the file's bytes.
struct GGUFValue {
  GGUFType type = GGUFType::UINT8;
  uint64_t u = 0;      // unsigned integers and bool
  int64_t i = 0;       // signed integers (also set for unsigned ones that fit)
  double f = 0;        // floats
  std::string_view str;
  GGUFType elem_type = GGUFType::UINT8;  // arrays
  uint64_t count = 0;
  const uint8_t* elems = nullptr;        // numeric array elements (little-endian, packed)
  std::vector<std::string_view> strings; // string array elements

  bool is_integer() const;
  bool is_float() const { return type == GGUFType::FLOAT32 || type == GGUFType::FLOAT64; }
};

struct GGUFTensor {
  std::string name;
  DType type = DType::F32;
  std::vector<int64_t> dims;  // dims[0] is the contiguous (row) length, as in ggml
  const uint8_t* data = nullptr;
  uint64_t offset = 0;  // from the start of the data section
  int64_t n_bytes = 0;
  int64_t n_elements() const;
  int64_t rows() const { return n_elements() / dims[0]; }
};

class GGUFFile {
 public:
  // Maps and parses a file on disk.
  static std::unique_ptr<GGUFFile> open(const std::string& path);
  // Parses bytes owned by the caller (kept alive by the caller while this object is used).
  static std::unique_ptr<GGUFFile> parse(const uint8_t* data, size_t size, std::string name = "<memory>");
  ~GGUFFile();

  uint32_t version() const { return version_; }
  const std::string& name() const { return name_; }
  size_t file_size() const { return size_; }
  // Brings all of a file opened from disk into memory now, as a private copy in huge pages or
  // through its mapping (see MappedFile::make_resident), and says which; "in memory" for parsed bytes.
  std::string make_resident(bool private_copy) const;
  // make_resident's answer, or empty before it.
  std::string resident() const;
  uint64_t alignment() const { return alignment_; }

  const std::map<std::string, GGUFValue, std::less<>>& metadata() const { return kv_; }
  const GGUFValue* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }

  // Typed accessors: throw Error when the key is missing or of an incompatible type.
  uint64_t get_uint(std::string_view key) const;
  int64_t get_int(std::string_view key) const;
  double get_float(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  std::string_view get_string(std::string_view key) const;
  const std::vector<std::string_view>& get_string_array(std::string_view key) const;
  std::vector<float> get_float_array(std::string_view key) const;
  std::vector<int64_t> get_int_array(std::string_view key) const;

  // Same, with a default when the key is absent (still an Error when present with a bad type).
  uint64_t get_uint_or(std::string_view key, uint64_t def) const;
  double get_float_or(std::string_view key, double def) const;
  bool get_bool_or(std::string_view key, bool def) const;
  std::string get_string_or(std::string_view key, std::string_view def) const;

  const std::vector<GGUFTensor>& tensors() const { return tensors_; }
  const GGUFTensor* find_tensor(std::string_view name) const;

 private:
  GGUFFile() = default;
  void parse_all();

  std::unique_ptr<MappedFile> file_;
  std::string name_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, GGUFValue, std::less<>> kv_;
  std::vector<GGUFTensor> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

}  // namespace lazyllm
