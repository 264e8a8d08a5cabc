// fusedkd/data_parallel.hpp — USKD's batch mean over the global batch of data-parallel ranks.
//
// USKD's soft target P_k = S_tk^2 + V_k - mean_batch(S_tk^2) couples the rows of a batch through
// the mean. Under data parallelism each rank holds a part of the batch; `cpu::uskd` takes the
// mean over the rank's own rows (what the released code does under DDP). For the mean over the
// whole global batch, run USKD in two phases around one all-reduce:
//
//   1. cpu::uskd_batch_stats   the rank's local sums, UskdBatchStats{sum S_t1^2, sum S_t2^2,
//                              rows} (3 doubles; rows = the non-ignored rows);
//   (collective)               add the three values over the ranks (MPI_Allreduce(SUM), or an
//                              all-gather then add in rank order for bitwise determinism:
//                              fusedkd/dist/mpi.hpp does the latter);
//   2. cpu::uskd(..., global)  the usual call, with mean = sum / rows of the global sums.
//
// With `square = false` the sums are of S_tk instead of S_tk^2 (Table 12). The soft targets
// kMeanShift and kMeanNorm use only the mean; the others are kNotSupported here.
// Only the constant P changes: the reduction (mean over the rank's rows, sum, none) and the
// gradient stay per rank, as the data-parallel trainer expects (it averages parameter gradients
// across ranks itself). Phase 1 reads the student logits once more (its statistics pass).
#pragma once

#include "fusedkd/detail/cpu_uskd.hpp"
#include "fusedkd/uskd.hpp"

namespace fusedkd {

/// The additive parts of USKD's batch mean of S_tk^2: summed over ranks, they give the mean
/// over the global batch (sum1 / rows, sum2 / rows).
struct UskdBatchStats {
  double sum1 = 0.0;  ///< sum over the non-ignored rows of S_t1^2
  double sum2 = 0.0;  ///< sum over the non-ignored rows of S_t2^2 (0 for rows with one target)
  double rows = 0.0;  ///< the non-ignored rows

  /// Folds in another rank's stats.
  UskdBatchStats& operator+=(const UskdBatchStats& o) {
    sum1 += o.sum1;
    sum2 += o.sum2;
    rows += o.rows;
    return *this;
  }
};

namespace detail {
template <typename T>
Status uskd_batch_stats_cpu(Matrix<const T> z, Labels labels, const UskdOptions& o,
                            UskdBatchStats* out) {
  using A = acc_t<T>;
  const A dummy_loss = A(0);
  // The weak logits play no part here: z stands in for them in the shared checks.
  Status s = check_uskd(z, z, labels, o, &dummy_loss, Matrix<T>{}, Matrix<T>{});
  if (s != Status::kSuccess) return s;
  if (out == nullptr) return Status::kNullPointer;
  const int64_t n = z.rows, c = z.cols;
  auto targets = scratch<RowTargets<A>>(n);
  auto sq = scratch<A>(2 * n);
  if (!targets || !sq) return Status::kOutOfMemory;
  int64_t active = 0;
  s = find_targets(labels, n, c, o.ignore_index, labels.is_soft(), targets.get(), &active);
  if (s != Status::kSuccess) return s;
FUSEDKD_PARALLEL_ROWS(n * c)
  for (int64_t r = 0; r < n; ++r) {
    const RowTargets<A>& tg = targets[r];
    sq[2 * r] = sq[2 * r + 1] = A(0);
    if (tg.ignored) continue;
    const SplitStats<A> zs = row_stats(z.row(r), static_cast<int32_t>(c), tg, A(1), false);
    uskd_target_squares(zs, tg, sq[2 * r], sq[2 * r + 1], o.square);
  }
  UskdBatchStats b;
  for (int64_t r = 0; r < n; ++r) {  // row order, as uskd_cpu sums them
    b.sum1 += static_cast<double>(sq[2 * r]);
    b.sum2 += static_cast<double>(sq[2 * r + 1]);
  }
  b.rows = static_cast<double>(active);
  *out = b;
  return Status::kSuccess;
}

template <typename T>
Status uskd_global_cpu(Matrix<const T> z, Matrix<const T> w, Labels labels, const UskdOptions& o,
                       const UskdBatchStats& global, acc_t<T>* loss, Matrix<T> gz, Matrix<T> gw) {
  if (!(global.rows >= 0.0) || !std::isfinite(global.sum1) || !std::isfinite(global.sum2)) {
    return Status::kInvalidOption;
  }
  // Only a mean crosses the ranks: the soft targets built from a batch min, max or sum of
  // exponentials (Table 8's other variants) would need those reduced too.
  if (o.soft_target != UskdSoftTarget::kMeanShift && o.soft_target != UskdSoftTarget::kMeanNorm) {
    return Status::kNotSupported;
  }
  const double sums[3] = {global.sum1, global.sum2, global.rows};
  return uskd_cpu(z, w, labels, o, loss, gz, gw, sums);
}
}  // namespace detail

namespace cpu {
/// Phase 1: this rank's UskdBatchStats (`student`: [N, C], the rank's rows).
inline Status uskd_batch_stats(Matrix<const float> student, Labels labels,
                               const UskdOptions& options, UskdBatchStats* local) {
  return detail::uskd_batch_stats_cpu(student, labels, options, local);
}
inline Status uskd_batch_stats(Matrix<const double> student, Labels labels,
                               const UskdOptions& options, UskdBatchStats* local) {
  return detail::uskd_batch_stats_cpu(student, labels, options, local);
}

/// Phase 2: cpu::uskd with the batch mean of S_tk^2 taken from `global` (the sum of all ranks'
/// UskdBatchStats) instead of this call's rows. Everything else as cpu::uskd.
inline Status uskd(Matrix<const float> student, Matrix<const float> weak, Labels labels,
                   const UskdOptions& options, const UskdBatchStats& global, float* loss,
                   Matrix<float> grad_student = {}, Matrix<float> grad_weak = {}) {
  return detail::uskd_global_cpu(student, weak, labels, options, global, loss, grad_student,
                                 grad_weak);
}
inline Status uskd(Matrix<const double> student, Matrix<const double> weak, Labels labels,
                   const UskdOptions& options, const UskdBatchStats& global, double* loss,
                   Matrix<double> grad_student = {}, Matrix<double> grad_weak = {}) {
  return detail::uskd_global_cpu(student, weak, labels, options, global, loss, grad_student,
                                 grad_weak);
}
}  // namespace cpu

}  // namespace fusedkd
