// Request parsing and validation for the HTTP server: every malformed body is a 400 ApiError
// naming the parameter; valid bodies give the values asked for.
#include <gtest/gtest.h>

#include "server/api_error.h"
#include "server/request.h"

namespace lazyllm::server {
namespace {

RequestLimits limits() {
  RequestLimits l;
  l.max_tokens = 512;
  return l;
}

CompletionRequest parse(const std::string& body, Endpoint e = Endpoint::Completions) {
  return parse_request(body, e, limits());
}

// The ApiError a body gets (status 0 when it parses).
ApiError error_of(const std::string& body, Endpoint e = Endpoint::Completions) {
  try {
    parse(body, e);
  } catch (const ApiError& err) {
    return err;
  }
  return ApiError(0, "parsed");
}

TEST(ServerRequest, CompletionFields) {
  const auto r = parse(R"({"model":"m","prompt":"Once","max_tokens":7,"temperature":0,"top_p":0.5,)"
                       R"("top_k":3,"seed":42,"stop":["\n","END"],"stream":true,)"
                       R"("stream_options":{"include_usage":true},"n":1,"user":"u"})");
  EXPECT_EQ(r.prompt, "Once");
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_EQ(r.sampling.temperature, 0.0f);
  EXPECT_EQ(r.sampling.top_p, 0.5f);
  EXPECT_EQ(r.sampling.top_k, 3);
  EXPECT_EQ(r.sampling.seed, 42u);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"\n", "END"}));
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_FALSE(r.lazy.has_value());
}

TEST(ServerRequest, OpenAIDefaultsAndNulls) {
  const auto r = parse(R"({"prompt":["one prompt"],"max_tokens":null,"stop":null,"seed":null})");
  EXPECT_EQ(r.prompt, "one prompt");
  EXPECT_FALSE(r.max_tokens.has_value());
  EXPECT_EQ(r.sampling.temperature, 1.0f);
  EXPECT_EQ(r.sampling.top_k, 0);
  EXPECT_EQ(r.sampling.min_p, 0.0f);
  EXPECT_TRUE(r.stop.empty());
  EXPECT_FALSE(r.stream);
}

TEST(ServerRequest, ChatMessagesAndTextParts) {
  const auto r = parse(R"({"messages":[{"role":"system","content":"Be brief."},)"
                       R"({"role":"user","content":[{"type":"text","text":"Hi "},{"type":"text","text":"there"}]},)"
                       R"({"role":"developer","content":"x","name":"n"}],"max_completion_tokens":3})",
                       Endpoint::Chat);
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "Hi there");
  EXPECT_EQ(r.messages[2].role, "system");
  EXPECT_EQ(r.max_tokens, 3);
}

TEST(ServerRequest, LazyExtension) {
  auto r = parse(R"({"prompt":"p","lazy":{"enabled":true,"prune":"0.5:0.5"}})");
  ASSERT_TRUE(r.lazy.has_value());
  EXPECT_TRUE(r.lazy->enabled);
  EXPECT_EQ(r.lazy->prune, "0.5:0.5");
  r = parse(R"({"prompt":"p","lazy":{"enabled":false}})");
  EXPECT_FALSE(r.lazy->enabled);
  r = parse(R"({"prompt":"p","lazy":{"prune":"2:0.5"}})");
  EXPECT_TRUE(r.lazy->enabled);
  EXPECT_EQ(error_of(R"({"prompt":"p","lazy":{"enabled":"yes"}})").param(), "lazy.enabled");
  EXPECT_EQ(error_of(R"({"prompt":"p","lazy":{"enabled":true,"keep":0.5}})").param(), "lazy.keep");
  EXPECT_EQ(error_of(R"({"prompt":"p","lazy":{"enabled":false,"prune":"2:0.5"}})").param(), "lazy.prune");
  EXPECT_EQ(error_of(R"({"prompt":"p","lazy":"on"})").param(), "lazy");
}

struct BadCase {
  const char* body;
  Endpoint endpoint;
  const char* param;  // "" when the error names no parameter
  const char* code;
};

TEST(ServerRequest, MalformedBodiesAre400WithParam) {
  const BadCase cases[] = {
      {"", Endpoint::Completions, "", "invalid_json"},
      {"{", Endpoint::Completions, "", "invalid_json"},
      {"[1,2]", Endpoint::Completions, "", "invalid_json"},
      {"\"prompt\"", Endpoint::Completions, "", "invalid_json"},
      {"{\"prompt\":\"caf\xC3\"}", Endpoint::Completions, "", "invalid_json"},   // truncated UTF-8
      {"{\"prompt\":\"\xFF\xFE\"}", Endpoint::Completions, "", "invalid_json"},  // invalid bytes
      {R"({"prompt":"p"} trailing)", Endpoint::Completions, "", "invalid_json"},
      {R"({})", Endpoint::Completions, "prompt", "missing_parameter"},
      {R"({"prompt":null})", Endpoint::Completions, "prompt", "invalid_type"},
      {R"({"prompt":5})", Endpoint::Completions, "prompt", "invalid_type"},
      {R"({"prompt":["a","b"]})", Endpoint::Completions, "prompt", "invalid_value"},
      {R"({"prompt":"p","max_tokens":"7"})", Endpoint::Completions, "max_tokens", "invalid_type"},
      {R"({"prompt":"p","max_tokens":7.5})", Endpoint::Completions, "max_tokens", "invalid_type"},
      {R"({"prompt":"p","max_tokens":-1})", Endpoint::Completions, "max_tokens", "invalid_value"},
      {R"({"prompt":"p","max_tokens":0})", Endpoint::Completions, "max_tokens", "invalid_value"},
      {R"({"prompt":"p","max_tokens":513})", Endpoint::Completions, "max_tokens", "invalid_value"},
      {R"({"prompt":"p","max_tokens":18446744073709551615})", Endpoint::Completions, "max_tokens", "invalid_value"},
      {R"({"prompt":"p","max_tokens":1e400})", Endpoint::Completions, "", "invalid_json"},
      {R"({"prompt":"p","max_tokens":99999999999999999999999})", Endpoint::Completions, "max_tokens", "invalid_type"},
      {R"({"prompt":"p","temperature":-0.1})", Endpoint::Completions, "temperature", "invalid_value"},
      {R"({"prompt":"p","temperature":1e300})", Endpoint::Completions, "temperature", "invalid_value"},
      {R"({"prompt":"p","temperature":true})", Endpoint::Completions, "temperature", "invalid_type"},
      {R"({"prompt":"p","top_p":0})", Endpoint::Completions, "top_p", "invalid_value"},
      {R"({"prompt":"p","top_p":1.5})", Endpoint::Completions, "top_p", "invalid_value"},
      {R"({"prompt":"p","top_k":-3})", Endpoint::Completions, "top_k", "invalid_value"},
      {R"({"prompt":"p","seed":"x"})", Endpoint::Completions, "seed", "invalid_type"},
      {R"({"prompt":"p","n":2})", Endpoint::Completions, "n", "invalid_value"},
      {R"({"prompt":"p","stream":"yes"})", Endpoint::Completions, "stream", "invalid_type"},
      {R"({"prompt":"p","stream_options":{"include_usage":true}})", Endpoint::Completions, "stream_options", "invalid_value"},
      {R"({"prompt":"p","stream":true,"stream_options":{"x":1}})", Endpoint::Completions, "stream_options.x", "unknown_parameter"},
      {R"({"prompt":"p","stop":["a","b","c","d","e"]})", Endpoint::Completions, "stop", "invalid_value"},
      {R"({"prompt":"p","stop":[""]})", Endpoint::Completions, "stop", "invalid_value"},
      {R"({"prompt":"p","stop":[1]})", Endpoint::Completions, "stop[0]", "invalid_type"},
      {R"({"prompt":"p","stop":{}})", Endpoint::Completions, "stop", "invalid_type"},
      {R"({"prompt":"p","frobnicate":1})", Endpoint::Completions, "frobnicate", "unknown_parameter"},
      {R"({"prompt":"p","messages":[]})", Endpoint::Completions, "messages", "unknown_parameter"},
      {R"({"messages":[]})", Endpoint::Chat, "messages", "invalid_value"},
      {R"({"messages":{}})", Endpoint::Chat, "messages", "invalid_type"},
      {R"({"prompt":"p"})", Endpoint::Chat, "prompt", "unknown_parameter"},
      {R"({"messages":[1]})", Endpoint::Chat, "messages[0]", "invalid_type"},
      {R"({"messages":[{"content":"hi"}]})", Endpoint::Chat, "messages[0].role", "missing_parameter"},
      {R"({"messages":[{"role":"user"}]})", Endpoint::Chat, "messages[0].content", "missing_parameter"},
      {R"({"messages":[{"role":"wizard","content":"hi"}]})", Endpoint::Chat, "messages[0].role", "invalid_value"},
      {R"({"messages":[{"role":"user","content":7}]})", Endpoint::Chat, "messages[0].content", "invalid_type"},
      {R"({"messages":[{"role":"user","content":"hi","mood":"x"}]})", Endpoint::Chat, "messages[0].mood", "unknown_parameter"},
      {R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":"u"}]}]})", Endpoint::Chat,
       "messages[0].content[0].image_url", "unknown_parameter"},
      {R"({"messages":[{"role":"user","content":[{"type":"image"}]}]})", Endpoint::Chat,
       "messages[0].content[0].type", "invalid_value"},
  };
  for (const auto& c : cases) {
    const ApiError e = error_of(c.body, c.endpoint);
    EXPECT_EQ(e.status(), 400) << c.body;
    EXPECT_EQ(e.param(), c.param) << c.body << " -> " << e.what();
    EXPECT_EQ(e.code(), c.code) << c.body << " -> " << e.what();
    EXPECT_FALSE(std::string(e.what()).empty());
  }
}

TEST(ServerRequest, TooManyMessages) {
  std::string body = R"({"messages":[)";
  for (int i = 0; i < 1025; ++i) body += std::string(i ? "," : "") + R"({"role":"user","content":"x"})";
  body += "]}";
  EXPECT_EQ(error_of(body, Endpoint::Chat).param(), "messages");
}

TEST(ServerRequest, ErrorObjectShape) {
  const ApiError e = error_of(R"({"prompt":"p","top_k":-3})");
  const auto j = error_json(e);
  ASSERT_TRUE(j.contains("error"));
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "top_k");
  EXPECT_EQ(j["error"]["code"], "invalid_value");
  EXPECT_TRUE(j["error"]["message"].is_string());
  const auto k = error_json(ApiError(429, "busy", "", "", "server_error"));
  EXPECT_TRUE(k["error"]["param"].is_null());
  EXPECT_TRUE(k["error"]["code"].is_null());
}

}  // namespace
}  // namespace lazyllm::server
