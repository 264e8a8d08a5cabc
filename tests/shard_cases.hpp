// tests/shard_cases.hpp — problems, shard splits and comparisons for the column-sharded losses,
// shared by the single-process test (unit_shard_test.cpp: k shards simulated in one process)
// and the MPI test (mpi/mpi_shard_test.cpp: one shard per process).
#pragma once

#include <string>
#include <vector>

#include "fusedkd/shard.hpp"
#include "test_util.hpp"

namespace shardt {

using namespace tu;
using fusedkd::Shard;

/// Column bounds of `world` uneven shards of [0, c): bounds[k] .. bounds[k + 1]. `pattern` 0:
/// widths growing with the rank (1, 2, 3, ... parts), 1: shrinking, 2: rank 0 as wide as
/// possible and the others one or two columns (an empty shard too when c is small).
inline std::vector<int64_t> split(int64_t c, int world, int pattern) {
  std::vector<int64_t> b(static_cast<size_t>(world) + 1, 0);
  if (pattern == 2) {
    int64_t rest = 0;
    for (int k = 1; k < world; ++k) rest += k % 2 == 1 ? 1 : (c > 8 ? 2 : 0);
    b[1] = c - rest;
    for (int k = 1; k < world; ++k) b[static_cast<size_t>(k) + 1] = b[static_cast<size_t>(k)] + (k % 2 == 1 ? 1 : (c > 8 ? 2 : 0));
    return b;
  }
  const int64_t parts = static_cast<int64_t>(world) * (world + 1) / 2;
  int64_t at = 0;
  for (int k = 0; k < world; ++k) {
    const int64_t weight = pattern == 0 ? k + 1 : world - k;
    at += weight;
    b[static_cast<size_t>(k) + 1] = c * at / parts;
  }
  return b;
}

/// A problem whose targets sit in every position of every shard (first column, last column,
/// the middle), with an ignored row, teacher correlated with the student. Hard labels are
/// written in both int widths; soft labels put the largest value at the same target.
template <typename T>
Batch<T> problem(int64_t n, int64_t c, LabelKind kind, const std::vector<int64_t>& bounds,
                 unsigned seed) {
  Batch<T> b(n, c, 3, kind);
  std::mt19937 rng(seed);
  std::normal_distribution<double> nd(0.0, 2.0);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < c; ++i) {
      const double x = nd(rng);
      b.z(r, i) = T(x);
      b.v(r, i) = T(0.7 * x + 0.8 * nd(rng));
    }
  std::vector<int64_t> targets;
  for (size_t k = 0; k + 1 < bounds.size(); ++k) {
    if (bounds[k + 1] == bounds[k]) continue;
    targets.push_back(bounds[k]);
    targets.push_back(bounds[k + 1] - 1);
    targets.push_back((bounds[k] + bounds[k + 1]) / 2);
  }
  for (int64_t r = 0; r < n; ++r) {
    int64_t t = targets[static_cast<size_t>(r) % targets.size()];
    if (r == 1 && kind != LabelKind::kSoft && kind != LabelKind::kNone) t = -100;  // ignored
    b.set_label(r, t);
    if (t >= 0) b.z(r, t) = T(static_cast<double>(b.z(r, t)) + 2.0);  // a likely target
    if (t >= 0) b.v(r, t) = T(static_cast<double>(b.v(r, t)) + 3.0);
    if (kind == LabelKind::kSoft) {
      double sum = 0.0;
      for (int64_t i = 0; i < c; ++i) {
        b.y(r, i) = static_cast<float>(std::uniform_real_distribution<double>(0.0, 0.2)(rng));
        sum += b.y(r, i);
      }
      b.y(r, t) = static_cast<float>(sum + 0.5);
    }
  }
  return b;
}

/// The options of a case: temperature and weights away from the defaults, ce on or off.
inline AnyOptions options(Reduction red, bool ce, double temperature) {
  AnyOptions o;
  o.common.reduction = red;
  o.common.grad_scale = 0.75;
  o.common.ce_weight = ce ? 0.3 : 0.0;
  o.set_temperature(temperature);
  o.nkd.gamma = 2.5;
  o.kd.weight = 0.9;
  o.dkd.alpha = 1.2;
  o.dkd.beta = 6.0;
  return o;
}

/// The slice [first, first + width) of the columns of a [n, *] matrix.
template <typename T>
Matrix<T> slice(Matrix<T> m, int64_t first, int64_t width) {
  return fusedkd::matrix(m.data + first, m.rows, width, m.stride);
}

template <typename T>
Status stats(Loss l, const AnyOptions& o, Matrix<const T> z, Matrix<const T> v, Labels lab,
             Shard sh, acc_t<T>* out) {
  switch (l) {
    case Loss::kNkd: return fusedkd::cpu::shard_stats(z, v, lab, sh, o.nkd_options(), out);
    case Loss::kKd: return fusedkd::cpu::shard_stats(z, v, lab, sh, o.kd_options(), out);
    case Loss::kDkd: return fusedkd::cpu::shard_stats(z, v, lab, sh, o.dkd_options(), out);
    default: return Status::kNotSupported;
  }
}

template <typename T>
Status finish(Loss l, const AnyOptions& o, Matrix<const T> z, Matrix<const T> v, Labels lab,
              Shard sh, const acc_t<T>* gathered, int world, acc_t<T>* share, Matrix<T> g) {
  switch (l) {
    case Loss::kNkd:
      return fusedkd::cpu::shard_finish(z, v, lab, sh, o.nkd_options(), gathered, world, share, g);
    case Loss::kKd:
      return fusedkd::cpu::shard_finish(z, v, lab, sh, o.kd_options(), gathered, world, share, g);
    case Loss::kDkd:
      return fusedkd::cpu::shard_finish(z, v, lab, sh, o.dkd_options(), gathered, world, share, g);
    default: return Status::kNotSupported;
  }
}

/// Tolerance of a sharded result against the unsharded one (different summation order only).
template <typename T>
double tolerance() {
  return sizeof(acc_t<T>) == 8 ? 1e-11 : 2e-5;
}

/// Compares the sharded loss (after the sum of shares) and the gradient columns [first, first +
/// width) (`g` with row stride `gstride`) with the unsharded call's output.
template <typename T>
::testing::AssertionResult matches(const Output<T>& full, const acc_t<T>* loss, const T* g,
                                   int64_t gstride, int64_t first, int64_t width) {
  const double tol = tolerance<T>();
  for (int64_t k = 0; k < full.nloss; ++k) {
    const double x = full.loss[static_cast<size_t>(k)], y = loss[k];
    if (!(std::fabs(x - y) <= tol * std::max(1.0, std::fabs(x)))) {
      return ::testing::AssertionFailure() << "loss[" << k << "]: sharded " << y << " vs " << x;
    }
  }
  const double gm = std::max(1e-30, max_abs_grad(full, false));
  for (int64_t r = 0; r < full.n; ++r)
    for (int64_t i = 0; i < width; ++i) {
      const double x = full.gs_at(r, first + i), y = g[r * gstride + i];
      if (!(std::fabs(x - y) <= tol * gm)) {
        return ::testing::AssertionFailure() << "gradient row " << r << " class " << first + i
                                             << ": sharded " << y << " vs " << x;
      }
    }
  return ::testing::AssertionSuccess();
}

}  // namespace shardt
