// The host math helpers of detail/core.hpp and the CPU backend that the loss tests reach only
// indirectly: the vectorizable exp (scalar and four-lane forms), the bit-blend select, the
// sum of exponentials over runs between targets.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "fusedkd/fusedkd.hpp"

namespace {

using fusedkd::detail::choose;
using fusedkd::detail::fk_exp;

TEST(HostMath, ExpMatchesFloat64ExpWithin1e7Relative) {
  double worst = 0.0;
  for (float x = -87.0f; x <= 88.0f; x += 0.000731f) {
    const double want = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::fabs(fk_exp(x) - want) / want);
  }
  EXPECT_LT(worst, 1e-7);
}

TEST(HostMath, ExpEdgeValues) {
  EXPECT_EQ(fk_exp(0.0f), 1.0f);
  EXPECT_EQ(fk_exp(-100.0f), 0.0f);
  EXPECT_EQ(fk_exp(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(fk_exp(-3.4e38f), 0.0f);
  EXPECT_TRUE(std::isnan(fk_exp(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(std::isfinite(fk_exp(100.0f)));  // saturates instead of overflowing
  EXPECT_GT(fk_exp(100.0f), 1e38f);
}

TEST(HostMath, FourLaneSumOfExpMatchesScalar) {
  std::mt19937 gen(7);
  std::normal_distribution<float> dist(0.0f, 4.0f);
  for (int n : {0, 1, 3, 4, 5, 17, 1000}) {
    std::vector<float> x(static_cast<size_t>(n));
    for (float& v : x) v = dist(gen);
    for (float inv : {1.0f, 0.25f}) {
      double want = 0.0;
      for (float v : x) want += std::exp(static_cast<double>((v - 1.5f) * inv));
      const float got = fusedkd::detail::sum_exp(x.data(), n, 1.5f, inv);
      EXPECT_NEAR(got, want, 1e-6 * std::max(want, 1.0)) << "n " << n << " inv " << inv;
    }
  }
  const float nan_in[5] = {0.0f, 1.0f, std::numeric_limits<float>::quiet_NaN(), 2.0f, 3.0f};
  EXPECT_TRUE(std::isnan(fusedkd::detail::sum_exp(nan_in, 5, 0.0f, 1.0f)));
}

TEST(HostMath, ChooseIsAnExactSelect) {
  const float big = 3.0e38f, tiny = 1.0e-45f;
  EXPECT_EQ(choose(true, big, tiny), big);
  EXPECT_EQ(choose(false, big, tiny), tiny);
  EXPECT_EQ(choose(false, std::numeric_limits<float>::infinity(), 0.0f), 0.0f);  // no inf*0
  EXPECT_EQ(choose(true, -2.5, 7.0), -2.5);
  EXPECT_EQ(choose(false, -2.5, 7.0), 7.0);
}

TEST(HostMath, RowStatsSkipTheTargetsOfEveryChunk) {
  // A row longer than one chunk, targets on both sides of a chunk edge: the non-target sum
  // must equal a direct float64 sum without them.
  const int32_t c = 3000;
  std::vector<float> x(c);
  std::mt19937 gen(3);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  for (float& v : x) v = dist(gen);
  x[1023] = 50.0f;  // a dominant target must not leak into the non-target sum
  x[1024] = 40.0f;
  fusedkd::detail::RowTargets<float> tg;
  tg.t1 = 1024;
  tg.t2 = 1023;
  const auto st = fusedkd::detail::row_stats(x.data(), c, tg, 0.5f, true);
  double m = -1e300;
  for (int32_t i = 0; i < c; ++i) {
    if (i != 1023 && i != 1024) m = std::max(m, static_cast<double>(x[i]));
  }
  double s1 = 0.0, s2 = 0.0;
  for (int32_t i = 0; i < c; ++i) {
    if (i == 1023 || i == 1024) continue;
    s1 += std::exp(x[i] - m);
    s2 += std::exp((x[i] - m) * 0.5);
  }
  EXPECT_EQ(st.m, static_cast<float>(m));
  EXPECT_NEAR(st.s1, s1, 1e-5 * s1);
  EXPECT_NEAR(st.st, s2, 1e-5 * s2);
  EXPECT_EQ(st.x1, 40.0f);
  EXPECT_EQ(st.x2, 50.0f);
}

}  // namespace
