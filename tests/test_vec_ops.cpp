// The vector ops' softmax (attention's probabilities): its maximum must be the true one wherever
// the largest value sits (any lane, any of the unrolled accumulators, the scalar tail), since a
// smaller one overflows the exponentials; masked (-inf) keys get 0, a fully masked row all 0.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/vec_ops.h"

namespace lazyllm {
namespace {

std::vector<float> random_scores(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-50.0f, 50.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

// Softmax as defined, in double.
std::vector<double> reference_softmax(const std::vector<float>& x) {
  double mx = -INFINITY;
  for (float v : x) mx = std::max(mx, static_cast<double>(v));
  std::vector<double> e(x.size());
  double sum = 0;
  for (size_t i = 0; i < x.size(); ++i) sum += e[i] = std::exp(static_cast<double>(x[i]) - mx);
  for (double& v : e) v /= sum;
  return e;
}

TEST(VecOps, SoftmaxFindsTheMaximumAnywhere) {
  // 200 against values below 50: exp(200 - 50) overflows a float, so any position the maximum
  // scan missed would turn the row into inf/NaN.
  for (int n : {1, 2, 7, 15, 16, 17, 31, 33, 63, 64, 65, 67, 129, 1000}) {
    const std::vector<float> base = random_scores(n, 1 + n);
    for (int p = 0; p<n; p += n> 200 ? 37 : 1) {
      std::vector<float> x = base;
      x[p] = 200.0f;
      const float sum = softmax_inplace(x.data(), n);
      EXPECT_NEAR(sum, 1.0f, 1e-5f) << "n " << n << " max at " << p;
      for (int i = 0; i < n; ++i) {
        ASSERT_TRUE(std::isfinite(x[i])) << "n " << n << " max at " << p << ", element " << i;
        EXPECT_NEAR(x[i], i == p ? 1.0f : 0.0f, 1e-6f) << "n " << n << " max at " << p;
      }
    }
  }
}

TEST(VecOps, SoftmaxMatchesTheDefinition) {
  for (int n : {1, 5, 16, 100, 4001}) {
    std::vector<float> x = random_scores(n, 100 + n);
    for (float& v : x) v *= 0.1f;  // spread the probabilities
    const std::vector<double> ref = reference_softmax(x);
    softmax_inplace(x.data(), n);
    for (int i = 0; i < n; ++i) EXPECT_NEAR(x[i], ref[i], 1e-6 + 1e-5 * ref[i]) << "n " << n << ", element " << i;
  }
}

TEST(VecOps, SoftmaxGivesMaskedKeysZero) {
  const float ninf = -std::numeric_limits<float>::infinity();
  std::vector<float> masked(70, ninf);
  EXPECT_EQ(softmax_inplace(masked.data(), 70), 0.0f);
  for (float v : masked) EXPECT_EQ(v, 0.0f);

  std::vector<float> x = random_scores(70, 7);
  for (int i = 0; i < 70; i += 3) x[i] = ninf;
  x[40] = 60.0f;
  softmax_inplace(x.data(), 70);
  for (int i = 0; i < 70; i += 3) EXPECT_EQ(x[i], 0.0f);
  EXPECT_GT(x[40], 0.99f);
}

}  // namespace
}  // namespace lazyllm
