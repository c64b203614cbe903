#include "server/chat_template.h"

#include <utility>

#include "lazyllm/error.h"

namespace lazyllm::server {
namespace {

struct FamilyName {
  ChatFamily family;
  std::string_view name;
};
constexpr FamilyName kNames[] = {
    {ChatFamily::Llama2, "llama2"}, {ChatFamily::Llama3, "llama3"}, {ChatFamily::ChatML, "chatml"},
    {ChatFamily::Mistral, "mistral"}, {ChatFamily::Zephyr, "zephyr"}, {ChatFamily::Phi3, "phi3"},
};

bool has(std::string_view s, std::string_view marker) { return s.find(marker) != std::string_view::npos; }

std::string trim(std::string_view s) {
  const char* ws = " \t\n\r";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  return std::string(s.substr(b, s.find_last_not_of(ws) - b + 1));
}

// Collects the rendering as segments; adjacent text of the same kind joins one segment.
class Out {
 public:
  Out& lit(std::string_view s) { return add(s, false); }
  Out& content(std::string_view s) { return add(s, true); }
  Out& append(const std::vector<ChatSegment>& segs) {
    for (const auto& s : segs) add(s.text, s.content);
    return *this;
  }
  bool empty() const { return segs_.empty(); }
  std::vector<ChatSegment> take() { return std::exchange(segs_, {}); }

 private:
  Out& add(std::string_view s, bool content) {
    if (s.empty()) return *this;
    if (!segs_.empty() && segs_.back().content == content) segs_.back().text += s;
    else segs_.push_back({std::string(s), content});
    return *this;
  }
  std::vector<ChatSegment> segs_;
};

// System messages joined by `sep` (template text), as one block.
class SystemBlock {
 public:
  explicit SystemBlock(std::string_view sep) : sep_(sep) {}
  void add(std::string_view text) {
    if (!out_.empty()) out_.lit(sep_);
    out_.content(text);
  }
  bool empty() const { return out_.empty(); }
  std::vector<ChatSegment> take() { return out_.take(); }

 private:
  std::string_view sep_;
  Out out_;
};

// Llama 2: the system prompt goes inside the first [INST] block; every later turn opens with BOS.
std::vector<ChatSegment> render_llama2(std::span<const ChatMessage> messages) {
  Out o;
  SystemBlock system("\n");
  bool first_turn = true;
  for (const auto& m : messages) {
    if (m.role == "system") {
      system.add(trim(m.content));
    } else if (m.role == "user") {
      if (!first_turn) o.lit("<s>");
      o.lit("[INST] ");
      if (!system.empty()) o.lit("<<SYS>>\n").append(system.take()).lit("\n<</SYS>>\n\n");
      o.content(trim(m.content)).lit(" [/INST]");
      first_turn = false;
    } else {
      o.lit(" ").content(trim(m.content)).lit(" </s>");
      first_turn = false;
    }
  }
  return o.take();
}

// Mistral (v0.1/v0.2 "[INST]" format): no system role, so it is prefixed to the next user turn.
std::vector<ChatSegment> render_mistral(std::span<const ChatMessage> messages) {
  Out o;
  SystemBlock system("\n\n");
  for (const auto& m : messages) {
    if (m.role == "system") {
      system.add(m.content);
    } else if (m.role == "user") {
      o.lit("[INST] ");
      if (!system.empty()) o.append(system.take()).lit("\n\n");
      o.content(m.content).lit(" [/INST]");
    } else {
      o.content(m.content).lit("</s>");
    }
  }
  return o.take();
}

std::vector<ChatSegment> render_llama3(std::span<const ChatMessage> messages) {
  Out o;
  for (const auto& m : messages)
    o.lit("<|start_header_id|>" + m.role + "<|end_header_id|>\n\n").content(trim(m.content)).lit("<|eot_id|>");
  return o.lit("<|start_header_id|>assistant<|end_header_id|>\n\n").take();
}

std::vector<ChatSegment> render_chatml(std::span<const ChatMessage> messages) {
  Out o;
  for (const auto& m : messages) o.lit("<|im_start|>" + m.role + "\n").content(m.content).lit("<|im_end|>\n");
  return o.lit("<|im_start|>assistant\n").take();
}

// Zephyr and Phi-3 share the <|role|> layout and differ in the end-of-turn marker.
std::vector<ChatSegment> render_role_tags(std::span<const ChatMessage> messages, std::string_view end) {
  Out o;
  for (const auto& m : messages) o.lit("<|" + m.role + "|>\n").content(m.content).lit(end).lit("\n");
  return o.lit("<|assistant|>\n").take();
}

}  // namespace

std::string_view chat_family_name(ChatFamily f) {
  for (const auto& n : kNames)
    if (n.family == f) return n.name;
  return "?";
}

std::optional<ChatFamily> chat_family_from_name(std::string_view name) {
  if (name == "qwen2") return ChatFamily::ChatML;
  for (const auto& n : kNames)
    if (n.name == name) return n.family;
  return std::nullopt;
}

std::string chat_family_names() {
  std::string out;
  for (const auto& n : kNames) out += (out.empty() ? "" : ", ") + std::string(n.name);
  return out;
}

std::optional<ChatFamily> detect_chat_family(std::string_view t) {
  // Most specific markers first: Phi-3 and Zephyr both use <|user|>, Llama 2 and Mistral both [INST].
  if (has(t, "<|start_header_id|>") && has(t, "<|eot_id|>")) return ChatFamily::Llama3;
  if (has(t, "<|im_start|>")) return ChatFamily::ChatML;
  if (has(t, "<|user|>") && has(t, "<|end|>")) return ChatFamily::Phi3;
  if (has(t, "<|user|>")) return ChatFamily::Zephyr;
  if (has(t, "[INST]") && has(t, "<<SYS>>")) return ChatFamily::Llama2;
  if (has(t, "[INST]")) return ChatFamily::Mistral;
  return std::nullopt;
}

ChatFamily resolve_chat_family(const std::optional<std::string>& gguf_template, const std::string& forced_name,
                               std::string& warning) {
  warning.clear();
  if (!forced_name.empty()) {
    auto f = chat_family_from_name(forced_name);
    if (!f) throw Error("unknown chat template '" + forced_name + "' (known: " + chat_family_names() + ")");
    return *f;
  }
  if (!gguf_template || gguf_template->empty()) {
    warning = "the model has no tokenizer.chat_template; chat requests use ChatML (force another with --chat-template)";
    return ChatFamily::ChatML;
  }
  auto f = detect_chat_family(*gguf_template);
  if (!f)
    throw Error("the model's tokenizer.chat_template is not one this server recognises; choose one with "
                "--chat-template NAME (" + chat_family_names() + ")");
  return *f;
}

std::vector<ChatSegment> render_chat_segments(ChatFamily f, std::span<const ChatMessage> messages) {
  switch (f) {
    case ChatFamily::Llama2: return render_llama2(messages);
    case ChatFamily::Llama3: return render_llama3(messages);
    case ChatFamily::ChatML: return render_chatml(messages);
    case ChatFamily::Mistral: return render_mistral(messages);
    case ChatFamily::Zephyr: return render_role_tags(messages, "</s>");
    case ChatFamily::Phi3: return render_role_tags(messages, "<|end|>");
  }
  return {};
}

std::string render_chat(ChatFamily f, std::span<const ChatMessage> messages) {
  std::string out;
  for (const auto& s : render_chat_segments(f, messages)) out += s.text;
  return out;
}

std::string_view end_of_turn(ChatFamily f) {
  switch (f) {
    case ChatFamily::Llama3: return "<|eot_id|>";
    case ChatFamily::ChatML: return "<|im_end|>";
    case ChatFamily::Phi3: return "<|end|>";
    case ChatFamily::Zephyr: return "</s>";
    default: return "";
  }
}

}  // namespace lazyllm::server
