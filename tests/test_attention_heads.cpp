// Decode attention for the query heads that share one K/V head (kernels/cpu/attention_heads.h):
// at every dispatch level this CPU runs, the grouped kernels give bitwise the per-head kernels'
// results (vec_ops.h), for any number of heads, head sizes with a scalar tail, gathered rows out
// of order, and weights of zero (skipped, so a non-finite value behind one cannot leak in).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/attention_heads.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/vec_ops.h"

namespace lazyllm {
namespace {

struct Case {
  int heads, hd, n;
};

bool bitwise_equal(const float* a, const float* b, size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

void check_case(const Case& c, uint64_t seed, const std::string& what) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  const int stride = c.hd * 3 + 5, n_slots = c.n * 2 + 3;
  std::vector<uint16_t> cache(static_cast<size_t>(n_slots) * stride);
  for (uint16_t& h : cache) h = fp32_to_fp16(u(rng));
  std::vector<int> rows(c.n);
  for (int& r : rows) r = static_cast<int>(rng() % n_slots);
  for (int r = 1; r < c.n; ++r)
    if (rows[r] == rows[0]) rows[r] = (rows[0] + 1) % n_slots;
  // A value row at a zero weight holds infinity: the per-head kernel skips it, so must this one.
  const int ldq = c.hd + 3, ldw = c.n + 7, ldo = c.hd + 1;
  std::vector<float> q(static_cast<size_t>(c.heads) * ldq), w(static_cast<size_t>(c.heads) * ldw);
  for (float& x : q) x = u(rng);
  for (float& x : w) x = std::fabs(u(rng)) < 0.3f ? 0.0f : u(rng);
  for (int h = 0; h < c.heads; ++h) w[h * ldw + 0] = 0.0f;
  cache[static_cast<size_t>(rows[0]) * stride + c.hd - 1] = fp32_to_fp16(std::numeric_limits<float>::infinity());

  std::vector<float> s(static_cast<size_t>(c.heads) * c.n), s_ref(s.size());
  std::vector<float> o(static_cast<size_t>(c.heads) * ldo, -1.0f), o_ref(o.size(), -1.0f);
  kernels::dot_rows_f16_heads(cache.data() + 1, stride, rows.data(), c.n, q.data(), ldq, c.heads, c.hd, s.data(), c.n);
  kernels::weighted_sum_rows_f16_heads(cache.data() + 2, stride, rows.data(), c.n, w.data(), ldw, c.heads, c.hd,
                                       o.data(), ldo);
  for (int h = 0; h < c.heads; ++h) {
    dot_rows_f16(cache.data() + 1, stride, rows.data(), c.n, q.data() + h * ldq, c.hd, s_ref.data() + h * c.n);
    weighted_sum_rows_f16(cache.data() + 2, stride, rows.data(), c.n, w.data() + h * ldw, c.hd, o_ref.data() + h * ldo);
  }
  EXPECT_TRUE(bitwise_equal(s.data(), s_ref.data(), s.size())) << what << ": scores";
  EXPECT_TRUE(bitwise_equal(o.data(), o_ref.data(), o.size())) << what << ": weighted sums";
  for (float x : o) EXPECT_TRUE(std::isfinite(x)) << what;
}

TEST(AttentionHeads, GroupedKernelsGiveThePerHeadKernelsBits) {
  const auto saved = kernels::cpu_level_cap();
  std::vector<std::optional<kernels::CpuLevel>> caps = {std::nullopt};
  for (kernels::CpuLevel l : kernels::cpu_target_levels())
    if (kernels::cpu_detected_level() >= l) caps.push_back(l);
  uint64_t seed = 1;
  for (const auto& cap : caps) {
    kernels::set_cpu_level_cap(cap);
    for (const Case& c : {Case{1, 64, 40}, Case{2, 32, 17}, Case{3, 64, 100}, Case{4, 128, 33}, Case{5, 80, 9},
                          Case{8, 64, 70}, Case{9, 20, 5}, Case{7, 3, 11}, Case{4, 64, 1}})
      check_case(c, seed++,
                 "cap " + std::string(cap ? kernels::cpu_level_name(*cap) : "none") + ", " + std::to_string(c.heads) +
                     " heads, hd " + std::to_string(c.hd) + ", " + std::to_string(c.n) + " rows");
  }
  kernels::set_cpu_level_cap(saved);
}

}  // namespace
}  // namespace lazyllm
