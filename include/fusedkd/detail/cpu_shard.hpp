// fusedkd/detail/cpu_shard.hpp — the column-sharded teacher losses on the CPU (shard.hpp).
//
// Phase 1 runs the CPU backend's row_stats over the slice (targets made local to it); phase 2
// merges the gathered records (shard_core.hpp), builds the loss's Row as the unsharded call
// does, and runs Row::element over the slice with global class indices. Rows in parallel, row
// losses reduced in row order: results are the same bits for any thread count.
#pragma once

#include "fusedkd/detail/cpu_backend.hpp"
#include "fusedkd/detail/cpu_dkd.hpp"
#include "fusedkd/detail/cpu_kd.hpp"
#include "fusedkd/detail/cpu_nkd.hpp"
#include "fusedkd/detail/shard_core.hpp"
#include "fusedkd/shard.hpp"

namespace fusedkd {
namespace detail {

/// What the sharded path needs of each teacher loss: the same choices run_pair_loss is given by
/// cpu_nkd.hpp, cpu_kd.hpp and cpu_dkd.hpp (temperature, whether labels are optional, which
/// scale-1 sums the Row reads), and how its Row is made.
template <class O>
struct ShardLoss;

template <>
struct ShardLoss<NkdOptions> {
  static constexpr bool kLabelsOptional = false;
  static bool student_unit(const NkdOptions&) { return true; }
  static bool teacher_unit(const NkdOptions&) { return true; }
  template <typename A>
  static NkdRow<A> row(const SplitStats<A>& zs, const SplitStats<A>& vs, const RowTargets<A>& tg,
                       const NkdOptions& o) {
    return NkdRow<A>(zs, vs, tg, A(1.0 / o.temperature), A(o.gamma), A(o.ce_weight), nkd_terms(o));
  }
};

template <>
struct ShardLoss<KdOptions> {
  static constexpr bool kLabelsOptional = true;
  static bool student_unit(const KdOptions& o) { return o.ce_weight != 0.0; }
  static bool teacher_unit(const KdOptions&) { return false; }
  template <typename A>
  static KdRow<A> row(const SplitStats<A>& zs, const SplitStats<A>& vs, const RowTargets<A>& tg,
                      const KdOptions& o) {
    return KdRow<A>(zs, vs, tg, A(1.0 / o.temperature), A(o.weight), A(o.ce_weight));
  }
};

template <>
struct ShardLoss<DkdOptions> {
  static constexpr bool kLabelsOptional = false;
  static bool student_unit(const DkdOptions& o) { return o.ce_weight != 0.0; }
  static bool teacher_unit(const DkdOptions&) { return false; }
  template <typename A>
  static DkdRow<A> row(const SplitStats<A>& zs, const SplitStats<A>& vs, const RowTargets<A>& tg,
                       const DkdOptions& o) {
    return DkdRow<A>(zs, vs, tg, A(1.0 / o.temperature), A(o.alpha), A(o.beta), A(o.ce_weight));
  }
};

/// A slice [N, width] (width may be 0; then its pointer may be null).
template <typename T>
Status check_slice(const Matrix<T>& m, int64_t n, int64_t width) {
  if (m.rows != n || m.cols != width || m.stride < width) return Status::kShapeMismatch;
  if (!extent_fits(n, width, m.stride, sizeof(T))) return Status::kShapeMismatch;
  if (m.data == nullptr && n > 0 && width > 0) return Status::kNullPointer;
  return Status::kSuccess;
}

/// The checks both phases make on both backends: options, shapes, shard placement, the labels'
/// kind and layout (not their values).
template <class O, typename T>
Status shard_check(const Matrix<const T>& z, const Matrix<const T>& v, const Labels& labels,
                   const Shard& sh, const O& o, const void* out) {
  using A = acc_t<T>;
  if (!valid_options<A>(o)) return Status::kInvalidOption;
  const int64_t n = z.rows, w = z.cols, c = sh.classes;
  if (n < 0 || w < 0 || c < 0) return Status::kNegativeSize;
  Status s = check_slice(z, n, w);
  if (s == Status::kSuccess) s = check_slice(v, n, w);
  if (s == Status::kSuccess) s = check_common<A>(o, labels, ShardLoss<O>::kLabelsOptional);
  if (s != Status::kSuccess) return s;
  if (out == nullptr) return Status::kNullPointer;
  if (sh.first < 0 || sh.first > c - w) return Status::kShapeMismatch;
  return check_soft_stride_and_classes(labels, n, c);
}

/// shard_check, then the targets (global class indices) and the count of non-ignored rows.
template <class O, typename T, typename A>
Status shard_setup(const Matrix<const T>& z, const Matrix<const T>& v, const Labels& labels,
                   const Shard& sh, const O& o, const void* out, RowTargets<A>* targets,
                   int64_t* active) {
  const Status s = shard_check(z, v, labels, sh, o, out);
  if (s != Status::kSuccess) return s;
  return find_targets(labels, z.rows, sh.classes, o.ignore_index, false, targets, active);
}

/// Phase 1 of a row: the record of the slice.
template <typename T, typename A>
void shard_record(const T* z, const T* v, int32_t w, const RowTargets<A>& local,
                                     A inv, bool two, bool zunit, bool vunit, A* out) {
  const bool owns = local.t1 >= 0;
  store_side(row_stats(z, w, local, inv, two, zunit), owns, out);
  store_side(row_stats(v, w, local, inv, two, vunit), owns, out + kShardSide);
}

template <class O, typename T>
Status shard_stats_cpu(Matrix<const T> z, Matrix<const T> v, Labels labels, Shard sh, const O& o,
                       acc_t<T>* stats) {
  using A = acc_t<T>;
  auto targets = scratch<RowTargets<A>>(z.rows);
  if (!targets) return Status::kOutOfMemory;
  int64_t active = 0;
  Status s = shard_setup(z, v, labels, sh, o, stats, targets.get(), &active);
  if (s != Status::kSuccess) return s;
  const int64_t n = z.rows, w = z.cols;
  const A inv = A(1.0 / o.temperature);
  const bool two = inv != A(1);
  const bool zunit = ShardLoss<O>::student_unit(o), vunit = ShardLoss<O>::teacher_unit(o);
FUSEDKD_PARALLEL_ROWS(n * w)
  for (int64_t r = 0; r < n; ++r) {
    A* out = stats + r * kShardRecord;
    const RowTargets<A>& tg = targets[r];
    if (tg.ignored) {
      for (int k = 0; k < kShardRecord; ++k) out[k] = A(0);
      continue;
    }
    shard_record(z.row(r), v.row(r), static_cast<int32_t>(w), slice_targets(tg, sh.first, w), inv,
                 two, zunit, vunit, out);
  }
  return Status::kSuccess;
}

/// Phase 2 of a row: the gradient slice (when g is not null), and the sum of the slice's loss
/// terms (per chunk in A, across chunks in double, as pair_row does).
template <typename T, typename A, class Row>
double shard_row(const T* z, const T* v, T* g, int32_t w, int32_t first, const Row& row, A factor) {
  return pair_pass(z, v, g, w, first, row, factor);
}

template <class O, typename T>
Status shard_finish_cpu(Matrix<const T> z, Matrix<const T> v, Labels labels, Shard sh, const O& o,
                        const acc_t<T>* gathered, int world, acc_t<T>* share,
                        Matrix<T> grad) {
  using A = acc_t<T>;
  const int64_t n = z.rows, w = z.cols;
  auto targets = scratch<RowTargets<A>>(n);
  if (!targets) return Status::kOutOfMemory;
  auto row_loss = scratch<double>(n);
  if (!row_loss) return Status::kOutOfMemory;
  int64_t active = 0;
  Status s = shard_setup(z, v, labels, sh, o, share, targets.get(), &active);
  if (s != Status::kSuccess) return s;
  if (grad.data != nullptr || grad.rows != 0) {
    s = check_slice(grad, n, w);
    if (s != Status::kSuccess) return s;
  }
  if (world < 1) return Status::kInvalidOption;
  if (gathered == nullptr && n > 0) return Status::kNullPointer;

  const A inv = A(1.0 / o.temperature);
  const bool two = inv != A(1);
  const A factor = A(gradient_factor(o, active));
  const int64_t rank_stride = n * kShardRecord;
  const bool carries = sh.first == 0 && w > 0;  // the shard that holds column 0
FUSEDKD_PARALLEL_ROWS(n * w)
  for (int64_t r = 0; r < n; ++r) {
    const RowTargets<A>& tg = targets[r];
    T* gr = grad.data != nullptr ? grad.row(r) : nullptr;
    if (tg.ignored) {
      row_loss[r] = 0.0;
      zero_row(gr, w);
      continue;
    }
    const A* rec = gathered + r * kShardRecord;
    const SplitStats<A> zs = merge_side(rec, world, rank_stride, inv, two);
    const SplitStats<A> vs = merge_side(rec + kShardSide, world, rank_stride, inv, two);
    const auto row = ShardLoss<O>::row(zs, vs, tg, o);
    const double acc = shard_row(z.row(r), v.row(r), gr, static_cast<int32_t>(w),
                                 static_cast<int32_t>(sh.first), row, factor);
    row_loss[r] = static_cast<double>(loss_share(row, A(acc), carries));
  }
  write_loss(o, row_loss.get(), n, active, share);
  return Status::kSuccess;
}

}  // namespace detail

namespace cpu {
#define FUSEDKD_SHARD_CPU_OVERLOADS(Options)                                                      \
  inline Status shard_stats(Matrix<const float> z, Matrix<const float> v, Labels labels,          \
                            Shard shard, const Options& o, float* stats) {                        \
    return detail::shard_stats_cpu(z, v, labels, shard, o, stats);                                \
  }                                                                                               \
  inline Status shard_stats(Matrix<const double> z, Matrix<const double> v, Labels labels,        \
                            Shard shard, const Options& o, double* stats) {                       \
    return detail::shard_stats_cpu(z, v, labels, shard, o, stats);                                \
  }                                                                                               \
  inline Status shard_finish(Matrix<const float> z, Matrix<const float> v, Labels labels,         \
                             Shard shard, const Options& o, const float* gathered, int world,     \
                             float* loss_share, Matrix<float> grad) {                             \
    return detail::shard_finish_cpu(z, v, labels, shard, o, gathered, world, loss_share, grad);   \
  }                                                                                               \
  inline Status shard_finish(Matrix<const double> z, Matrix<const double> v, Labels labels,       \
                             Shard shard, const Options& o, const double* gathered, int world,    \
                             double* loss_share, Matrix<double> grad) {                           \
    return detail::shard_finish_cpu(z, v, labels, shard, o, gathered, world, loss_share, grad);   \
  }
FUSEDKD_SHARD_CPU_OVERLOADS(NkdOptions)
FUSEDKD_SHARD_CPU_OVERLOADS(KdOptions)
FUSEDKD_SHARD_CPU_OVERLOADS(DkdOptions)
#undef FUSEDKD_SHARD_CPU_OVERLOADS
}  // namespace cpu
}  // namespace fusedkd
