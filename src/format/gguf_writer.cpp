#include "format/gguf_writer.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>

#include "lazyllm/error.h"

namespace lazyllm {
namespace {

constexpr uint64_t kAlign = GGUFWriter::kAlignment;
constexpr int64_t kChunkBytes = int64_t{32} << 20;  // fill/write granularity
constexpr size_t kMaxTensorName = 63;               // ggml's GGML_MAX_NAME - 1

uint64_t align_up(uint64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

template <typename T>
void put(std::vector<uint8_t>& b, T v) {
  // resize + memcpy rather than insert: GCC 12 reports a bogus -Wstringop-overflow on the latter.
  const size_t at = b.size();
  b.resize(at + sizeof(T));
  std::memcpy(b.data() + at, &v, sizeof(T));
}

void put_bytes(std::vector<uint8_t>& b, const void* p, size_t n) {
  const size_t at = b.size();
  b.resize(at + n);
  if (n) std::memcpy(b.data() + at, p, n);
}

void put_str(std::vector<uint8_t>& b, std::string_view s) {
  put<uint64_t>(b, s.size());
  put_bytes(b, s.data(), s.size());
}

std::vector<uint8_t> tagged(GGUFType t) {
  std::vector<uint8_t> b;
  put<uint32_t>(b, static_cast<uint32_t>(t));
  return b;
}

template <typename T>
std::vector<uint8_t> scalar(GGUFType t, T v) {
  auto b = tagged(t);
  put(b, v);
  return b;
}

// Size of a numeric (or bool) value; 0 for string, array and unknown types.
size_t scalar_bytes(GGUFType t) {
  switch (t) {
    case GGUFType::UINT8: case GGUFType::INT8: case GGUFType::BOOL: return 1;
    case GGUFType::UINT16: case GGUFType::INT16: return 2;
    case GGUFType::UINT32: case GGUFType::INT32: case GGUFType::FLOAT32: return 4;
    case GGUFType::UINT64: case GGUFType::INT64: case GGUFType::FLOAT64: return 8;
    default: return 0;
  }
}

// Removes the temporary file unless released (write() succeeded and renamed it).
struct TempFile {
  std::string path;
  std::FILE* f = nullptr;
  bool keep = false;
  ~TempFile() {
    if (f) std::fclose(f);
    if (!keep) std::remove(path.c_str());
  }
};

}  // namespace

void GGUFWriter::set_raw(const std::string& key, std::vector<uint8_t> bytes) {
  // The writer owns the layout: it always writes general.alignment = 32 itself.
  if (key == "general.alignment") throw Error("GGUFWriter: general.alignment is set by the writer (always 32)");
  for (auto& e : kv_)
    if (e.key == key) {
      e.bytes = std::move(bytes);
      return;
    }
  kv_.push_back({key, std::move(bytes)});
}

void GGUFWriter::set_uint8(const std::string& k, uint8_t v) { set_raw(k, scalar(GGUFType::UINT8, v)); }
void GGUFWriter::set_int8(const std::string& k, int8_t v) { set_raw(k, scalar(GGUFType::INT8, v)); }
void GGUFWriter::set_uint16(const std::string& k, uint16_t v) { set_raw(k, scalar(GGUFType::UINT16, v)); }
void GGUFWriter::set_int16(const std::string& k, int16_t v) { set_raw(k, scalar(GGUFType::INT16, v)); }
void GGUFWriter::set_uint32(const std::string& k, uint32_t v) { set_raw(k, scalar(GGUFType::UINT32, v)); }
void GGUFWriter::set_int32(const std::string& k, int32_t v) { set_raw(k, scalar(GGUFType::INT32, v)); }
void GGUFWriter::set_uint64(const std::string& k, uint64_t v) { set_raw(k, scalar(GGUFType::UINT64, v)); }
void GGUFWriter::set_int64(const std::string& k, int64_t v) { set_raw(k, scalar(GGUFType::INT64, v)); }
void GGUFWriter::set_float32(const std::string& k, float v) { set_raw(k, scalar(GGUFType::FLOAT32, v)); }
void GGUFWriter::set_float64(const std::string& k, double v) { set_raw(k, scalar(GGUFType::FLOAT64, v)); }
void GGUFWriter::set_bool(const std::string& k, bool v) { set_raw(k, scalar<uint8_t>(GGUFType::BOOL, v ? 1 : 0)); }

void GGUFWriter::set_string(const std::string& k, const std::string& v) {
  auto b = tagged(GGUFType::STRING);
  put_str(b, v);
  set_raw(k, std::move(b));
}

void GGUFWriter::set_string_array(const std::string& k, const std::vector<std::string>& v) {
  auto b = tagged(GGUFType::ARRAY);
  put<uint32_t>(b, static_cast<uint32_t>(GGUFType::STRING));
  put<uint64_t>(b, v.size());
  for (const auto& s : v) put_str(b, s);
  set_raw(k, std::move(b));
}

void GGUFWriter::set_array(const std::string& k, GGUFType elem_type, const void* elems, uint64_t count) {
  const size_t es = scalar_bytes(elem_type);
  if (es == 0)
    throw Error("GGUFWriter: array '" + k + "' of " + std::string(gguf_type_name(elem_type)) +
                " needs set_string_array (strings) or is not allowed (nested arrays)");
  auto b = tagged(GGUFType::ARRAY);
  put<uint32_t>(b, static_cast<uint32_t>(elem_type));
  put<uint64_t>(b, count);
  put_bytes(b, elems, count * es);
  set_raw(k, std::move(b));
}

void GGUFWriter::set_float32_array(const std::string& k, const std::vector<float>& v) {
  set_array(k, GGUFType::FLOAT32, v.data(), v.size());
}

void GGUFWriter::set_int32_array(const std::string& k, const std::vector<int32_t>& v) {
  set_array(k, GGUFType::INT32, v.data(), v.size());
}

void GGUFWriter::copy_value(const std::string& k, const GGUFValue& v) {
  switch (v.type) {
    case GGUFType::STRING: {
      auto b = tagged(GGUFType::STRING);
      put_str(b, v.str);
      set_raw(k, std::move(b));
      return;
    }
    case GGUFType::FLOAT32: set_float32(k, static_cast<float>(v.f)); return;
    case GGUFType::FLOAT64: set_float64(k, v.f); return;
    case GGUFType::ARRAY: {
      if (v.elem_type != GGUFType::STRING) {
        set_array(k, v.elem_type, v.elems, v.count);
        return;
      }
      auto b = tagged(GGUFType::ARRAY);
      put<uint32_t>(b, static_cast<uint32_t>(GGUFType::STRING));
      put<uint64_t>(b, v.strings.size());
      for (auto s : v.strings) put_str(b, s);
      set_raw(k, std::move(b));
      return;
    }
    default: {  // integers and bool: the little-endian low bytes of the widened value
      const size_t n = scalar_bytes(v.type);
      if (n == 0) throw Error("GGUFWriter: metadata '" + k + "' has an invalid type");
      auto b = tagged(v.type);
      for (size_t i = 0; i < n; ++i) b.push_back(static_cast<uint8_t>(v.u >> (8 * i)));
      set_raw(k, std::move(b));
    }
  }
}

void GGUFWriter::remove(const std::string& key) {
  std::erase_if(kv_, [&](const Entry& e) { return e.key == key; });
}

bool GGUFWriter::has(const std::string& key) const {
  return std::any_of(kv_.begin(), kv_.end(), [&](const Entry& e) { return e.key == key; });
}

GGUFWriter::Tensor& GGUFWriter::new_tensor(const std::string& name, DType type, std::vector<int64_t> dims) {
  const auto where = "GGUFWriter: tensor '" + name + "' ";
  if (name.size() > kMaxTensorName) throw Error(where + "has a name longer than 63 bytes");
  for (const auto& t : tensors_)
    if (t.name == name) throw Error(where + "is added twice");
  if (dims.empty() || dims.size() > 4) throw Error(where + "needs 1 to 4 dimensions");
  int64_t rows = 1;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] <= 0 || dims[i] > (int64_t{1} << 40)) throw Error(where + "has an invalid dimension " + std::to_string(dims[i]));
    if (i > 0) {
      if (rows > (int64_t{1} << 50) / dims[i]) throw Error(where + "is too large");
      rows *= dims[i];
    }
  }
  const DTypeInfo& info = dtype_info(type);
  if (dims[0] % info.block_elems != 0)
    throw Error(where + "has row length " + std::to_string(dims[0]) + ", not a multiple of the " +
                std::string(info.name) + " block size " + std::to_string(info.block_elems));
  Tensor t;
  t.name = name;
  t.type = type;
  t.dims = std::move(dims);
  t.rows = rows;
  t.row_bytes = row_bytes(type, t.dims[0]);
  if (rows > (int64_t{1} << 50) / t.row_bytes) throw Error(where + "is too large");
  t.bytes = rows * t.row_bytes;
  return tensors_.emplace_back(std::move(t));
}

void GGUFWriter::add_tensor(const std::string& name, DType type, std::vector<int64_t> dims, std::vector<uint8_t> data) {
  // Validate before taking the data, so a bad call leaves no half-added tensor behind.
  Tensor& t = new_tensor(name, type, std::move(dims));
  if (static_cast<int64_t>(data.size()) != t.bytes) {
    const auto msg = "GGUFWriter: tensor '" + name + "' has " + std::to_string(data.size()) + " bytes, expected " +
                     std::to_string(t.bytes);
    tensors_.pop_back();
    throw Error(msg);
  }
  t.data = std::move(data);
}

void GGUFWriter::add_tensor(const std::string& name, DType type, std::vector<int64_t> dims, RowFill fill) {
  if (!fill) throw Error("GGUFWriter: tensor '" + name + "' has no fill function");
  new_tensor(name, type, std::move(dims)).fill = std::move(fill);
}

std::vector<uint8_t> GGUFWriter::header() const {
  std::vector<uint8_t> head;
  put<uint32_t>(head, 0x46554747);  // "GGUF"
  put<uint32_t>(head, 3);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, kv_.size() + 1);
  put_str(head, "general.alignment");
  put<uint32_t>(head, static_cast<uint32_t>(GGUFType::UINT32));
  put<uint32_t>(head, kAlignment);
  for (const auto& e : kv_) {
    put_str(head, e.key);
    put_bytes(head, e.bytes.data(), e.bytes.size());
  }
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    put_str(head, t.name);
    put<uint32_t>(head, static_cast<uint32_t>(t.dims.size()));
    for (int64_t d : t.dims) put<uint64_t>(head, static_cast<uint64_t>(d));
    put<uint32_t>(head, static_cast<uint32_t>(t.type));
    put<uint64_t>(head, offset);
    offset += align_up(static_cast<uint64_t>(t.bytes));
  }
  head.resize(align_up(head.size()), 0);
  return head;
}

uint64_t GGUFWriter::file_size() const {
  uint64_t n = header().size();
  for (const auto& t : tensors_) n += align_up(static_cast<uint64_t>(t.bytes));
  return n;
}

void GGUFWriter::write(const std::string& path, bool tensor_data) const {
  TempFile tmp;
  tmp.path = path + ".tmp" + std::to_string(::getpid());
  tmp.f = std::fopen(tmp.path.c_str(), "wb");
  if (!tmp.f) throw Error("cannot write '" + tmp.path + "': " + std::strerror(errno));
  std::setvbuf(tmp.f, nullptr, _IONBF, 0);  // chunks are large; no point copying them again
  auto emit = [&tmp](const uint8_t* p, size_t n) {
    if (n && std::fwrite(p, 1, n, tmp.f) != n)
      throw Error("write to '" + tmp.path + "' failed: " + std::strerror(errno) + " (disk full?)");
  };

  const std::vector<uint8_t> head = header();
  emit(head.data(), head.size());
  if (!tensor_data) {
    if (std::fflush(tmp.f) != 0 || ::ftruncate(::fileno(tmp.f), static_cast<off_t>(file_size())) != 0)
      throw Error("cannot extend '" + tmp.path + "': " + std::strerror(errno));
    // Tensors given as bytes (small: rope factors) are still written, at their offsets; only
    // the produced ones stay zeros.
    uint64_t offset = head.size();
    for (const auto& t : tensors_) {
      if (!t.fill && !t.data.empty()) {
        if (::fseeko(tmp.f, static_cast<off_t>(offset), SEEK_SET) != 0)
          throw Error("cannot seek in '" + tmp.path + "': " + std::strerror(errno));
        emit(t.data.data(), t.data.size());
      }
      offset += align_up(static_cast<uint64_t>(t.bytes));
    }
  }

  // Tensor bytes: the next chunk is filled while the previous one is being written.
  static const uint8_t zeros[kAlign] = {};
  std::vector<uint8_t> bufs[2];
  int cur = 0;
  std::future<void> pending;
  auto finish_pending = [&] {
    if (pending.valid()) pending.get();  // rethrows a write error
  };
  try {
    for (const auto& t : tensors_) {
      if (!tensor_data) break;
      if (!t.fill) {
        finish_pending();
        emit(t.data.data(), t.data.size());
      } else {
        const int64_t chunk_rows = std::max<int64_t>(1, kChunkBytes / t.row_bytes);
        for (int64_t r = 0; r < t.rows; r += chunk_rows) {
          const int64_t n = std::min(chunk_rows, t.rows - r);
          auto& buf = bufs[cur];
          buf.resize(static_cast<size_t>(n * t.row_bytes));
          t.fill(r, n, buf.data());
          finish_pending();
          pending = std::async(std::launch::async, [&emit, &buf] { emit(buf.data(), buf.size()); });
          cur ^= 1;
        }
        finish_pending();
      }
      emit(zeros, static_cast<size_t>(align_up(t.bytes) - t.bytes));
    }
  } catch (...) {
    if (pending.valid()) pending.wait();  // never leave the writer thread using freed buffers
    throw;
  }
  const int rc = std::fclose(tmp.f);
  tmp.f = nullptr;
  if (rc != 0) throw Error("write to '" + tmp.path + "' failed: " + std::strerror(errno) + " (disk full?)");
  std::error_code ec;
  std::filesystem::rename(tmp.path, path, ec);
  if (ec) throw Error("cannot rename '" + tmp.path + "' to '" + path + "': " + ec.message());
  tmp.keep = true;
}

}  // namespace lazyllm
