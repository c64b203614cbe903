// The server's API key: where it comes from (a flag, a file, the environment) and how a request's
// Authorization header is checked against it without a timing side channel.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace lazyllm::server {

// The environment variable read when neither --api-key nor --api-key-file is given.
inline constexpr const char* kApiKeyEnv = "LAZYLLM_API_KEY";

struct ApiKeySources {
  std::optional<std::string> flag = std::nullopt;  // --api-key KEY (visible to other users in the process list)
  std::optional<std::string> file = std::nullopt;  // --api-key-file PATH: the key is the file's first line
  std::optional<std::string> env = std::nullopt;   // $LAZYLLM_API_KEY, when set
};

struct ResolvedApiKey {
  std::string key;     // empty: no key, /v1/* is open
  std::string source;  // for the start-up log: "--api-key", "--api-key-file PATH", "LAZYLLM_API_KEY" or ""
};

// Precedence: --api-key and --api-key-file exclude each other (both given is an error); either
// one wins over LAZYLLM_API_KEY. A key read from a file loses its trailing whitespace (the
// newline editors add). Throws Error, naming the source but never the key, for an unreadable or
// empty file, an empty value, or a key with control characters (it could not be sent in a header).
ResolvedApiKey resolve_api_key(const ApiKeySources& sources);

// Whether an Authorization header value is "Bearer KEY" (scheme case-insensitive) for this key,
// compared with constant_time_equal.
bool bearer_matches(std::string_view authorization, std::string_view key);

// Compares every byte of `presented` whatever the contents: no early exit at the first
// difference nor on a length mismatch, so the time says nothing about how much of a guess was
// right (it depends on the lengths only).
bool constant_time_equal(std::string_view presented, std::string_view key);

}  // namespace lazyllm::server
