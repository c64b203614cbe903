// Helpers shared by the tests: where the shared data lives, temporary files, and environment
// variables changed for a scope.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>

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

// An environment variable a test changes (set()), restored to what it was when the scope ends,
// also when an assertion returns early.
class ScopedEnv {
 public:
  explicit ScopedEnv(std::string name) : name_(std::move(name)) {
    if (const char* v = std::getenv(name_.c_str())) old_ = v;
  }
  ~ScopedEnv() { set(old_ ? old_->c_str() : nullptr); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
  // Sets the variable, or unsets it for nullptr.
  void set(const char* value) const {
    if (value) ::setenv(name_.c_str(), value, 1);
    else ::unsetenv(name_.c_str());
  }

 private:
  std::string name_;
  std::optional<std::string> old_;
};

}  // namespace lazyllm::test
