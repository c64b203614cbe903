#include "server/api_key.h"

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "lazyllm/error.h"

namespace lazyllm::server {
namespace {

bool has_control_chars(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return true;
  return false;
}

// The messages name where the key came from, never the key itself.
std::string checked(std::string key, const std::string& source) {
  if (key.empty()) throw Error(source + " gives an empty API key");
  if (has_control_chars(key))
    throw Error(source + " gives an API key with control characters (it could not be sent in an HTTP header)");
  return key;
}

std::string read_key_file(const std::string& path) {
  const std::string source = "--api-key-file " + path;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw Error("cannot read " + source + ": it is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + source + ": " + std::strerror(errno));
  std::string line;
  std::getline(in, line);
  if (in.bad()) throw Error("cannot read " + source + ": " + std::strerror(errno));
  const size_t end = line.find_last_not_of(" \t\r\n\v\f");
  line.erase(end == std::string::npos ? 0 : end + 1);
  if (line.empty()) throw Error(source + ": the first line is empty (the file should hold the API key)");
  return checked(std::move(line), source);
}

}  // namespace

ResolvedApiKey resolve_api_key(const ApiKeySources& s) {
  if (s.flag && s.file) throw Error("--api-key and --api-key-file exclude each other; give one");
  if (s.flag) return {checked(*s.flag, "--api-key"), "--api-key"};
  if (s.file) return {read_key_file(*s.file), "--api-key-file " + *s.file};
  if (s.env) return {checked(*s.env, kApiKeyEnv), kApiKeyEnv};
  return {};
}

bool constant_time_equal(std::string_view presented, std::string_view key) {
  // volatile: the compiler must not turn the accumulation into an early exit.
  volatile unsigned char diff = presented.size() == key.size() ? 0 : 1;
  for (size_t i = 0; i < presented.size(); ++i) {
    const unsigned char k = i < key.size() ? static_cast<unsigned char>(key[i]) : 0;
    diff = diff | (static_cast<unsigned char>(presented[i]) ^ k);
  }
  return diff == 0 && !key.empty();
}

bool bearer_matches(std::string_view authorization, std::string_view key) {
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() < kScheme.size()) return false;
  for (size_t i = 0; i < kScheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(authorization[i])) != kScheme[i]) return false;
  std::string_view token = authorization.substr(kScheme.size());
  while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) token.remove_prefix(1);
  while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
  return constant_time_equal(token, key);
}

}  // namespace lazyllm::server
