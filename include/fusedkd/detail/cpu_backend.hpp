// fusedkd/detail/cpu_backend.hpp — the loop machinery of the CPU backend, shared by all losses.
//
// A call: validate everything (write nothing on failure), find each row's targets (O(N)
// scratch), then per row one pass for the statistics and one for the gradient, rows in parallel
// with OpenMP. Per-row losses go to an O(N) buffer that is reduced in row order, so results are
// bitwise the same for any thread count. No [N, C] temporary is ever made.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <new>
#include <type_traits>

#include "fusedkd/detail/core.hpp"
#include "fusedkd/detail/cpu_simd.hpp"
#include "fusedkd/status.hpp"
#include "fusedkd/types.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace fusedkd {
namespace detail {

/// new[] that reports failure as nullptr instead of throwing, also when n elements of U would
/// not fit in a size_t (plain new (std::nothrow) throws std::bad_array_new_length then).
template <typename U>
std::unique_ptr<U[]> scratch(int64_t n) {
  if (n > 0 && static_cast<uint64_t>(n) > static_cast<uint64_t>(PTRDIFF_MAX) / sizeof(U)) {
    return nullptr;
  }
  return std::unique_ptr<U[]>(new (std::nothrow) U[static_cast<size_t>(n > 0 ? n : 1)]);
}

/// Whether n rows of c elements of `size` bytes, `stride` elements apart, span no more than
/// PTRDIFF_MAX bytes: then no row offset (n - 1) * stride overflows, and the pointer arithmetic
/// of Matrix::row stays inside the one object it must point into. Needs stride >= c >= 0.
inline bool extent_fits(int64_t n, int64_t c, int64_t stride, size_t size) {
  if (n == 0) return true;
  const int64_t most = PTRDIFF_MAX / static_cast<int64_t>(size);
  if (c > most) return false;
  return stride == 0 || n - 1 <= (most - c) / stride;
}

template <typename T>
Status check_input(const Matrix<const T>& m, int64_t n, int64_t c) {
  if (m.rows != n || m.cols != c || m.stride < c) return Status::kShapeMismatch;
  if (!extent_fits(n, c, m.stride, sizeof(T))) return Status::kShapeMismatch;
  if (m.data == nullptr && n > 0) return Status::kNullPointer;
  return Status::kSuccess;
}

/// An output matrix may be empty (no gradient wanted); otherwise it must match [n, c].
template <typename T>
Status check_output(const Matrix<T>& m, int64_t n, int64_t c) {
  if (m.data == nullptr) return m.rows == 0 || n == 0 ? Status::kSuccess : Status::kNullPointer;
  if (m.rows != n || m.cols != c || m.stride < c) return Status::kShapeMismatch;
  if (!extent_fits(n, c, m.stride, sizeof(T))) return Status::kShapeMismatch;
  return Status::kSuccess;
}

/// The largest magnitude of an option (weights, grad_scale, ce_weight, temperature) in the
/// computation type A: 2^40 (1.1e12) for float, 2^340 (2.2e102) for double; a temperature must
/// also be at least its inverse. A loss multiplies at most three such values (weight * T^2,
/// weight * T * grad_scale, ...), so every coefficient it derives stays finite in A
/// (2^120 < FLT_MAX, 2^1020 < DBL_MAX), and 1 / T is a normal number.
template <typename A>
constexpr double option_limit() {
  return sizeof(A) == sizeof(float) ? 0x1p40 : 0x1p340;
}

/// |x| <= option_limit<A>() (false for NaN and infinities).
template <typename A>
bool option_in_range(double x) {
  return std::fabs(x) <= option_limit<A>();
}

/// 1 / option_limit<A>() <= t <= option_limit<A>().
template <typename A>
bool valid_temperature(double t) {
  return t >= 1.0 / option_limit<A>() && t <= option_limit<A>();
}

inline bool valid_reduction(Reduction r) {
  return r == Reduction::kMean || r == Reduction::kSum || r == Reduction::kNone;
}

inline bool valid_label_kind(Labels::Kind k) {
  return k == Labels::Kind::kNone || k == Labels::Kind::kIndex32 ||
         k == Labels::Kind::kIndex64 || k == Labels::Kind::kSoft;
}

/// The options every loss has, and the labels' kind and pointer, for computation type A.
template <typename A>
Status check_common(const CommonOptions& o, const Labels& labels, bool labels_optional) {
  if (!option_in_range<A>(o.grad_scale) || !option_in_range<A>(o.ce_weight) ||
      !valid_reduction(o.reduction) || !valid_label_kind(labels.kind)) {
    return Status::kInvalidOption;
  }
  if (labels.kind == Labels::Kind::kNone) {
    return labels_optional && o.ce_weight == 0.0 ? Status::kSuccess : Status::kNullPointer;
  }
  if (labels.data == nullptr) return Status::kNullPointer;
  return Status::kSuccess;
}

/// Fills targets[0..n) from the labels. Hard labels: t1 = label, or ignored. Soft labels: t1 =
/// first maximum; with `two_targets`, t2 = the next largest (lower index first on ties). Counts
/// the non-ignored rows. Fails on a bad label, a soft label that is not finite (or a soft row
/// whose sum is beyond A), or a soft row with no positive entry.
template <typename A>
Status find_targets(const Labels& labels, int64_t n, int64_t c, int64_t ignore_index,
                    bool two_targets, RowTargets<A>* targets, int64_t* active) {
  int64_t count = 0;
  for (int64_t r = 0; r < n; ++r) {
    RowTargets<A> tg;
    if (labels.kind == Labels::Kind::kNone) {
      // no target: KD without labels
    } else if (labels.kind == Labels::Kind::kSoft) {
      const int64_t ld = labels.stride > 0 ? labels.stride : c;
      const float* y = static_cast<const float*>(labels.data) + r * ld;
      int32_t b1 = 0, b2 = -1;
      // The sum in double: at most 2^31 floats, it cannot overflow (a float sum of two 3e38 does).
      if (!std::isfinite(y[0])) return Status::kNonFiniteSoftLabel;
      double ysum = y[0];
      for (int32_t i = 1; i < c; ++i) {
        if (!std::isfinite(y[i])) return Status::kNonFiniteSoftLabel;
        ysum += y[i];
        if (y[i] > y[b1]) {
          b2 = b1;
          b1 = i;
        } else if (b2 < 0 || y[i] > y[b2]) {
          b2 = i;
        }
      }
      if (!(std::fabs(ysum) <= static_cast<double>(std::numeric_limits<A>::max()))) {
        return Status::kNonFiniteSoftLabel;
      }
      if (!(y[b1] > 0.0f)) return Status::kEmptySoftLabelRow;
      tg.t1 = b1;
      tg.v1 = A(y[b1]);
      if (two_targets) {
        tg.t2 = b2;
        tg.v2 = A(y[b2]);
      }
      tg.ysum = static_cast<A>(ysum);
    } else {
      const int64_t label = labels.kind == Labels::Kind::kIndex32
                                ? static_cast<const int32_t*>(labels.data)[r]
                                : static_cast<const int64_t*>(labels.data)[r];
      if (label == ignore_index) {
        tg.ignored = true;
      } else if (label < 0 || label >= c) {
        return Status::kLabelOutOfRange;
      } else {
        tg.t1 = static_cast<int32_t>(label);
      }
    }
    count += tg.ignored ? 0 : 1;
    targets[r] = tg;
  }
  *active = count;
  return Status::kSuccess;
}

/// The factor every gradient gets: grad_scale, divided by the row count for a mean.
inline double gradient_factor(const CommonOptions& o, int64_t active) {
  if (o.reduction != Reduction::kMean) return o.grad_scale;
  return active > 0 ? o.grad_scale / static_cast<double>(active) : 0.0;
}

/// Writes the batch loss from the per-row losses, summing in row order (deterministic).
template <typename L>
void write_loss(const CommonOptions& o, const double* row_loss, int64_t n, int64_t active,
                L* loss) {
  if (o.reduction == Reduction::kNone) {
    for (int64_t r = 0; r < n; ++r) loss[r] = static_cast<L>(row_loss[r]);
    return;
  }
  double total = 0.0;
  for (int64_t r = 0; r < n; ++r) total += row_loss[r];
  if (o.reduction == Reduction::kMean) total = active > 0 ? total / static_cast<double>(active) : 0.0;
  *loss = static_cast<L>(total);
}

template <typename T>
void zero_row(T* g, int64_t c) {
  if (g != nullptr) std::fill(g, g + c, T(0));
}

// Rows in parallel (FUSEDKD_PARALLEL_ROWS), unless the call is too small to pay for waking the
// threads; max_threads(): the threads a row loop may use, which per-thread scratch is sized by;
// thread_number(): this thread's number in the loop, its slice of that scratch.
#if defined(_OPENMP)
#define FUSEDKD_PRAGMA(...) _Pragma(#__VA_ARGS__)
#define FUSEDKD_PARALLEL_ROWS(work) FUSEDKD_PRAGMA(omp parallel for schedule(static) if ((work) > 65536))
inline int max_threads() { return omp_get_max_threads(); }
inline int thread_number() { return omp_get_thread_num(); }
#else
#define FUSEDKD_PARALLEL_ROWS(work)
inline int max_threads() { return 1; }
inline int thread_number() { return 0; }
#endif

/// Row r + 1 of m, or row r itself after the last: the row a row loop fetches ahead.
template <typename T>
const T* next_row(const Matrix<const T>& m, int64_t r) {
  return m.row(r + 1 < m.rows ? r + 1 : r);
}

/// Rows are processed in chunks of this many classes: they stay in L1 between passes.
constexpr int32_t kChunk = 1024;

/// The runs [lo[k], hi[k]) of [b, e) between the (up to two) target classes: at most three.
struct NonTargetRuns {
  int32_t lo[3], hi[3];
  int count = 0;

  FUSEDKD_INLINE NonTargetRuns(int32_t b, int32_t e, int32_t t1, int32_t t2) {
    const int32_t cuts[3] = {t1 < t2 ? t1 : t2, t1 < t2 ? t2 : t1, e};  // -1: no target
    int32_t from = b;
    for (const int32_t cut : cuts) {
      if (cut < from) continue;
      const int32_t to = cut < e ? cut : e;
      if (to > from) {
        lo[count] = from;
        hi[count] = to;
        ++count;
      }
      from = to + 1;
      if (from >= e) break;
    }
  }
};

/// The statistics of one row, in chunks that stay in L1: a chunk's max, then its sums of
/// exponentials (vector loops, cpu_simd.hpp), folded into the running stats: an online softmax at
/// chunk granularity that reads the row from memory once. The loops run over the runs between
/// the targets, so they carry no per-element target test.
/// `unit`: whether the scale-1 sum is wanted (KD and DKD read only the 1/T sums, but for their
/// student's cross-entropy).
/// `ahead`: c values that the caller reads next (the other input's row, the next row),
/// fetched into the cache while the exponentials are taken (null: none).
template <typename A>
SplitStats<A> row_stats(const A* x, int32_t c, const RowTargets<A>& tg, A inv, bool two,
                        bool unit = true, const A* ahead = nullptr) {
  if (ahead == nullptr) ahead = x;
  const int32_t t1 = tg.t1, t2 = tg.t2;
  SplitStats<A> st;
  for (int32_t b = 0; b < c; b += kChunk) {
    const int32_t e = c - b > kChunk ? b + kChunk : c;
    const NonTargetRuns runs(b, e, t1, t2);
    if (runs.count == 0) continue;  // a chunk of only targets adds nothing
    SplitStats<A> part;
    for (int k = 0; k < runs.count; ++k) {
      part.m = max_of(x + runs.lo[k], runs.hi[k] - runs.lo[k], part.m);
    }
    for (int k = 0; k < runs.count; ++k) {
      const A* xk = x + runs.lo[k];
      const int32_t nk = runs.hi[k] - runs.lo[k];
      const A* ak = ahead + runs.lo[k];
      if (unit || !two) part.s1 += sum_exp(xk, nk, part.m, A(1), ak);
      if (two) part.st += sum_exp(xk, nk, part.m, inv, ak);
    }
    st.merge(part, inv, two);
  }
  if (t1 >= 0) st.x1 = A(x[t1]);
  if (t2 >= 0) st.x2 = A(x[t2]);
  return st;
}

/// The exponentials of x[lo, hi) relative to m, summed into sum1 / sumt and stored into e1 / et:
/// at scale 1 when One, at scale inv when Two. Meanwhile ahead[lo, hi) is fetched into the
/// cache, or with MaxAhead read and its max taken into amax (the same runs of another row with
/// the same targets: the teacher's max, found while the student's exponentials are taken).
/// `write_ahead` (null: none): values a later pass writes, fetched for writing meanwhile.
template <bool One, bool Two, bool MaxAhead, class D>
FUSEDKD_INLINE void exp_run(D d, const hn::TFromD<D>* x, int32_t lo, int32_t hi, hn::Vec<D> vm,
                            hn::Vec<D> vinv, hn::TFromD<D>* e1, hn::TFromD<D>* et,
                            hn::Vec<D>& sum1, hn::Vec<D>& sumt, const hn::TFromD<D>* ahead,
                            hn::Vec<D>& amax, hn::TFromD<D>* write_ahead) {
  const int32_t lanes = static_cast<int32_t>(hn::Lanes(d));
  int32_t i = lo;
  for (; i + lanes <= hi; i += lanes) {
    if (write_ahead != nullptr) prefetch_for_write(write_ahead + i);
    if (MaxAhead) {
      amax = hn::Max(amax, hn::LoadU(d, ahead + i));
    } else {
      hwy::Prefetch(ahead + i);
    }
    const auto diff = hn::Sub(hn::LoadU(d, x + i), vm);
    if (One) {
      const auto e = exp_lanes(d, diff);
      hn::StoreU(e, d, e1 + i);
      sum1 = hn::Add(sum1, e);
    }
    if (Two) {
      const auto e = exp_lanes(d, hn::Mul(diff, vinv));
      hn::StoreU(e, d, et + i);
      sumt = hn::Add(sumt, e);
    }
  }
  if (i < hi) {
    const size_t n = static_cast<size_t>(hi - i);
    if (MaxAhead) amax = hn::Max(amax, load_n(d, ahead + i, n));  // missing lanes repeat one
    const auto diff = hn::Sub(load_n(d, x + i, n), vm);
    const auto valid = hn::FirstN(d, n);
    if (One) {
      const auto e = exp_lanes(d, diff);
      store_n(d, e, e1 + i, n);
      sum1 = hn::Add(sum1, hn::IfThenElseZero(valid, e));
    }
    if (Two) {
      const auto e = exp_lanes(d, hn::Mul(diff, vinv));
      store_n(d, e, et + i, n);
      sumt = hn::Add(sumt, hn::IfThenElseZero(valid, e));
    }
  }
}

/// The max of x over the row's non-target classes (a NaN may be skipped; see max_of).
template <typename A>
A non_target_max(const A* x, int32_t c, const RowTargets<A>& tg) {
  const NonTargetRuns runs(0, c, tg.t1, tg.t2);
  A m = SplitStats<A>().m;
  for (int k = 0; k < runs.count; ++k) m = max_of(x + runs.lo[k], runs.hi[k] - runs.lo[k], m);
  return m;
}

/// The statistics of one row, keeping the exponentials for the gradient pass: the max of the
/// non-target classes, then their exponentials relative to it, summed and stored (e1: scale 1,
/// when `unit` or `!two`; et: scale inv, when `two`), 0 at the targets. Two reads of the row
/// (the second from cache at any C that fits L2) instead of row_stats' one, and no exponential
/// in the gradient pass. `ahead`: c values that a later pass reads (the other input's row, the
/// next row), fetched into the cache meanwhile (x itself when there is none). `m`: the row's
/// non-target max (non_target_max, or from another row's pass). `ahead_max` (optional, out):
/// the max of `ahead` over this row's non-target classes, for a row with the same targets (it
/// is read instead of fetched). `write_ahead` (optional): c values that a later pass writes (the
/// gradient row), fetched for writing meanwhile.
template <typename A>
SplitStats<A> row_stats_kept(const A* x, int32_t c, const RowTargets<A>& tg, A m, A inv, bool two,
                             bool unit, A* e1, A* et, const A* ahead, A* ahead_max = nullptr,
                             A* write_ahead = nullptr) {
  const Tag<A> d;
  const NonTargetRuns runs(0, c, tg.t1, tg.t2);
  SplitStats<A> st;
  st.m = m;
  const bool one = unit || !two;
  const auto vm = hn::Set(d, st.m), vinv = hn::Set(d, inv);
  auto sum1 = hn::Zero(d), sumt = hn::Zero(d), amax = hn::Set(d, SplitStats<A>().m);
  const auto run = [&](auto one_v, auto two_v, auto max_v) {
    for (int k = 0; k < runs.count; ++k) {
      exp_run<decltype(one_v)::value, decltype(two_v)::value, decltype(max_v)::value>(
          d, x, runs.lo[k], runs.hi[k], vm, vinv, e1, et, sum1, sumt, ahead, amax, write_ahead);
    }
  };
  using yes = std::true_type;
  using no = std::false_type;
  if (ahead_max != nullptr) {
    one && two ? run(yes{}, yes{}, yes{}) : two ? run(no{}, yes{}, yes{}) : run(yes{}, no{}, yes{});
    *ahead_max = hn::GetLane(hn::MaxOfLanes(d, amax));
  } else {
    one && two ? run(yes{}, yes{}, no{}) : two ? run(no{}, yes{}, no{}) : run(yes{}, no{}, no{});
  }
  st.s1 = sum_lanes(d, sum1);
  st.st = sum_lanes(d, sumt);
  const int32_t targets[2] = {tg.t1, tg.t2};
  for (const int32_t t : targets) {
    if (t < 0) continue;
    if (one) e1[t] = A(0);
    if (two) et[t] = A(0);
  }
  if (tg.t1 >= 0) st.x1 = x[tg.t1];
  if (tg.t2 >= 0) st.x2 = x[tg.t2];
  return st;
}

/// A row's buffers for row_stats_kept: z and v at scale 1 and at scale inv, c values each.
template <typename A>
struct KeptExps {
  A *z1, *zt, *v1, *vt;

  /// Points the buffers at 4c values from `space`; one that the statistics will not fill
  /// points at its other scale (so every buffer a Row may read holds values).
  KeptExps(A* space, int64_t c, bool two, const bool unit[2])
      : z1(space), zt(space + c), v1(space + 2 * c), vt(space + 3 * c) {
    if (!two) {
      zt = z1;
      vt = v1;
    }
    if (two && !unit[0]) z1 = zt;
    if (two && !unit[1]) v1 = vt;
  }
};

/// The checks a teacher loss's row count and class count finish with (whole rows or a slice,
/// cpu_shard.hpp): a soft-label stride that fits, then C >= 2 and C within int32.
inline Status check_soft_stride_and_classes(const Labels& labels, int64_t n, int64_t c) {
  if (labels.is_soft() && (labels.stride < 0 || (labels.stride > 0 && labels.stride < c) ||
                           !extent_fits(n, c, labels.stride > 0 ? labels.stride : c, sizeof(float)))) {
    return Status::kShapeMismatch;
  }
  if (c < 2) return Status::kTooFewClasses;
  if (c > INT32_MAX) return Status::kNotSupported;
  return Status::kSuccess;
}

/// Validation shared by the teacher losses (NKD, KD, DKD) and USKD, by both backends: shapes,
/// strides (none may reach past the address space), pointers, the common options in the range
/// of the computation type acc_t<T>, the enums.
template <typename T>
Status check_pair(const Matrix<const T>& z, const Matrix<const T>& v, const Labels& labels,
                  const CommonOptions& o, const void* loss, const Matrix<T>& grad,
                  bool labels_optional) {
  const int64_t n = z.rows, c = z.cols;
  if (n < 0 || c < 0) return Status::kNegativeSize;
  Status s = check_input(z, n, c);
  if (s == Status::kSuccess) s = check_input(v, n, c);
  if (s == Status::kSuccess) s = check_output(grad, n, c);
  if (s == Status::kSuccess) s = check_common<acc_t<T>>(o, labels, labels_optional);
  if (s != Status::kSuccess) return s;
  if (loss == nullptr) return Status::kNullPointer;
  return check_soft_stride_and_classes(labels, n, c);
}

/// Whether the vector of lanes at i holds class t (t < 0: none).
FUSEDKD_INLINE bool vector_holds(int64_t i, int32_t t, size_t lanes) {
  return t >= i && t - i < static_cast<int64_t>(lanes);
}

/// The gradient pass of a teacher loss's row over [b, e) from the statistics' exponentials (see
/// row_stats_kept), a vector of lanes at a time: writes g[b, e) (when Write) and returns the sum
/// of the row's loss terms there. The vector loop treats every class as a non-target one
/// (NoTarget: no per-vector target mask or selects): at the target, whose kept exponentials are
/// 0, that gives no loss share and a gradient that the target's own formulas then overwrite,
/// one scalar evaluation from the row's per-row values.
template <bool Write, typename A, typename Row>
FUSEDKD_INLINE A pair_chunk_kept(const A* z, const A* v, A* g, const KeptExps<A>& k, int32_t b,
                                 int32_t e, const Row& row, A factor, const A* ahead) {
  using L = Lanes<A>;
  const Tag<A> d;
  const int32_t lanes = static_cast<int32_t>(hn::Lanes(d));
  const auto vfactor = hn::Set(d, factor);
  // The buffers in locals: the stores to g could alias `k`, which would reload them per vector.
  const A *z1 = k.z1, *zt = k.zt, *v1 = k.v1, *vt = k.vt;
  const int32_t t = row.t;
  const bool has_target = t >= b && t < e;
  const A z_t = has_target ? z[t] : A(0), v_t = has_target ? v[t] : A(0);  // before g (in place)
  L acc(A(0));
  // n lanes at i: full vectors in the loop (n == lanes folds away), the partial one after it
  const auto step = [&](int32_t i, size_t n) FUSEDKD_INLINE_LAMBDA {
    const StatExps<L> ex{L(load_n(d, z1 + i, n)), L(load_n(d, zt + i, n)),
                         L(load_n(d, v1 + i, n)), L(load_n(d, vt + i, n))};
    L part(A(0));
    const L gi = row.elements(NoTarget(), L(load_n(d, z + i, n)), L(load_n(d, v + i, n)), ex, part);
    acc += n == hn::Lanes(d) ? part : L(hn::IfThenElseZero(hn::FirstN(d, n), part.v));
    if (Write) store_n(d, hn::Mul(gi.v, vfactor), g + i, n);  // after the reads: in place is safe
  };
  int32_t i = b;
  for (; i + lanes <= e; i += lanes) {
    hwy::Prefetch(ahead + i);
    step(i, hn::Lanes(d));
  }
  if (i < e) step(i, static_cast<size_t>(e - i));
  A total = sum_lanes(d, acc.v);
  if (has_target) {
    A share = A(0);
    const A gt = row.elements(true, z_t, v_t, StatExps<A>{z1[t], zt[t], v1[t], vt[t]}, share);
    if (Write) g[t] = gt * factor;
    total += share;
  }
  return total;
}

/// The gradient pass of a teacher loss's row over [b, e), a vector of lanes at a time: writes
/// g[b, e) (when Write) and returns the sum of the row's loss terms there. Element i of the
/// pointers is class first + i of the row (first > 0: a column slice, cpu_shard.hpp).
template <bool Write, typename A, typename Row>
FUSEDKD_INLINE A pair_chunk(const A* z, const A* v, A* g, int32_t b, int32_t e, int64_t first,
                            const Row& row, A factor) {
  using L = Lanes<A>;
  const Tag<A> d;
  const size_t lanes = hn::Lanes(d);
  const auto ids = lane_ids(d);
  L acc(A(0));
  for (int32_t i = b; i < e; i += static_cast<int32_t>(lanes)) {
    const size_t n = std::min(lanes, static_cast<size_t>(e - i));
    L part(A(0));
    const L gi = row.elements(lanes_at(d, ids, first + i, row.t), L(load_n(d, z + i, n)),
                              L(load_n(d, v + i, n)), part);
    acc += n == lanes ? part : L(hn::IfThenElseZero(hn::FirstN(d, n), part.v));
    if (Write) store_n(d, hn::Mul(gi.v, hn::Set(d, factor)), g + i, n);  // after the reads: in place is safe
  }
  return sum_lanes(d, acc.v);
}

/// The gradient pass of a teacher loss's row (or column slice) of c classes: writes the
/// gradient (when g is not null) and returns the sum of the loss terms, per chunk in A
/// (vectors) and across chunks in double (a float sum over a 128k-class row would lose digits).
template <typename A, typename Row>
double pair_pass(const A* z, const A* v, A* g, int32_t c, int64_t first, const Row& row, A factor) {
  double total = 0.0;
  for (int32_t b = 0; b < c; b += kChunk) {
    const int32_t e = c - b > kChunk ? b + kChunk : c;
    const A acc = g != nullptr ? pair_chunk<true>(z, v, g, b, e, first, row, factor)
                               : pair_chunk<false>(z, v, g, b, e, first, row, factor);
    total += static_cast<double>(acc);
  }
  return total;
}

/// One row of a teacher loss: statistics of both rows (their exponentials kept in `k`), then
/// the gradient pass from them. Returns the row loss. `unit`: whether the student's and the
/// teacher's scale-1 sums are wanted (see row_stats).
template <typename A, typename MakeRow>
double pair_row(const A* z, const A* v, A* g, int32_t c, const RowTargets<A>& tg, A inv, bool two,
                const bool unit[2], A factor, const KeptExps<A>& k, const MakeRow& make_row,
                const A* next_z, const A* next_v) {
  // Each pass reads or fetches what the one after it reads first: v during z's exponentials
  // (read: its non-target max is taken there, so v needs no max loop of its own), the next
  // row's z during v's, the next row's v during the gradient pass. The row's first read from
  // memory then overlaps the exponentials instead of stalling a max loop. The gradient row is
  // fetched for writing during z's exponentials, the pass that brings no other row in.
  A v_max;
  const SplitStats<A> zs = row_stats_kept(z, c, tg, non_target_max(z, c, tg), inv, two, unit[0],
                                          k.z1, k.zt, v, &v_max, g);
  const SplitStats<A> vs = row_stats_kept(v, c, tg, v_max, inv, two, unit[1], k.v1, k.vt, next_z);
  const auto row = make_row(zs, vs, tg);
  double total = 0.0;
  for (int32_t b = 0; b < c; b += kChunk) {
    const int32_t e = c - b > kChunk ? b + kChunk : c;
    const A acc = g != nullptr ? pair_chunk_kept<true>(z, v, g, k, b, e, row, factor, next_v)
                               : pair_chunk_kept<false>(z, v, g, k, b, e, row, factor, next_v);
    total += static_cast<double>(acc);
  }
  return static_cast<double>(row.loss(A(total)));
}

/// Runs a teacher loss (NKD, KD, DKD): `make_row(zs, vs, tg)` builds the loss's Row from the
/// student and teacher statistics, gathered at scale `inv` (1 / temperature), and at scale 1
/// where the Row reads it: the student's with `student_unit`, the teacher's with
/// `teacher_unit`.
template <typename T, typename MakeRow>
Status run_pair_loss(Matrix<const T> z, Matrix<const T> v, Labels labels,
                     const CommonOptions& o, double inv_temperature, bool labels_optional,
                     bool student_unit, bool teacher_unit, acc_t<T>* loss, Matrix<T> grad,
                     MakeRow make_row) {
  using A = acc_t<T>;
  static_assert(std::is_same<A, T>::value, "the CPU backend computes in its input type");
  Status s = check_pair(z, v, labels, o, loss, grad, labels_optional);
  if (s != Status::kSuccess) return s;
  const int64_t n = z.rows, c = z.cols;
  auto targets = scratch<RowTargets<A>>(n);
  if (!targets) return Status::kOutOfMemory;
  auto row_loss = scratch<double>(n);
  if (!row_loss) return Status::kOutOfMemory;
  int64_t active = 0;
  s = find_targets(labels, n, c, o.ignore_index, false, targets.get(), &active);
  if (s != Status::kSuccess) return s;

  const A inv = A(inv_temperature);
  const bool two = inv != A(1);
  const bool unit[2] = {student_unit, teacher_unit};
  const A factor = A(gradient_factor(o, active));
  // Per thread: the statistics' exponentials of one row (row_stats_kept), 4C values.
  const int threads = max_threads();
  const int64_t kept_size = n > 0 ? 4 * c : 0;
  auto kept = scratch<A>(static_cast<int64_t>(threads) * kept_size);
  if (!kept) return Status::kOutOfMemory;
FUSEDKD_PARALLEL_ROWS(n * c)
  for (int64_t r = 0; r < n; ++r) {
    const int thread = thread_number();
    const RowTargets<A>& tg = targets[r];
    const T* zr = z.row(r);
    const T* vr = v.row(r);
    T* gr = grad.data != nullptr ? grad.row(r) : nullptr;
    if (tg.ignored) {
      row_loss[r] = 0.0;
      zero_row(gr, c);
      continue;
    }
    const KeptExps<A> k(kept.get() + thread * kept_size, c, two, unit);
    row_loss[r] = pair_row(zr, vr, gr, static_cast<int32_t>(c), tg, inv, two, unit, factor, k,
                           make_row, next_row(z, r), next_row(v, r));
  }
  write_loss(o, row_loss.get(), n, active, loss);
  return Status::kSuccess;
}

}  // namespace detail
}  // namespace fusedkd
