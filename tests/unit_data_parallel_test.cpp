// tests/unit_data_parallel_test.cpp — USKD's batch mean over data-parallel ranks
// (data_parallel.hpp), ranks simulated in one process: a batch split by rows, each part's
// UskdBatchStats summed, each part run with the global stats. Each row's loss and gradients must
// match the whole batch's call; with the per-part mean they must not (so the test can fail).
#include "fusedkd/data_parallel.hpp"
#include "shard_cases.hpp"

namespace {

using namespace shardt;

template <typename T>
Labels rows_of(const Batch<T>& b, int64_t r0) {
  switch (b.kind) {
    case LabelKind::kHard32: return Labels::index(b.l32.data() + r0);
    case LabelKind::kHard64: return Labels::index(b.l64.data() + r0);
    case LabelKind::kSoft: return Labels::soft(b.soft.data() + r0 * b.soft_stride, b.soft_stride);
    default: return Labels::none();
  }
}

/// Runs the parts [cuts[k], cuts[k+1]) with the global (or, `global` false, their own) mean;
/// returns the largest difference to the whole batch's per-row losses and gradients.
template <typename T>
double part_difference(const Batch<T>& b, const std::vector<int64_t>& cuts, bool global) {
  using A = acc_t<T>;
  AnyOptions ao;
  ao.common.reduction = Reduction::kNone;
  ao.uskd.alpha = 1.0;
  ao.uskd.beta = 0.1;
  const fusedkd::UskdOptions o = ao.uskd_options();
  const Output<T> full = run(Loss::kUskd, ao, b);
  EXPECT_EQ(full.status, Status::kSuccess);
  fusedkd::UskdBatchStats sum;
  const int parts = static_cast<int>(cuts.size()) - 1;
  for (int k = 0; k < parts; ++k) {
    const int64_t r0 = cuts[k], rows = cuts[k + 1] - r0;
    fusedkd::UskdBatchStats local;
    EXPECT_EQ(fusedkd::cpu::uskd_batch_stats(fusedkd::matrix(b.student.data() + r0 * b.stride, rows, b.c, b.stride),
                                             rows_of(b, r0), o, &local),
              Status::kSuccess);
    sum += local;
  }
  double diff = 0.0;
  for (int k = 0; k < parts; ++k) {
    const int64_t r0 = cuts[k], rows = cuts[k + 1] - r0;
    std::vector<A> loss(static_cast<size_t>(rows) + 1);
    std::vector<T> gz(static_cast<size_t>(rows * b.c) + 1), gw(gz.size());
    const auto z = fusedkd::matrix(b.student.data() + r0 * b.stride, rows, b.c, b.stride);
    const auto w = fusedkd::matrix(b.other.data() + r0 * b.stride, rows, b.c, b.stride);
    const auto gzm = fusedkd::matrix(gz.data(), rows, b.c), gwm = fusedkd::matrix(gw.data(), rows, b.c);
    const Status s = global ? fusedkd::cpu::uskd(z, w, rows_of(b, r0), o, sum, loss.data(), gzm, gwm)
                            : fusedkd::cpu::uskd(z, w, rows_of(b, r0), o, loss.data(), gzm, gwm);
    EXPECT_EQ(s, Status::kSuccess);
    for (int64_t r = 0; r < rows; ++r) {
      diff = std::max(diff, std::fabs(static_cast<double>(loss[r]) - full.loss[r0 + r]));
      for (int64_t i = 0; i < b.c; ++i) {
        diff = std::max(diff, std::fabs(static_cast<double>(gz[r * b.c + i]) - full.gs_at(r0 + r, i)));
        diff = std::max(diff, std::fabs(static_cast<double>(gw[r * b.c + i]) - full.gw_at(r0 + r, i)));
      }
    }
  }
  return diff;
}

template <typename T>
void check_parts() {
  for (const LabelKind kind : {LabelKind::kHard64, LabelKind::kHard32, LabelKind::kSoft})
    for (const int64_t c : {5, 37, 1001}) {
      SCOPED_TRACE(std::string(label_name(kind)) + " C=" + std::to_string(c));
      const Batch<T> b = problem<T>(10, c, kind, {0, c}, 11u);
      const std::vector<int64_t> cuts = {0, 3, 7, 10};
      const double tol = sizeof(acc_t<T>) == 8 ? 1e-12 : 1e-5;
      EXPECT_LE(part_difference(b, cuts, true), tol);
      EXPECT_GT(part_difference(b, cuts, false), 10 * tol);   // the local mean is another loss
      EXPECT_LE(part_difference(b, {0, 10}, false), tol);     // one part: the plain call
    }
}

TEST(DataParallel, UskdGlobalMeanFloat) { check_parts<float>(); }
TEST(DataParallel, UskdGlobalMeanDouble) { check_parts<double>(); }

TEST(DataParallel, BadInputs) {
  const Batch<float> b = problem<float>(4, 10, LabelKind::kHard64, {0, 10}, 3u);
  const fusedkd::UskdOptions o;
  fusedkd::UskdBatchStats st;
  EXPECT_EQ(fusedkd::cpu::uskd_batch_stats(b.s(), b.labels(), o, nullptr), Status::kNullPointer);
  Batch<float> bad = b;
  bad.set_label(2, 10);
  EXPECT_EQ(fusedkd::cpu::uskd_batch_stats(bad.s(), bad.labels(), o, &st), Status::kLabelOutOfRange);
  ASSERT_EQ(fusedkd::cpu::uskd_batch_stats(b.s(), b.labels(), o, &st), Status::kSuccess);
  EXPECT_EQ(st.rows, 3.0);  // row 1 is ignored
  float loss = 0;
  fusedkd::UskdBatchStats nan = st;
  nan.sum1 = std::nan("");
  EXPECT_EQ(fusedkd::cpu::uskd(b.s(), b.o(), b.labels(), o, nan, &loss), Status::kInvalidOption);
  nan = st;
  nan.rows = -1.0;
  EXPECT_EQ(fusedkd::cpu::uskd(b.s(), b.o(), b.labels(), o, nan, &loss), Status::kInvalidOption);
  EXPECT_EQ(fusedkd::cpu::uskd(b.s(), b.o(), b.labels(), o, st, &loss), Status::kSuccess);
}

/// Only a mean crosses the ranks: the soft targets that need a batch min, max or sum of
/// exponentials are refused; the mean-based ones, and the square off, are accepted.
TEST(DataParallel, VariantSoftTargets) {
  const Batch<float> b = problem<float>(4, 10, LabelKind::kHard64, {0, 10}, 5u);
  using ST = fusedkd::UskdSoftTarget;
  for (ST mode : {ST::kMeanShift, ST::kSoftmax, ST::kSqrtMin, ST::kMaxNorm, ST::kMeanNorm}) {
    fusedkd::UskdOptions o;
    o.soft_target = mode;
    o.square = mode != ST::kMeanNorm;
    fusedkd::UskdBatchStats st;
    ASSERT_EQ(fusedkd::cpu::uskd_batch_stats(b.s(), b.labels(), o, &st), Status::kSuccess);
    float loss = 0;
    const bool mean_only = mode == ST::kMeanShift || mode == ST::kMeanNorm;
    EXPECT_EQ(fusedkd::cpu::uskd(b.s(), b.o(), b.labels(), o, st, &loss),
              mean_only ? Status::kSuccess : Status::kNotSupported)
        << static_cast<int>(mode);
    if (mean_only) {  // one rank: the global call is the plain call
      float plain = 0;
      ASSERT_EQ(fusedkd::cpu::uskd(b.s(), b.o(), b.labels(), o, &plain), Status::kSuccess);
      EXPECT_FLOAT_EQ(loss, plain);
    }
  }
}

}  // namespace
