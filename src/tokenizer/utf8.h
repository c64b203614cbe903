// UTF-8 helpers shared by the tokenizers: strict validation of one character (for streaming
// output that must never split or emit a broken sequence), decoding and encoding.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace lazyllm::utf8 {

inline constexpr uint32_t kReplacement = 0xFFFD;
inline constexpr std::string_view kReplacementUtf8 = "\xEF\xBF\xBD";

// Checks the character at the start of s (not empty): its length in bytes when it is complete
// and valid (no overlong forms, surrogates or code points past U+10FFFF); 0 when s is a valid
// but unfinished start of one; -1 when the first byte cannot start a valid character here.
int check_char(std::string_view s);

// The code point of a character check_char accepted with length len.
uint32_t decode_char(std::string_view s, int len);

// Appends the UTF-8 encoding of cp (a code point up to U+10FFFF).
void append(std::string& out, uint32_t cp);

}  // namespace lazyllm::utf8
