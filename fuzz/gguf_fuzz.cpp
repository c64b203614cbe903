// libFuzzer target: the GGUF reader must turn any byte string into either a parsed file or a
// lazyllm::Error — never a crash, hang or out-of-bounds read (ASan/UBSan watch the latter).
// Everything a parsed file exposes is touched: every metadata value through every typed
// accessor, and the first and last byte of every tensor.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "format/gguf.h"
#include "lazyllm/error.h"

namespace {

volatile uint64_t g_sink;

template <typename F>
void guarded(F&& fn) {
  try {
    fn();
  } catch (const lazyllm::Error&) {  // a wrong type for this accessor: expected
  }
}

void touch_value(const lazyllm::GGUFFile& f, const std::string& key, const lazyllm::GGUFValue& v) {
  uint64_t s = key.size() + v.count + v.u + static_cast<uint64_t>(v.i);
  for (char c : v.str) s += static_cast<uint8_t>(c);
  for (auto str : v.strings) s += str.size() + (str.empty() ? 0 : static_cast<uint8_t>(str.back()));
  g_sink = g_sink + s;
  guarded([&] { g_sink = g_sink + f.get_uint(key); });
  guarded([&] { g_sink = g_sink + static_cast<uint64_t>(f.get_int(key)); });
  guarded([&] { g_sink = g_sink + static_cast<uint64_t>(f.get_float(key) != 0); });
  guarded([&] { g_sink = g_sink + f.get_bool(key); });
  guarded([&] { g_sink = g_sink + f.get_string(key).size(); });
  guarded([&] { g_sink = g_sink + f.get_string_array(key).size(); });
  guarded([&] {
    for (float x : f.get_float_array(key)) g_sink = g_sink + (x != 0);
  });
  guarded([&] {
    for (int64_t x : f.get_int_array(key)) g_sink = g_sink + static_cast<uint64_t>(x);
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An exact-size heap copy, so ASan reports a read even one byte past the end.
  std::vector<uint8_t> buf(data, data + size);
  try {
    auto f = lazyllm::GGUFFile::parse(buf.data(), buf.size(), "fuzz");
    for (const auto& [key, v] : f->metadata()) touch_value(*f, key, v);
    for (const auto& t : f->tensors()) {
      g_sink = g_sink + t.n_elements() + t.rows() + t.offset + t.dims.size();
      if (f->find_tensor(t.name) != &t) __builtin_trap();  // the index must agree with the list
      if (t.n_bytes > 0) g_sink = g_sink + t.data[0] + t.data[t.n_bytes - 1];
    }
  } catch (const lazyllm::Error&) {
  }
  return 0;
}
