#include "tokenizer/byte_unicode.h"

#include <array>

#include "tokenizer/utf8.h"

namespace lazyllm::byte_unicode {
namespace {

struct Tables {
  std::array<uint32_t, 256> codepoint{};
  std::array<std::string, 256> spelled;
  std::array<int16_t, 256 + 68> byte{};  // indexed by code point; the alphabet ends at U+0143
  Tables() {
    byte.fill(-1);
    uint32_t shifted = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      codepoint[b] = printable ? static_cast<uint32_t>(b) : shifted++;
      byte[codepoint[b]] = static_cast<int16_t>(b);
      utf8::append(spelled[b], codepoint[b]);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

uint32_t to_codepoint(uint8_t b) { return tables().codepoint[b]; }

int to_byte(uint32_t cp) { return cp < tables().byte.size() ? tables().byte[cp] : -1; }

std::string encode(std::string_view bytes) {
  const Tables& t = tables();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += t.spelled[static_cast<unsigned char>(c)];
  return out;
}

std::string decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const int len = utf8::check_char(text.substr(i));
    if (len <= 0) {  // not UTF-8 at all: keep the byte
      out += text[i++];
      continue;
    }
    const int b = to_byte(utf8::decode_char(text.substr(i), len));
    if (b >= 0) out += static_cast<char>(b);
    else out.append(text.substr(i, len));
    i += len;
  }
  return out;
}

}  // namespace lazyllm::byte_unicode
