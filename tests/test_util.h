// Helpers shared by the tests: where the shared data lives, and temporary files.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>
#include <unistd.h>

namespace lazyllm::test {

// ../shared beside the repository, or $LAZYLLM_SHARED_DIR when set.
inline std::filesystem::path shared_dir() {
  if (const char* env = std::getenv("LAZYLLM_SHARED_DIR")) return env;
  return LAZYLLM_DEFAULT_SHARED_DIR;
}

// Skips the calling test with a clear message when a shared file is absent.
#define LAZYLLM_REQUIRE_SHARED(relpath)                                                          \
  do {                                                                                           \
    if (!std::filesystem::exists(::lazyllm::test::shared_dir() / (relpath)))                     \
      GTEST_SKIP() << "shared test data not found: " << (::lazyllm::test::shared_dir() / (relpath)) \
                   << " (set LAZYLLM_SHARED_DIR)";                                               \
  } while (0)

inline std::filesystem::path temp_path(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("lazyllm_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir / name;
}

}  // namespace lazyllm::test
