// How the scheduler shares a step's prompt budget among prefilling requests (prompt_budget.h).
#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "server/prompt_budget.h"

namespace lazyllm::server {
namespace {

int64_t total(const std::vector<int64_t>& v) { return std::accumulate(v.begin(), v.end(), int64_t{0}); }

// Cold prompts share the budget a chunk each, the shortest rest first.
TEST(PromptBudget, ColdPromptsShareTheBudgetShortestFirst) {
  const std::vector<PromptDemand> d = {{.left = 3000}, {.left = 700}, {.left = 2000}, {.left = 5000}, {.left = 900}};
  EXPECT_EQ(share_prompt_budget(d, 512, 1536), (std::vector<int64_t>{0, 512, 512, 0, 512}));
  EXPECT_EQ(share_prompt_budget(d, 512, 2048), (std::vector<int64_t>{512, 512, 512, 0, 512}));
  EXPECT_EQ(share_prompt_budget(d, 512, 1000), (std::vector<int64_t>{0, 512, 0, 0, 488}));
}

// A fresh request whose whole rest fits a chunk (a prefix-cache hit, a short prompt) runs first,
// alone; every other piece of prompt after it, the first with the step's decode tokens, each later
// one on its own. The step still carries its whole budget.
TEST(PromptBudget, AStepAnswersShortFreshPromptsFirstThenRunsChunkByChunk) {
  std::vector<PromptDemand> d = {{.left = 3000}, {.left = 2000}, {.left = 2500}, {.left = 90, .fresh = true}};
  std::vector<int64_t> take = share_prompt_budget(d, 512, 2048);
  EXPECT_EQ(take, (std::vector<int64_t>{512, 512, 512, 90}));
  StepOrder o = order_step(d, take);
  EXPECT_EQ(o.first, (std::vector<size_t>{3}));
  EXPECT_EQ(o.chunks, (std::vector<size_t>{0, 1, 2}));
  d[3].fresh = false;  // the last chunk of a prompt already under way: a chunk like the others
  o = order_step(d, take);
  EXPECT_TRUE(o.first.empty());
  EXPECT_EQ(o.chunks, (std::vector<size_t>{0, 1, 2, 3}));
  d[3] = {.left = 600, .fresh = true};  // a fresh prompt longer than a chunk: its first chunk is a chunk
  take = share_prompt_budget(d, 512, 2048);
  EXPECT_EQ(total(take), 2048);
  o = order_step(d, take);
  EXPECT_TRUE(o.first.empty());
  EXPECT_EQ(o.chunks.size(), 4u);
  EXPECT_TRUE(order_step({}, {}).first.empty());
}

// A prompt that waited moves up by a chunk a step, so fresh short prompts arriving every step
// cannot starve it.
TEST(PromptBudget, AWaitingPromptMovesUp) {
  std::vector<PromptDemand> d = {
      {.left = 3000, .waited = 0}, {.left = 100, .fresh = true}, {.left = 480, .fresh = true}};
  EXPECT_EQ(share_prompt_budget(d, 512, 580), (std::vector<int64_t>{0, 100, 480}));
  d[0].waited = 6;  // 3000 - 6 x 512 < 100
  EXPECT_EQ(share_prompt_budget(d, 512, 580), (std::vector<int64_t>{512, 68, 0}));
}

// A pruned prompt goes whole or waits; it never takes part of the budget.
TEST(PromptBudget, AWholePromptGoesWholeOrWaits) {
  const std::vector<PromptDemand> d = {{.left = 300}, {.left = 1900, .whole = true}, {.left = 100, .whole = true}};
  EXPECT_EQ(share_prompt_budget(d, 512, 2048), (std::vector<int64_t>{300, 0, 100}));
  EXPECT_EQ(share_prompt_budget(d, 512, 2400), (std::vector<int64_t>{300, 1900, 100}));
  EXPECT_TRUE(share_prompt_budget({}, 512, 2048).empty());
}

}  // namespace
}  // namespace lazyllm::server
