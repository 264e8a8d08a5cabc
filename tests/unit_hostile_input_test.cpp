// tests/unit_hostile_input_test.cpp — regression tests for the defects an attacker's fuzzing
// found (issue 10, items 1-10): each test here failed (or crashed) before its fix.
//
// Shapes that claim more memory than exists are passed with a small real buffer: a call must
// refuse them from the shape alone, before it reads or allocates anything.
#include <cstdint>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <string>

#include "test_util.hpp"

namespace {

using namespace tu;
using fusedkd::Matrix;

// A few elements of every type the calls read, to point shapes at (never read past index 0
// when the call refuses; never read at all for the huge shapes).
float g_f[16];
double g_d[16];
int64_t g_l64[16];
int32_t g_l32[16];
float g_soft[16];

template <typename T> T* buffer();
template <> float* buffer<float>() { return g_f; }
template <> double* buffer<double>() { return g_d; }

/// Calls `loss` with student and other [n, c] of row stride `stride` (all on the small buffer),
/// hard int64 labels, and no gradient. The loss output is a local sentinel.
template <typename T>
Status call_shape(Loss loss, int64_t n, int64_t c, int64_t stride, const AnyOptions& o = {},
                  Labels labels = Labels::index(g_l64)) {
  acc_t<T> out[2] = {sentinel<acc_t<T>>(), sentinel<acc_t<T>>()};
  const Matrix<const T> m(buffer<T>(), n, c, stride);
  const Status s = call<T>(loss, o, m, m, labels, out);
  EXPECT_EQ(out[0], sentinel<acc_t<T>>()) << "a refused call wrote its loss";
  return s;
}

template <typename T>
Batch<T> small_batch(LabelKind kind, int64_t n, int64_t c) {
  Rng rng(42);
  return random_batch<T>(rng, n, c, 0, kind);
}

#define FOR_LOSSES_AND_TYPES(fn)   \
  for (Loss l : kAllLosses) {      \
    SCOPED_TRACE(loss_name(l));    \
    fn<float>(l);                  \
    fn<double>(l);                 \
  }

// ---- 1. a huge N is a Status, never an exception -------------------------------------------

template <typename T>
void huge_batch(Loss loss) {
  // N = 2^59 (float), 2^58 (double), C = 2: the rows fit the address space, the O(N) scratch
  // does not fit in a size_t (so no allocation is even tried, also under ASan).
  const int64_t n = int64_t{1} << (std::is_same<T, float>::value ? 59 : 58);
  EXPECT_EQ(call_shape<T>(loss, n, 2, 2), Status::kOutOfMemory);
}
TEST(HostileInput, HugeBatchIsOutOfMemoryNotAnException) { FOR_LOSSES_AND_TYPES(huge_batch); }

// ---- 3. a class with zero teacher probability contributes 0 -------------------------------

/// Adds a class at index `at` that is -inf in the student and in the teacher.
template <typename T>
Batch<T> with_dead_class(const Batch<T>& b, int64_t at) {
  Batch<T> d(b.n, b.c + 1, 0, b.kind);
  for (int64_t r = 0; r < b.n; ++r) {
    for (int64_t i = 0, j = 0; i < d.c; ++i) {
      if (i == at) {
        d.z(r, i) = d.v(r, i) = -std::numeric_limits<T>::infinity();
        continue;
      }
      d.z(r, i) = b.z(r, j);
      d.v(r, i) = b.v(r, j);
      ++j;
    }
    const int64_t label = b.label(r);
    d.set_label(r, label >= at ? label + 1 : label);
  }
  return d;
}

template <typename T>
void dead_class(Loss loss) {
  if (loss == Loss::kUskd) return;  // USKD: below (its Zipf ranks count every class)
  Rng rng(31);
  for (double ce : {0.0, 0.7}) {
    for (double temp : {1.0, 3.0}) {
      AnyOptions o;
      o.common.ce_weight = ce;
      o.common.reduction = Reduction::kNone;
      o.set_temperature(temp);
      const Batch<T> b = random_batch<T>(rng, 4, 6, 0, LabelKind::kHard64);
      const Batch<T> d = with_dead_class(b, 2);
      const Output<T> ob = run(loss, o, b), od = run(loss, o, d);
      ASSERT_EQ(ob.status, Status::kSuccess);
      ASSERT_EQ(od.status, Status::kSuccess);
      // The -inf class has probability 0 on both sides: the loss is that of the other classes.
      const double tol = std::is_same<T, float>::value ? 2e-5 : 1e-12;
      for (int64_t r = 0; r < b.n; ++r) {
        const double lb = ob.loss[static_cast<size_t>(r)], ld = od.loss[static_cast<size_t>(r)];
        EXPECT_NEAR(ld, lb, tol * std::max(1.0, std::fabs(lb))) << "row " << r << " ce " << ce;
        EXPECT_EQ(od.gs_at(r, 2), T(0));
        for (int64_t i = 0, j = 0; i < d.c; ++i) {
          if (i == 2) continue;
          EXPECT_NEAR(od.gs_at(r, i), ob.gs_at(r, j), tol);
          ++j;
        }
      }
    }
  }
}
TEST(HostileInput, ClassMinusInfInStudentAndTeacherContributesZero) {
  FOR_LOSSES_AND_TYPES(dead_class);
}

template <typename T>
void dead_anywhere(Loss loss) {
  // -inf in both rows at a non-target class, at the target, and (USKD) in the weak logits with
  // no label smoothing: never a NaN (a +inf loss is the true value where a class the target
  // weighs has a -inf student logit).
  const T ninf = -std::numeric_limits<T>::infinity();
  for (int64_t dead : {0, 1}) {  // 0: the target, 1: a non-target
    for (double eps : {0.0, 0.1}) {
      AnyOptions o;
      o.uskd.smoothing = eps;
      Batch<T> b(2, 4);
      for (int64_t r = 0; r < b.n; ++r) {
        for (int64_t i = 0; i < b.c; ++i) b.z(r, i) = b.v(r, i) = T(0.5 * static_cast<double>(i - r));
        b.set_label(r, 0);
        b.z(r, dead) = b.v(r, dead) = ninf;
      }
      const Output<T> out = run(loss, o, b);
      ASSERT_EQ(out.status, Status::kSuccess);
      EXPECT_FALSE(std::isnan(static_cast<double>(out.loss[0]))) << "dead " << dead << " eps " << eps;
      for (int64_t r = 0; r < b.n; ++r)
        for (int64_t i = 0; i < b.c; ++i) {
          EXPECT_FALSE(std::isnan(static_cast<double>(out.gs_at(r, i)))) << r << ", " << i;
          if (loss == Loss::kUskd) EXPECT_FALSE(std::isnan(static_cast<double>(out.gw_at(r, i))));
        }
    }
  }
}
TEST(HostileInput, MinusInfLogitsGiveNoNaN) { FOR_LOSSES_AND_TYPES(dead_anywhere); }

// ---- 4. an empty batch returns at once ----------------------------------------------------

template <typename T>
void empty_batch_wide(Loss loss) {
  // N = 0 with C = 2^31 - 1: nothing to read, nothing to allocate (USKD used threads x C).
  const int64_t c = INT32_MAX;
  for (Reduction red : {Reduction::kMean, Reduction::kSum}) {
    AnyOptions o;
    o.common.reduction = red;
    acc_t<T> out[2] = {sentinel<acc_t<T>>(), sentinel<acc_t<T>>()};
    const Matrix<const T> m(buffer<T>(), 0, c, c);
    EXPECT_EQ(call<T>(loss, o, m, m, Labels::index(g_l64), out), Status::kSuccess);
    EXPECT_EQ(out[0], acc_t<T>(0));
    EXPECT_EQ(out[1], sentinel<acc_t<T>>());
  }
}
TEST(HostileInput, EmptyBatchOfHugeWidthSucceedsAtOnce) { FOR_LOSSES_AND_TYPES(empty_batch_wide); }

// ---- 5. options in the range of the computation type ---------------------------------------

template <typename T>
Status call_options(Loss loss, const AnyOptions& o) {
  const Batch<T> b = small_batch<T>(LabelKind::kHard64, 3, 5);
  return run(loss, o, b).status;
}

TEST(HostileInput, OptionsBeyondFloatAreRefusedInFloat) {
  // Each of these passed a check in double and gave NaN or inf in float.
  AnyOptions tiny;
  tiny.set_temperature(1e-39);
  AnyOptions big_t_dkd;
  big_t_dkd.dkd.temperature = 1e19;
  AnyOptions big_t_kd;
  big_t_kd.kd.temperature = 1e20;
  for (Loss l : {Loss::kNkd, Loss::kKd, Loss::kDkd}) {
    EXPECT_EQ(call_options<float>(l, tiny), Status::kInvalidOption) << loss_name(l);
  }
  EXPECT_EQ(call_options<float>(Loss::kDkd, big_t_dkd), Status::kInvalidOption);
  EXPECT_EQ(call_options<float>(Loss::kKd, big_t_kd), Status::kInvalidOption);
  const double huge = 1e39;
  for (Loss l : kAllLosses) {
    AnyOptions w;
    w.common.ce_weight = huge;
    EXPECT_EQ(call_options<float>(l, w), Status::kInvalidOption) << loss_name(l);
    w = AnyOptions();
    w.common.grad_scale = -huge;
    EXPECT_EQ(call_options<float>(l, w), Status::kInvalidOption) << loss_name(l);
  }
  AnyOptions w;
  w.kd.weight = huge;
  EXPECT_EQ(call_options<float>(Loss::kKd, w), Status::kInvalidOption);
  w = AnyOptions();
  w.nkd.gamma = huge;
  EXPECT_EQ(call_options<float>(Loss::kNkd, w), Status::kInvalidOption);
  w = AnyOptions();
  w.dkd.beta = huge;
  EXPECT_EQ(call_options<float>(Loss::kDkd, w), Status::kInvalidOption);
  w = AnyOptions();
  w.uskd.alpha = huge;
  EXPECT_EQ(call_options<float>(Loss::kUskd, w), Status::kInvalidOption);
  w = AnyOptions();
  w.uskd.mu = -huge;
  EXPECT_EQ(call_options<float>(Loss::kUskd, w), Status::kInvalidOption);
  // ... and are fine in double.
  EXPECT_EQ(call_options<double>(Loss::kDkd, big_t_dkd), Status::kSuccess);
  EXPECT_EQ(call_options<double>(Loss::kKd, big_t_kd), Status::kSuccess);
}

TEST(HostileInput, OptionsBeyondDoubleAreRefusedInDouble) {
  AnyOptions o;
  o.kd.temperature = 1e300;  // T^2 overflows double
  EXPECT_EQ(call_options<double>(Loss::kKd, o), Status::kInvalidOption);
  o.kd.temperature = 1e-300;
  EXPECT_EQ(call_options<double>(Loss::kKd, o), Status::kInvalidOption);
}

/// The documented limits: 2^40 (float) and 2^340 (double) for every weight, the temperature in
/// [2^-limit, 2^limit]. At the limits the results are numbers; just beyond them, a refusal.
template <typename T>
void option_limits(Loss loss) {
  const double lim = std::is_same<T, float>::value ? std::ldexp(1.0, 40) : std::ldexp(1.0, 340);
  Rng rng(7);
  const Batch<T> b = random_batch<T>(rng, 3, 9, 0, LabelKind::kHard64);
  for (double sign : {1.0, -1.0}) {
    for (double temp : {lim, 1.0 / lim}) {
      AnyOptions o;
      o.set_temperature(temp);
      o.common.grad_scale = sign * lim;
      o.common.ce_weight = lim;
      o.nkd.gamma = o.kd.weight = o.dkd.alpha = o.dkd.beta = sign * lim;
      o.uskd.alpha = o.uskd.beta = o.uskd.mu = sign * lim;
      const Output<T> out = run(loss, o, b);
      ASSERT_EQ(out.status, Status::kSuccess) << "T " << temp;
      EXPECT_FALSE(std::isnan(static_cast<double>(out.loss[0]))) << "T " << temp;
      for (T g : out.gs) EXPECT_FALSE(std::isnan(static_cast<double>(g))) << "T " << temp;
      for (T g : out.gw) EXPECT_FALSE(std::isnan(static_cast<double>(g))) << "T " << temp;
    }
  }
  const double above = lim * (1.0 + 1e-15);
  AnyOptions o;
  o.common.grad_scale = above;
  EXPECT_EQ(run(loss, o, b).status, Status::kInvalidOption);
  if (loss != Loss::kUskd) {
    o = AnyOptions();
    o.set_temperature(above);
    EXPECT_EQ(run(loss, o, b).status, Status::kInvalidOption);
    o.set_temperature(1.0 / above);
    EXPECT_EQ(run(loss, o, b).status, Status::kInvalidOption);
  }
}
TEST(HostileInput, OptionLimitsPerComputationType) { FOR_LOSSES_AND_TYPES(option_limits); }

// ---- 6. strides whose rows would overflow -------------------------------------------------

template <typename T>
void overflowing_strides(Loss loss) {
  // (N - 1) * stride overflows int64, or wraps the address space back to row 0.
  EXPECT_EQ(call_shape<T>(loss, 3, 4, INT64_MAX), Status::kShapeMismatch);
  EXPECT_EQ(call_shape<T>(loss, 2, 4, int64_t{1} << 62), Status::kShapeMismatch);
  EXPECT_EQ(call_shape<T>(loss, 2, 4, int64_t{1} << 61), Status::kShapeMismatch);
  // A single row needs no stride: any stride >= C is fine.
  acc_t<T> out[2];
  AnyOptions o;
  const Batch<T> b = small_batch<T>(LabelKind::kHard64, 1, 4);
  const Matrix<const T> one(b.student.data(), 1, 4, INT64_MAX);
  EXPECT_EQ(call<T>(loss, o, one, fusedkd::matrix(b.other.data(), 1, 4), b.labels(), out),
            Status::kSuccess);
  // The gradient's stride and the soft labels' stride likewise.
  const Batch<T> c = small_batch<T>(LabelKind::kHard64, 3, 4);
  T* gbuf = buffer<T>();
  const Matrix<T> g(gbuf, 3, 4, INT64_MAX / 2);
  const Matrix<T> gw = loss == Loss::kUskd ? fusedkd::matrix(gbuf, 3, 4) : Matrix<T>();
  EXPECT_EQ(call<T>(loss, o, c.s(), c.o(), c.labels(), out, g, gw), Status::kShapeMismatch);
  const Batch<T> s = small_batch<T>(LabelKind::kSoft, 3, 4);
  EXPECT_EQ(call<T>(loss, o, s.s(), s.o(), Labels::soft(g_soft, int64_t{1} << 62), out),
            Status::kShapeMismatch);
}
TEST(HostileInput, StridesThatOverflowAreRefused) { FOR_LOSSES_AND_TYPES(overflowing_strides); }

// ---- 7. bit tests are defined for every input ----------------------------------------------

TEST(HostileInput, IsZeroOfNegativeNaN) {
  // Ran `(signed bits) << 1` on a negative NaN: undefined behaviour (UBSan stops the ASan CI).
  const float fneg = -std::numeric_limits<float>::quiet_NaN();
  const double dneg = -std::numeric_limits<double>::quiet_NaN();
  EXPECT_FALSE(fusedkd::detail::is_zero(fneg));
  EXPECT_FALSE(fusedkd::detail::is_zero(dneg));
  EXPECT_FALSE(fusedkd::detail::is_zero(-1.0f));
  EXPECT_TRUE(fusedkd::detail::is_zero(-0.0f));
  EXPECT_TRUE(fusedkd::detail::is_zero(-0.0));
  EXPECT_EQ(fusedkd::detail::weighted(0.0f, -std::numeric_limits<float>::infinity()), 0.0f);
}

// ---- 8. enums outside their values ---------------------------------------------------------

template <typename T>
void bad_enums(Loss loss) {
  const Batch<T> b = small_batch<T>(LabelKind::kHard64, 3, 5);
  AnyOptions o;
  o.common.reduction = static_cast<Reduction>(7);
  EXPECT_EQ(run(loss, o, b).status, Status::kInvalidOption);
  o = AnyOptions();
  acc_t<T> out[2];
  Labels lab = b.labels();
  lab.kind = static_cast<Labels::Kind>(9);
  EXPECT_EQ(call<T>(loss, o, b.s(), b.o(), lab, out), Status::kInvalidOption);
  if (loss == Loss::kUskd) {
    o.uskd.rank = static_cast<fusedkd::UskdRank>(7);
    EXPECT_EQ(run(loss, o, b).status, Status::kInvalidOption);
  }
}
TEST(HostileInput, EnumValuesOutsideTheirListAreRefused) { FOR_LOSSES_AND_TYPES(bad_enums); }

// ---- 9. soft labels that are not finite ----------------------------------------------------

template <typename T>
void non_finite_soft(Loss loss) {
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
                    std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()}) {
    for (int64_t at : {0, 2, 4}) {
      Rng rng(5);
      Batch<T> b = random_batch<T>(rng, 3, 5, 0, LabelKind::kSoft);
      b.y(1, at) = bad;
      AnyOptions o;
      const Output<T> out = run(loss, o, b);
      EXPECT_EQ(out.status, Status::kNonFiniteSoftLabel) << "value " << bad << " at " << at;
      EXPECT_TRUE(untouched(out));
    }
  }
}
TEST(HostileInput, NonFiniteSoftLabelsAreRefused) { FOR_LOSSES_AND_TYPES(non_finite_soft); }

template <typename T>
void huge_soft(Loss loss) {
  // Two entries of 3e38: their sum is beyond float (refused in float), fine in double.
  Batch<T> b(2, 4, 0, LabelKind::kSoft);
  for (int64_t r = 0; r < b.n; ++r) {
    for (int64_t i = 0; i < b.c; ++i) b.z(r, i) = b.v(r, i) = T(0.25 * static_cast<double>(i + r));
    b.y(r, 1) = 3e38f;
    b.y(r, 3) = 3e38f;
  }
  const Output<T> out = run(loss, AnyOptions(), b);
  if (std::is_same<T, float>::value) {
    EXPECT_EQ(out.status, Status::kNonFiniteSoftLabel);
    EXPECT_TRUE(untouched(out));
  } else {
    ASSERT_EQ(out.status, Status::kSuccess);
    EXPECT_TRUE(std::isfinite(static_cast<double>(out.loss[0])));
  }
  // One entry of 3e38: the row's sum fits in float; the result is never NaN.
  for (int64_t r = 0; r < b.n; ++r) b.y(r, 3) = 0.0f;
  const Output<T> one = run(loss, AnyOptions(), b);
  ASSERT_EQ(one.status, Status::kSuccess);
  EXPECT_FALSE(std::isnan(static_cast<double>(one.loss[0])));
  for (T g : one.gs) EXPECT_FALSE(std::isnan(static_cast<double>(g)));
  for (T g : one.gw) EXPECT_FALSE(std::isnan(static_cast<double>(g)));
}
TEST(HostileInput, HugeSoftLabelsDoNotOverflowTheirSum) { FOR_LOSSES_AND_TYPES(huge_soft); }

TEST(HostileInput, NewStatusHasANameAndASentence) {
  EXPECT_STREQ(fusedkd::status_name(Status::kNonFiniteSoftLabel), "non_finite_soft_label");
  EXPECT_STRNE(fusedkd::status_string(Status::kNonFiniteSoftLabel), "unknown status");
}

// ---- 10. docs/api.md lists every Status the CPU backend returns ----------------------------

/// Each refusal the CPU API can give, provoked once per loss and type.
template <typename T>
void provoke_all(Loss loss, std::set<Status>& seen) {
  const auto add = [&](Status s) { seen.insert(s); };
  AnyOptions o;
  const Batch<T> b = small_batch<T>(LabelKind::kHard64, 3, 5);
  acc_t<T> out[8];
  add(call<T>(loss, o, Matrix<const T>(nullptr, 3, 5, 5), b.o(), b.labels(), out));  // null
  add(call_shape<T>(loss, -1, 5, 5));                                                  // negative
  add(call_shape<T>(loss, 3, 5, 4));                                                   // stride
  add(call<T>(loss, o, b.s(), b.s(), b.labels(), nullptr));                           // null loss
  add(call_shape<T>(loss, 1, 1, 1));                                                   // C = 1
  add(call_shape<T>(loss, 1, int64_t{1} << 31, int64_t{1} << 31));                    // C > 2^31-1
  add(call_shape<T>(loss, int64_t{1} << (std::is_same<T, float>::value ? 59 : 58), 2, 2));  // OOM
  Batch<T> bad = b;
  bad.set_label(0, 99);
  add(run(loss, o, bad).status);  // label out of range
  Batch<T> soft = small_batch<T>(LabelKind::kSoft, 3, 5);
  for (int64_t i = 0; i < soft.c; ++i) soft.y(0, i) = 0.0f;
  add(run(loss, o, soft).status);  // empty soft row
  soft.y(0, 1) = std::numeric_limits<float>::quiet_NaN();
  add(run(loss, o, soft).status);  // non-finite soft label
  o.common.grad_scale = std::numeric_limits<double>::infinity();
  add(run(loss, o, b).status);  // option
}

TEST(HostileInput, ApiDocListsEveryStatusTheCpuBackendReturns) {
  std::set<Status> seen;
  for (Loss l : kAllLosses) {
    provoke_all<float>(l, seen);
    provoke_all<double>(l, seen);
  }
  seen.erase(Status::kSuccess);
  EXPECT_GE(seen.size(), 10u);
  std::ifstream in(FUSEDKD_SOURCE_DIR "/docs/api.md");
  ASSERT_TRUE(in) << "cannot read docs/api.md";
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  const size_t errors = doc.find("## Errors");
  ASSERT_NE(errors, std::string::npos);
  const size_t end = doc.find("\n## ", errors + 1);
  const std::string section = doc.substr(errors, end == std::string::npos ? std::string::npos : end - errors);
  const auto enum_name = [](Status s) {  // kShapeMismatch from "shape_mismatch"
    std::string out = "k";
    bool up = true;
    for (const char* p = fusedkd::status_name(s); *p; ++p) {
      if (*p == '_') {
        up = true;
        continue;
      }
      out += up ? static_cast<char>(*p - 'a' + 'A') : *p;
      up = false;
    }
    return out;
  };
  for (Status s : seen) {
    EXPECT_NE(section.find("`" + enum_name(s) + "`"), std::string::npos)
        << enum_name(s) << " is returned by the CPU backend but not listed under ## Errors";
  }
}

}  // namespace
