// GGUF writer -> reader round trips: every metadata type, every tensor type, the file layout
// (alignment, zero padding), streamed tensors, and the writer's own input checks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "format/gguf.h"
#include "format/gguf_writer.h"
#include "kernels/cpu/quant.h"
#include "lazyllm/error.h"
#include "test_util.h"
#include "util/splitmix.h"

namespace lazyllm {
namespace {

const DType kAllTypes[] = {DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<float> random_floats(int64_t n, uint64_t seed, float scale = 1.0f) {
  std::vector<float> v(n);
  for (auto& x : v) x = scale * (static_cast<float>(splitmix64(seed) >> 40) / static_cast<float>(1 << 24) * 2 - 1);
  return v;
}

std::vector<uint8_t> encode(DType t, const std::vector<float>& v) {
  std::vector<uint8_t> out(row_bytes(t, static_cast<int64_t>(v.size())));
  quantize_row(t, v.data(), out.data(), static_cast<int64_t>(v.size()));
  return out;
}

template <typename T>
std::vector<T> array_as(const GGUFValue& v) {
  std::vector<T> out(v.count);
  if (v.count) std::memcpy(out.data(), v.elems, v.count * sizeof(T));
  return out;
}

TEST(GGUFWriter, RoundTripsEveryMetadataType) {
  GGUFWriter w;
  w.set_uint8("u8", 255);
  w.set_int8("i8", -128);
  w.set_uint16("u16", 65535);
  w.set_int16("i16", -32768);
  w.set_uint32("u32", 4000000000u);
  w.set_int32("i32", std::numeric_limits<int32_t>::min());
  w.set_uint64("u64", std::numeric_limits<uint64_t>::max());
  w.set_int64("i64", std::numeric_limits<int64_t>::min());
  w.set_float32("f32", 0.1f);
  w.set_float64("f64", 1e300);
  w.set_bool("t", true);
  w.set_bool("f", false);
  w.set_string("s", "h\xC3\xA9llo \xE2\x96\x81world");
  w.set_string("empty", "");
  w.set_string("nul", std::string("a\0b", 3));
  w.set_string_array("strs", {"x", "", "\xF0\x9F\x98\x80", std::string(1000, 'z')});
  w.set_string_array("no_strs", {});
  w.set_float32_array("f32s", {1.5f, -2.25f, 1e-30f});
  w.set_int32_array("i32s", {-1, 0, 1 << 30});
  const uint8_t u8s[] = {0, 7, 255};
  const int8_t i8s[] = {-128, 0, 127};
  const uint16_t u16s[] = {1, 65535};
  const int16_t i16s[] = {-32768, 32767};
  const uint32_t u32s[] = {0, 4000000000u};
  const uint64_t u64s[] = {1, std::numeric_limits<uint64_t>::max()};
  const int64_t i64s[] = {std::numeric_limits<int64_t>::min(), 5};
  const double f64s[] = {0.5, -1e-300};
  const uint8_t bools[] = {1, 0, 1};
  w.set_array("u8s", GGUFType::UINT8, u8s, 3);
  w.set_array("i8s", GGUFType::INT8, i8s, 3);
  w.set_array("u16s", GGUFType::UINT16, u16s, 2);
  w.set_array("i16s", GGUFType::INT16, i16s, 2);
  w.set_array("u32s", GGUFType::UINT32, u32s, 2);
  w.set_array("u64s", GGUFType::UINT64, u64s, 2);
  w.set_array("i64s", GGUFType::INT64, i64s, 2);
  w.set_array("f64s", GGUFType::FLOAT64, f64s, 2);
  w.set_array("bools", GGUFType::BOOL, bools, 3);
  w.set_array("no_ints", GGUFType::INT32, nullptr, 0);
  const auto path = test::temp_path("writer-meta.gguf").string();
  w.write(path);

  auto f = GGUFFile::open(path);
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->alignment(), 32u);
  EXPECT_EQ(f->get_uint("general.alignment"), 32u);
  EXPECT_EQ(f->metadata().size(), 30u);
  auto type_of = [&](const char* k) { return f->find(k)->type; };
  EXPECT_EQ(type_of("u8"), GGUFType::UINT8);
  EXPECT_EQ(f->get_uint("u8"), 255u);
  EXPECT_EQ(type_of("i8"), GGUFType::INT8);
  EXPECT_EQ(f->get_int("i8"), -128);
  EXPECT_EQ(type_of("u16"), GGUFType::UINT16);
  EXPECT_EQ(f->get_uint("u16"), 65535u);
  EXPECT_EQ(type_of("i16"), GGUFType::INT16);
  EXPECT_EQ(f->get_int("i16"), -32768);
  EXPECT_EQ(type_of("u32"), GGUFType::UINT32);
  EXPECT_EQ(f->get_uint("u32"), 4000000000u);
  EXPECT_EQ(type_of("i32"), GGUFType::INT32);
  EXPECT_EQ(f->get_int("i32"), std::numeric_limits<int32_t>::min());
  EXPECT_EQ(type_of("u64"), GGUFType::UINT64);
  EXPECT_EQ(f->find("u64")->u, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(type_of("i64"), GGUFType::INT64);
  EXPECT_EQ(f->get_int("i64"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(type_of("f32"), GGUFType::FLOAT32);
  EXPECT_EQ(static_cast<float>(f->get_float("f32")), 0.1f);
  EXPECT_EQ(type_of("f64"), GGUFType::FLOAT64);
  EXPECT_EQ(f->get_float("f64"), 1e300);
  EXPECT_TRUE(f->get_bool("t"));
  EXPECT_FALSE(f->get_bool("f"));
  EXPECT_EQ(f->get_string("s"), "h\xC3\xA9llo \xE2\x96\x81world");
  EXPECT_EQ(f->get_string("empty"), "");
  EXPECT_EQ(f->get_string("nul"), std::string_view("a\0b", 3));
  const auto& strs = f->get_string_array("strs");
  ASSERT_EQ(strs.size(), 4u);
  EXPECT_EQ(strs[0], "x");
  EXPECT_EQ(strs[1], "");
  EXPECT_EQ(strs[2], "\xF0\x9F\x98\x80");
  EXPECT_EQ(strs[3], std::string(1000, 'z'));
  EXPECT_TRUE(f->get_string_array("no_strs").empty());
  EXPECT_EQ(f->get_float_array("f32s"), (std::vector<float>{1.5f, -2.25f, 1e-30f}));
  EXPECT_EQ(f->get_int_array("i32s"), (std::vector<int64_t>{-1, 0, 1 << 30}));
  EXPECT_EQ(f->get_int_array("u8s"), (std::vector<int64_t>{0, 7, 255}));
  EXPECT_EQ(f->get_int_array("i8s"), (std::vector<int64_t>{-128, 0, 127}));
  EXPECT_EQ(f->get_int_array("u16s"), (std::vector<int64_t>{1, 65535}));
  EXPECT_EQ(f->get_int_array("i16s"), (std::vector<int64_t>{-32768, 32767}));
  EXPECT_EQ(f->get_int_array("u32s"), (std::vector<int64_t>{0, 4000000000ll}));
  EXPECT_EQ(array_as<uint64_t>(*f->find("u64s")), (std::vector<uint64_t>{1, std::numeric_limits<uint64_t>::max()}));
  EXPECT_EQ(f->get_int_array("i64s"), (std::vector<int64_t>{std::numeric_limits<int64_t>::min(), 5}));
  EXPECT_EQ(array_as<double>(*f->find("f64s")), (std::vector<double>{0.5, -1e-300}));
  EXPECT_EQ(f->find("bools")->elem_type, GGUFType::BOOL);
  EXPECT_EQ(array_as<uint8_t>(*f->find("bools")), (std::vector<uint8_t>{1, 0, 1}));
  EXPECT_EQ(f->find("no_ints")->count, 0u);
  EXPECT_TRUE(f->tensors().empty());
}

TEST(GGUFWriter, CopyValueReproducesEveryEntry) {
  GGUFWriter w;
  w.set_uint8("a", 1);
  w.set_int16("b", -2);
  w.set_uint64("c", 1ull << 63);
  w.set_int64("d", -3);
  w.set_float32("e", -0.0f);
  w.set_float64("f", 3.25);
  w.set_bool("g", true);
  w.set_string("h", "str");
  w.set_string_array("i", {"p", "q"});
  const int16_t i16s[] = {-5, 6};
  w.set_array("j", GGUFType::INT16, i16s, 2);
  const auto p1 = test::temp_path("writer-copy-1.gguf").string(), p2 = test::temp_path("writer-copy-2.gguf").string();
  w.write(p1);
  auto f1 = GGUFFile::open(p1);
  GGUFWriter w2;
  for (const auto& [k, v] : f1->metadata())
    if (k != "general.alignment") w2.copy_value(k, v);
  w2.write(p2);
  auto f2 = GGUFFile::open(p2);
  ASSERT_EQ(f1->metadata().size(), f2->metadata().size());
  for (const auto& [k, v] : f1->metadata()) {
    const GGUFValue* c = f2->find(k);
    ASSERT_NE(c, nullptr) << k;
    EXPECT_EQ(c->type, v.type) << k;
    EXPECT_EQ(c->u, v.u) << k;
    EXPECT_EQ(c->i, v.i) << k;
    EXPECT_EQ(std::signbit(c->f), std::signbit(v.f)) << k;
    EXPECT_EQ(c->f, v.f) << k;
    EXPECT_EQ(c->str, v.str) << k;
    EXPECT_EQ(c->elem_type, v.elem_type) << k;
    EXPECT_EQ(c->count, v.count) << k;
    EXPECT_EQ(c->strings, v.strings) << k;
  }
}

TEST(GGUFWriter, SettingAKeyAgainReplacesIt) {
  GGUFWriter w;
  w.set_uint32("k", 1);
  w.set_string("k", "two");
  w.set_uint32("gone", 3);
  EXPECT_TRUE(w.has("gone"));
  w.remove("gone");
  EXPECT_FALSE(w.has("gone"));
  EXPECT_THROW(w.set_uint32("general.alignment", 64), Error);
  const auto path = test::temp_path("writer-replace.gguf").string();
  w.write(path);
  auto f = GGUFFile::open(path);
  EXPECT_EQ(f->metadata().size(), 2u);  // general.alignment and k
  EXPECT_EQ(f->get_string("k"), "two");
}

// Every tensor type, written from bytes and from a fill callback, in 1 to 4 dimensions.
TEST(GGUFWriter, RoundTripsEveryTensorType) {
  GGUFWriter w;
  struct Expect {
    std::string name;
    DType type;
    std::vector<int64_t> dims;
    std::vector<uint8_t> bytes;
  };
  std::vector<Expect> expect;
  uint64_t seed = 7;
  for (DType t : kAllTypes) {
    const int64_t row = dtype_info(t).block_elems * 2;
    const std::vector<std::vector<int64_t>> shapes = {{row}, {row, 3}, {row, 2, 3}, {row, 1, 2, 2}};
    for (size_t s = 0; s < shapes.size(); ++s) {
      int64_t n = 1;
      for (int64_t d : shapes[s]) n *= d;
      const auto bytes = encode(t, random_floats(n, ++seed));
      const std::string name = std::string(dtype_name(t)) + "." + std::to_string(s);
      expect.push_back({name + ".bytes", t, shapes[s], bytes});
      expect.push_back({name + ".fill", t, shapes[s], bytes});
      w.add_tensor(name + ".bytes", t, shapes[s], bytes);
      const int64_t rb = row_bytes(t, row);
      w.add_tensor(name + ".fill", t, shapes[s], [bytes, rb](int64_t first, int64_t rows, uint8_t* out) {
        std::memcpy(out, bytes.data() + first * rb, rows * rb);
      });
    }
  }
  w.set_string("general.architecture", "test");
  const auto path = test::temp_path("writer-tensors.gguf").string();
  w.write(path);
  EXPECT_EQ(std::filesystem::file_size(path), w.file_size());

  auto f = GGUFFile::open(path);
  ASSERT_EQ(f->tensors().size(), expect.size());
  for (size_t i = 0; i < expect.size(); ++i) {
    const GGUFTensor& t = f->tensors()[i];  // the reader keeps the file's order
    const Expect& e = expect[i];
    EXPECT_EQ(t.name, e.name);
    EXPECT_EQ(t.type, e.type) << e.name;
    EXPECT_EQ(t.dims, e.dims) << e.name;
    EXPECT_EQ(t.offset % 32, 0u) << e.name;
    ASSERT_EQ(t.n_bytes, static_cast<int64_t>(e.bytes.size())) << e.name;
    EXPECT_EQ(std::memcmp(t.data, e.bytes.data(), e.bytes.size()), 0) << e.name;
    EXPECT_EQ(f->find_tensor(e.name), &t);
  }
}

// The values survive too: f32 exactly, the others within their format's precision.
TEST(GGUFWriter, TensorValuesDecodeBack) {
  for (DType t : kAllTypes) {
    const int64_t n = 512;
    const auto v = random_floats(n, 99);
    GGUFWriter w;
    w.add_tensor("x", t, {256, 2}, encode(t, v));
    const auto path = test::temp_path("writer-values.gguf").string();
    w.write(path);
    auto f = GGUFFile::open(path);
    std::vector<float> back(n);
    dequantize_row(t, f->find_tensor("x")->data, back.data(), n);
    const float tol = t == DType::F32 ? 0.0f : t == DType::F16 ? 1e-3f : t == DType::BF16 ? 8e-3f
                    : t == DType::Q8_0 ? 1e-2f : t == DType::Q6_K ? 4e-2f : 0.15f;
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(back[i], v[i], tol) << dtype_name(t) << " element " << i;
  }
}

// Layout: the data section and each tensor start at multiples of 32; all padding is zero.
TEST(GGUFWriter, OffsetsAreAlignedAndPaddingIsZero) {
  GGUFWriter w;
  w.set_string("odd.length.key", "abc");  // makes the header length not a multiple of 32
  std::vector<std::pair<std::string, int64_t>> sizes = {{"a", 1}, {"b", 7}, {"c", 8}, {"d", 33}, {"e", 3}};
  for (const auto& [name, n] : sizes) w.add_tensor(name, DType::F32, {n}, encode(DType::F32, std::vector<float>(n, 1.0f)));
  w.add_tensor("h", DType::F16, {3}, encode(DType::F16, std::vector<float>(3, 1.0f)));  // 6 bytes
  const auto path = test::temp_path("writer-layout.gguf").string();
  w.write(path);
  const auto bytes = read_bytes(path);
  auto f = GGUFFile::parse(bytes.data(), bytes.size());
  ASSERT_EQ(bytes.size(), w.file_size());
  ASSERT_EQ(bytes.size() % 32, 0u);
  std::vector<bool> used(bytes.size(), false);
  const uint8_t* base = bytes.data();
  size_t data_start = bytes.size();
  for (const auto& t : f->tensors()) {
    const size_t at = static_cast<size_t>(t.data - base);
    EXPECT_EQ(at % 32, 0u) << t.name;
    data_start = std::min(data_start, at);
    for (int64_t i = 0; i < t.n_bytes; ++i) used[at + i] = true;
  }
  // Everything in the data section that is not tensor bytes is zero padding.
  for (size_t i = data_start; i < bytes.size(); ++i)
    if (!used[i]) {
      ASSERT_EQ(bytes[i], 0) << "padding byte " << i;
    }
  // And the padding between the tensor infos and the data section: the header's last bytes.
  EXPECT_EQ(data_start % 32, 0u);
  EXPECT_EQ(bytes[data_start - 1], 0);
}

// A tensor larger than the writer's chunk is filled in several consecutive chunks.
TEST(GGUFWriter, LargeTensorsAreFilledInChunks) {
  const int64_t cols = 4096, rows = 3000;  // 47 MiB of f32
  std::vector<std::pair<int64_t, int64_t>> calls;
  GGUFWriter w;
  w.add_tensor("big", DType::F32, {cols, rows}, [&](int64_t first, int64_t n, uint8_t* out) {
    calls.emplace_back(first, n);
    for (int64_t r = 0; r < n; ++r) {
      float* row = reinterpret_cast<float*>(out) + r * cols;
      for (int64_t c = 0; c < cols; ++c) row[c] = static_cast<float>(first + r) + static_cast<float>(c) / cols;
    }
  });
  const auto path = test::temp_path("writer-big.gguf").string();
  w.write(path);
  ASSERT_GE(calls.size(), 2u);
  int64_t next = 0;
  for (const auto& [first, n] : calls) {
    EXPECT_EQ(first, next);
    EXPECT_LE(n * cols * 4, int64_t{32} << 20);
    next = first + n;
  }
  EXPECT_EQ(next, rows);
  auto f = GGUFFile::open(path);
  const float* d = reinterpret_cast<const float*>(f->find_tensor("big")->data);
  for (int64_t r = 0; r < rows; r += 7)
    ASSERT_EQ(d[r * cols + r % cols], static_cast<float>(r) + static_cast<float>(r % cols) / cols) << r;
  std::filesystem::remove(path);
}

TEST(GGUFWriter, RejectsBadTensors) {
  GGUFWriter w;
  w.add_tensor("t", DType::F32, {4}, std::vector<uint8_t>(16));
  auto expect_error = [](const std::function<void()>& fn, const std::string& needle) {
    try {
      fn();
      ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error([&] { w.add_tensor("t", DType::F32, {4}, std::vector<uint8_t>(16)); }, "added twice");
  expect_error([&] { w.add_tensor("u", DType::F32, {4}, std::vector<uint8_t>(15)); }, "15 bytes, expected 16");
  expect_error([&] { w.add_tensor("u", DType::F32, {}, std::vector<uint8_t>()); }, "1 to 4 dimensions");
  expect_error([&] { w.add_tensor("u", DType::F32, {1, 1, 1, 1, 1}, std::vector<uint8_t>(4)); }, "1 to 4 dimensions");
  expect_error([&] { w.add_tensor("u", DType::F32, {4, 0}, std::vector<uint8_t>()); }, "invalid dimension 0");
  expect_error([&] { w.add_tensor("u", DType::F32, {-4}, std::vector<uint8_t>()); }, "invalid dimension -4");
  expect_error([&] { w.add_tensor("u", DType::Q8_0, {16}, std::vector<uint8_t>(17)); }, "not a multiple of the q8_0 block size 32");
  expect_error([&] { w.add_tensor(std::string(64, 'n'), DType::F32, {1}, std::vector<uint8_t>(4)); }, "longer than 63");
  expect_error([&] { w.add_tensor("u", DType::F32, {1}, GGUFWriter::RowFill{}); }, "no fill function");
  expect_error([&] { w.set_array("a", GGUFType::STRING, nullptr, 0); }, "set_string_array");
  expect_error([&] { w.set_array("a", GGUFType::ARRAY, nullptr, 0); }, "array");
  EXPECT_EQ(w.tensor_count(), 1u);  // failed calls added nothing
}

TEST(GGUFWriter, FailedWriteLeavesNoFile) {
  GGUFWriter w;
  w.add_tensor("ok", DType::F32, {4}, std::vector<uint8_t>(16));
  w.add_tensor("bad", DType::F32, {8, 2}, [](int64_t, int64_t, uint8_t*) { throw Error("fill failed"); });
  const auto dir = test::temp_path("writer-fail");
  std::filesystem::create_directories(dir);
  const auto path = (dir / "m.gguf").string();
  EXPECT_THROW(w.write(path), Error);
  EXPECT_TRUE(std::filesystem::is_empty(dir)) << "left a file behind";
  try {
    GGUFWriter().write("/nonexistent-dir/x.gguf");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot write"), std::string::npos) << e.what();
  }
}

TEST(GGUFWriter, OverwritesAnExistingFileWhole) {
  const auto path = test::temp_path("writer-overwrite.gguf").string();
  {
    std::ofstream junk(path, std::ios::binary);
    junk << std::string(100000, 'x');
  }
  GGUFWriter w;
  w.set_uint32("v", 2);
  w.write(path);
  EXPECT_EQ(std::filesystem::file_size(path), w.file_size());
  EXPECT_EQ(GGUFFile::open(path)->get_uint("v"), 2u);
}

}  // namespace
}  // namespace lazyllm
