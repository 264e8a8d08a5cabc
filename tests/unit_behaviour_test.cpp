// tests/unit_behaviour_test.cpp — properties every call must have, whatever the formulas:
// determinism (also across thread counts), in-place gradients, exact zeros for ignored rows,
// nothing written outside the outputs, int32 == int64 labels, one-hot soft == hard labels,
// the reductions and grad_scale consistent with each other, a custom ignore_index.
#if defined(_OPENMP)
#include <omp.h>
#endif

#include "test_util.hpp"

namespace {

using namespace tu;

template <typename T>
::testing::AssertionResult bitwise_equal(const Output<T>& a, const Output<T>& b) {
  if (a.status != b.status) return ::testing::AssertionFailure() << "status differs";
  if (std::memcmp(a.loss.data(), b.loss.data(), a.loss.size() * sizeof(a.loss[0])) != 0) {
    return ::testing::AssertionFailure() << "loss differs";
  }
  for (int64_t r = 0; r < a.n; ++r)
    for (int64_t i = 0; i < a.c; ++i) {
      const T x = a.gs_at(r, i), y = b.gs_at(r, i), u = a.gw_at(r, i), w = b.gw_at(r, i);
      if (std::memcmp(&x, &y, sizeof(T)) != 0 || std::memcmp(&u, &w, sizeof(T)) != 0) {
        return ::testing::AssertionFailure() << "gradient differs at row " << r << " class " << i
                                             << ": " << x << " vs " << y << " / " << u << " vs " << w;
      }
    }
  return ::testing::AssertionSuccess();
}

/// Gradients of `a` against `scale_b` times those of `b` (the weak gradient for USKD only),
/// within rel * max|a|; losses too when `with_loss`.
template <typename T>
::testing::AssertionResult close(Loss l, const Output<T>& a, const Output<T>& b, double rel,
                                 double scale_b = 1.0, bool with_loss = false) {
  if (with_loss) {
    for (int64_t k = 0; k < a.nloss; ++k) {
      const double x = a.loss[static_cast<size_t>(k)], y = b.loss[static_cast<size_t>(k)];
      if (std::fabs(x - y) > rel * std::max(1.0, std::fabs(x))) {
        return ::testing::AssertionFailure() << "loss[" << k << "]: " << x << " vs " << y;
      }
    }
  }
  const bool weak = l == Loss::kUskd;
  const double gm = std::max(max_abs_grad(a, false), weak ? max_abs_grad(a, true) : 0.0);
  for (int64_t r = 0; r < a.n; ++r)
    for (int64_t i = 0; i < a.c; ++i) {
      const double d1 = std::fabs(a.gs_at(r, i) - scale_b * b.gs_at(r, i));
      const double d2 = weak ? std::fabs(a.gw_at(r, i) - scale_b * b.gw_at(r, i)) : 0.0;
      if (std::max(d1, d2) > rel * gm) {
        return ::testing::AssertionFailure() << "gradient at row " << r << " class " << i << ": "
                                             << a.gs_at(r, i) << " vs " << scale_b * b.gs_at(r, i)
                                             << " / " << a.gw_at(r, i) << " vs " << scale_b * b.gw_at(r, i);
      }
    }
  return ::testing::AssertionSuccess();
}

AnyOptions some_options(Reduction red) {
  AnyOptions o;
  o.common.reduction = red;
  o.common.ce_weight = 0.3;
  o.common.grad_scale = 0.75;
  o.set_temperature(2.0);
  return o;
}

template <typename T>
void for_each_setup(const std::function<void(Loss, LabelKind, Reduction)>& f) {
  for (Loss l : kAllLosses)
    for (LabelKind k : {LabelKind::kHard64, LabelKind::kSoft})
      for (Reduction red : {Reduction::kMean, Reduction::kSum, Reduction::kNone}) {
        SCOPED_TRACE(std::string(loss_name(l)) + " " + label_name(k) + " " + reduction_name(red) +
                     (std::is_same<T, double>::value ? " double" : " float"));
        f(l, k, red);
      }
}

// ---- determinism ---------------------------------------------------------------------------

template <typename T>
void determinism() {
  for_each_setup<T>([](Loss l, LabelKind k, Reduction red) {
    Rng rng(11);
    const Batch<T> b = random_batch<T>(rng, 67, 301, 3, k, 0.2);
    const AnyOptions o = some_options(red);
    const Output<T> a = run(l, o, b, 1), c = run(l, o, b, 1);
    ASSERT_EQ(a.status, Status::kSuccess);
    EXPECT_TRUE(bitwise_equal(a, c));
#if defined(_OPENMP)
    const int saved = omp_get_max_threads();
    for (int threads : {1, 2, 3, 7}) {
      omp_set_num_threads(threads);
      const Output<T> t = run(l, o, b, 1);
      EXPECT_TRUE(bitwise_equal(a, t)) << "with " << threads << " threads";
    }
    omp_set_num_threads(saved);
#endif
  });
}
TEST(Behaviour, DeterministicAcrossCallsAndThreadCounts) {
  determinism<double>();
  determinism<float>();
}

// ---- in-place gradients --------------------------------------------------------------------

template <typename T>
void in_place() {
  for_each_setup<T>([](Loss l, LabelKind k, Reduction red) {
    Rng rng(12);
    const Batch<T> b = random_batch<T>(rng, 9, 37, 2, k, 0.2);
    const AnyOptions o = some_options(red);
    const Output<T> ref = run(l, o, b, 2);  // same stride as the logits
    ASSERT_EQ(ref.status, Status::kSuccess);
    Batch<T> ip = b;
    Output<T> out = ref;
    std::fill(out.loss.begin(), out.loss.end(), sentinel<acc_t<T>>());
    Matrix<T> gs = fusedkd::matrix(ip.student.data(), ip.n, ip.c, ip.stride);
    Matrix<T> gw = l == Loss::kUskd ? fusedkd::matrix(ip.other.data(), ip.n, ip.c, ip.stride) : Matrix<T>();
    ASSERT_EQ(call<T>(l, o, ip.s(), ip.o(), ip.labels(), out.loss.data(), gs, gw), Status::kSuccess);
    out.gs = ip.student;
    if (l == Loss::kUskd) out.gw = ip.other;
    EXPECT_TRUE(bitwise_equal(ref, out)) << "gradients written over the logits differ";
    // only the student gradient aliased (USKD): the weak logits stay the input
    if (l == Loss::kUskd) {
      Batch<T> half = b;
      Output<T> o2 = ref;
      std::fill(o2.gw.begin(), o2.gw.end(), sentinel<T>());
      Matrix<T> g2 = fusedkd::matrix(half.student.data(), half.n, half.c, half.stride);
      Matrix<T> w2 = fusedkd::matrix(o2.gw.data(), half.n, half.c, o2.gstride);
      ASSERT_EQ(call<T>(l, o, half.s(), half.o(), half.labels(), o2.loss.data(), g2, w2), Status::kSuccess);
      o2.gs = half.student;
      EXPECT_TRUE(bitwise_equal(ref, o2));
    }
  });
}
TEST(Behaviour, InPlaceGradientsGiveTheSameResult) {
  in_place<double>();
  in_place<float>();
}

// ---- ignored rows --------------------------------------------------------------------------

template <typename T>
void ignored_rows() {
  for (Loss l : kAllLosses)
    for (LabelKind k : {LabelKind::kHard32, LabelKind::kHard64})
      for (Reduction red : {Reduction::kMean, Reduction::kSum, Reduction::kNone}) {
        SCOPED_TRACE(std::string(loss_name(l)) + " " + label_name(k) + " " + reduction_name(red));
        Rng rng(13);
        Batch<T> b = random_batch<T>(rng, 23, 50, 1, k, 0.4);
        b.set_label(0, -100);
        b.set_label(22, -100);
        b.set_label(5, 3);
        const AnyOptions o = some_options(red);
        const Output<T> out = run(l, o, b, 2);
        ASSERT_EQ(out.status, Status::kSuccess);
        int64_t active = 0;
        for (int64_t r = 0; r < b.n; ++r) {
          const bool ign = b.label(r) == -100;
          active += !ign;
          if (red == Reduction::kNone) {
            if (ign) {
              EXPECT_EQ(out.loss[static_cast<size_t>(r)], 0) << "row " << r;
            } else {
              EXPECT_NE(out.loss[static_cast<size_t>(r)], 0) << "row " << r;
            }
          }
          for (int64_t i = 0; i < b.c; ++i) {
            if (ign) {
              EXPECT_EQ(out.gs_at(r, i), T(0)) << "row " << r << " class " << i;
              if (l == Loss::kUskd) {
                EXPECT_EQ(out.gw_at(r, i), T(0)) << "row " << r << " class " << i;
              }
            } else {
              EXPECT_TRUE(std::isfinite(out.gs_at(r, i)));
            }
          }
        }
        ASSERT_GT(active, 2);
        ASSERT_LT(active, b.n);
        EXPECT_TRUE(outside_untouched(l, out));
      }
}
TEST(Behaviour, IgnoredRowsHaveExactlyZeroGradientAndLoss) {
  ignored_rows<double>();
  ignored_rows<float>();
}

/// An ignore_index inside [0, C) ignores the rows with that label, and nothing else.
TEST(Behaviour, CustomIgnoreIndex) {
  for (Loss l : kAllLosses) {
    SCOPED_TRACE(loss_name(l));
    Rng rng(14);
    Batch<double> b = random_batch<double>(rng, 30, 6, 0, LabelKind::kHard64);
    b.set_label(1, 4);
    AnyOptions o = some_options(Reduction::kMean);
    o.common.ignore_index = 4;
    const Output<double> a = run(l, o, b);
    Batch<double> c = b;
    for (int64_t r = 0; r < c.n; ++r)
      if (c.label(r) == 4) c.set_label(r, -100);
    o.common.ignore_index = -100;
    const Output<double> d = run(l, o, c);
    ASSERT_EQ(a.status, Status::kSuccess);
    EXPECT_TRUE(bitwise_equal(a, d));
  }
}

// ---- label encodings -----------------------------------------------------------------------

template <typename T>
void int32_equals_int64() {
  for (Loss l : kAllLosses)
    for (Reduction red : {Reduction::kMean, Reduction::kNone}) {
      SCOPED_TRACE(loss_name(l));
      Rng rng(15);
      Batch<T> b = random_batch<T>(rng, 40, 33, 0, LabelKind::kHard64, 0.2);
      const AnyOptions o = some_options(red);
      const Output<T> a = run(l, o, b);
      b.kind = LabelKind::kHard32;
      const Output<T> c = run(l, o, b);
      ASSERT_EQ(a.status, Status::kSuccess);
      EXPECT_TRUE(bitwise_equal(a, c));
    }
}
TEST(Behaviour, Int32AndInt64LabelsAgree) {
  int32_equals_int64<double>();
  int32_equals_int64<float>();
}

/// NKD, KD, DKD take a soft row's argmax as the target: one-hot soft labels are hard labels.
/// (Not USKD: a soft row has two targets, the second one with value 0.)
TEST(Behaviour, OneHotSoftLabelsAreHardLabels) {
  for (Loss l : {Loss::kNkd, Loss::kKd, Loss::kDkd}) {
    SCOPED_TRACE(loss_name(l));
    Rng rng(16);
    Batch<double> h = random_batch<double>(rng, 21, 17, 0, LabelKind::kHard64);
    Batch<double> s(h.n, h.c, 4, LabelKind::kSoft);
    for (int64_t r = 0; r < h.n; ++r) {
      for (int64_t i = 0; i < h.c; ++i) {
        s.z(r, i) = h.z(r, i);
        s.v(r, i) = h.v(r, i);
        s.y(r, i) = i == h.label(r) ? 0.7f : 0.02f;
      }
    }
    const AnyOptions o = some_options(Reduction::kNone);
    const Output<double> a = run(l, o, h), b = run(l, o, s);
    ASSERT_EQ(b.status, Status::kSuccess);
    EXPECT_TRUE(close(l, a, b, 1e-13, 1.0, true));
  }
}

// ---- reductions, grad_scale, optional gradients --------------------------------------------

template <typename T>
void reductions_consistent() {
  const double rel = std::is_same<T, double>::value ? 1e-12 : 1e-5;
  for (Loss l : kAllLosses)
    for (LabelKind k : {LabelKind::kHard64, LabelKind::kSoft}) {
      SCOPED_TRACE(std::string(loss_name(l)) + " " + label_name(k));
      Rng rng(17);
      const Batch<T> b = random_batch<T>(rng, 19, 29, 0, k, 0.25);
      int64_t active = b.n;
      if (k != LabelKind::kSoft) {
        active = 0;
        for (int64_t r = 0; r < b.n; ++r) active += b.label(r) != -100;
      }
      AnyOptions o = some_options(Reduction::kNone);
      o.common.grad_scale = 1.0;
      const Output<T> none = run(l, o, b);
      o.common.reduction = Reduction::kSum;
      const Output<T> sum = run(l, o, b);
      o.common.reduction = Reduction::kMean;
      const Output<T> mean = run(l, o, b);
      o.common.grad_scale = -2.5;
      const Output<T> scaled = run(l, o, b);
      const Output<T> no_grad = run(l, o, b, 0, false);
      ASSERT_EQ(none.status, Status::kSuccess);
      EXPECT_NEAR(sum.loss[0], none.objective(), rel * std::max(1.0, std::fabs(static_cast<double>(sum.loss[0]))));
      EXPECT_NEAR(mean.loss[0], sum.loss[0] / static_cast<double>(active),
                  rel * std::max(1.0, std::fabs(static_cast<double>(mean.loss[0]))));
      EXPECT_TRUE(close(l, none, sum, rel)) << "none and sum have the same gradient";
      EXPECT_TRUE(close(l, sum, mean, rel, static_cast<double>(active))) << "mean = sum / active rows";
      EXPECT_TRUE(close(l, scaled, mean, rel, -2.5)) << "gradients scale with grad_scale";
      EXPECT_EQ(scaled.loss[0], mean.loss[0]) << "grad_scale does not scale the loss";
      EXPECT_EQ(no_grad.status, Status::kSuccess);
      EXPECT_EQ(no_grad.loss[0], mean.loss[0]) << "skipping the gradient changes the loss";
      for (const T& x : no_grad.gs) EXPECT_EQ(x, sentinel<T>());
    }
}
TEST(Behaviour, ReductionsAndGradScaleAreConsistent) {
  reductions_consistent<double>();
  reductions_consistent<float>();
}

/// The row padding of the inputs (NaN here) is never read, and that of the outputs never
/// written; soft labels with a row stride too.
template <typename T>
void strided_rows() {
  for (Loss l : kAllLosses)
    for (LabelKind k : {LabelKind::kHard64, LabelKind::kSoft}) {
      SCOPED_TRACE(std::string(loss_name(l)) + " " + label_name(k));
      Rng rng(18);
      const Batch<T> padded = random_batch<T>(rng, 13, 41, 9, k, 0.2);  // NaN in the padding
      Batch<T> dense(padded.n, padded.c, 0, k);
      for (int64_t r = 0; r < padded.n; ++r) {
        dense.set_label(r, padded.label(r));
        for (int64_t i = 0; i < padded.c; ++i) {
          dense.z(r, i) = padded.z(r, i);
          dense.v(r, i) = padded.v(r, i);
          if (k == LabelKind::kSoft) dense.y(r, i) = padded.y(r, i);
        }
      }
      const AnyOptions o = some_options(Reduction::kNone);
      const Output<T> a = run(l, o, padded, 5), b = run(l, o, dense, 0);
      ASSERT_EQ(a.status, Status::kSuccess);
      EXPECT_TRUE(outside_untouched(l, a));
      EXPECT_TRUE(bitwise_equal(a, b));
    }
}
TEST(Behaviour, StridedRowsAreViews) {
  strided_rows<double>();
  strided_rows<float>();
}

}  // namespace
