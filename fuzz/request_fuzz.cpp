// libFuzzer target: the server's request parser and validator. Any body, for either endpoint and
// under the default and tight limits, must give either a request that keeps every documented
// bound or a 400 ApiError whose JSON error object serializes — never another exception, a crash
// or a sanitizer report. An accepted request must also survive a round trip: written back as
// JSON and parsed again it gives the same request. Accepted chat requests are rendered with every
// chat template family, as the server would.
//
// Input: the request body as is (seeds: fuzz/corpus/request_fuzz/*.json).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "server/api_error.h"
#include "server/chat_template.h"
#include "server/request.h"

using namespace lazyllm;
using namespace lazyllm::server;
using nlohmann::json;

namespace {

constexpr ChatFamily kFamilies[] = {ChatFamily::Llama2, ChatFamily::Llama3, ChatFamily::ChatML,
                                    ChatFamily::Mistral, ChatFamily::Zephyr, ChatFamily::Phi3};

RequestLimits tight_limits() {
  RequestLimits l;
  l.max_tokens = 16;
  l.max_messages = 3;
  l.max_stop = 2;
  l.max_stop_bytes = 4;
  return l;
}

// The request written back as the JSON body a client would send for it.
json to_json(const CompletionRequest& r) {
  json j;
  if (!r.model.empty()) j["model"] = r.model;
  if (r.endpoint == Endpoint::Chat) {
    j["messages"] = json::array();
    for (const auto& m : r.messages) j["messages"].push_back({{"role", m.role}, {"content", m.content}});
  } else {
    j["prompt"] = r.prompt;
  }
  if (r.max_tokens) j["max_tokens"] = *r.max_tokens;
  j["temperature"] = static_cast<double>(r.sampling.temperature);
  j["top_p"] = static_cast<double>(r.sampling.top_p);
  j["top_k"] = r.sampling.top_k;
  j["min_p"] = static_cast<double>(r.sampling.min_p);
  j["seed"] = static_cast<int64_t>(r.sampling.seed);
  if (!r.stop.empty()) j["stop"] = r.stop;
  j["stream"] = r.stream;
  if (r.include_usage) j["stream_options"] = {{"include_usage", true}};
  if (r.lazy) j["lazy"] = r.lazy->prune.empty() ? json{{"enabled", r.lazy->enabled}}
                                                : json{{"enabled", r.lazy->enabled}, {"prune", r.lazy->prune}};
  return j;
}

void check_request(const CompletionRequest& r, Endpoint ep, const RequestLimits& limits) {
  LAZYLLM_FUZZ_CHECK(r.endpoint == ep);
  if (ep == Endpoint::Chat) {
    LAZYLLM_FUZZ_CHECK(!r.messages.empty());
    LAZYLLM_FUZZ_CHECK(r.messages.size() <= static_cast<size_t>(limits.max_messages));
    LAZYLLM_FUZZ_CHECK(r.prompt.empty());
    for (const auto& m : r.messages) {
      LAZYLLM_FUZZ_CHECK(m.role == "system" || m.role == "user" || m.role == "assistant");
      LAZYLLM_FUZZ_CHECK(fuzz::valid_utf8(m.content));
    }
  } else {
    LAZYLLM_FUZZ_CHECK(r.messages.empty());
    LAZYLLM_FUZZ_CHECK(fuzz::valid_utf8(r.prompt));
  }
  LAZYLLM_FUZZ_CHECK(fuzz::valid_utf8(r.model));
  if (r.max_tokens) LAZYLLM_FUZZ_CHECK(*r.max_tokens >= 1 && *r.max_tokens <= limits.max_tokens);
  const SamplingParams& s = r.sampling;
  LAZYLLM_FUZZ_CHECK(std::isfinite(s.temperature) && s.temperature >= 0 && s.temperature <= 2);
  LAZYLLM_FUZZ_CHECK(std::isfinite(s.top_p) && s.top_p > 0 && s.top_p <= 1);
  LAZYLLM_FUZZ_CHECK(s.top_k >= 0);
  LAZYLLM_FUZZ_CHECK(std::isfinite(s.min_p) && s.min_p >= 0 && s.min_p <= 1);
  LAZYLLM_FUZZ_CHECK(s.repeat_penalty == 1.0f);
  LAZYLLM_FUZZ_CHECK(r.stop.size() <= static_cast<size_t>(std::max(limits.max_stop, 1)));
  for (const auto& stop : r.stop) {
    LAZYLLM_FUZZ_CHECK(!stop.empty() && stop.size() <= limits.max_stop_bytes);
    LAZYLLM_FUZZ_CHECK(fuzz::valid_utf8(stop));
  }
  LAZYLLM_FUZZ_CHECK(!r.include_usage || r.stream);
  if (r.lazy) LAZYLLM_FUZZ_CHECK(r.lazy->enabled || r.lazy->prune.empty());
}

void check_same(const CompletionRequest& a, const CompletionRequest& b) {
  LAZYLLM_FUZZ_CHECK(a.model == b.model && a.prompt == b.prompt && a.max_tokens == b.max_tokens);
  LAZYLLM_FUZZ_CHECK(a.messages.size() == b.messages.size());
  for (size_t i = 0; i < a.messages.size(); ++i)
    LAZYLLM_FUZZ_CHECK(a.messages[i].role == b.messages[i].role && a.messages[i].content == b.messages[i].content);
  LAZYLLM_FUZZ_CHECK(a.sampling.temperature == b.sampling.temperature && a.sampling.top_p == b.sampling.top_p &&
                     a.sampling.top_k == b.sampling.top_k && a.sampling.min_p == b.sampling.min_p &&
                     a.sampling.seed == b.sampling.seed);
  LAZYLLM_FUZZ_CHECK(a.stop == b.stop && a.stream == b.stream && a.include_usage == b.include_usage);
  LAZYLLM_FUZZ_CHECK(a.lazy.has_value() == b.lazy.has_value());
  if (a.lazy) LAZYLLM_FUZZ_CHECK(a.lazy->enabled == b.lazy->enabled && a.lazy->prune == b.lazy->prune);
}

void check_error(const ApiError& e) {
  LAZYLLM_FUZZ_CHECK(e.status() == 400);
  LAZYLLM_FUZZ_CHECK(std::string_view(e.what()).size() > 0);
  LAZYLLM_FUZZ_CHECK(!e.code().empty());
  // As the server writes it (invalid UTF-8 in a message is replaced, not thrown on).
  const std::string body = error_json(e).dump(-1, ' ', false, json::error_handler_t::replace);
  LAZYLLM_FUZZ_CHECK(fuzz::valid_utf8(body));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An exact-size heap copy, so ASan reports a read even one byte past the end.
  const std::string body(reinterpret_cast<const char*>(data), size);
  static const RequestLimits kLimits[] = {RequestLimits{}, tight_limits()};
  for (Endpoint ep : {Endpoint::Completions, Endpoint::Chat}) {
    for (const RequestLimits& limits : kLimits) {
      CompletionRequest r;
      try {
        r = parse_request(body, ep, limits);
      } catch (const ApiError& e) {
        check_error(e);
        continue;
      }
      check_request(r, ep, limits);
      const CompletionRequest again = parse_request(to_json(r).dump(), ep, limits);
      check_same(r, again);
      if (ep == Endpoint::Chat) {
        size_t content = 0;
        for (const auto& m : r.messages) content += m.content.size();
        for (ChatFamily f : kFamilies) {
          const std::string prompt = render_chat(f, r.messages);
          // Linear in the conversation: the content plus a bounded overhead per message.
          LAZYLLM_FUZZ_CHECK(prompt.size() <= content + 64 * (r.messages.size() + 1));
        }
      }
    }
  }
  return 0;
}
