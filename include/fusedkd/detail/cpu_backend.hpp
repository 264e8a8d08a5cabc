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

#include "fusedkd/detail/core.hpp"
#include "fusedkd/status.hpp"
#include "fusedkd/types.hpp"

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

// On x86-64 Linux with GCC, the row functions are compiled twice, for the baseline and for
// x86-64-v3 (AVX2 + FMA), and the loader picks one for the CPU it runs on (target_clones): a
// header-only library cannot rely on its users' -march. Off under sanitizers and nvcc, or with
// FUSEDKD_NO_CPU_DISPATCH. Everything a row function calls per element or per run must be
// FUSEDKD_INLINE (no lambdas): GCC inlines other helpers into a clone only when its heuristics
// agree, and one left out of line runs as baseline code.
// A build that already targets AVX2 (-march=native, -mavx2) needs no clone, and must not get
// one: GCC does not inline helpers compiled for a wider target into the x86-64-v3 clone.
// Under ThreadSanitizer the loader would run the (instrumented) clone selector before TSan has
// started, and the program would crash before main; under AddressSanitizer likewise.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__ELF__) && \
    !defined(__AVX2__) && !defined(__CUDACC__) && !defined(__SANITIZE_ADDRESS__) &&       \
    !defined(__SANITIZE_THREAD__) && !defined(FUSEDKD_NO_CPU_DISPATCH)
#define FUSEDKD_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FUSEDKD_CPU_CLONES
#endif

#if defined(_OPENMP)
#define FUSEDKD_PRAGMA(...) _Pragma(#__VA_ARGS__)
#define FUSEDKD_SIMD_REDUCE(op, ...) FUSEDKD_PRAGMA(omp simd reduction(op : __VA_ARGS__))
// Rows in parallel, unless the call is too small to pay for waking the threads.
#define FUSEDKD_PARALLEL_ROWS(work) FUSEDKD_PRAGMA(omp parallel for schedule(static) if ((work) > 65536))
#else
#define FUSEDKD_SIMD_REDUCE(op, ...)
#define FUSEDKD_PARALLEL_ROWS(work)
#endif

/// Rows are processed in chunks of this many classes: they stay in L1 between passes.
constexpr int32_t kChunk = 1024;

/// max(m, x[0..n)) in four independent chains (scalar maxss, no loop-carried latency wall).
/// A NaN may be skipped here; it still reaches the sum of exponentials and propagates there.
template <typename T, typename A>
FUSEDKD_INLINE A max_of(const T* x, int32_t n, A m) {
  A m0 = m, m1 = m, m2 = m, m3 = m;
  int32_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const A a = A(x[i]), b = A(x[i + 1]), c = A(x[i + 2]), d = A(x[i + 3]);
    m0 = a > m0 ? a : m0;
    m1 = b > m1 ? b : m1;
    m2 = c > m2 ? c : m2;
    m3 = d > m3 ? d : m3;
  }
  for (; i < n; ++i) m0 = A(x[i]) > m0 ? A(x[i]) : m0;
  m0 = m1 > m0 ? m1 : m0;
  m2 = m3 > m2 ? m3 : m2;
  return m2 > m0 ? m2 : m0;
}

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

/// sum of exp((x[i] - m) * inv) over [0, n).
template <typename T, typename A>
FUSEDKD_INLINE A sum_exp(const T* x, int32_t n, A m, A inv) {
  A s = A(0);
  for (int32_t i = 0; i < n; ++i) s += fk_exp((A(x[i]) - m) * inv);
  return s;
}

#if defined(__GNUC__)
// The float cases of the statistics pass, eight lanes at a time with GCC/Clang vector types (two
// SSE registers in the baseline build, one AVX register in the x86-64-v3 clone): left to the
// auto-vectorizer, inlining and loop splitting made these loops scalar in some callers.
typedef float VecF8 __attribute__((vector_size(32)));
typedef int32_t VecI8 __attribute__((vector_size(32)));
typedef uint32_t VecU8 __attribute__((vector_size(32)));

/// max(m, x[0..n)), as above.
FUSEDKD_INLINE float max_of(const float* x, int32_t n, float m) {
  VecF8 acc = VecF8{} + m;
  int32_t i = 0;
  for (; i + 8 <= n; i += 8) {
    VecF8 v;
    std::memcpy(&v, x + i, sizeof v);
    acc = v > acc ? v : acc;
  }
  for (int k = 0; k < 8; ++k) m = acc[k] > m ? acc[k] : m;
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

/// sum of exp((x[i] - m) * inv) over [0, n): the polynomial of fk_exp(float), with its clamps.
FUSEDKD_INLINE float sum_exp(const float* x, int32_t n, float m, float inv) {
  VecF8 acc = {};
  int32_t i = 0;
  for (; i + 8 <= n; i += 8) {
    VecF8 v;
    std::memcpy(&v, x + i, sizeof v);
    VecF8 a = (v - m) * inv;
    VecI8 bits;
    std::memcpy(&bits, &a, sizeof bits);
    const VecI8 nan = ((bits & 0x7fffffff) > 0x7f800000) & 0x7fc00000;  // NaN stays NaN
    // clamp to [-88, 88] on the bits, as fk_exp does (NaN included: no UB in the conversion)
    const VecI8 below = reinterpret_cast<VecI8>(reinterpret_cast<VecU8>(bits) > 0xC2B00000u);
    bits = (bits & ~below) | (static_cast<int32_t>(0xC2B00000u) & below);
    const VecI8 above = bits > 0x42B00000;
    bits = (bits & ~above) | (0x42B00000 & above);
    std::memcpy(&a, &bits, sizeof a);
    const VecF8 t = a * 1.44269504088896341f + 128.5f;
    const VecI8 k = __builtin_convertvector(t, VecI8) - 128;
    const VecF8 fk = __builtin_convertvector(k, VecF8);
    const VecF8 r = (a - fk * 0.693359375f) + fk * 2.12194440e-4f;
    VecF8 y;
    exp_reduced(r, y);
    const VecI8 scale_bits = (k + 127) << 23;
    VecF8 scale, nan_or_zero;
    std::memcpy(&scale, &scale_bits, sizeof scale);
    std::memcpy(&nan_or_zero, &nan, sizeof nan_or_zero);
    acc += y * scale + nan_or_zero;
  }
  float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; i < n; ++i) s += fk_exp((x[i] - m) * inv);
  return s;
}
#endif

/// The statistics of one row, in chunks that stay in L1: a chunk's max (scalar: cheap), then
/// its sums of exponentials (vector loops), folded into the running stats: an online softmax at
/// chunk granularity that reads the row from memory once. The loops run over the runs between
/// the targets, so they carry no per-element target test.
/// `unit`: whether the scale-1 sum is wanted (KD and DKD read only the 1/T sums, but for their
/// student's cross-entropy).
template <typename T, typename A>
FUSEDKD_CPU_CLONES SplitStats<A> row_stats(const T* x, int32_t c, const RowTargets<A>& tg, A inv, bool two,
                        bool unit = true) {
  const int32_t t1 = tg.t1, t2 = tg.t2;
  SplitStats<A> st;
  for (int32_t b = 0; b < c; b += kChunk) {
    const int32_t e = c - b > kChunk ? b + kChunk : c;
    // Plain loops over the runs, not callbacks: a lambda is a function of the default target,
    // and would stay out of line (and baseline SSE code) in the x86-64-v3 clone.
    const NonTargetRuns runs(b, e, t1, t2);
    if (runs.count == 0) continue;  // a chunk of only targets adds nothing
    SplitStats<A> part;
    for (int k = 0; k < runs.count; ++k) {
      part.m = max_of(x + runs.lo[k], runs.hi[k] - runs.lo[k], part.m);
    }
    for (int k = 0; k < runs.count; ++k) {
      const T* xk = x + runs.lo[k];
      const int32_t nk = runs.hi[k] - runs.lo[k];
      if (unit || !two) part.s1 += sum_exp(xk, nk, part.m, A(1));
      if (two) part.st += sum_exp(xk, nk, part.m, inv);
    }
    st.merge(part, inv, two);
  }
  if (t1 >= 0) st.x1 = A(x[t1]);
  if (t2 >= 0) st.x2 = A(x[t2]);
  return st;
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
  if (labels.is_soft() && (labels.stride < 0 || (labels.stride > 0 && labels.stride < c) ||
                           !extent_fits(n, c, labels.stride > 0 ? labels.stride : c, sizeof(float)))) {
    return Status::kShapeMismatch;
  }
  if (c < 2) return Status::kTooFewClasses;
  if (c > INT32_MAX) return Status::kNotSupported;
  return Status::kSuccess;
}

/// One row of a teacher loss: statistics of both rows, then one pass that writes the gradient
/// (when `g` is not null) and sums the loss terms, per chunk in A (vectorized) and across chunks
/// in double (a float sum over a 128k-class row would lose digits). Returns the row loss.
/// `unit`: whether the student's and the teacher's scale-1 sums are wanted (see row_stats).
template <typename T, typename A, typename MakeRow>
FUSEDKD_CPU_CLONES double pair_row(const T* z, const T* v, T* g, int32_t c,
                                   const RowTargets<A>& tg, A inv, bool two, const bool unit[2],
                                   A factor, const MakeRow& make_row) {
  const auto row = make_row(row_stats(z, c, tg, inv, two, unit[0]),
                            row_stats(v, c, tg, inv, two, unit[1]), tg);
  double total = 0.0;
  for (int32_t b = 0; b < c; b += kChunk) {
    const int32_t e = c - b > kChunk ? b + kChunk : c;
    A acc = A(0);
    if (g != nullptr) {
      FUSEDKD_SIMD_REDUCE(+, acc)
      for (int32_t i = b; i < e; ++i) {
        const A gi = row.element(i, A(z[i]), A(v[i]), acc);  // reads z_i before writing g_i
        g[i] = T(gi * factor);
      }
    } else {
      FUSEDKD_SIMD_REDUCE(+, acc)
      for (int32_t i = b; i < e; ++i) row.element(i, A(z[i]), A(v[i]), acc);
    }
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
FUSEDKD_PARALLEL_ROWS(n * c)
  for (int64_t r = 0; r < n; ++r) {
    const RowTargets<A>& tg = targets[r];
    const T* zr = z.row(r);
    const T* vr = v.row(r);
    T* gr = grad.data != nullptr ? grad.row(r) : nullptr;
    if (tg.ignored) {
      row_loss[r] = 0.0;
      zero_row(gr, c);
      continue;
    }
    row_loss[r] = pair_row(zr, vr, gr, static_cast<int32_t>(c), tg, inv, two, unit, factor,
                           make_row);
  }
  write_loss(o, row_loss.get(), n, active, loss);
  return Status::kSuccess;
}

}  // namespace detail
}  // namespace fusedkd
