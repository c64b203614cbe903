// libFuzzer target: the GGUF reader must turn any byte string into either a parsed file or a
// lazyllm::Error — never a crash, hang or out-of-bounds read (ASan/UBSan watch the latter).
#include <cstddef>
#include <cstdint>

#include "format/gguf.h"
#include "lazyllm/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = lazyllm::GGUFFile::parse(data, size, "fuzz");
    volatile uint64_t sink = 0;
    for (const auto& [key, v] : f->metadata()) {
      sink = sink + key.size() + v.count + v.str.size();
      for (auto s : v.strings) sink = sink + (s.empty() ? 0 : static_cast<uint8_t>(s[0]));
    }
    for (const auto& t : f->tensors()) {
      // Touch the first and last byte of every tensor: they must lie inside the input.
      if (t.n_bytes > 0) sink = sink + t.data[0] + t.data[t.n_bytes - 1];
    }
    (void)sink;
  } catch (const lazyllm::Error&) {
  }
  return 0;
}
