// Tokenizer from GGUF metadata: SentencePiece-style vocabularies (tokenizer.ggml.model = llama)
// and byte-level BPE (gpt2, with the pre-tokenizer named by tokenizer.ggml.pre); special tokens;
// decoding, and streaming decoding that never emits a split or broken UTF-8 character. Part of
// the public API: a Model's tokenizer (Model::tokenizer()) or a vocabulary alone
// (Model::load_tokenizer()).
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>


namespace lazyllm {

class BpeMerges;
class PreTokenizer;
class GGUFFile;
struct Vocab;

// GGUF's tokenizer.ggml.token_type values.
enum class TokenType : int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6
};

class Tokenizer {
 public:
  enum class Kind { SentencePiece, BytePairBpe };

  // Throws Error for an unsupported model or pre type, or malformed vocabulary metadata. (The
  // engine's GGUF reader; users load through Model.)
  static std::unique_ptr<Tokenizer> from_gguf(const GGUFFile& f);
  Tokenizer();
  ~Tokenizer();

  // parse_special: control tokens written in the text ("<|endoftext|>") become those tokens.
  // User-defined tokens always do. Throws Error when add_bos is set but there is no BOS token.
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const;
  // The bytes a token stands for; empty for control and unknown tokens and out-of-range ids.
  std::string token_to_piece(int32_t id) const;
  std::string decode(std::span<const int32_t> ids) const;

  int32_t bos() const { return bos_; }
  int32_t eos() const { return eos_; }
  int32_t eot() const { return eot_; }  // -1 when the vocabulary has none
  int32_t eom() const { return eom_; }
  // End of generation: EOS, EOT, EOM and the usual end-of-turn tokens found by their text.
  bool is_eog(int32_t id) const;
  bool add_bos() const { return add_bos_; }
  int32_t n_vocab() const;
  std::string_view token_text(int32_t id) const;  // id in [0, n_vocab())
  TokenType token_type(int32_t id) const;
  Kind kind() const { return kind_; }
  std::string_view model_name() const { return model_; }  // tokenizer.ggml.model
  std::string_view pre_name() const { return pre_; }      // tokenizer.ggml.pre ("default" if absent)
  std::string_view kind_name() const { return kind_ == Kind::SentencePiece ? "SentencePiece" : "byte-level BPE"; }

 private:
  void load_special_ids(const GGUFFile& f);
  void encode_text(std::string_view text, bool space_prefix, std::vector<int32_t>& out) const;

  std::unique_ptr<Vocab> vocab_;
  Kind kind_ = Kind::SentencePiece;
  std::string model_, pre_ = "default";
  int32_t bos_ = -1, eos_ = -1, eot_ = -1, eom_ = -1, unk_ = -1;
  std::vector<int32_t> eog_;             // sorted
  std::vector<int32_t> special_order_;   // tokens cut out of text before encoding, longest first
  bool add_bos_ = false;
  // SentencePiece
  std::array<int32_t, 256> byte_tokens_{};
  bool add_space_prefix_ = true;
  // byte-level BPE
  std::unique_ptr<BpeMerges> merges_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
};

// Turns a stream of token ids into text, holding back an unfinished UTF-8 character until the
// token that completes it arrives. Bytes that can never form valid UTF-8 come out as U+FFFD.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& t) : t_(t) {}
  std::string feed(int32_t id);
  // What is still held back (an unfinished character) as U+FFFD, or "".
  std::string flush();

 private:
  const Tokenizer& t_;
  std::string pending_;
};

}  // namespace lazyllm
