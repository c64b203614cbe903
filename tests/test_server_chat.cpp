// Chat templates: detection from real Jinja templates' markers, the start-up rules, and the exact
// prompt text each family's formatter renders.
#include <gtest/gtest.h>

#include "lazyllm/error.h"
#include "server/chat_template.h"

namespace lazyllm::server {
namespace {

// Abridged tokenizer.chat_template values as published with each model family.
const char* kLlama2 =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% endif %}{% for message in loop_messages %}{% if loop.index0 == 0 and "
    "system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + "
    "message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + "
    "content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + "
    "eos_token }}{% endif %}{% endfor %}";
const char* kLlama3 =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
const char* kQwen2 =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
    "'<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + "
    "message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if "
    "add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
const char* kMistral =
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + "
    "message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + "
    "eos_token}}{% endif %}{% endfor %}";
const char* kZephyr =
    "{% for message in messages %}\\n{% if message['role'] == 'user' %}\\n{{ '<|user|>\\n' + "
    "message['content'] + eos_token }}\\n{% elif message['role'] == 'system' %}\\n{{ '<|system|>\\n' + "
    "message['content'] + eos_token }}\\n{% elif message['role'] == 'assistant' %}\\n{{ '<|assistant|>\\n'  + "
    "message['content'] + eos_token }}\\n{% endif %}\\n{% if loop.last and add_generation_prompt %}\\n{{ "
    "'<|assistant|>' }}\\n{% endif %}\\n{% endfor %}";
const char* kPhi3 =
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + "
    "message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\\n' + "
    "message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\\n' + "
    "message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}";

TEST(ServerChat, DetectsEachFamily) {
  EXPECT_EQ(detect_chat_family(kLlama2), ChatFamily::Llama2);
  EXPECT_EQ(detect_chat_family(kLlama3), ChatFamily::Llama3);
  EXPECT_EQ(detect_chat_family(kQwen2), ChatFamily::ChatML);
  EXPECT_EQ(detect_chat_family(kMistral), ChatFamily::Mistral);
  EXPECT_EQ(detect_chat_family(kZephyr), ChatFamily::Zephyr);
  EXPECT_EQ(detect_chat_family(kPhi3), ChatFamily::Phi3);
  EXPECT_FALSE(detect_chat_family("{{ messages | tojson }}").has_value());
  EXPECT_FALSE(detect_chat_family("").has_value());
}

TEST(ServerChat, StartUpRules) {
  std::string warning;
  EXPECT_EQ(resolve_chat_family(std::string(kPhi3), "", warning), ChatFamily::Phi3);
  EXPECT_TRUE(warning.empty());
  EXPECT_EQ(resolve_chat_family(std::nullopt, "", warning), ChatFamily::ChatML);
  EXPECT_NE(warning.find("ChatML"), std::string::npos);
  EXPECT_EQ(resolve_chat_family(std::string("{{ weird }}"), "llama3", warning), ChatFamily::Llama3);
  EXPECT_EQ(resolve_chat_family(std::string(kLlama2), "qwen2", warning), ChatFamily::ChatML);
  EXPECT_THROW(resolve_chat_family(std::string("{{ weird }}"), "", warning), Error);
  EXPECT_THROW(resolve_chat_family(std::nullopt, "vicuna", warning), Error);
  for (const char* name : {"llama2", "llama3", "chatml", "mistral", "zephyr", "phi3"}) {
    auto f = chat_family_from_name(name);
    ASSERT_TRUE(f.has_value()) << name;
    EXPECT_EQ(chat_family_name(*f), name);
  }
}

const std::vector<ChatMessage> kConversation = {
    {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Name a color."}};

TEST(ServerChat, RendersLlama2) {
  EXPECT_EQ(render_chat(ChatFamily::Llama2, kConversation),
            "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Name a color. [/INST]");
  EXPECT_EQ(end_of_turn(ChatFamily::Llama2), "");
}

TEST(ServerChat, RendersLlama3) {
  EXPECT_EQ(render_chat(ChatFamily::Llama3, kConversation),
            "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nName a color.<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(end_of_turn(ChatFamily::Llama3), "<|eot_id|>");
}

TEST(ServerChat, RendersChatML) {
  EXPECT_EQ(render_chat(ChatFamily::ChatML, kConversation),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nName a color.<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(end_of_turn(ChatFamily::ChatML), "<|im_end|>");
}

TEST(ServerChat, RendersMistral) {
  EXPECT_EQ(render_chat(ChatFamily::Mistral, kConversation),
            "[INST] Be brief.\n\nHi [/INST]Hello!</s>[INST] Name a color. [/INST]");
}

TEST(ServerChat, RendersZephyrAndPhi3) {
  EXPECT_EQ(render_chat(ChatFamily::Zephyr, kConversation),
            "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello!</s>\n<|user|>\nName a color.</s>\n"
            "<|assistant|>\n");
  EXPECT_EQ(render_chat(ChatFamily::Phi3, kConversation),
            "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n<|user|>\n"
            "Name a color.<|end|>\n<|assistant|>\n");
  EXPECT_EQ(end_of_turn(ChatFamily::Phi3), "<|end|>");
  EXPECT_EQ(end_of_turn(ChatFamily::Zephyr), "</s>");
}

}  // namespace
}  // namespace lazyllm::server
