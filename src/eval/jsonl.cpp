#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>

#include "eval/sample.h"
#include "lazyllm/error.h"

namespace lazyllm::eval {
namespace {

using nlohmann::json;

std::string string_field(const json& j, const char* key, const std::string& where, bool allow_empty = true) {
  if (!j.contains(key)) throw Error(where + ": missing field '" + key + "'");
  if (!j[key].is_string()) throw Error(where + ": field '" + key + "' must be a string");
  std::string s = j[key].get<std::string>();
  if (!allow_empty && s.empty()) throw Error(where + ": field '" + key + "' is empty");
  return s;
}

std::vector<std::string> string_list(const json& v, const char* key, const std::string& where) {
  if (!v.is_array()) throw Error(where + ": field '" + key + "' must be a list of strings");
  std::vector<std::string> out;
  for (const auto& e : v) {
    if (!e.is_string()) throw Error(where + ": field '" + key + "' must be a list of strings");
    out.push_back(e.get<std::string>());
  }
  return out;
}

Sample parse_sample(const std::string& line, const std::string& where) {
  json j;
  try {
    j = json::parse(line);
  } catch (const json::parse_error& e) {
    throw Error(where + ": not valid JSON (" + e.what() + ")");
  }
  if (!j.is_object()) throw Error(where + ": expected a JSON object");
  Sample s;
  s.id = string_field(j, "_id", where, false);
  s.dataset = string_field(j, "dataset", where, false);
  s.input = string_field(j, "input", where);
  s.context = string_field(j, "context", where);
  if (!j.contains("answers")) throw Error(where + ": missing field 'answers'");
  s.answers = string_list(j["answers"], "answers", where);
  if (s.answers.empty()) throw Error(where + ": field 'answers' is empty");
  if (j.contains("all_classes") && !j["all_classes"].is_null())
    s.all_classes = string_list(j["all_classes"], "all_classes", where);
  if (j.contains("length") && !j["length"].is_null()) {
    if (!j["length"].is_number_integer() || j["length"].get<int64_t>() < 0 || j["length"].get<int64_t>() > INT32_MAX)
      throw Error(where + ": field 'length' must be a non-negative integer");
    s.length = j["length"].get<int>();
  }
  if (j.contains("group") && !j["group"].is_null()) s.group = string_field(j, "group", where);
  return s;
}

}  // namespace

std::vector<Sample> read_jsonl(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read data file '" + path + "'");
  std::vector<Sample> out;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    Sample s = parse_sample(line, path + ":" + std::to_string(lineno));
    s.index = static_cast<int>(out.size());
    out.push_back(std::move(s));
  }
  if (in.bad()) throw Error("error reading data file '" + path + "'");
  if (out.empty()) throw Error("data file '" + path + "' has no samples");
  return out;
}

}  // namespace lazyllm::eval
