// tests/unit_shard_test.cpp — the column-sharded losses (shard.hpp) with k shards simulated in
// one process: phase 1 per shard, the all-gather as a copy, phase 2 per shard, the sum of the
// shares. Each result must match the unsharded call: the summed loss, and every shard's
// gradient slice. No MPI needed (tests/mpi/ runs the same cases over real processes).
#include <cstring>

#include "shard_cases.hpp"

namespace {

using namespace shardt;

/// Runs `world` simulated shards of batch `b` (bounds: the columns) and compares with `full`.
template <typename T>
::testing::AssertionResult simulate(Loss l, const AnyOptions& o, const Batch<T>& b,
                                    const std::vector<int64_t>& bounds, const Output<T>& full) {
  using A = acc_t<T>;
  const int world = static_cast<int>(bounds.size()) - 1;
  const int64_t n = b.n, rec = n * fusedkd::kShardStatsPerRow;
  const int64_t nloss = o.common.reduction == Reduction::kNone ? n : 1;
  std::vector<A> gathered(static_cast<size_t>(world * rec + 1), A(-1));
  for (int k = 0; k < world; ++k) {
    const int64_t first = bounds[k], w = bounds[k + 1] - first;
    const Status s = stats<T>(l, o, slice(b.s(), first, w), slice(b.o(), first, w), b.labels(),
                              Shard{first, b.c}, gathered.data() + k * rec);
    if (s != Status::kSuccess) return ::testing::AssertionFailure() << "stats: " << fusedkd::status_name(s);
  }
  std::vector<A> shares(static_cast<size_t>(world * nloss + 1), A(-1));
  std::vector<T> g(static_cast<size_t>(std::max<int64_t>(1, n * b.c)), sentinel<T>());
  for (int k = 0; k < world; ++k) {
    const int64_t first = bounds[k], w = bounds[k + 1] - first;
    const Status s = finish<T>(l, o, slice(b.s(), first, w), slice(b.o(), first, w), b.labels(),
                               Shard{first, b.c}, gathered.data(), world,
                               shares.data() + k * nloss, fusedkd::matrix(g.data() + first, n, w, b.c));
    if (s != Status::kSuccess) return ::testing::AssertionFailure() << "finish: " << fusedkd::status_name(s);
  }
  std::vector<A> loss(static_cast<size_t>(nloss));
  fusedkd::cpu::sum_shares(shares.data(), world, nloss, loss.data());
  return matches(full, loss.data(), g.data(), b.c, 0, b.c);
}

template <typename T>
void sweep(Loss l) {
  const LabelKind kinds[] = {LabelKind::kHard32, LabelKind::kHard64, LabelKind::kSoft, LabelKind::kNone};
  const Reduction reds[] = {Reduction::kMean, Reduction::kSum, Reduction::kNone};
  for (const int64_t c : {2, 5, 37, 1001, 2500})
    for (int world = 1; world <= 4; ++world)
      for (int pattern = 0; pattern < 3; ++pattern) {
        if (c == 2500 && (world == 3 || pattern == 1)) continue;  // enough large cases
        const std::vector<int64_t> bounds = split(c, world, pattern);
        for (const LabelKind kind : kinds) {
          if (kind == LabelKind::kNone && l != Loss::kKd) continue;
          if (kind == LabelKind::kSoft && c < 3) continue;
          if (c > 1000 && kind == LabelKind::kHard32) continue;  // (the small rows cover int32)
          const Batch<T> b = problem<T>(c > 1000 ? 4 : 9, c, kind, bounds, 17u + static_cast<unsigned>(c));
          for (const Reduction red : reds)
            for (const bool ce : {false, true}) {
              if (ce && kind == LabelKind::kNone) continue;
              for (const double temp : {1.0, 3.0}) {
                if (c > 1000 && temp == 1.0 && red != Reduction::kSum) continue;  // CI time
                const AnyOptions o = options(red, ce, temp);
                SCOPED_TRACE(std::string(loss_name(l)) + " C=" + std::to_string(c) + " world=" +
                             std::to_string(world) + " pattern=" + std::to_string(pattern) + " " +
                             label_name(kind) + " " + o.describe(l));
                const Output<T> full = run(l, o, b);
                ASSERT_EQ(full.status, Status::kSuccess);
                EXPECT_TRUE(simulate(l, o, b, bounds, full));
              }
            }
        }
      }
}

TEST(Shard, NkdFloat) { sweep<float>(Loss::kNkd); }
TEST(Shard, NkdDouble) { sweep<double>(Loss::kNkd); }
TEST(Shard, KdFloat) { sweep<float>(Loss::kKd); }
TEST(Shard, KdDouble) { sweep<double>(Loss::kKd); }
TEST(Shard, DkdFloat) { sweep<float>(Loss::kDkd); }
TEST(Shard, DkdDouble) { sweep<double>(Loss::kDkd); }

TEST(Shard, SplitsTileTheRow) {
  for (const int64_t c : {2, 5, 37, 1001})
    for (int world = 1; world <= 4; ++world)
      for (int pattern = 0; pattern < 3; ++pattern) {
        const std::vector<int64_t> b = split(c, world, pattern);
        EXPECT_EQ(b.front(), 0);
        EXPECT_EQ(b.back(), c);
        for (int k = 0; k < world; ++k) EXPECT_LE(b[k], b[k + 1]);
      }
  // The uneven patterns are uneven.
  const std::vector<int64_t> b = split(37, 3, 0);
  EXPECT_LT(b[1] - b[0], b[3] - b[2]);
}

/// Same inputs, same bits: the merge runs in rank order and rows reduce in row order.
TEST(Shard, Deterministic) {
  const std::vector<int64_t> bounds = split(1001, 3, 0);
  const Batch<float> b = problem<float>(9, 1001, LabelKind::kHard64, bounds, 5u);
  const AnyOptions o = options(Reduction::kMean, true, 2.0);
  std::vector<float> rec1(9 * 8 * 3), rec2(9 * 8 * 3);
  for (int k = 0; k < 3; ++k) {
    const int64_t first = bounds[k], w = bounds[k + 1] - first;
    ASSERT_EQ(stats<float>(Loss::kDkd, o, slice(b.s(), first, w), slice(b.o(), first, w), b.labels(),
                           Shard{first, 1001}, rec1.data() + k * 72), Status::kSuccess);
    ASSERT_EQ(stats<float>(Loss::kDkd, o, slice(b.s(), first, w), slice(b.o(), first, w), b.labels(),
                           Shard{first, 1001}, rec2.data() + k * 72), Status::kSuccess);
  }
  EXPECT_EQ(std::memcmp(rec1.data(), rec2.data(), rec1.size() * sizeof(float)), 0);
  float s1 = 0, s2 = 0;
  std::vector<float> g1(9 * 400), g2(9 * 400);
  const int64_t first = bounds[1], w = bounds[2] - first;
  ASSERT_EQ(finish<float>(Loss::kDkd, o, slice(b.s(), first, w), slice(b.o(), first, w), b.labels(),
                          Shard{first, 1001}, rec1.data(), 3, &s1, fusedkd::matrix(g1.data(), 9, w, 400)),
            Status::kSuccess);
  ASSERT_EQ(finish<float>(Loss::kDkd, o, slice(b.s(), first, w), slice(b.o(), first, w), b.labels(),
                          Shard{first, 1001}, rec1.data(), 3, &s2, fusedkd::matrix(g2.data(), 9, w, 400)),
            Status::kSuccess);
  EXPECT_EQ(std::memcmp(&s1, &s2, sizeof s1), 0);
  EXPECT_EQ(std::memcmp(g1.data(), g2.data(), g1.size() * sizeof(float)), 0);
}

TEST(Shard, BadInputs) {
  const Batch<float> b = problem<float>(4, 10, LabelKind::kHard64, {0, 4, 10}, 3u);
  const AnyOptions o = options(Reduction::kMean, false, 1.0);
  std::vector<float> rec(4 * 8 * 2, 0.0f);
  float share = 0;
  const auto z = slice(b.s(), 4, 6), v = slice(b.o(), 4, 6);
  // a slice past the end of the row, a negative first column, too few classes
  EXPECT_EQ(stats<float>(Loss::kNkd, o, z, v, b.labels(), Shard{5, 10}, rec.data()), Status::kShapeMismatch);
  EXPECT_EQ(stats<float>(Loss::kNkd, o, z, v, b.labels(), Shard{-1, 10}, rec.data()), Status::kShapeMismatch);
  EXPECT_EQ(stats<float>(Loss::kNkd, o, slice(b.s(), 0, 1), slice(b.o(), 0, 1), b.labels(), Shard{0, 1},
                         rec.data()), Status::kTooFewClasses);
  // student and teacher slices of different widths
  EXPECT_EQ(stats<float>(Loss::kNkd, o, z, slice(b.o(), 4, 5), b.labels(), Shard{4, 10}, rec.data()),
            Status::kShapeMismatch);
  EXPECT_EQ(stats<float>(Loss::kNkd, o, z, v, b.labels(), Shard{4, 10}, nullptr), Status::kNullPointer);
  // a label outside [0, C): C is the full width, not the slice's
  Batch<float> bad = b;
  bad.set_label(0, 10);
  EXPECT_EQ(stats<float>(Loss::kNkd, o, slice(bad.s(), 4, 6), slice(bad.o(), 4, 6), bad.labels(),
                         Shard{4, 10}, rec.data()), Status::kLabelOutOfRange);
  bad.set_label(0, 7);  // beyond the slice, inside the row: fine
  EXPECT_EQ(stats<float>(Loss::kNkd, o, slice(bad.s(), 0, 4), slice(bad.o(), 0, 4), bad.labels(),
                         Shard{0, 10}, rec.data()), Status::kSuccess);
  AnyOptions hot = o;
  hot.nkd.temperature = 0.0;
  EXPECT_EQ(stats<float>(Loss::kNkd, hot, z, v, b.labels(), Shard{4, 10}, rec.data()), Status::kInvalidOption);
  // phase 2: no world, no records, a gradient of the wrong width
  EXPECT_EQ(finish<float>(Loss::kNkd, o, z, v, b.labels(), Shard{4, 10}, rec.data(), 0, &share, {}),
            Status::kInvalidOption);
  EXPECT_EQ(finish<float>(Loss::kNkd, o, z, v, b.labels(), Shard{4, 10}, nullptr, 2, &share, {}),
            Status::kNullPointer);
  std::vector<float> g(4 * 10);
  EXPECT_EQ(finish<float>(Loss::kNkd, o, z, v, b.labels(), Shard{4, 10}, rec.data(), 2, &share,
                          fusedkd::matrix(g.data(), 4, 10)),
            Status::kShapeMismatch);
  EXPECT_EQ(finish<float>(Loss::kNkd, o, z, v, b.labels(), Shard{4, 10}, rec.data(), 2, nullptr, {}),
            Status::kNullPointer);
  EXPECT_STREQ(fusedkd::status_name(Status::kCommError), "comm_error");
  // KD without labels is fine; NKD without labels is not
  EXPECT_EQ(stats<float>(Loss::kKd, o, z, v, Labels::none(), Shard{4, 10}, rec.data()), Status::kSuccess);
  EXPECT_EQ(stats<float>(Loss::kNkd, o, z, v, Labels::none(), Shard{4, 10}, rec.data()), Status::kNullPointer);
}

/// The primitives: a slice's targets become local; the merge of records is the stats of the row.
TEST(ShardCore, SliceTargetsAndMerge) {
  using fusedkd::detail::RowTargets;
  using fusedkd::detail::SplitStats;
  RowTargets<double> tg;
  tg.t1 = 7;
  tg.t2 = 2;
  const RowTargets<double> a = fusedkd::detail::slice_targets(tg, 5, 3), b2 = fusedkd::detail::slice_targets(tg, 0, 5);
  EXPECT_EQ(a.t1, 2);
  EXPECT_EQ(a.t2, -1);
  EXPECT_EQ(b2.t1, -1);
  EXPECT_EQ(b2.t2, 2);
  EXPECT_EQ(fusedkd::detail::slice_targets(tg, 8, 4).t1, -1);

  // whole-row stats vs the merge of three slices' records
  const double x[9] = {0.5, -3.0, 2.0, 7.5, 1.0, -1.0, 4.0, 3.0, 0.0};
  RowTargets<double> one;
  one.t1 = 3;
  SplitStats<double> whole;
  for (int i = 0; i < 9; ++i) fusedkd::detail::accumulate(whole, one, i, x[i], 0.25, true);
  double rec[3 * 4];
  const int cut[4] = {0, 2, 6, 9};
  for (int k = 0; k < 3; ++k) {
    const RowTargets<double> loc = fusedkd::detail::slice_targets(one, cut[k], cut[k + 1] - cut[k]);
    SplitStats<double> part;
    for (int i = cut[k]; i < cut[k + 1]; ++i) fusedkd::detail::accumulate(part, loc, i - cut[k], x[i], 0.25, true);
    fusedkd::detail::store_side(part, loc.t1 >= 0, rec + 4 * k);
  }
  const SplitStats<double> merged = fusedkd::detail::merge_side(rec, 3, 4, 0.25, true);
  EXPECT_EQ(merged.m, whole.m);
  EXPECT_NEAR(merged.s1, whole.s1, 1e-14 * whole.s1);
  EXPECT_NEAR(merged.st, whole.st, 1e-14 * whole.st);
  EXPECT_EQ(merged.x1, 7.5);
}

}  // namespace
