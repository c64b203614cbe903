#include "format/gguf.h"

#include <cstring>

#include "format/mapped_file.h"
#include "lazyllm/error.h"

namespace lazyllm {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr int kMaxDims = 4;

// Bounds-checked little-endian cursor over the file bytes.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size, const std::string& file) : d_(data), n_(size), file_(file) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return n_ - pos_; }

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(file_ + ": invalid GGUF: " + what + " (at byte " + std::to_string(pos_) + ")");
  }

  const uint8_t* take(size_t bytes, const char* what) {
    if (bytes > remaining())
      fail(std::string("truncated file while reading ") + what + " (need " + std::to_string(bytes) +
           " bytes, " + std::to_string(remaining()) + " left)");
    const uint8_t* p = d_ + pos_;
    pos_ += bytes;
    return p;
  }

  template <typename T>
  T read(const char* what) {
    T v;
    std::memcpy(&v, take(sizeof(T), what), sizeof(T));
    return v;
  }

  std::string_view string(const char* what) {
    uint64_t len = read<uint64_t>(what);
    if (len > remaining())
      fail(std::string(what) + " has length " + std::to_string(len) + ", beyond the end of the file");
    return {reinterpret_cast<const char*>(take(len, what)), static_cast<size_t>(len)};
  }

 private:
  const uint8_t* d_;
  size_t n_;
  size_t pos_ = 0;
  const std::string& file_;
};

size_t scalar_size(GGUFType t) {
  switch (t) {
    case GGUFType::UINT8: case GGUFType::INT8: case GGUFType::BOOL: return 1;
    case GGUFType::UINT16: case GGUFType::INT16: return 2;
    case GGUFType::UINT32: case GGUFType::INT32: case GGUFType::FLOAT32: return 4;
    case GGUFType::UINT64: case GGUFType::INT64: case GGUFType::FLOAT64: return 8;
    default: return 0;
  }
}

bool valid_type(uint32_t t) { return t <= static_cast<uint32_t>(GGUFType::FLOAT64); }

void read_scalar(Reader& r, GGUFType t, GGUFValue& v, const std::string& key) {
  switch (t) {
    case GGUFType::UINT8: v.u = r.read<uint8_t>("u8"); v.i = static_cast<int64_t>(v.u); break;
    case GGUFType::UINT16: v.u = r.read<uint16_t>("u16"); v.i = static_cast<int64_t>(v.u); break;
    case GGUFType::UINT32: v.u = r.read<uint32_t>("u32"); v.i = static_cast<int64_t>(v.u); break;
    case GGUFType::UINT64: v.u = r.read<uint64_t>("u64"); v.i = static_cast<int64_t>(v.u); break;
    case GGUFType::INT8: v.i = r.read<int8_t>("i8"); v.u = static_cast<uint64_t>(v.i); break;
    case GGUFType::INT16: v.i = r.read<int16_t>("i16"); v.u = static_cast<uint64_t>(v.i); break;
    case GGUFType::INT32: v.i = r.read<int32_t>("i32"); v.u = static_cast<uint64_t>(v.i); break;
    case GGUFType::INT64: v.i = r.read<int64_t>("i64"); v.u = static_cast<uint64_t>(v.i); break;
    case GGUFType::FLOAT32: v.f = r.read<float>("f32"); break;
    case GGUFType::FLOAT64: v.f = r.read<double>("f64"); break;
    case GGUFType::BOOL: {
      uint8_t b = r.read<uint8_t>("bool");
      if (b > 1) r.fail("metadata '" + key + "' has bool value " + std::to_string(b));
      v.u = b;
      v.i = b;
      break;
    }
    case GGUFType::STRING: v.str = r.string("string value"); break;
    default: r.fail("metadata '" + key + "' has unsupported value type");
  }
}

}  // namespace

std::string_view gguf_type_name(GGUFType t) {
  static constexpr std::string_view kNames[] = {"uint8", "int8",  "uint16", "int16", "uint32",
                                                "int32", "float32", "bool", "string", "array",
                                                "uint64", "int64", "float64"};
  auto i = static_cast<uint32_t>(t);
  return i < std::size(kNames) ? kNames[i] : "invalid";
}

bool GGUFValue::is_integer() const {
  switch (type) {
    case GGUFType::UINT8: case GGUFType::INT8: case GGUFType::UINT16: case GGUFType::INT16:
    case GGUFType::UINT32: case GGUFType::INT32: case GGUFType::UINT64: case GGUFType::INT64:
      return true;
    default: return false;
  }
}

int64_t GGUFTensor::n_elements() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

std::string GGUFFile::make_resident(bool private_copy) const {
  return file_ ? file_->make_resident(private_copy) : "in memory";
}

std::string GGUFFile::resident() const { return file_ ? file_->resident() : "in memory"; }

std::unique_ptr<GGUFFile> GGUFFile::open(const std::string& path) {
  auto mapped = std::make_unique<MappedFile>(path);
  std::unique_ptr<GGUFFile> f(new GGUFFile());
  f->data_ = mapped->data();
  f->size_ = mapped->size();
  f->name_ = path;
  f->file_ = std::move(mapped);
  f->parse_all();
  return f;
}

std::unique_ptr<GGUFFile> GGUFFile::parse(const uint8_t* data, size_t size, std::string name) {
  std::unique_ptr<GGUFFile> f(new GGUFFile());
  f->data_ = data;
  f->size_ = size;
  f->name_ = std::move(name);
  f->parse_all();
  return f;
}

GGUFFile::~GGUFFile() = default;

void GGUFFile::parse_all() {
  Reader r(data_, size_, name_);
  if (size_ < 4 || r.read<uint32_t>("magic") != kMagic) r.fail("bad magic (not a GGUF file)");
  version_ = r.read<uint32_t>("version");
  if (version_ == 1) r.fail("GGUF version 1 is not supported (re-convert the model)");
  if (version_ != 2 && version_ != 3) r.fail("unknown GGUF version " + std::to_string(version_));
  uint64_t n_tensors = r.read<uint64_t>("tensor count");
  uint64_t n_kv = r.read<uint64_t>("metadata count");
  // Every metadata entry takes at least 8+4 bytes and every tensor info at least 8+4+8+4+8.
  if (n_kv > r.remaining() / 12) r.fail("metadata count " + std::to_string(n_kv) + " is larger than the file allows");
  if (n_tensors > r.remaining() / 32) r.fail("tensor count " + std::to_string(n_tensors) + " is larger than the file allows");

  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key(r.string("metadata key"));
    uint32_t t = r.read<uint32_t>("metadata type");
    if (!valid_type(t)) r.fail("metadata '" + key + "' has invalid type " + std::to_string(t));
    GGUFValue v;
    v.type = static_cast<GGUFType>(t);
    if (v.type == GGUFType::ARRAY) {
      uint32_t et = r.read<uint32_t>("array type");
      if (!valid_type(et)) r.fail("array '" + key + "' has invalid element type " + std::to_string(et));
      v.elem_type = static_cast<GGUFType>(et);
      if (v.elem_type == GGUFType::ARRAY) r.fail("array '" + key + "' is nested, which is not supported");
      v.count = r.read<uint64_t>("array count");
      if (v.elem_type == GGUFType::STRING) {
        if (v.count > r.remaining() / 8)
          r.fail("array '" + key + "' claims " + std::to_string(v.count) + " strings, more than the file holds");
        v.strings.reserve(v.count);
        for (uint64_t i = 0; i < v.count; ++i) v.strings.push_back(r.string("array string"));
      } else {
        size_t es = scalar_size(v.elem_type);
        if (v.count > r.remaining() / es)
          r.fail("array '" + key + "' claims " + std::to_string(v.count) + " elements, more than the file holds");
        v.elems = r.take(v.count * es, "array elements");
      }
    } else {
      read_scalar(r, v.type, v, key);
    }
    if (!kv_.emplace(key, std::move(v)).second) r.fail("duplicate metadata key '" + key + "'");
  }

  if (const GGUFValue* a = find("general.alignment")) {
    if (!a->is_integer() || a->u == 0 || (a->u & (a->u - 1)) != 0 || a->u > (1u << 20))
      r.fail("general.alignment must be a power of two");
    alignment_ = a->u;
  }

  tensors_.reserve(n_tensors);
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GGUFTensor t;
    t.name = std::string(r.string("tensor name"));
    uint32_t nd = r.read<uint32_t>("tensor dimension count");
    if (nd == 0 || nd > kMaxDims)
      r.fail("tensor '" + t.name + "' has " + std::to_string(nd) + " dimensions (1 to 4 allowed)");
    int64_t n_el = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      uint64_t dim = r.read<uint64_t>("tensor dimension");
      if (dim == 0 || dim > (uint64_t{1} << 40) || n_el > INT64_MAX / static_cast<int64_t>(dim))
        r.fail("tensor '" + t.name + "' has an invalid dimension " + std::to_string(dim));
      n_el *= static_cast<int64_t>(dim);
      t.dims.push_back(static_cast<int64_t>(dim));
    }
    uint32_t type = r.read<uint32_t>("tensor type");
    auto info = dtype_info(type);
    if (!info)
      r.fail("tensor '" + t.name + "' has type " + std::string(ggml_type_name(type)) + " (" +
             std::to_string(type) + "), which this engine does not support (f32, f16, bf16, q8_0, q4_0, q4_K, q6_K)");
    t.type = info->type;
    if (t.dims[0] % info->block_elems != 0)
      r.fail("tensor '" + t.name + "' has row length " + std::to_string(t.dims[0]) +
             ", not a multiple of the " + std::string(info->name) + " block size " + std::to_string(info->block_elems));
    // n_el can reach 2^63: bound the block count by the file size before multiplying, or the
    // byte size overflows (and could wrap to a small value that passes the range check below).
    const uint64_t n_blocks = static_cast<uint64_t>(n_el / info->block_elems);
    if (n_blocks > size_ / static_cast<uint64_t>(info->block_bytes))
      r.fail("tensor '" + t.name + "' (" + std::to_string(n_el) + " elements of " + std::string(info->name) +
             ") is larger than the whole file");
    t.n_bytes = static_cast<int64_t>(n_blocks) * info->block_bytes;
    t.offset = r.read<uint64_t>("tensor offset");
    if (t.offset % alignment_ != 0) r.fail("tensor '" + t.name + "' offset is not aligned");
    if (tensor_index_.count(t.name)) r.fail("duplicate tensor name '" + t.name + "'");
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  uint64_t data_start = (r.pos() + alignment_ - 1) / alignment_ * alignment_;
  if (n_tensors > 0 && data_start > size_) r.fail("tensor data section starts beyond the end of the file");
  uint64_t data_size = n_tensors > 0 ? size_ - data_start : 0;
  for (auto& t : tensors_) {
    if (t.offset > data_size || static_cast<uint64_t>(t.n_bytes) > data_size - t.offset)
      throw Error(name_ + ": invalid GGUF: tensor '" + t.name + "' data (offset " + std::to_string(t.offset) +
                  ", " + std::to_string(t.n_bytes) + " bytes) lies beyond the end of the file (truncated?)");
    t.data = data_ + data_start + t.offset;
  }
}

const GGUFValue* GGUFFile::find(std::string_view key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const GGUFTensor* GGUFFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
[[noreturn]] void bad_type(const std::string& file, std::string_view key, const GGUFValue& v, const char* want) {
  throw Error(file + ": metadata '" + std::string(key) + "' is " + std::string(gguf_type_name(v.type)) +
              ", expected " + want);
}
}  // namespace

#define LAZYLLM_REQUIRE_KEY(key)                                                        \
  const GGUFValue* v = find(key);                                                     \
  if (!v) throw Error(name_ + ": required metadata '" + std::string(key) + "' is missing")

uint64_t GGUFFile::get_uint(std::string_view key) const {
  LAZYLLM_REQUIRE_KEY(key);
  if (!v->is_integer() || v->i < 0) bad_type(name_, key, *v, "a non-negative integer");
  return v->u;
}

int64_t GGUFFile::get_int(std::string_view key) const {
  LAZYLLM_REQUIRE_KEY(key);
  if (!v->is_integer()) bad_type(name_, key, *v, "an integer");
  return v->i;
}

double GGUFFile::get_float(std::string_view key) const {
  LAZYLLM_REQUIRE_KEY(key);
  if (v->is_float()) return v->f;
  if (v->is_integer()) return static_cast<double>(v->i);
  bad_type(name_, key, *v, "a number");
}

bool GGUFFile::get_bool(std::string_view key) const {
  LAZYLLM_REQUIRE_KEY(key);
  if (v->type != GGUFType::BOOL) bad_type(name_, key, *v, "a bool");
  return v->u != 0;
}

std::string_view GGUFFile::get_string(std::string_view key) const {
  LAZYLLM_REQUIRE_KEY(key);
  if (v->type != GGUFType::STRING) bad_type(name_, key, *v, "a string");
  return v->str;
}

const std::vector<std::string_view>& GGUFFile::get_string_array(std::string_view key) const {
  LAZYLLM_REQUIRE_KEY(key);
  if (v->type != GGUFType::ARRAY || v->elem_type != GGUFType::STRING) bad_type(name_, key, *v, "an array of strings");
  return v->strings;
}

std::vector<float> GGUFFile::get_float_array(std::string_view key) const {
  LAZYLLM_REQUIRE_KEY(key);
  if (v->type != GGUFType::ARRAY) bad_type(name_, key, *v, "an array of numbers");
  std::vector<float> out(v->count);
  for (uint64_t i = 0; i < v->count; ++i) {
    const uint8_t* p = v->elems + i * scalar_size(v->elem_type);
    switch (v->elem_type) {
      case GGUFType::FLOAT32: { float x; std::memcpy(&x, p, 4); out[i] = x; break; }
      case GGUFType::FLOAT64: { double x; std::memcpy(&x, p, 8); out[i] = static_cast<float>(x); break; }
      default: bad_type(name_, key, *v, "an array of floats");
    }
  }
  return out;
}

std::vector<int64_t> GGUFFile::get_int_array(std::string_view key) const {
  LAZYLLM_REQUIRE_KEY(key);
  if (v->type != GGUFType::ARRAY) bad_type(name_, key, *v, "an array of integers");
  std::vector<int64_t> out(v->count);
  for (uint64_t i = 0; i < v->count; ++i) {
    const uint8_t* p = v->elems + i * scalar_size(v->elem_type);
    switch (v->elem_type) {
      case GGUFType::INT8: out[i] = static_cast<int8_t>(*p); break;
      case GGUFType::UINT8: out[i] = *p; break;
      case GGUFType::INT16: { int16_t x; std::memcpy(&x, p, 2); out[i] = x; break; }
      case GGUFType::UINT16: { uint16_t x; std::memcpy(&x, p, 2); out[i] = x; break; }
      case GGUFType::INT32: { int32_t x; std::memcpy(&x, p, 4); out[i] = x; break; }
      case GGUFType::UINT32: { uint32_t x; std::memcpy(&x, p, 4); out[i] = x; break; }
      case GGUFType::INT64: { int64_t x; std::memcpy(&x, p, 8); out[i] = x; break; }
      case GGUFType::UINT64: { uint64_t x; std::memcpy(&x, p, 8); out[i] = static_cast<int64_t>(x); break; }
      default: bad_type(name_, key, *v, "an array of integers");
    }
  }
  return out;
}

#undef LAZYLLM_REQUIRE_KEY

uint64_t GGUFFile::get_uint_or(std::string_view key, uint64_t def) const { return has(key) ? get_uint(key) : def; }
double GGUFFile::get_float_or(std::string_view key, double def) const { return has(key) ? get_float(key) : def; }
bool GGUFFile::get_bool_or(std::string_view key, bool def) const { return has(key) ? get_bool(key) : def; }
std::string GGUFFile::get_string_or(std::string_view key, std::string_view def) const {
  return std::string(has(key) ? get_string(key) : def);
}

}  // namespace lazyllm
