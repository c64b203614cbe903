// GPT-2's byte-level alphabet: byte-level BPE vocabularies spell every byte as one printable
// code point (printable Latin-1 bytes stand for themselves, the other 68 bytes -- controls,
// space, DEL, NBSP, soft hyphen -- are shifted to U+0100..U+0143), so "Ġ" (U+0120) is a space.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace lazyllm::byte_unicode {

// The code point that stands for byte b.
uint32_t to_codepoint(uint8_t b);
// The byte code point cp stands for, or -1 when cp is not in the alphabet.
int to_byte(uint32_t cp);

// Spells raw bytes in the alphabet (the form BPE merges and token texts use).
std::string encode(std::string_view bytes);
// The bytes a vocabulary text stands for. Characters outside the alphabet (a malformed or
// hand-edited vocabulary) are kept as they are rather than dropped.
std::string decode(std::string_view text);

}  // namespace lazyllm::byte_unicode
