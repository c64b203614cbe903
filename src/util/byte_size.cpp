#include "util/byte_size.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <string>

#include "lazyllm/error.h"

namespace lazyllm {

int64_t parse_byte_size(std::string_view text, std::string_view what) {
  auto bad = [&] {
    return Error(std::string(what) + ": '" + std::string(text) +
                 "' is not a size (a number with an optional unit K, M, G or T, e.g. 40G or 512MiB)");
  };
  double v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || !std::isfinite(v) || v <= 0) throw bad();
  std::string unit(end, text.data() + text.size());
  for (char& ch : unit) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  double scale = 1;
  if (!unit.empty() && std::string_view("KMGT").find(unit[0]) != std::string_view::npos) {
    scale = std::pow(1024.0, 1 + static_cast<int>(std::string_view("KMGT").find(unit[0])));
    unit.erase(0, 1);
    if (unit == "IB" || unit == "B") unit.clear();
  } else if (unit == "B") {
    unit.clear();
  }
  if (!unit.empty()) throw bad();
  const double bytes = v * scale;
  if (bytes < 1 || bytes > std::ldexp(1.0, 60)) throw bad();
  return static_cast<int64_t>(bytes);
}

std::string format_gib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / double(int64_t{1} << 30));
  return buf;
}

std::string format_size(int64_t bytes) {
  if (bytes >= (int64_t{1} << 30)) return format_gib(bytes);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / double(int64_t{1} << 20));
  return buf;
}

}  // namespace lazyllm
