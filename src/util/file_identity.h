// Cheap identities of files: a run's log and a saved schedule record which model and data they
// belong to, so a stale log or schedule is refused instead of silently reused.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace lazyllm {

// FNV-1a 64 of a byte range, continuing from `h`.
uint64_t fnv1a(const char* p, size_t n, uint64_t h = 0xcbf29ce484222325ull);
// 16 lowercase hex digits.
std::string hex64(uint64_t v);

// {"bytes": size, "fnv1a": hash}: the hash covers the whole file (whole = true: data files), or
// its first and last MiB (models, which can be many GB: enough to tell two files apart without
// reading them through). Throws Error if the file cannot be read.
nlohmann::json file_identity(const std::string& path, bool whole);

}  // namespace lazyllm
