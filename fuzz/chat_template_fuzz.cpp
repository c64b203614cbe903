// libFuzzer target: chat template choice and rendering. Family detection and resolution on any
// template text or forced name, then every family's renderer on any conversation (roles outside
// system/user/assistant included: the renderers must not depend on the validator). A rendering
// must be linear in the conversation, keep each message's text, and end with the opening of the
// assistant's turn where the family has one.
//
// Input (text; seeds: fuzz/corpus/chat_template_fuzz/*.txt):
//   line 1       the template selector: a family name ("chatml") is forced as with
//                --chat-template; anything else is taken as the GGUF's tokenizer.chat_template
//   "@ROLE" line starts a message of that role; the lines up to the next "@" line are its content
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.h"
#include "lazyllm/error.h"
#include "server/chat_template.h"

using namespace lazyllm;
using namespace lazyllm::server;

namespace {

constexpr ChatFamily kFamilies[] = {ChatFamily::Llama2, ChatFamily::Llama3, ChatFamily::ChatML,
                                    ChatFamily::Mistral, ChatFamily::Zephyr, ChatFamily::Phi3};

std::string trimmed(std::string_view s) {
  const char* ws = " \t\n\r";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  return std::string(s.substr(b, s.find_last_not_of(ws) - b + 1));
}

std::vector<ChatMessage> parse_messages(std::string_view text) {
  std::vector<ChatMessage> out;
  bool first_line = true;  // of the current message's content
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (!line.empty() && line[0] == '@') {
      out.push_back({std::string(line.substr(1)), ""});
      first_line = true;
      continue;
    }
    if (out.empty()) out.push_back({"user", ""});
    if (!first_line) out.back().content += '\n';
    out.back().content += line;
    first_line = false;
  }
  return out;
}

void check_rendering(ChatFamily f, const std::vector<ChatMessage>& messages) {
  const std::string out = render_chat(f, messages);
  size_t content = 0;
  for (const auto& m : messages) content += m.content.size() + m.role.size();
  LAZYLLM_FUZZ_CHECK(out.size() <= content + 64 * (messages.size() + 1));
  // Every user and assistant message's text is in the prompt (trimmed in the families that trim).
  size_t at = 0;
  for (const auto& m : messages) {
    if (m.role == "system") continue;
    const std::string text = (f == ChatFamily::Llama2 || f == ChatFamily::Llama3) ? trimmed(m.content) : m.content;
    const size_t found = out.find(text, at);
    LAZYLLM_FUZZ_CHECK(found != std::string::npos);
    at = found + text.size();
  }
  switch (f) {
    case ChatFamily::Llama3: LAZYLLM_FUZZ_CHECK(out.ends_with("<|start_header_id|>assistant<|end_header_id|>\n\n")); break;
    case ChatFamily::ChatML: LAZYLLM_FUZZ_CHECK(out.ends_with("<|im_start|>assistant\n")); break;
    case ChatFamily::Zephyr:
    case ChatFamily::Phi3: LAZYLLM_FUZZ_CHECK(out.ends_with("<|assistant|>\n")); break;
    default: break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t nl = input.find('\n');
  const std::string selector = input.substr(0, nl);
  const std::vector<ChatMessage> messages =
      parse_messages(nl == std::string::npos ? std::string_view() : std::string_view(input).substr(nl + 1));

  // Names: forcing a name either gives its family (whose name maps back to it) or an Error.
  std::string warning;
  try {
    const ChatFamily forced = resolve_chat_family(std::nullopt, selector, warning);
    LAZYLLM_FUZZ_CHECK(selector.empty() || chat_family_from_name(chat_family_name(forced)) == forced);
  } catch (const Error&) {
    LAZYLLM_FUZZ_CHECK(!chat_family_from_name(selector));
  }
  // Template text: detection agrees with resolution; no template at all means ChatML.
  const auto detected = detect_chat_family(selector);
  try {
    const ChatFamily f = resolve_chat_family(selector, "", warning);
    LAZYLLM_FUZZ_CHECK(selector.empty() ? (f == ChatFamily::ChatML && !warning.empty()) : detected == f);
  } catch (const Error&) {
    LAZYLLM_FUZZ_CHECK(!selector.empty() && !detected);
  }
  for (ChatFamily f : kFamilies) check_rendering(f, messages);
  return 0;
}
