#include <gtest/gtest.h>

#include "format/gguf.h"
#include "lazyllm/error.h"
#include "test_util.h"

namespace lazyllm {
namespace {

TEST(GGUFReader, ReadsSharedModel) {
  LAZYLLM_REQUIRE_SHARED("models/stories260K.gguf");
  auto f = GGUFFile::open((test::shared_dir() / "models/stories260K.gguf").string());
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  EXPECT_NE(f->find_tensor("token_embd.weight"), nullptr);
}

}  // namespace
}  // namespace lazyllm
