// The KV pool (cache/kv_pool.h): page counts, sessions taking pages as their context grows and
// giving them back, the same results as sessions with their own caches, and refusals instead of
// allocation failures. Memory sizes as written on the command line (util/byte_size.h).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cache/kv_pool.h"
#include "lazyllm/error.h"
#include "lazyllm/lazyllm.h"
#include "test_models.h"
#include "util/byte_size.h"

namespace lazyllm {
namespace {

using test::random_tokens;

std::shared_ptr<Model> pool_model() {
  static std::shared_ptr<Model> m = test::make_model({.name = "kv_pool", .layers = 3, .ctx = 1024}, DType::F32, 11);
  return m;
}

// Row: kv_heads x head size halves = 2 x 16 x 2 bytes; a 2 MiB page holds 32768 rows.
TEST(KvPool, CountsPagesPerLayerKAndV) {
  auto model = pool_model();
  const int64_t page = int64_t{2} << 20;
  auto pool = KvPool::create(*model, Device::Cpu, 10 * page + 5);
  EXPECT_EQ(pool->page_bytes(), page);
  EXPECT_EQ(pool->pages(), 10);
  EXPECT_EQ(pool->free_pages(), 10);
  EXPECT_EQ(pool->regions(), 6);
  EXPECT_EQ(pool->pages_for(0), 0);
  EXPECT_EQ(pool->pages_for(1), 6);
  const int row = 2 * 16 * 2;
  const int per_page = static_cast<int>(page / row);
  EXPECT_EQ(pool->region_pages(per_page - KvPool::kSlackRows), 1);
  EXPECT_EQ(pool->region_pages(per_page - KvPool::kSlackRows + 1), 2);
  EXPECT_EQ(pool->max_tokens(), per_page - KvPool::kSlackRows);  // 10 pages: one per region
  EXPECT_EQ(KvPool::session_bytes(*model, Device::Cpu, 100), 6 * page);
  EXPECT_TRUE(pool->take(7));
  EXPECT_FALSE(pool->take(4));
  EXPECT_EQ(pool->free_pages(), 3);
  pool->give(7);
  EXPECT_EQ(pool->free_pages(), 10);
  EXPECT_THROW(KvPool::create(*model, Device::Cpu, 5 * page), Error);  // less than a page per region
}

// A pooled session holds no pages until it computes, holds what its context needs, and gives
// every page back; its logits are bitwise those of a session with its own cache.
TEST(KvPool, SessionTakesPagesAsItGrowsAndGivesThemBack) {
  auto model = pool_model();
  auto pool = KvPool::create(*model, Device::Cpu, int64_t{64} << 20);
  SessionOptions plain;
  plain.n_threads = 2;
  plain.n_ctx = 512;
  SessionOptions pooled = plain;
  pooled.kv_pool = pool;
  const auto prompt = random_tokens(300, model->config().n_vocab, 3);
  Session a(model, plain), b(model, pooled);
  EXPECT_EQ(b.kv_pages(), 0);
  EXPECT_EQ(a.kv_pages(), 0);  // no pool
  for (Session* s : {&a, &b}) s->prefill(prompt);
  EXPECT_EQ(b.kv_pages(), pool->pages_for(300));
  EXPECT_EQ(pool->free_pages(), pool->pages() - b.kv_pages());
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(std::vector<float>(a.logits().begin(), a.logits().end()),
              std::vector<float>(b.logits().begin(), b.logits().end()))
        << "step " << i;
    for (Session* s : {&a, &b}) s->decode(7 + i);
  }
  EXPECT_TRUE(b.reserve_kv(512));
  EXPECT_EQ(b.kv_pages(), pool->pages_for(512));
  EXPECT_EQ(b.n_past(), 305);  // reserving keeps the context
  b.release_kv();
  EXPECT_EQ(b.kv_pages(), 0);
  EXPECT_EQ(b.n_past(), 0);
  EXPECT_EQ(pool->free_pages(), pool->pages());
  b.prefill(prompt);  // usable again
  a.reset();
  a.prefill(prompt);
  EXPECT_EQ(std::vector<float>(a.logits().begin(), a.logits().end()),
            std::vector<float>(b.logits().begin(), b.logits().end()));
}

// Pages a destroyed session held go back; a pool with too few free pages refuses a reservation
// (changing nothing) and a step (an Error, the session left as it was).
TEST(KvPool, RefusesWhatItCannotHold) {
  auto model = pool_model();
  auto pool = KvPool::create(*model, Device::Cpu, int64_t{12} << 20);  // 6 pages: one session's
  SessionOptions o;
  o.n_threads = 2;
  o.n_ctx = 256;
  o.kv_pool = pool;
  const auto prompt = random_tokens(20, model->config().n_vocab, 4);
  {
    Session s(model, o);
    s.prefill(prompt);
    EXPECT_EQ(pool->free_pages(), 0);
    Session t(model, o);
    EXPECT_FALSE(t.reserve_kv(10));
    EXPECT_EQ(t.kv_pages(), 0);
    try {
      t.prefill(prompt);
      FAIL() << "a prefill with no pages left ran";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("KV pool"), std::string::npos) << e.what();
    }
    EXPECT_EQ(t.n_past(), 0);
    EXPECT_EQ(s.n_past(), 20);
  }
  EXPECT_EQ(pool->free_pages(), pool->pages());
  o.device = Device::Cuda;
  if (cuda_available()) {
    EXPECT_THROW(Session(model, o), Error);  // a CPU pool for a GPU session
  }
}

TEST(ByteSize, ParsesUnitsAndRefusesTheRest) {
  EXPECT_EQ(parse_byte_size("1073741824", "x"), int64_t{1} << 30);
  EXPECT_EQ(parse_byte_size("40G", "x"), int64_t{40} << 30);
  EXPECT_EQ(parse_byte_size("40GiB", "x"), int64_t{40} << 30);
  EXPECT_EQ(parse_byte_size("512mb", "x"), int64_t{512} << 20);
  EXPECT_EQ(parse_byte_size("1.5k", "x"), 1536);
  EXPECT_EQ(parse_byte_size("2T", "x"), int64_t{2} << 40);
  EXPECT_EQ(parse_byte_size("7B", "x"), 7);
  for (const char* bad : {"", "G", "-1G", "0", "1X", "1GG", "nan", "inf", "1e30", "1 G", "0.1"})
    EXPECT_THROW(parse_byte_size(bad, "--kv-memory"), Error) << bad;
  try {
    parse_byte_size("lots", "--kv-memory");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--kv-memory"), std::string::npos);
  }
}

}  // namespace
}  // namespace lazyllm
