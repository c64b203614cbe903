#include "lazyllm/tokenizer.h"
#include "tokenizer/utf8.h"

namespace lazyllm {

std::string StreamDecoder::feed(int32_t id) {
  pending_ += t_.token_to_piece(id);
  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    const int len = utf8::check_char(std::string_view(pending_).substr(i));
    if (len == 0) break;  // unfinished: wait for the next token
    if (len < 0) {
      out += utf8::kReplacementUtf8;
      i += 1;
    } else {
      out.append(pending_, i, len);
      i += len;
    }
  }
  pending_.erase(0, i);
  return out;
}

std::string StreamDecoder::flush() {
  if (pending_.empty()) return "";
  pending_.clear();
  return std::string(utf8::kReplacementUtf8);
}

}  // namespace lazyllm
