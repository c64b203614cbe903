// Helpers shared by the libFuzzer targets.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "tokenizer/utf8.h"

namespace lazyllm::fuzz {

// Whether `s` is well-formed UTF-8 (RFC 3629: no overlongs, surrogates or code points past U+10FFFF).
inline bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const int len = utf8::check_char(s.substr(i));
    if (len <= 0) return false;
    i += static_cast<size_t>(len);
  }
  return true;
}

// A broken invariant: report it and abort, so libFuzzer keeps the input as a crash.
[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "fuzz invariant broken: %s\n", what);
  std::abort();
}

#define LAZYLLM_FUZZ_CHECK(cond)                                          \
  do {                                                                    \
    if (!(cond)) ::lazyllm::fuzz::fail(#cond " (" __FILE__ ")");          \
  } while (0)

}  // namespace lazyllm::fuzz
