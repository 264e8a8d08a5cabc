// tests/unit_bad_inputs_test.cpp — every bad input is refused with its Status, and a refused
// call writes nothing (the loss and gradient buffers are pre-filled with a sentinel).
#include <functional>
#include <limits>

#include "test_util.hpp"

namespace {

using namespace tu;

/// Everything a call takes, so that a test can break one thing.
template <typename T>
struct CallArgs {
  Matrix<const T> s, v;
  Labels labels;
  acc_t<T>* loss = nullptr;
  Matrix<T> gs, gw;
};

/// Calls `loss` on `b` after `edit` has broken something, and expects `expected` and no writes.
template <typename T, typename Edit>
void expect_refused(Loss loss, const AnyOptions& o, const Batch<T>& b, Status expected, Edit edit) {
  Output<T> out;
  out.n = b.n;
  out.c = b.c;
  out.gstride = b.c;
  out.nloss = o.common.reduction == Reduction::kNone ? b.n : 1;
  out.loss.assign(static_cast<size_t>(std::max<int64_t>(out.nloss, 1) + 1), sentinel<acc_t<T>>());
  const size_t gsz = static_cast<size_t>(std::max<int64_t>(1, b.n * b.c));
  out.gs.assign(gsz, sentinel<T>());
  out.gw.assign(gsz, sentinel<T>());
  CallArgs<T> a;
  a.s = b.s();
  a.v = b.o();
  a.labels = b.labels();
  a.loss = out.loss.data();
  a.gs = fusedkd::matrix(out.gs.data(), b.n, b.c);
  if (loss == Loss::kUskd) a.gw = fusedkd::matrix(out.gw.data(), b.n, b.c);
  edit(a);
  const std::vector<T> student_before = b.student, other_before = b.other;
  const Status st = call<T>(loss, o, a.s, a.v, a.labels, a.loss, a.gs, a.gw);
  EXPECT_EQ(st, expected) << "got " << fusedkd::status_name(st) << ", expected "
                          << fusedkd::status_name(expected);
  EXPECT_STRNE(fusedkd::status_string(st), "");
  EXPECT_TRUE(untouched(out));
  EXPECT_TRUE(b.student == student_before && b.other == other_before) << "an input was modified";
}

template <typename T>
void expect_refused(Loss loss, const AnyOptions& o, const Batch<T>& b, Status expected) {
  expect_refused(loss, o, b, expected, [](CallArgs<T>&) {});
}

template <typename T>
void expect_accepted(Loss loss, const AnyOptions& o, const Batch<T>& b) {
  const Output<T> out = run(loss, o, b);
  EXPECT_EQ(out.status, Status::kSuccess) << fusedkd::status_name(out.status);
}

template <typename T>
Batch<T> small_batch(LabelKind kind = LabelKind::kHard64, int64_t n = 4, int64_t c = 6) {
  Rng rng(42);
  return random_batch<T>(rng, n, c, 0, kind);
}

/// Runs `body<T>(loss)` for every loss and both float types.
#define FOR_ALL_LOSSES_AND_TYPES(body)                                    \
  for (Loss loss_ : kAllLosses) {                                         \
    SCOPED_TRACE(std::string("loss=") + loss_name(loss_) + " double");    \
    body<double>(loss_);                                                  \
  }                                                                       \
  for (Loss loss_ : kAllLosses) {                                         \
    SCOPED_TRACE(std::string("loss=") + loss_name(loss_) + " float");     \
    body<float>(loss_);                                                   \
  }

// ---- labels out of range -------------------------------------------------------------------

template <typename T>
void label_out_of_range(Loss loss) {
  for (LabelKind kind : {LabelKind::kHard32, LabelKind::kHard64}) {
    for (Reduction red : {Reduction::kMean, Reduction::kNone}) {
      SCOPED_TRACE(label_name(kind));
      AnyOptions o;
      o.common.reduction = red;
      Batch<T> b = small_batch<T>(kind);
      const int64_t last = b.n - 1;
      for (int64_t bad : {b.c, b.c + 1, int64_t{-1}, int64_t{-99}, int64_t{-101}}) {
        b.set_label(last, bad);  // the last row: work on earlier rows must not leak out
        expect_refused(loss, o, b, Status::kLabelOutOfRange);
      }
      // -100 is only special when it is the ignore_index
      o.common.ignore_index = -1;
      b.set_label(last, -100);
      expect_refused(loss, o, b, Status::kLabelOutOfRange);
      b.set_label(last, -1);
      expect_accepted(loss, o, b);
      if (kind == LabelKind::kHard64) {
        o.common.ignore_index = -100;
        for (int64_t bad : {int64_t{1} << 40, std::numeric_limits<int64_t>::min()}) {
          b.set_label(last, bad);
          expect_refused(loss, o, b, Status::kLabelOutOfRange);
        }
      }
    }
  }
}
TEST(BadInputs, LabelOutOfRange) { FOR_ALL_LOSSES_AND_TYPES(label_out_of_range); }

// ---- too few classes -----------------------------------------------------------------------

template <typename T>
void too_few_classes(Loss loss) {
  AnyOptions o;
  for (int64_t c : {0, 1}) {
    Batch<T> b(3, c, 0, LabelKind::kHard64);  // labels 0, logits 0
    expect_refused(loss, o, b, Status::kTooFewClasses);
    if (c == 1) {
      Batch<T> soft(3, c, 0, LabelKind::kSoft);
      for (int64_t r = 0; r < soft.n; ++r) soft.y(r, 0) = 1.0f;
      expect_refused(loss, o, soft, Status::kTooFewClasses);
    }
  }
  // C = 2 is the minimum, except for USKD with soft labels (two targets need C >= 3)
  expect_accepted(loss, o, small_batch<T>(LabelKind::kHard64, 3, 2));
  Batch<T> soft2 = small_batch<T>(LabelKind::kSoft, 3, 2);
  if (loss == Loss::kUskd) {
    expect_refused(loss, o, soft2, Status::kTooFewClasses);
    expect_accepted(loss, o, small_batch<T>(LabelKind::kSoft, 3, 3));
  } else {
    expect_accepted(loss, o, soft2);
  }
}
TEST(BadInputs, TooFewClasses) { FOR_ALL_LOSSES_AND_TYPES(too_few_classes); }

// ---- null pointers -------------------------------------------------------------------------

template <typename T>
void null_pointers(Loss loss) {
  AnyOptions o;
  const Batch<T> b = small_batch<T>();
  expect_refused(loss, o, b, Status::kNullPointer, [](CallArgs<T>& a) { a.s.data = nullptr; });
  expect_refused(loss, o, b, Status::kNullPointer, [](CallArgs<T>& a) { a.v.data = nullptr; });
  expect_refused(loss, o, b, Status::kNullPointer, [](CallArgs<T>& a) { a.loss = nullptr; });
  expect_refused(loss, o, b, Status::kNullPointer,
                 [](CallArgs<T>& a) { a.labels = Labels::index(static_cast<const int64_t*>(nullptr)); });
  expect_refused(loss, o, b, Status::kNullPointer,
                 [](CallArgs<T>& a) { a.labels = Labels::index(static_cast<const int32_t*>(nullptr)); });
  expect_refused(loss, o, b, Status::kNullPointer,
                 [](CallArgs<T>& a) { a.labels = Labels::soft(nullptr); });
  // a gradient matrix with a shape but no data
  expect_refused(loss, o, b, Status::kNullPointer, [](CallArgs<T>& a) { a.gs.data = nullptr; });
  if (loss == Loss::kUskd) {
    expect_refused(loss, o, b, Status::kNullPointer, [](CallArgs<T>& a) { a.gw.data = nullptr; });
    // both gradients or neither
    expect_refused(loss, o, b, Status::kNullPointer, [](CallArgs<T>& a) { a.gw = Matrix<T>(); });
    expect_refused(loss, o, b, Status::kNullPointer, [](CallArgs<T>& a) { a.gs = Matrix<T>(); });
  }
  // no labels: only KD without the cross-entropy term accepts that
  if (loss == Loss::kKd) {
    expect_accepted(loss, o, small_batch<T>(LabelKind::kNone));
    AnyOptions ce = o;
    ce.common.ce_weight = 1.0;
    const Batch<T> nl = small_batch<T>(LabelKind::kNone);
    Output<T> out = run(loss, ce, nl);
    EXPECT_TRUE(out.status == Status::kNullPointer || out.status == Status::kInvalidOption)
        << fusedkd::status_name(out.status);
    EXPECT_TRUE(untouched(out));
  } else {
    expect_refused(loss, o, b, Status::kNullPointer, [](CallArgs<T>& a) { a.labels = Labels::none(); });
  }
}
TEST(BadInputs, NullPointers) { FOR_ALL_LOSSES_AND_TYPES(null_pointers); }

// ---- negative sizes ------------------------------------------------------------------------

template <typename T>
void negative_sizes(Loss loss) {
  AnyOptions o;
  const Batch<T> b = small_batch<T>();
  expect_refused(loss, o, b, Status::kNegativeSize, [](CallArgs<T>& a) {
    a.s.rows = a.v.rows = a.gs.rows = -1;
    if (a.gw.data) a.gw.rows = -1;
  });
  expect_refused(loss, o, b, Status::kNegativeSize, [](CallArgs<T>& a) {
    a.s.cols = a.v.cols = a.gs.cols = -3;
    if (a.gw.data) a.gw.cols = -3;
  });
  expect_refused(loss, o, b, Status::kNegativeSize, [](CallArgs<T>& a) {
    a.s.rows = a.v.rows = a.gs.rows = std::numeric_limits<int64_t>::min();
    if (a.gw.data) a.gw.rows = std::numeric_limits<int64_t>::min();
  });
}
TEST(BadInputs, NegativeSizes) { FOR_ALL_LOSSES_AND_TYPES(negative_sizes); }

// ---- options out of their domain -----------------------------------------------------------

template <typename T>
void invalid_options(Loss loss) {
  const Batch<T> b = small_batch<T>();
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (loss != Loss::kUskd) {
    for (double t : {0.0, -0.0, -1.0, nan, inf, -inf}) {
      SCOPED_TRACE("temperature=" + std::to_string(t));
      AnyOptions o;
      o.set_temperature(t);
      expect_refused(loss, o, b, Status::kInvalidOption);
    }
  }
  std::vector<std::function<void(AnyOptions&)>> bad = {
      [&](AnyOptions& o) { o.common.grad_scale = nan; },
      [&](AnyOptions& o) { o.common.grad_scale = inf; },
      [&](AnyOptions& o) { o.common.ce_weight = nan; },
  };
  switch (loss) {
    case Loss::kNkd:
      bad.push_back([&](AnyOptions& o) { o.nkd.gamma = nan; });
      bad.push_back([&](AnyOptions& o) { o.nkd.gamma = inf; });
      break;
    case Loss::kKd:
      bad.push_back([&](AnyOptions& o) { o.kd.weight = nan; });
      break;
    case Loss::kDkd:
      bad.push_back([&](AnyOptions& o) { o.dkd.alpha = nan; });
      bad.push_back([&](AnyOptions& o) { o.dkd.beta = -inf; });
      break;
    case Loss::kUskd:
      bad.push_back([&](AnyOptions& o) { o.uskd.alpha = nan; });
      bad.push_back([&](AnyOptions& o) { o.uskd.beta = inf; });
      bad.push_back([&](AnyOptions& o) { o.uskd.mu = nan; });
      bad.push_back([&](AnyOptions& o) { o.uskd.smoothing = -0.1; });
      bad.push_back([&](AnyOptions& o) { o.uskd.smoothing = 1.5; });
      bad.push_back([&](AnyOptions& o) { o.uskd.smoothing = nan; });
      bad.push_back([&](AnyOptions& o) { o.uskd.rank = static_cast<fusedkd::UskdRank>(7); });
      break;
  }
  for (size_t i = 0; i < bad.size(); ++i) {
    SCOPED_TRACE("bad option #" + std::to_string(i));
    AnyOptions o;
    bad[i](o);
    expect_refused(loss, o, b, Status::kInvalidOption);
  }
}
TEST(BadInputs, InvalidOptions) { FOR_ALL_LOSSES_AND_TYPES(invalid_options); }

// ---- soft-label rows without a positive entry ----------------------------------------------

template <typename T>
void empty_soft_row(Loss loss) {
  AnyOptions o;
  Batch<T> b = small_batch<T>(LabelKind::kSoft);
  const int64_t last = b.n - 1;
  for (float fill : {0.0f, -0.5f, -0.0f}) {
    for (int64_t i = 0; i < b.c; ++i) b.y(last, i) = fill;
    expect_refused(loss, o, b, Status::kEmptySoftLabelRow);
  }
  b.y(last, 2) = 1e-30f;  // one positive entry is enough
  expect_accepted(loss, o, b);
}
TEST(BadInputs, SoftLabelRowWithoutPositiveEntry) { FOR_ALL_LOSSES_AND_TYPES(empty_soft_row); }

// ---- shapes and strides --------------------------------------------------------------------

template <typename T>
void shape_mismatch(Loss loss) {
  AnyOptions o;
  const Batch<T> b = small_batch<T>(LabelKind::kHard64, 4, 6);
  expect_refused(loss, o, b, Status::kShapeMismatch, [](CallArgs<T>& a) { a.v.rows -= 1; });
  expect_refused(loss, o, b, Status::kShapeMismatch, [](CallArgs<T>& a) { a.v.cols -= 1; });
  expect_refused(loss, o, b, Status::kShapeMismatch, [](CallArgs<T>& a) { a.gs.rows -= 1; });
  expect_refused(loss, o, b, Status::kShapeMismatch, [](CallArgs<T>& a) { a.gs.cols -= 1; });
  if (loss == Loss::kUskd) {
    expect_refused(loss, o, b, Status::kShapeMismatch, [](CallArgs<T>& a) { a.gw.rows -= 1; });
    expect_refused(loss, o, b, Status::kShapeMismatch, [](CallArgs<T>& a) { a.gw.cols -= 1; });
  }
}
TEST(BadInputs, ShapeMismatch) { FOR_ALL_LOSSES_AND_TYPES(shape_mismatch); }

template <typename T>
void stride_smaller_than_c(Loss loss) {
  AnyOptions o;
  const Batch<T> b = small_batch<T>(LabelKind::kHard64, 4, 6);
  expect_refused(loss, o, b, Status::kShapeMismatch, [](CallArgs<T>& a) { a.s.stride = a.s.cols - 1; });
  expect_refused(loss, o, b, Status::kShapeMismatch, [](CallArgs<T>& a) { a.v.stride = a.v.cols - 1; });
  expect_refused(loss, o, b, Status::kShapeMismatch, [](CallArgs<T>& a) { a.gs.stride = a.gs.cols - 1; });
  expect_refused(loss, o, b, Status::kShapeMismatch, [](CallArgs<T>& a) { a.s.stride = -6; });
  if (loss == Loss::kUskd) {
    expect_refused(loss, o, b, Status::kShapeMismatch, [](CallArgs<T>& a) { a.gw.stride = a.gw.cols - 1; });
  }
  // soft labels have a row stride too (0 means C)
  const Batch<T> s = small_batch<T>(LabelKind::kSoft, 4, 6);
  expect_refused(loss, o, s, Status::kShapeMismatch,
                 [&](CallArgs<T>& a) { a.labels = Labels::soft(s.soft.data(), s.c - 1); });
}
TEST(BadInputs, StrideSmallerThanC) { FOR_ALL_LOSSES_AND_TYPES(stride_smaller_than_c); }

/// A refused in-place call (gradients aliasing the logits) leaves the logits alone.
template <typename T>
void refused_in_place(Loss loss) {
  AnyOptions o;
  Batch<T> b = small_batch<T>(LabelKind::kHard64, 5, 7);
  b.set_label(b.n - 1, b.c);
  const std::vector<T> zs = b.student, ws = b.other;
  acc_t<T> l = sentinel<acc_t<T>>();
  Matrix<T> gs = fusedkd::matrix(b.student.data(), b.n, b.c);
  Matrix<T> gw = loss == Loss::kUskd ? fusedkd::matrix(b.other.data(), b.n, b.c) : Matrix<T>();
  EXPECT_EQ(call<T>(loss, o, b.s(), b.o(), b.labels(), &l, gs, gw), Status::kLabelOutOfRange);
  EXPECT_EQ(l, sentinel<acc_t<T>>());
  EXPECT_TRUE(b.student == zs && b.other == ws);
}
TEST(BadInputs, RefusedInPlaceCallLeavesLogitsAlone) { FOR_ALL_LOSSES_AND_TYPES(refused_in_place); }

TEST(Status, EveryStatusHasANameAndASentence) {
  for (int s = 0; s <= static_cast<int>(Status::kCudaError); ++s) {
    const Status st = static_cast<Status>(s);
    EXPECT_STRNE(fusedkd::status_name(st), "unknown_status");
    EXPECT_STRNE(fusedkd::status_string(st), "unknown status");
  }
  EXPECT_STREQ(fusedkd::status_name(Status::kLabelOutOfRange), "label_out_of_range");
}

}  // namespace
