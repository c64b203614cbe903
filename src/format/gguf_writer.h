// Writes GGUF v3 files: metadata and tensors, aligned as the format requires.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "format/dtype.h"
#include "format/gguf.h"

namespace lazyllm {

class GGUFWriter {
 public:
  void set_uint32(const std::string& key, uint32_t v);
  void set_uint64(const std::string& key, uint64_t v);
  void set_int32(const std::string& key, int32_t v);
  void set_float32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  void set_string_array(const std::string& key, const std::vector<std::string>& v);
  void set_float32_array(const std::string& key, const std::vector<float>& v);
  void set_int32_array(const std::string& key, const std::vector<int32_t>& v);
  // Copies one metadata entry as it is from a parsed file (used to copy a vocabulary).
  void copy_value(const std::string& key, const GGUFValue& v);

  // Adds a tensor of `dims` (dims[0] is the row length) whose bytes are already encoded as `type`.
  void add_tensor(const std::string& name, DType type, std::vector<int64_t> dims, std::vector<uint8_t> data);

  // Adds a tensor whose bytes are produced by `fill` at write time (into a buffer of the
  // tensor's byte size), so large models are never held in memory at once.
  void add_tensor(const std::string& name, DType type, std::vector<int64_t> dims,
                  std::function<void(uint8_t* out)> fill);

  // Writes the file; throws Error on I/O failure.
  void write(const std::string& path) const;

 private:
  struct Entry {
    std::string key;
    std::vector<uint8_t> bytes;  // type tag + encoded value
  };
  struct Tensor {
    std::string name;
    DType type;
    std::vector<int64_t> dims;
    std::vector<uint8_t> data;             // encoded bytes, or empty with `fill`
    std::function<void(uint8_t*)> fill;
    int64_t bytes = 0;
  };
  void set_raw(const std::string& key, std::vector<uint8_t> bytes);
  std::vector<Entry> kv_;
  std::vector<Tensor> tensors_;
};

}  // namespace lazyllm
