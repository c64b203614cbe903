// How the CPU holds a model file's bytes: a private copy in huge pages that replaces the mapping
// at the same address, or the shared file mapping itself.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <random>
#include <vector>

#include "format/mapped_file.h"
#include "lazyllm/lazyllm.h"
#include "lazyllm/tokenizer.h"
#include "test_util.h"

namespace lazyllm {
namespace {

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

void write_bytes(const std::filesystem::path& p, const std::vector<uint8_t>& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// The file changes on disk after make_resident: a private copy keeps the bytes it read, while a
// file mapping shows the page cache's new bytes. So this tells the two apart by behaviour.
TEST(MappedFile, PrivateCopyReplacesTheMappingAtTheSameAddress) {
  const auto path = test::temp_path("copy.bin");
  const size_t n = (size_t{5} << 20) + 123;  // two full huge pages and a partial one
  const auto before = random_bytes(n, 1);
  write_bytes(path, before);
  MappedFile f(path.string());
  const uint8_t* at = f.data();
  EXPECT_EQ(f.resident(), "");
  const std::string how = f.make_resident(true);
  if (how.find("memory available") != std::string::npos) GTEST_SKIP() << "this machine is short of memory: " << how;
  ASSERT_EQ(how, "private copy (huge pages)");
  EXPECT_EQ(f.resident(), how);
  EXPECT_EQ(f.make_resident(false), how);  // once per file
  ASSERT_EQ(f.data(), at);                 // every pointer into the weights stays valid
  ASSERT_EQ(std::memcmp(f.data(), before.data(), n), 0);

  write_bytes(path, random_bytes(n, 2));
  EXPECT_EQ(std::memcmp(f.data(), before.data(), n), 0);
}

TEST(MappedFile, MappingAskedForStaysTheSharedFileMapping) {
  const auto path = test::temp_path("mapped.bin");
  const size_t n = (size_t{3} << 20) + 7;
  write_bytes(path, random_bytes(n, 3));
  MappedFile f(path.string());
  EXPECT_EQ(f.make_resident(false), "file mapping");

  const auto after = random_bytes(n, 4);
  write_bytes(path, after);
  EXPECT_EQ(std::memcmp(f.data(), after.data(), n), 0);
}

TEST(MappedFile, EmptyFileHasNothingToCopy) {
  const auto path = test::temp_path("empty.bin");
  write_bytes(path, {});
  MappedFile f(path.string());
  EXPECT_EQ(f.data(), nullptr);
  EXPECT_EQ(f.make_resident(true), "file mapping (not asked for a private copy)");
}

// A CPU session computes the same logits from the copy as from the mapping, and the model says
// which one it reads.
TEST(MappedFile, SessionLogitsAreTheSameFromTheCopyAndTheMapping) {
  LAZYLLM_REQUIRE_SHARED("models/stories260K.gguf");
  const std::string path = (test::shared_dir() / "models/stories260K.gguf").string();
  std::vector<std::vector<float>> logits;
  for (HostWeights host : {HostWeights::kCopy, HostWeights::kMapped}) {
    auto model = Model::load(path, host);
    EXPECT_EQ(model->host_weights(), "");
    SessionOptions o;
    o.n_ctx = 64;
    o.n_threads = 1;
    Session s(model, o);
    EXPECT_EQ(model->host_weights(), host == HostWeights::kCopy ? "private copy (huge pages)" : "file mapping");
    const auto tokens = model->tokenizer().encode("Once upon a time there was", true, false);
    s.prefill(tokens);
    s.decode(tokens[1]);
    logits.emplace_back(s.logits().begin(), s.logits().end());
  }
  EXPECT_EQ(logits[0], logits[1]);
}

}  // namespace
}  // namespace lazyllm
