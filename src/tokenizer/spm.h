// SentencePiece-style encoding (tokenizer.ggml.model = llama): spaces become "▁", adjacent
// pieces merge best score first, and pieces missing from the vocabulary fall back to byte tokens.
#pragma once
#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace lazyllm {

// The token of each byte (<0xAB>), or unk where the vocabulary lacks one.
std::array<int32_t, 256> spm_byte_tokens(const Vocab& v, int32_t unk);

// Whether no token has a "▁" after another character, so that spm_encode may merge each word on
// its own (the value for Vocab::words_merge_alone).
bool spm_words_merge_alone(const Vocab& v);

// Encodes one fragment of plain text, appending to out. space_prefix adds the leading "▁".
void spm_encode(std::string_view text, bool space_prefix, const Vocab& v,
                const std::array<int32_t, 256>& byte_tokens, std::vector<int32_t>& out);

// The text a normal token stands for ("▁" back to spaces).
std::string spm_unescape(std::string_view token_text);

}  // namespace lazyllm
