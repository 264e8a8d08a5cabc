// tests/test_util.hpp — helpers shared by the fusedkd tests (no LibTorch here).
//
// A `Batch<T>` holds a problem in strided host buffers (row stride may exceed C), an `AnyOptions`
// holds the options of any of the four losses, and `run` calls the CPU backend with outputs
// pre-filled with a sentinel, so tests can check what a call wrote and what it left alone.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "fusedkd/fusedkd.hpp"

namespace tu {

using fusedkd::acc_t;
using fusedkd::Labels;
using fusedkd::Matrix;
using fusedkd::Reduction;
using fusedkd::Status;

enum class Loss { kNkd, kKd, kDkd, kUskd };
enum class LabelKind { kNone, kHard32, kHard64, kSoft };

inline const char* loss_name(Loss l) {
  switch (l) {
    case Loss::kNkd: return "nkd";
    case Loss::kKd: return "kd";
    case Loss::kDkd: return "dkd";
    case Loss::kUskd: return "uskd";
  }
  return "?";
}
inline const char* label_name(LabelKind k) {
  switch (k) {
    case LabelKind::kNone: return "nolabels";
    case LabelKind::kHard32: return "hard32";
    case LabelKind::kHard64: return "hard64";
    case LabelKind::kSoft: return "soft";
  }
  return "?";
}
inline const char* reduction_name(Reduction r) {
  switch (r) {
    case Reduction::kMean: return "mean";
    case Reduction::kSum: return "sum";
    case Reduction::kNone: return "none";
  }
  return "?";
}
inline std::ostream& operator<<(std::ostream& os, Loss l) { return os << loss_name(l); }

constexpr Loss kAllLosses[] = {Loss::kNkd, Loss::kKd, Loss::kDkd, Loss::kUskd};

/// The options of any loss: the common part, plus each loss's own (their common part is
/// overwritten by `common` when a call is made).
struct AnyOptions {
  fusedkd::CommonOptions common;
  fusedkd::NkdOptions nkd;
  fusedkd::KdOptions kd;
  fusedkd::DkdOptions dkd;
  fusedkd::UskdOptions uskd;

  template <typename O>
  O with_common(O o) const {
    static_cast<fusedkd::CommonOptions&>(o) = common;
    return o;
  }
  fusedkd::NkdOptions nkd_options() const { return with_common(nkd); }
  fusedkd::KdOptions kd_options() const { return with_common(kd); }
  fusedkd::DkdOptions dkd_options() const { return with_common(dkd); }
  fusedkd::UskdOptions uskd_options() const { return with_common(uskd); }

  /// Sets the temperature of the losses that have one.
  void set_temperature(double t) { nkd.temperature = kd.temperature = dkd.temperature = t; }

  std::string describe(Loss l) const {
    std::string s = std::string("reduction=") + reduction_name(common.reduction) +
                    " ignore_index=" + std::to_string(common.ignore_index) +
                    " grad_scale=" + std::to_string(common.grad_scale) +
                    " ce_weight=" + std::to_string(common.ce_weight);
    switch (l) {
      case Loss::kNkd:
        s += " temperature=" + std::to_string(nkd.temperature) + " gamma=" + std::to_string(nkd.gamma) +
             " target=" + std::to_string(nkd.target) +
             " non_target=" + std::to_string(static_cast<int>(nkd.non_target)) +
             " t2=" + std::to_string(nkd.t2);
        break;
      case Loss::kKd:
        s += " temperature=" + std::to_string(kd.temperature) + " weight=" + std::to_string(kd.weight);
        break;
      case Loss::kDkd:
        s += " temperature=" + std::to_string(dkd.temperature) + " alpha=" + std::to_string(dkd.alpha) +
             " beta=" + std::to_string(dkd.beta);
        break;
      case Loss::kUskd:
        s += " alpha=" + std::to_string(uskd.alpha) + " beta=" + std::to_string(uskd.beta) +
             " mu=" + std::to_string(uskd.mu) + " smoothing=" + std::to_string(uskd.smoothing) +
             " rank=" + std::to_string(static_cast<int>(uskd.rank)) +
             " target=" + std::to_string(uskd.target) + " non_target=" + std::to_string(uskd.non_target) +
             " square=" + std::to_string(uskd.square) +
             " soft_target=" + std::to_string(static_cast<int>(uskd.soft_target)) +
             " t2=" + std::to_string(uskd.t2);
        break;
    }
    return s;
  }
};

/// Calls the CPU backend for `loss` (`other` is the teacher, or the weak logits for USKD).
template <typename T>
Status call(Loss loss, const AnyOptions& o, Matrix<const T> s, Matrix<const T> other, Labels lab,
            acc_t<T>* out, Matrix<T> gs = {}, Matrix<T> gw = {}) {
  switch (loss) {
    case Loss::kNkd: return fusedkd::cpu::nkd(s, other, lab, o.nkd_options(), out, gs);
    case Loss::kKd: return fusedkd::cpu::kd(s, other, lab, o.kd_options(), out, gs);
    case Loss::kDkd: return fusedkd::cpu::dkd(s, other, lab, o.dkd_options(), out, gs);
    case Loss::kUskd: return fusedkd::cpu::uskd(s, other, lab, o.uskd_options(), out, gs, gw);
  }
  return Status::kNotSupported;
}

/// One problem in strided host buffers. The buffers are never empty, so data pointers are
/// non-null even for N = 0.
template <typename T>
struct Batch {
  int64_t n = 0, c = 0, stride = 0;
  std::vector<T> student, other;  // other: teacher, or the weak logits (USKD)
  LabelKind kind = LabelKind::kHard64;
  std::vector<int32_t> l32;
  std::vector<int64_t> l64;
  std::vector<float> soft;
  int64_t soft_stride = 0;  // 0: C

  Batch() = default;
  Batch(int64_t n_, int64_t c_, int64_t pad = 0, LabelKind k = LabelKind::kHard64)
      : n(n_), c(c_), stride(c_ + pad), kind(k) {
    const size_t sz = static_cast<size_t>(std::max<int64_t>(1, n * stride));
    student.assign(sz, T(0));
    other.assign(sz, T(0));
    l32.assign(static_cast<size_t>(std::max<int64_t>(1, n)), 0);
    l64.assign(static_cast<size_t>(std::max<int64_t>(1, n)), 0);
    if (k == LabelKind::kSoft) {
      soft_stride = c + pad;
      soft.assign(static_cast<size_t>(std::max<int64_t>(1, n * soft_stride)), 0.0f);
    }
  }

  T& z(int64_t r, int64_t i) { return student[static_cast<size_t>(r * stride + i)]; }
  T& v(int64_t r, int64_t i) { return other[static_cast<size_t>(r * stride + i)]; }
  T z(int64_t r, int64_t i) const { return student[static_cast<size_t>(r * stride + i)]; }
  T v(int64_t r, int64_t i) const { return other[static_cast<size_t>(r * stride + i)]; }
  float& y(int64_t r, int64_t i) { return soft[static_cast<size_t>(r * (soft_stride ? soft_stride : c) + i)]; }
  float y(int64_t r, int64_t i) const {
    return soft[static_cast<size_t>(r * (soft_stride ? soft_stride : c) + i)];
  }

  /// Sets the hard label of row r in both the int32 and the int64 copy.
  void set_label(int64_t r, int64_t label) {
    l64[static_cast<size_t>(r)] = label;
    l32[static_cast<size_t>(r)] = static_cast<int32_t>(label);
  }
  int64_t label(int64_t r) const { return l64[static_cast<size_t>(r)]; }

  Matrix<const T> s() const { return fusedkd::matrix(student.data(), n, c, stride); }
  Matrix<const T> o() const { return fusedkd::matrix(other.data(), n, c, stride); }
  Labels labels() const {
    switch (kind) {
      case LabelKind::kNone: return Labels::none();
      case LabelKind::kHard32: return Labels::index(l32.data());
      case LabelKind::kHard64: return Labels::index(l64.data());
      case LabelKind::kSoft: return Labels::soft(soft.data(), soft_stride);
    }
    return Labels::none();
  }

  /// The same problem in another floating type (values converted).
  template <typename U>
  Batch<U> cast() const {
    Batch<U> b;
    b.n = n;
    b.c = c;
    b.stride = stride;
    b.student.assign(student.begin(), student.end());
    b.other.assign(other.begin(), other.end());
    b.kind = kind;
    b.l32 = l32;
    b.l64 = l64;
    b.soft = soft;
    b.soft_stride = soft_stride;
    return b;
  }
};

/// A value no loss computes: outputs are pre-filled with it to see what a call wrote.
template <typename T>
constexpr T sentinel() {
  return T(-7777.25);
}

/// What one call returned. Gradients live in buffers with row stride `gstride` (>= C); the
/// padding and one slot past the loss values must still hold the sentinel after any call.
template <typename T>
struct Output {
  using A = acc_t<T>;
  Status status = Status::kSuccess;
  int64_t n = 0, c = 0, gstride = 0, nloss = 0;
  std::vector<A> loss;  // nloss values + 1 guard slot
  std::vector<T> gs, gw;
  bool has_grad = false;

  T gs_at(int64_t r, int64_t i) const { return gs[static_cast<size_t>(r * gstride + i)]; }
  T gw_at(int64_t r, int64_t i) const { return gw[static_cast<size_t>(r * gstride + i)]; }
  /// The loss as one value: the scalar for mean/sum, the sum of rows for none.
  double objective() const {
    double t = 0;
    for (int64_t i = 0; i < nloss; ++i) t += static_cast<double>(loss[static_cast<size_t>(i)]);
    return t;
  }
};

/// Calls `loss` on batch `b`; gradients (if `want_grad`) go to buffers of row stride C + grad_pad.
template <typename T>
Output<T> run(Loss loss, const AnyOptions& o, const Batch<T>& b, int64_t grad_pad = 0,
              bool want_grad = true) {
  Output<T> out;
  out.n = b.n;
  out.c = b.c;
  out.gstride = b.c + grad_pad;
  out.nloss = o.common.reduction == Reduction::kNone ? b.n : 1;
  out.loss.assign(static_cast<size_t>(out.nloss + 1), sentinel<acc_t<T>>());
  const size_t gsz = static_cast<size_t>(std::max<int64_t>(1, b.n * out.gstride));
  out.gs.assign(gsz, sentinel<T>());
  out.gw.assign(gsz, sentinel<T>());
  out.has_grad = want_grad;
  Matrix<T> gs, gw;
  if (want_grad) {
    gs = fusedkd::matrix(out.gs.data(), b.n, b.c, out.gstride);
    if (loss == Loss::kUskd) gw = fusedkd::matrix(out.gw.data(), b.n, b.c, out.gstride);
  }
  out.status = call<T>(loss, o, b.s(), b.o(), b.labels(), out.loss.data(), gs, gw);
  return out;
}

/// Checks that `out` wrote nothing outside its outputs: gradient padding and the loss guard
/// slot still hold the sentinel (and the weak gradient buffer too, for the teacher losses).
template <typename T>
::testing::AssertionResult outside_untouched(Loss loss, const Output<T>& out) {
  if (out.loss.back() != sentinel<acc_t<T>>()) {
    return ::testing::AssertionFailure() << "wrote past the loss values";
  }
  for (int64_t r = 0; r < out.n; ++r) {
    for (int64_t i = out.c; i < out.gstride; ++i) {
      if (out.gs_at(r, i) != sentinel<T>() || out.gw_at(r, i) != sentinel<T>()) {
        return ::testing::AssertionFailure() << "wrote into the row padding of a gradient, row " << r;
      }
    }
  }
  if (loss != Loss::kUskd) {
    for (const T& x : out.gw) {
      if (x != sentinel<T>()) return ::testing::AssertionFailure() << "wrote into a buffer it was not given";
    }
  }
  return ::testing::AssertionSuccess();
}

/// Checks that a refused call wrote nothing at all.
template <typename T>
::testing::AssertionResult untouched(const Output<T>& out) {
  for (const auto& x : out.loss) {
    if (x != sentinel<acc_t<T>>()) return ::testing::AssertionFailure() << "the loss was written";
  }
  for (const T& x : out.gs) {
    if (x != sentinel<T>()) return ::testing::AssertionFailure() << "grad_student was written";
  }
  for (const T& x : out.gw) {
    if (x != sentinel<T>()) return ::testing::AssertionFailure() << "grad_weak was written";
  }
  return ::testing::AssertionSuccess();
}

// ---- random problems -----------------------------------------------------------------------

struct Rng {
  std::mt19937_64 g;
  explicit Rng(uint64_t seed) : g(seed) {}
  double normal() { return std::normal_distribution<double>(0.0, 1.0)(g); }
  double uniform(double a = 0.0, double b = 1.0) { return std::uniform_real_distribution<double>(a, b)(g); }
  int64_t integer(int64_t lo, int64_t hi) {  // inclusive
    return std::uniform_int_distribution<int64_t>(lo, hi)(g);
  }
};

/// Fills one soft-label row with a random style: one-hot, mixup of two classes (sometimes an
/// exact 0.5 / 0.5 tie), label-smoothed mixup (dense), a three-way tie, or unnormalized
/// positive noise. Always has a positive entry.
template <typename T>
void random_soft_row(Rng& rng, Batch<T>& b, int64_t r) {
  const int64_t c = b.c;
  for (int64_t i = 0; i < c; ++i) b.y(r, i) = 0.0f;
  const int64_t a = rng.integer(0, c - 1);
  int64_t d = rng.integer(0, c - 2);
  if (d >= a) ++d;  // d != a
  const double u = rng.uniform();
  if (u < 0.2) {
    b.y(r, a) = 1.0f;
  } else if (u < 0.45) {
    const float lam = static_cast<float>(rng.uniform(0.05, 0.95));
    b.y(r, a) = lam;
    b.y(r, d) = 1.0f - lam;
  } else if (u < 0.55) {
    b.y(r, a) = 0.5f;
    b.y(r, d) = 0.5f;
  } else if (u < 0.75) {
    const float lam = static_cast<float>(rng.uniform(0.05, 0.95));
    const float eps = 0.1f;
    for (int64_t i = 0; i < c; ++i) b.y(r, i) = eps / static_cast<float>(c);
    b.y(r, a) += (1.0f - eps) * lam;
    b.y(r, d) += (1.0f - eps) * (1.0f - lam);
  } else if (u < 0.85 && c >= 3) {
    int64_t e = rng.integer(0, c - 1);
    while (e == a || e == d) e = (e + 1) % c;
    b.y(r, a) = b.y(r, d) = b.y(r, e) = 1.0f / 3.0f;
  } else {
    for (int64_t i = 0; i < c; ++i) b.y(r, i) = static_cast<float>(rng.uniform(0.0, 1.0));
  }
}

/// A random batch: student ~ N(0, scale_s^2), other ~ N(0, scale_o^2), hard labels uniform with
/// a fraction `ignore_frac` of rows set to `ignore_index`, or random soft labels.
template <typename T>
Batch<T> random_batch(Rng& rng, int64_t n, int64_t c, int64_t pad, LabelKind kind,
                      double ignore_frac = 0.0, int64_t ignore_index = -100, double scale_s = 3.0,
                      double scale_o = 3.0) {
  Batch<T> b(n, c, pad, kind);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t i = 0; i < c; ++i) {
      b.z(r, i) = static_cast<T>(scale_s * rng.normal());
      b.v(r, i) = static_cast<T>(scale_o * rng.normal());
    }
    // padding gets garbage that must not be read
    for (int64_t i = c; i < b.stride; ++i) {
      b.z(r, i) = std::numeric_limits<T>::quiet_NaN();
      b.v(r, i) = std::numeric_limits<T>::quiet_NaN();
    }
    if (kind == LabelKind::kSoft) {
      random_soft_row(rng, b, r);
      for (int64_t i = c; i < b.soft_stride; ++i) b.y(r, i) = std::numeric_limits<float>::quiet_NaN();
    } else {
      int64_t label = rng.integer(0, c - 1);
      if (kind != LabelKind::kNone && rng.uniform() < ignore_frac) label = ignore_index;
      b.set_label(r, label);
    }
  }
  return b;
}

/// Largest |x| over the first n*c logical entries of a strided gradient buffer.
template <typename T>
double max_abs_grad(const Output<T>& out, bool weak) {
  double m = 0;
  for (int64_t r = 0; r < out.n; ++r)
    for (int64_t i = 0; i < out.c; ++i)
      m = std::max(m, std::fabs(static_cast<double>(weak ? out.gw_at(r, i) : out.gs_at(r, i))));
  return m;
}

}  // namespace tu
