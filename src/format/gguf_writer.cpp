#include "format/gguf_writer.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "lazyllm/error.h"

namespace lazyllm {
namespace {

constexpr uint64_t kAlignment = 32;

template <typename T>
void put(std::vector<uint8_t>& b, T v) {
  // resize + memcpy rather than insert: GCC 12 reports a bogus -Wstringop-overflow on the latter.
  const size_t at = b.size();
  b.resize(at + sizeof(T));
  std::memcpy(b.data() + at, &v, sizeof(T));
}

void put_str(std::vector<uint8_t>& b, std::string_view s) {
  put<uint64_t>(b, s.size());
  b.insert(b.end(), s.begin(), s.end());
}

std::vector<uint8_t> tagged(GGUFType t) {
  std::vector<uint8_t> b;
  put<uint32_t>(b, static_cast<uint32_t>(t));
  return b;
}

size_t scalar_bytes(GGUFType t) {
  switch (t) {
    case GGUFType::UINT8: case GGUFType::INT8: case GGUFType::BOOL: return 1;
    case GGUFType::UINT16: case GGUFType::INT16: return 2;
    case GGUFType::UINT32: case GGUFType::INT32: case GGUFType::FLOAT32: return 4;
    default: return 8;
  }
}

}  // namespace

void GGUFWriter::set_raw(const std::string& key, std::vector<uint8_t> bytes) {
  for (auto& e : kv_)
    if (e.key == key) {
      e.bytes = std::move(bytes);
      return;
    }
  kv_.push_back({key, std::move(bytes)});
}

void GGUFWriter::set_uint32(const std::string& k, uint32_t v) { auto b = tagged(GGUFType::UINT32); put(b, v); set_raw(k, b); }
void GGUFWriter::set_uint64(const std::string& k, uint64_t v) { auto b = tagged(GGUFType::UINT64); put(b, v); set_raw(k, b); }
void GGUFWriter::set_int32(const std::string& k, int32_t v) { auto b = tagged(GGUFType::INT32); put(b, v); set_raw(k, b); }
void GGUFWriter::set_float32(const std::string& k, float v) { auto b = tagged(GGUFType::FLOAT32); put(b, v); set_raw(k, b); }
void GGUFWriter::set_bool(const std::string& k, bool v) { auto b = tagged(GGUFType::BOOL); put<uint8_t>(b, v ? 1 : 0); set_raw(k, b); }
void GGUFWriter::set_string(const std::string& k, const std::string& v) { auto b = tagged(GGUFType::STRING); put_str(b, v); set_raw(k, b); }

void GGUFWriter::set_string_array(const std::string& k, const std::vector<std::string>& v) {
  auto b = tagged(GGUFType::ARRAY);
  put<uint32_t>(b, static_cast<uint32_t>(GGUFType::STRING));
  put<uint64_t>(b, v.size());
  for (const auto& s : v) put_str(b, s);
  set_raw(k, b);
}

void GGUFWriter::set_float32_array(const std::string& k, const std::vector<float>& v) {
  auto b = tagged(GGUFType::ARRAY);
  put<uint32_t>(b, static_cast<uint32_t>(GGUFType::FLOAT32));
  put<uint64_t>(b, v.size());
  for (float x : v) put(b, x);
  set_raw(k, b);
}

void GGUFWriter::set_int32_array(const std::string& k, const std::vector<int32_t>& v) {
  auto b = tagged(GGUFType::ARRAY);
  put<uint32_t>(b, static_cast<uint32_t>(GGUFType::INT32));
  put<uint64_t>(b, v.size());
  for (int32_t x : v) put(b, x);
  set_raw(k, b);
}

void GGUFWriter::copy_value(const std::string& k, const GGUFValue& v) {
  auto b = tagged(v.type);
  switch (v.type) {
    case GGUFType::STRING: put_str(b, v.str); break;
    case GGUFType::FLOAT32: put(b, static_cast<float>(v.f)); break;
    case GGUFType::FLOAT64: put(b, v.f); break;
    case GGUFType::ARRAY:
      put<uint32_t>(b, static_cast<uint32_t>(v.elem_type));
      put<uint64_t>(b, v.count);
      if (v.elem_type == GGUFType::STRING) {
        for (auto s : v.strings) put_str(b, s);
      } else {
        b.insert(b.end(), v.elems, v.elems + v.count * scalar_bytes(v.elem_type));
      }
      break;
    default: {  // integers and bool: little-endian low bytes of the widened value
      const size_t n = scalar_bytes(v.type);
      for (size_t i = 0; i < n; ++i) b.push_back(static_cast<uint8_t>(v.u >> (8 * i)));
    }
  }
  set_raw(k, b);
}

void GGUFWriter::add_tensor(const std::string& name, DType type, std::vector<int64_t> dims, std::vector<uint8_t> data) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  if (static_cast<int64_t>(data.size()) != row_bytes(type, n)) throw Error("GGUFWriter: tensor '" + name + "' has the wrong byte size");
  const int64_t bytes = static_cast<int64_t>(data.size());
  tensors_.push_back({name, type, std::move(dims), std::move(data), {}, bytes});
}

void GGUFWriter::add_tensor(const std::string& name, DType type, std::vector<int64_t> dims,
                            std::function<void(uint8_t*)> fill) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  if (dims.empty() || dims[0] % dtype_info(type).block_elems != 0)
    throw Error("GGUFWriter: tensor '" + name + "' row length does not fit its type's blocks");
  const int64_t bytes = row_bytes(type, n);
  tensors_.push_back({name, type, std::move(dims), {}, std::move(fill), bytes});
}

void GGUFWriter::write(const std::string& path) const {
  std::vector<uint8_t> head;
  put<uint32_t>(head, 0x46554747);
  put<uint32_t>(head, 3);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, kv_.size() + 1);
  put_str(head, "general.alignment");
  put<uint32_t>(head, static_cast<uint32_t>(GGUFType::UINT32));
  put<uint32_t>(head, static_cast<uint32_t>(kAlignment));
  for (const auto& e : kv_) {
    put_str(head, e.key);
    head.insert(head.end(), e.bytes.begin(), e.bytes.end());
  }
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    put_str(head, t.name);
    put<uint32_t>(head, static_cast<uint32_t>(t.dims.size()));
    for (int64_t d : t.dims) put<uint64_t>(head, static_cast<uint64_t>(d));
    put<uint32_t>(head, static_cast<uint32_t>(t.type));
    put<uint64_t>(head, offset);
    offset += (static_cast<uint64_t>(t.bytes) + kAlignment - 1) / kAlignment * kAlignment;
  }
  head.resize((head.size() + kAlignment - 1) / kAlignment * kAlignment, 0);

  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error("cannot write '" + tmp + "'");
    out.write(reinterpret_cast<const char*>(head.data()), static_cast<std::streamsize>(head.size()));
    static const char zeros[kAlignment] = {};
    std::vector<uint8_t> buf;
    for (const auto& t : tensors_) {
      const uint8_t* p = t.data.data();
      if (t.fill) {
        buf.resize(static_cast<size_t>(t.bytes));
        t.fill(buf.data());
        p = buf.data();
      }
      out.write(reinterpret_cast<const char*>(p), static_cast<std::streamsize>(t.bytes));
      out.write(zeros, static_cast<std::streamsize>((kAlignment - t.bytes % kAlignment) % kAlignment));
    }
    if (!out.flush()) throw Error("write to '" + tmp + "' failed (disk full?)");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw Error("cannot rename '" + tmp + "' to '" + path + "': " + ec.message());
}

}  // namespace lazyllm
