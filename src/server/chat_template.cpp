#include "server/chat_template.h"

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

// Llama 2: the system prompt goes inside the first [INST] block; every later turn opens with BOS.
std::string render_llama2(std::span<const ChatMessage> messages) {
  std::string out, system;
  bool first_turn = true;
  for (const auto& m : messages) {
    if (m.role == "system") {
      system += (system.empty() ? "" : "\n") + trim(m.content);
    } else if (m.role == "user") {
      if (!first_turn) out += "<s>";
      out += "[INST] ";
      if (!system.empty()) out += "<<SYS>>\n" + system + "\n<</SYS>>\n\n";
      system.clear();
      out += trim(m.content) + " [/INST]";
      first_turn = false;
    } else {
      out += " " + trim(m.content) + " </s>";
      first_turn = false;
    }
  }
  return out;
}

// Mistral (v0.1/v0.2 "[INST]" format): no system role, so it is prefixed to the next user turn.
std::string render_mistral(std::span<const ChatMessage> messages) {
  std::string out, system;
  for (const auto& m : messages) {
    if (m.role == "system") {
      system += (system.empty() ? "" : "\n\n") + m.content;
    } else if (m.role == "user") {
      out += "[INST] " + (system.empty() ? m.content : system + "\n\n" + m.content) + " [/INST]";
      system.clear();
    } else {
      out += m.content + "</s>";
    }
  }
  return out;
}

std::string render_llama3(std::span<const ChatMessage> messages) {
  std::string out;
  for (const auto& m : messages)
    out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + trim(m.content) + "<|eot_id|>";
  return out + "<|start_header_id|>assistant<|end_header_id|>\n\n";
}

std::string render_chatml(std::span<const ChatMessage> messages) {
  std::string out;
  for (const auto& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  return out + "<|im_start|>assistant\n";
}

// Zephyr and Phi-3 share the <|role|> layout and differ in the end-of-turn marker.
std::string render_role_tags(std::span<const ChatMessage> messages, std::string_view end) {
  std::string out;
  for (const auto& m : messages) out += "<|" + m.role + "|>\n" + m.content + std::string(end) + "\n";
  return out + "<|assistant|>\n";
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

std::string render_chat(ChatFamily f, std::span<const ChatMessage> messages) {
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
