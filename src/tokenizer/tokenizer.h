// Tokenizer from GGUF metadata: SentencePiece-style (tokenizer.ggml.model = llama) merges by
// score with byte fallback, and streaming decoding that never splits a UTF-8 character.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>
#include "format/gguf.h"
namespace lazyllm {
class Tokenizer {
 public:
  static std::unique_ptr<Tokenizer> from_gguf(const GGUFFile& f);
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const;
  std::string token_to_piece(int32_t id) const;
  std::string decode(std::span<const int32_t> ids) const;
  int32_t bos() const { return bos_; }
  int32_t eos() const { return eos_; }
  int32_t eot() const { return -1; }
  bool is_eog(int32_t id) const { return id == eos_; }
  bool add_bos() const { return add_bos_; }
  int32_t n_vocab() const { return static_cast<int32_t>(tokens_.size()); }
  std::string_view token_text(int32_t id) const { return tokens_[id]; }
  std::string_view model_name() const { return model_; }
  std::string_view pre_name() const { return "default"; }
 private:
  void resegment(const std::string& s, std::vector<int32_t>& out) const;
  std::vector<std::string> tokens_;
  std::vector<float> scores_;
  std::vector<int32_t> types_;
  std::unordered_map<std::string, int32_t> index_;
  int32_t bos_ = 1, eos_ = 2, unk_ = 0;
  int32_t byte_[256];
  bool add_bos_ = true, add_space_prefix_ = true;
  std::string model_;
};
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& t) : t_(t) {}
  std::string feed(int32_t id);
  std::string flush();
 private:
  const Tokenizer& t_;
  std::string pending_;
};
}  // namespace lazyllm
