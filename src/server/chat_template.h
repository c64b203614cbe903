// Chat templates. A GGUF's `tokenizer.chat_template` (Jinja) is recognised by the markers
// distinctive of each family; the prompt is then rendered by our own formatter for that family
// (no Jinja interpreter). The rendering leaves out the leading BOS: the tokenizer adds it.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "server/request.h"

namespace lazyllm::server {

enum class ChatFamily { Llama2, Llama3, ChatML, Mistral, Zephyr, Phi3 };

std::string_view chat_family_name(ChatFamily f);
// "llama2", "llama3", "chatml" (alias "qwen2"), "mistral", "zephyr", "phi3".
std::optional<ChatFamily> chat_family_from_name(std::string_view name);
std::string chat_family_names();  // for messages: "llama2, llama3, ..."
// The family whose markers the Jinja template text contains, if any.
std::optional<ChatFamily> detect_chat_family(std::string_view jinja);

// Chooses the family at start-up: a forced name wins; a model without a template gets ChatML
// (and `warning` says so); an unrecognised template throws Error.
ChatFamily resolve_chat_family(const std::optional<std::string>& gguf_template, const std::string& forced_name,
                               std::string& warning);

// A piece of a rendered chat: the template's own text (markers, role names, separators) or
// messages' content. Only the template's text may become control tokens (ChatEncoder).
struct ChatSegment {
  std::string text;
  bool content = false;
};

// The conversation followed by the opening of the assistant's turn, as segments (adjacent ones
// differ in kind) and as text (their concatenation).
std::vector<ChatSegment> render_chat_segments(ChatFamily f, std::span<const ChatMessage> messages);
std::string render_chat(ChatFamily f, std::span<const ChatMessage> messages);
// Text that ends an assistant turn in this family (generation stops there), or "" when the
// turn ends with the model's EOS token.
std::string_view end_of_turn(ChatFamily f);

}  // namespace lazyllm::server
