#include "util/file_identity.h"

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "lazyllm/error.h"

namespace lazyllm {

uint64_t fnv1a(const char* p, size_t n, uint64_t h) {
  for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<unsigned char>(p[i])) * 0x100000001b3ull;
  return h;
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

nlohmann::json file_identity(const std::string& path, bool whole) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw Error("cannot read '" + path + "'");
  const int64_t size = in.tellg();
  const int64_t chunk = whole ? size : std::min<int64_t>(size, 1 << 20);
  std::string buf(static_cast<size_t>(chunk), '\0');
  in.seekg(0);
  in.read(buf.data(), chunk);
  uint64_t h = fnv1a(buf.data(), static_cast<size_t>(in.gcount()));
  if (!whole && size > chunk) {
    in.seekg(size - chunk);
    in.read(buf.data(), chunk);
    h = fnv1a(buf.data(), static_cast<size_t>(in.gcount()), h);
  }
  return {{"bytes", size}, {"fnv1a", hex64(h)}};
}

}  // namespace lazyllm
