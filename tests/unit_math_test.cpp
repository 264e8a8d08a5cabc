// The host math helpers of detail/core.hpp and the CPU backend that the loss tests reach only
// indirectly: the vector exp, the select, the vector max and sum of exponentials (full vectors
// and partial ones), the sums over runs between targets, USKD's rank sort.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "fusedkd/fusedkd.hpp"

namespace {

using fusedkd::detail::choose;
using fusedkd::detail::fk_exp;

/// exp of each element of x through the CPU backend's vector exp.
std::vector<float> lanes_exp(const std::vector<float>& x) {
  namespace hn = fusedkd::detail::hn;
  const fusedkd::detail::Tag<float> d;
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); i += hn::Lanes(d)) {
    const size_t n = std::min(hn::Lanes(d), x.size() - i);
    const auto v = fusedkd::detail::load_n(d, x.data() + i, n);
    fusedkd::detail::store_n(d, fusedkd::detail::exp_lanes(d, v), y.data() + i, n);
  }
  return y;
}

TEST(HostMath, VectorExpMatchesFloat64ExpWithin3e7Relative) {
  std::vector<float> x;
  for (float v = -87.0f; v <= 88.0f; v += 0.000731f) x.push_back(v);
  const std::vector<float> y = lanes_exp(x);
  double worst = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = std::exp(static_cast<double>(x[i]));
    worst = std::max(worst, std::fabs(y[i] - want) / want);
  }
  EXPECT_LT(worst, 3e-7);
}

TEST(HostMath, VectorExpEdgeValues) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> y =
      lanes_exp({0.0f, -100.0f, -inf, -3.4e38f, std::numeric_limits<float>::quiet_NaN(), 1.0f});
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_LE(y[1], 1e-38f);
  EXPECT_GE(y[1], 0.0f);
  EXPECT_EQ(y[2], 0.0f);
  EXPECT_EQ(y[3], 0.0f);
  EXPECT_TRUE(std::isnan(y[4]));  // NaN stays NaN (Highway's Exp alone gives 0)
  EXPECT_NEAR(y[5], std::exp(1.0), 3e-7);
}

TEST(HostMath, VectorSumOfExpMatchesFloat64) {
  std::mt19937 gen(7);
  std::normal_distribution<float> dist(0.0f, 4.0f);
  for (int n : {0, 1, 7, 8, 9, 15, 16, 17, 33, 1000}) {
    std::vector<float> x(static_cast<size_t>(n));
    for (float& v : x) v = dist(gen);
    for (float inv : {1.0f, 0.25f}) {
      double want = 0.0;
      for (float v : x) want += std::exp(static_cast<double>((v - 1.5f) * inv));
      const float got = fusedkd::detail::sum_exp(x.data(), n, 1.5f, inv);
      EXPECT_NEAR(got, want, 1e-6 * std::max(want, 1.0)) << "n " << n << " inv " << inv;
    }
  }
  // A NaN in a full vector and one in the partial last vector.
  for (int at : {2, 9, 16, 35}) {
    std::vector<float> x(37);
    for (int i = 0; i < 37; ++i) x[static_cast<size_t>(i)] = 0.1f * static_cast<float>(i);
    x[static_cast<size_t>(at)] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_TRUE(std::isnan(fusedkd::detail::sum_exp(x.data(), 37, 0.0f, 1.0f))) << "NaN at " << at;
  }
}

TEST(HostMath, VectorMaxMatchesStdMax) {
  std::mt19937 gen(11);
  std::normal_distribution<float> dist(0.0f, 4.0f);
  for (int n : {1, 7, 8, 9, 15, 16, 17, 33, 1000}) {
    for (int at = 0; at < n; at += n / 5 + 1) {  // the maximum in every lane and in the tail
      std::vector<float> x(static_cast<size_t>(n));
      for (float& v : x) v = dist(gen);
      x[static_cast<size_t>(at)] = 100.0f + static_cast<float>(at);
      const float lowest = -std::numeric_limits<float>::infinity();
      EXPECT_EQ(fusedkd::detail::max_of(x.data(), n, lowest), x[static_cast<size_t>(at)])
          << "n " << n << " at " << at;
      EXPECT_EQ(fusedkd::detail::max_of(x.data(), n, 1e9f), 1e9f);
    }
  }
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

/// USKD's rank sorts against std::stable_sort of the same rank_bits, and the order itself:
/// descending by value, -0 equal to +0, NaN last. Both the exact radix sort and ranks_of_keys
/// (the quantized sort where it applies, else the radix sort) are checked; returns whether the
/// quantized sort took the keys.
template <typename A>
bool check_rank_sort(const std::vector<A>& keys, const std::string& what) {
  using Entry = fusedkd::detail::RankEntry<A>;
  const int32_t n = static_cast<int32_t>(keys.size());
  std::vector<Entry> buf(2 * keys.size());
  for (int32_t i = 0; i < n; ++i) buf[i] = {fusedkd::detail::rank_bits(keys[i]), i};
  std::vector<Entry> want(buf.begin(), buf.begin() + n);
  std::stable_sort(want.begin(), want.end(),
                   [](const Entry& a, const Entry& b) { return a.key < b.key; });
  const Entry* got = fusedkd::detail::radix_sort(buf.data(), buf.data() + n, n);
  for (int32_t p = 0; p < n; ++p) {
    EXPECT_EQ(got[p].index, want[p].index) << what << ", position " << p;
    if (got[p].index != want[p].index) return false;
    if (p == 0) continue;
    const A prev = keys[got[p - 1].index], cur = keys[got[p].index];
    if (std::isnan(prev)) {
      EXPECT_TRUE(std::isnan(cur)) << what << ": NaN before a number at position " << p;
    } else if (!std::isnan(cur)) {
      EXPECT_GE(prev, cur) << what << ", position " << p;
      if (prev == cur) EXPECT_LT(got[p - 1].index, got[p].index) << what << ": a tie out of order";
    }
  }
  // ranks_of_keys, given the range the way rank_keys finds it.
  fusedkd::detail::KeyRange<A> range{keys[0], keys[0], A(0)};
  for (const A k : keys) {
    range.lo = std::min(range.lo, k);
    range.hi = std::max(range.hi, k);
    range.sum += k;
  }
  std::vector<uint32_t> packed(2 * keys.size());
  std::vector<A> rank(keys.size(), A(-1));
  const bool quantized = fusedkd::detail::quantized_ranks(keys.data(), n, range, packed.data(),
                                                          packed.data() + n, rank.data());
  std::vector<Entry> entries(2 * keys.size());
  fusedkd::detail::RankScratch<A> sc{nullptr, packed.data(), entries.data(), rank.data(), nullptr,
                                     nullptr};
  std::fill(rank.begin(), rank.end(), A(-1));
  fusedkd::detail::ranks_of_keys(keys.data(), n, range, sc);
  for (int32_t p = 0; p < n; ++p) {
    EXPECT_EQ(rank[want[p].index], A(p + 1)) << what << ": rank of class " << want[p].index
                                             << (quantized ? " (quantized sort)" : " (radix sort)");
    if (rank[want[p].index] != A(p + 1)) break;
  }
  return quantized;
}

template <typename A>
void check_rank_sorts() {
  using Bits = fusedkd::detail::RankBits<A>;
  std::mt19937_64 gen(17);
  std::normal_distribution<A> normal(A(0), A(3));
  std::uniform_real_distribution<A> unit(A(0), A(1));
  const bool is_float = std::is_same<A, float>::value;
  for (int n : {1, 2, 3, 100, 1000, 4096, 4097, 5000}) {
    const std::string at = " (n " + std::to_string(n) + ")";
    const bool small = n > 1 && n <= 4096;  // where the quantized sort may take float keys
    std::vector<A> k(static_cast<size_t>(n));
    std::fill(k.begin(), k.end(), A(1.5));
    EXPECT_FALSE(check_rank_sort(k, "all equal" + at));
    for (int i = 0; i < n; ++i) k[i] = i % 3 == 0 ? A(-2) : A(7);
    const bool many = n - (n + 2) / 3 > 64;  // more than 64 sevens: the radix sort takes the row
    EXPECT_EQ(check_rank_sort(k, "two values" + at), is_float && small && !many);
    for (A& v : k) v = A(1) + A(0.9) * unit(gen);
    EXPECT_EQ(check_rank_sort(k, "one binade" + at), is_float && small);
    for (A& v : k) v = normal(gen);
    EXPECT_EQ(check_rank_sort(k, "normal" + at), is_float && small);
    // Keys that share 16-bit levels: clusters of 1 to 5 keys a few ulps apart, exact ties
    // among them, in shuffled class order; the insertion pass must order each level.
    for (int i = 0; i < n; ++i) {
      const A base = A(i / 5) * A(3) / A(n);
      k[i] = base + A(i % 5 == 4 ? 0 : i % 5) * A(1e-6);
    }
    std::shuffle(k.begin(), k.end(), gen);
    EXPECT_EQ(check_rank_sort(k, "crowded levels" + at), is_float && small);
    // 100 keys in one level between two distant ones: past the insertion pass's limit.
    if (n >= 102) {
      for (int i = 0; i < n; ++i) k[i] = A(1) + A(i % 100) * A(1e-7);
      k[0] = A(-1000);
      k[1] = A(1000);
      EXPECT_FALSE(check_rank_sort(k, "one crowded level" + at));
    }
    for (A& v : k) v = normal(gen);
    for (int i = 0; i < n; ++i) k[i] = k[i / 2];  // runs of ties
    k[0] = A(0);
    if (n > 1) k[n - 1] = -A(0);
    if (n > 5) {
      k[1] = std::numeric_limits<A>::infinity();
      k[2] = -std::numeric_limits<A>::infinity();
      k[3] = std::numeric_limits<A>::quiet_NaN();
      k[n / 2] = std::numeric_limits<A>::quiet_NaN();
    }
    check_rank_sort(k, "ties, zeros, infinities, NaN" + at);
    if (n > 5) {
      k[3] = k[n / 2] = A(0.5);
      EXPECT_FALSE(check_rank_sort(k, "ties, zeros, infinities" + at));
      k[1] = std::numeric_limits<A>::max();
      k[2] = std::numeric_limits<A>::lowest();
      EXPECT_FALSE(check_rank_sort(k, "a range past the largest value" + at));
      k[1] = A(1e-38);
      k[2] = A(1.00001e-38);
      for (int i = 3; i < n; ++i) k[i] = A(1e-38);
      EXPECT_FALSE(check_rank_sort(k, "a range whose inverse overflows" + at));
    }
    for (A& v : k) {  // every bit pattern, so every pass
      const Bits b = static_cast<Bits>(gen());
      std::memcpy(&v, &b, sizeof v);
    }
    check_rank_sort(k, "random bits" + at);
  }
}

TEST(HostMath, RankSortMatchesStableSort) {
  check_rank_sorts<float>();
  check_rank_sorts<double>();
}

}  // namespace
