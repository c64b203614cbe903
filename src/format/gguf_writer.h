// Writes GGUF v3 files: metadata and tensors, aligned as the format requires.
//
// Layout: header, `general.alignment` (always 32, written first), the other metadata in the
// order it was set, tensor infos, zero padding to 32, then each tensor's bytes at an offset
// that is a multiple of 32, zero-padded. Tensor bytes may be produced at write time by a
// callback, a bounded chunk of rows at a time, so a model larger than memory can be written.
// The file is written to PATH.tmp and renamed onto PATH only once complete.
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
  static constexpr uint32_t kAlignment = 32;

  // Scalars. Setting a key again replaces its value (keeping its position).
  void set_uint8(const std::string& key, uint8_t v);
  void set_int8(const std::string& key, int8_t v);
  void set_uint16(const std::string& key, uint16_t v);
  void set_int16(const std::string& key, int16_t v);
  void set_uint32(const std::string& key, uint32_t v);
  void set_int32(const std::string& key, int32_t v);
  void set_uint64(const std::string& key, uint64_t v);
  void set_int64(const std::string& key, int64_t v);
  void set_float32(const std::string& key, float v);
  void set_float64(const std::string& key, double v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);

  // Arrays.
  void set_string_array(const std::string& key, const std::vector<std::string>& v);
  void set_float32_array(const std::string& key, const std::vector<float>& v);
  void set_int32_array(const std::string& key, const std::vector<int32_t>& v);
  // An array of any numeric (or bool) element type from `count` packed little-endian values.
  void set_array(const std::string& key, GGUFType elem_type, const void* elems, uint64_t count);

  // Copies one metadata entry as it is from a parsed file (used to copy a vocabulary).
  void copy_value(const std::string& key, const GGUFValue& v);
  void remove(const std::string& key);
  bool has(const std::string& key) const;

  // Adds a tensor of `dims` (dims[0] is the row length, 1 to 4 dims) whose bytes are already
  // encoded as `type`. Throws Error on a duplicate name, bad dims or a wrong byte count.
  void add_tensor(const std::string& name, DType type, std::vector<int64_t> dims, std::vector<uint8_t> data);

  // Adds a tensor whose bytes are produced at write time: fill(first_row, n_rows, out) encodes
  // rows [first_row, first_row + n_rows) into `out` (n_rows * row_bytes bytes), where a row is
  // dims[0] elements and there are dims[1] * dims[2] * ... rows. It is called with consecutive
  // chunks of at most about 32 MiB, so memory stays bounded whatever the tensor's size.
  using RowFill = std::function<void(int64_t first_row, int64_t n_rows, uint8_t* out)>;
  void add_tensor(const std::string& name, DType type, std::vector<int64_t> dims, RowFill fill);

  size_t tensor_count() const { return tensors_.size(); }
  // Size of the file write() produces.
  uint64_t file_size() const;

  // Writes the file; throws Error on I/O failure (and then leaves no file behind). Without
  // tensor_data only the header, the tensor table and the tensors given as bytes are written and
  // the file is extended to its full size, so the tensors produced by a RowFill read as zeros and,
  // on file systems with sparse files, take no disk: a full-size model for tests of loading and
  // memory planning, in no time.
  void write(const std::string& path, bool tensor_data = true) const;

 private:
  struct Entry {
    std::string key;
    std::vector<uint8_t> bytes;  // type tag + encoded value
  };
  struct Tensor {
    std::string name;
    DType type;
    std::vector<int64_t> dims;
    std::vector<uint8_t> data;  // encoded bytes, or empty with `fill`
    RowFill fill;
    int64_t rows = 0, row_bytes = 0, bytes = 0;
  };
  void set_raw(const std::string& key, std::vector<uint8_t> bytes);
  Tensor& new_tensor(const std::string& name, DType type, std::vector<int64_t> dims);
  std::vector<uint8_t> header() const;
  std::vector<Entry> kv_;
  std::vector<Tensor> tensors_;
};

}  // namespace lazyllm
