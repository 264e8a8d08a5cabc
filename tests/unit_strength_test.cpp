// tests/unit_strength_test.cpp — tests aimed at bugs that the other suites let through (each
// was planted once and survived them; scripts/mutate.sh plants them again, see
// tests/mutations/README.md):
//   1. bitwise determinism across thread counts, at sizes where the rows run in parallel;
//   2. the 0 x log 0 convention: a teacher probability of exactly 0 (-inf logit, or a logit so
//      far below the others that its exponential underflows) contributes 0, against an
//      independent float64 computation written out here;
//   3. every option at its documented bound (accepted) and just outside it (refused);
//   4. a NaN logit makes its row's loss and gradient NaN and the batch loss NaN, and leaves the
//      other rows as they were.
#if defined(_OPENMP)
#include <omp.h>
#endif

#include <cfloat>

#include "test_util.hpp"

namespace {

using namespace tu;

template <typename T>
bool same_bits(T a, T b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

/// Loss values and both gradients bit for bit (the weak gradient is the sentinel for the teacher
/// losses on both sides).
template <typename T>
::testing::AssertionResult bitwise_equal(const Output<T>& a, const Output<T>& b) {
  if (a.status != b.status) return ::testing::AssertionFailure() << "status differs";
  for (int64_t k = 0; k < a.nloss; ++k) {
    if (!same_bits(a.loss[static_cast<size_t>(k)], b.loss[static_cast<size_t>(k)])) {
      return ::testing::AssertionFailure() << "loss[" << k << "] differs: " << a.loss[static_cast<size_t>(k)]
                                           << " vs " << b.loss[static_cast<size_t>(k)];
    }
  }
  for (int64_t r = 0; r < a.n; ++r)
    for (int64_t i = 0; i < a.c; ++i) {
      if (!same_bits(a.gs_at(r, i), b.gs_at(r, i)) || !same_bits(a.gw_at(r, i), b.gw_at(r, i))) {
        return ::testing::AssertionFailure() << "gradient differs at row " << r << " class " << i << ": "
                                             << a.gs_at(r, i) << " vs " << b.gs_at(r, i) << " / "
                                             << a.gw_at(r, i) << " vs " << b.gw_at(r, i);
      }
    }
  return ::testing::AssertionSuccess();
}

const char* type_name(float) { return "float"; }
const char* type_name(double) { return "double"; }

// =============================================================================================
// 1. Determinism across thread counts
// =============================================================================================

// The CPU backend runs a call's rows in parallel when N * C > 65536 (FUSEDKD_PARALLEL_ROWS in
// detail/cpu_backend.hpp; USKD's two phases use the same test). Below it every thread count
// runs the same single-threaded code, so a test there cannot see an order that depends on the
// thread count. The shapes here are above the threshold, one with C > 1024 (rows in several
// chunks), one with many rows per thread.
constexpr int64_t kParallelThreshold = 65536;

#if defined(_OPENMP)
/// Sets the OpenMP thread count for its lifetime.
struct Threads {
  int saved;
  explicit Threads(int n) : saved(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~Threads() { omp_set_num_threads(saved); }
};
#endif

/// Raises the student's target logits (both of a soft row's two largest labels) by 4 to 12, so
/// that S_t spreads over (0, 1): USKD's soft target is S_t^2 + 1 - mean(S_t^2), and with the
/// S_t ~ 1/C of random logits a change in the last bits of the mean would vanish in the 1.
template <typename T>
void confident_targets(Rng& rng, Batch<T>& b) {
  for (int64_t r = 0; r < b.n; ++r) {
    int64_t t1 = -1, t2 = -1;
    if (b.kind == LabelKind::kSoft) {
      for (int64_t i = 0; i < b.c; ++i) {
        if (t1 < 0 || b.y(r, i) > b.y(r, t1)) {
          t2 = t1;
          t1 = i;
        } else if (t2 < 0 || b.y(r, i) > b.y(r, t2)) {
          t2 = i;
        }
      }
    } else if (b.label(r) >= 0) {
      t1 = b.label(r);
    }
    if (t1 >= 0) b.z(r, t1) += static_cast<T>(rng.uniform(4.0, 12.0));
    if (t2 >= 0) b.z(r, t2) += static_cast<T>(rng.uniform(4.0, 12.0));
  }
}

template <typename T>
void determinism_across_threads(Loss l) {
#if !defined(_OPENMP)
  GTEST_SKIP() << "built without OpenMP: one thread only";
#else
  struct Shape {
    int64_t n, c;
  };
  for (const Shape sh : {Shape{41, 2100}, Shape{331, 241}}) {
    ASSERT_GT(sh.n * sh.c, kParallelThreshold + kParallelThreshold / 5);
    std::vector<LabelKind> kinds = {LabelKind::kHard64, LabelKind::kSoft};
    if (l == Loss::kKd) kinds.push_back(LabelKind::kNone);
    for (LabelKind kind : kinds) {
      for (Reduction red : {Reduction::kMean, Reduction::kNone}) {  // kSum: the mean's path
        SCOPED_TRACE(std::string(loss_name(l)) + " " + type_name(T()) + " N=" + std::to_string(sh.n) +
                     " C=" + std::to_string(sh.c) + " " + label_name(kind) + " " + reduction_name(red));
        Rng rng(static_cast<uint64_t>(sh.n * 31 + sh.c));
        Batch<T> b = random_batch<T>(rng, sh.n, sh.c, 1, kind, 0.1, -100, 1.0, 1.0);
        confident_targets(rng, b);
        AnyOptions o;
        o.common.reduction = red;
        o.common.ce_weight = kind == LabelKind::kNone ? 0.0 : 0.3;
        o.common.grad_scale = 0.75;
        o.set_temperature(2.0);
        Output<T> one;
        {
          Threads t(1);
          one = run(l, o, b);
        }
        ASSERT_EQ(one.status, Status::kSuccess);
        for (int threads : {2, 3}) {
          Threads t(threads);
          ASSERT_EQ(omp_get_max_threads(), threads);
          EXPECT_TRUE(bitwise_equal(one, run(l, o, b))) << "1 thread vs " << threads;
        }
      }
    }
  }
#endif
}

class Strength : public ::testing::TestWithParam<Loss> {};

TEST_P(Strength, BitwiseEqualAcrossThreadCountsAboveTheParallelThreshold) {
  determinism_across_threads<double>(GetParam());
  determinism_across_threads<float>(GetParam());
}

// =============================================================================================
// 2. Zero teacher probabilities: 0 x log 0 = 0
// =============================================================================================

// An independent float64 (long double, where wider) computation of one row of KD, DKD and NKD,
// written from the formulas of the headers with the convention that a class of zero teacher
// probability contributes 0 to a KL or cross-entropy term. The LibTorch reference cannot be
// used for a -inf teacher logit: it computes 0 * (-inf) = NaN there.
using LD = long double;

/// log softmax of x * inv over the classes with keep[i] (the others get -inf). -inf logits get
/// -inf; the max is over the finite kept logits.
std::vector<LD> log_softmax(const std::vector<LD>& x, LD inv, const std::vector<bool>& keep) {
  LD m = -std::numeric_limits<LD>::infinity();
  for (size_t i = 0; i < x.size(); ++i)
    if (keep[i] && x[i] > m) m = x[i];
  LD s = 0;
  for (size_t i = 0; i < x.size(); ++i)
    if (keep[i]) s += std::exp((x[i] - m) * inv);
  std::vector<LD> out(x.size(), -std::numeric_limits<LD>::infinity());
  for (size_t i = 0; i < x.size(); ++i)
    if (keep[i]) out[i] = (x[i] - m) * inv - std::log(s);
  return out;
}

/// q * (log q - log p), 0 where q == 0.
LD kl_term(LD log_q, LD log_p) {
  const LD q = std::exp(log_q);
  return q == 0 ? LD(0) : q * (log_q - log_p);
}

/// Row loss and gradient of the row loss (before reduction and grad_scale).
struct RowExpect {
  LD loss = 0;
  std::vector<LD> grad;
};

RowExpect expected_row(Loss l, const std::vector<LD>& z, const std::vector<LD>& v, int64_t t,
                       const AnyOptions& o) {
  const size_t c = z.size();
  const std::vector<bool> all(c, true);
  std::vector<bool> non(c, true);
  non[static_cast<size_t>(t)] = false;
  const LD ce = o.common.ce_weight;
  const std::vector<LD> ls = log_softmax(z, 1, all);  // student at scale 1
  RowExpect e;
  e.grad.assign(c, 0);
  for (size_t i = 0; i < c; ++i) e.grad[i] = ce * (std::exp(ls[i]) - (i == size_t(t) ? 1 : 0));
  e.loss = -ce * ls[static_cast<size_t>(t)];
  switch (l) {
    case Loss::kKd: {
      const LD T = o.kd.temperature, w = o.kd.weight;
      const std::vector<LD> lp = log_softmax(z, 1 / T, all), lq = log_softmax(v, 1 / T, all);
      for (size_t i = 0; i < c; ++i) {
        e.loss += w * T * T * kl_term(lq[i], lp[i]);
        e.grad[i] += w * T * (std::exp(lp[i]) - std::exp(lq[i]));
      }
      break;
    }
    case Loss::kDkd: {
      const LD T = o.dkd.temperature, alpha = o.dkd.alpha, beta = o.dkd.beta;
      const std::vector<LD> lp = log_softmax(z, 1 / T, all), lq = log_softmax(v, 1 / T, all);
      const std::vector<LD> lph = log_softmax(z, 1 / T, non), lqh = log_softmax(v, 1 / T, non);
      const size_t ti = static_cast<size_t>(t);
      // log of the non-target mass: log sum over i != t of p_i
      auto log_rest = [&](const std::vector<LD>& lx) {
        LD m = -std::numeric_limits<LD>::infinity(), s = 0;
        for (size_t i = 0; i < c; ++i)
          if (i != ti && lx[i] > m) m = lx[i];
        for (size_t i = 0; i < c; ++i)
          if (i != ti) s += std::exp(lx[i] - m);
        return m + std::log(s);
      };
      const LD pt = std::exp(lp[ti]), qt = std::exp(lq[ti]);
      const LD tckd = kl_term(lq[ti], lp[ti]) + kl_term(log_rest(lq), log_rest(lp));
      LD nckd = 0;
      for (size_t i = 0; i < c; ++i) {
        if (i == ti) continue;
        nckd += kl_term(lqh[i], lph[i]);
        const LD ph = std::exp(lph[i]), qh = std::exp(lqh[i]);
        e.grad[i] += alpha * T * ph * (qt - pt) + beta * T * (ph - qh);
      }
      e.grad[ti] += alpha * T * (pt - qt);
      e.loss += alpha * T * T * tckd + beta * T * T * nckd;
      break;
    }
    case Loss::kNkd: {
      const LD lam = o.nkd.temperature, gamma = o.nkd.gamma;
      const size_t ti = static_cast<size_t>(t);
      const std::vector<LD> lt = log_softmax(v, 1, all);
      const std::vector<LD> lsh = log_softmax(z, 1 / lam, non), lth = log_softmax(v, 1 / lam, non);
      const LD tt = std::exp(lt[ti]);
      e.loss += tt == 0 ? LD(0) : -tt * ls[ti];
      e.grad[ti] += tt * (std::exp(ls[ti]) - 1);
      for (size_t i = 0; i < c; ++i) {
        if (i == ti) continue;
        const LD th = std::exp(lth[i]);
        if (th != 0) e.loss += -gamma * lam * lam * th * lsh[i];
        e.grad[i] += tt * std::exp(ls[i]) + gamma * lam * (std::exp(lsh[i]) - th);
      }
      break;
    }
    case Loss::kUskd:
      ADD_FAILURE() << "no teacher";
      break;
  }
  return e;
}

template <typename T>
constexpr double tolerance() {
  return std::is_same<T, double>::value ? 1e-9 : 1e-4;  // as the reference tests
}

/// Checks a reduction-none output row by row against expected_row, and (mean) the batch loss
/// and gradient against the mean of the rows. Every value must be finite.
template <typename T>
void expect_rows_match(Loss l, const Batch<T>& b, AnyOptions o) {
  std::vector<RowExpect> rows;
  for (int64_t r = 0; r < b.n; ++r) {
    std::vector<LD> z(static_cast<size_t>(b.c)), v(static_cast<size_t>(b.c));
    for (int64_t i = 0; i < b.c; ++i) {
      z[static_cast<size_t>(i)] = static_cast<LD>(b.z(r, i));
      v[static_cast<size_t>(i)] = static_cast<LD>(b.v(r, i));
    }
    rows.push_back(expected_row(l, z, v, b.label(r), o));
  }
  for (Reduction red : {Reduction::kNone, Reduction::kMean}) {
    SCOPED_TRACE(reduction_name(red));
    o.common.reduction = red;
    const Output<T> out = run(l, o, b);
    ASSERT_EQ(out.status, Status::kSuccess);
    const double scale = red == Reduction::kMean ? 1.0 / static_cast<double>(b.n) : 1.0;
    const double tol = tolerance<T>();
    double batch = 0;
    for (int64_t r = 0; r < b.n; ++r) {
      const RowExpect& e = rows[static_cast<size_t>(r)];
      ASSERT_TRUE(std::isfinite(static_cast<double>(e.loss))) << "row " << r << ": the expectation itself";
      batch += static_cast<double>(e.loss);
      if (red == Reduction::kNone) {
        const double got = out.loss[static_cast<size_t>(r)];
        EXPECT_TRUE(std::isfinite(got)) << "row " << r << " loss " << got;
        EXPECT_NEAR(got, static_cast<double>(e.loss), tol * std::max(1.0, std::fabs(static_cast<double>(e.loss))))
            << "row " << r;
      }
      double gmax = 0;
      for (const LD g : e.grad) gmax = std::max(gmax, std::fabs(static_cast<double>(g)) * scale);
      for (int64_t i = 0; i < b.c; ++i) {
        const double got = out.gs_at(r, i);
        const double want = static_cast<double>(e.grad[static_cast<size_t>(i)]) * scale * o.common.grad_scale;
        EXPECT_TRUE(std::isfinite(got)) << "row " << r << " class " << i << " gradient " << got;
        EXPECT_NEAR(got, want, tol * std::max(gmax, 1e-30)) << "row " << r << " class " << i;
      }
    }
    if (red == Reduction::kMean) {
      const double want = batch * scale;
      EXPECT_TRUE(std::isfinite(static_cast<double>(out.loss[0])));
      EXPECT_NEAR(out.loss[0], want, tol * std::max(1.0, std::fabs(want)));
    }
  }
}

/// Rows whose teacher probability of some class is exactly 0 in T, and finite in the math.
template <typename T>
Batch<T> zero_probability_batch() {
  const T inf = std::numeric_limits<T>::infinity();
  const T big = std::numeric_limits<T>::max();
  Rng rng(5);
  const int64_t c = 11;
  Batch<T> b = random_batch<T>(rng, 6, c, 2, LabelKind::kHard64, 0.0, -100, 2.0, 2.0);
  for (int64_t r = 0; r < b.n; ++r) b.set_label(r, 4);
  b.v(0, 7) = -inf;          // a non-target class at -inf
  b.v(1, 4) = -inf;          // the target class at -inf
  b.v(2, 1) = -inf;          // several non-targets at -inf
  b.v(2, 8) = -inf;
  b.v(2, 9) = -inf;
  b.v(3, 0) = -big;          // -max and +max: v - max(v) overflows to -inf
  b.v(3, 2) = big;
  b.v(4, 6) = T(-1e4);       // exp underflows in float and double alike
  b.v(4, 3) = T(-300);       // exp(-300 / T) is 0 in float, not in double
  b.v(5, 2) = T(-1e4);       // the teacher's target far below: T_t, q_t underflow
  b.v(5, 4) = T(-2e4);
  return b;
}

template <typename T>
void zero_teacher_probability(Loss l) {
  SCOPED_TRACE(std::string(loss_name(l)) + " " + type_name(T()));
  AnyOptions o;
  o.common.ce_weight = 0.5;
  o.common.grad_scale = 1.25;
  o.set_temperature(2.0);
  const Batch<T> b = zero_probability_batch<T>();
  expect_rows_match(l, b, o);
  // at temperature 1 (NKD's default: the scale-1 and scale-1/T statistics are the same sums)
  o.set_temperature(1.0);
  expect_rows_match(l, b, o);
}

TEST(ZeroTeacherProbability, Kd) {
  zero_teacher_probability<double>(Loss::kKd);
  zero_teacher_probability<float>(Loss::kKd);
}
TEST(ZeroTeacherProbability, Dkd) {
  zero_teacher_probability<double>(Loss::kDkd);
  zero_teacher_probability<float>(Loss::kDkd);
}
TEST(ZeroTeacherProbability, Nkd) {
  zero_teacher_probability<double>(Loss::kNkd);
  zero_teacher_probability<float>(Loss::kNkd);
}

/// -inf in the student AND the teacher at the same non-target class: the class has zero
/// probability on both sides and contributes nothing (its gradient is 0 - 0).
template <typename T>
void minus_inf_in_both(Loss l) {
  SCOPED_TRACE(std::string(loss_name(l)) + " " + type_name(T()));
  const T inf = std::numeric_limits<T>::infinity();
  Rng rng(6);
  Batch<T> b = random_batch<T>(rng, 3, 9, 0, LabelKind::kHard64);
  for (int64_t r = 0; r < b.n; ++r) b.set_label(r, 2);
  b.z(0, 5) = b.v(0, 5) = -inf;
  b.z(1, 0) = b.v(1, 0) = -inf;
  b.z(1, 8) = b.v(1, 8) = -inf;
  b.z(2, 3) = b.v(2, 3) = -inf;
  b.v(2, 6) = -inf;  // and one more in the teacher only
  AnyOptions o;
  o.common.ce_weight = 0.5;
  o.set_temperature(2.0);
  expect_rows_match(l, b, o);
  o.set_temperature(1.0);
  expect_rows_match(l, b, o);
}

TEST(ZeroTeacherProbability, KdMinusInfInStudentAndTeacher) {
  minus_inf_in_both<double>(Loss::kKd);
  minus_inf_in_both<float>(Loss::kKd);
}
TEST(ZeroTeacherProbability, DkdMinusInfInStudentAndTeacher) {
  minus_inf_in_both<double>(Loss::kDkd);
  minus_inf_in_both<float>(Loss::kDkd);
}
TEST(ZeroTeacherProbability, NkdMinusInfInStudentAndTeacher) {
  minus_inf_in_both<double>(Loss::kNkd);
  minus_inf_in_both<float>(Loss::kNkd);
}

/// The independent computation above agrees with the library on ordinary finite rows (which
/// the reference tests check against LibTorch): a check that the expectation is the right one.
TEST(ZeroTeacherProbability, IndependentComputationMatchesOnFiniteRows) {
  for (Loss l : {Loss::kKd, Loss::kDkd, Loss::kNkd}) {
    SCOPED_TRACE(loss_name(l));
    Rng rng(8);
    const Batch<double> b = random_batch<double>(rng, 4, 23, 1, LabelKind::kHard64);
    AnyOptions o;
    o.common.ce_weight = 0.7;
    o.common.grad_scale = 0.5;
    o.set_temperature(3.0);
    o.nkd.gamma = 2.5;
    o.kd.weight = 1.5;
    o.dkd.alpha = 0.7;
    o.dkd.beta = 3.0;
    expect_rows_match(l, b, o);
    expect_rows_match(l, b.cast<float>(), o);
  }
}

// =============================================================================================
// 3. Option bounds
// =============================================================================================

// docs/api.md, "Option ranges": a temperature in [2^-40, 2^40] (float) or [2^-340, 2^340]
// (double); grad_scale, ce_weight and the weights within 2^40 / 2^340 in magnitude; smoothing in
// [0, 1]; ignore_index any int64; enums one of their listed values. For each bound: the value at
// the bound is accepted, the next value outside it (std::nextafter) is refused.
struct OptionCase {
  std::string name;
  double value;
  bool accepted;
};

/// The documented limit of the options of a loss computing in T.
template <typename T>
double documented_limit() {
  return std::is_same<T, float>::value ? std::ldexp(1.0, 40) : std::ldexp(1.0, 340);
}

/// The cases of a temperature: [1 / limit, limit].
template <typename T>
std::vector<OptionCase> temperature_cases(const std::string& name) {
  const double hi = documented_limit<T>(), lo = 1.0 / hi, inf = std::numeric_limits<double>::infinity();
  return {{name, lo, true},
          {name, std::nextafter(lo, 0.0), false},
          {name, hi, true},
          {name, std::nextafter(hi, inf), false},
          {name, 0.0, false},
          {name, -1.0, false},
          {name, inf, false},
          {name, std::numeric_limits<double>::quiet_NaN(), false}};
}

/// The cases of a weight (and grad_scale, ce_weight): [-limit, limit].
template <typename T>
std::vector<OptionCase> weight_cases(const std::string& name) {
  const double hi = documented_limit<T>(), inf = std::numeric_limits<double>::infinity();
  return {{name, hi, true},
          {name, std::nextafter(hi, inf), false},
          {name, -hi, true},
          {name, std::nextafter(-hi, -inf), false},
          {name, 0.0, true},
          {name, inf, false},
          {name, std::numeric_limits<double>::quiet_NaN(), false}};
}

/// The cases of smoothing: [0, 1].
std::vector<OptionCase> unit_interval(const std::string& name) {
  return {{name, 0.0, true},
          {name, std::nextafter(0.0, -1.0), false},
          {name, 1.0, true},
          {name, std::nextafter(1.0, 2.0), false},
          {name, std::numeric_limits<double>::quiet_NaN(), false}};
}

/// Sets option `name` of loss `l` to `x`.
void set_option(Loss l, AnyOptions& o, const std::string& name, double x) {
  if (name == "grad_scale") {
    o.common.grad_scale = x;
  } else if (name == "ce_weight") {
    o.common.ce_weight = x;
  } else if (name == "temperature") {
    o.set_temperature(x);
  } else if (l == Loss::kNkd && name == "gamma") {
    o.nkd.gamma = x;
  } else if (l == Loss::kKd && name == "weight") {
    o.kd.weight = x;
  } else if (l == Loss::kDkd && name == "alpha") {
    o.dkd.alpha = x;
  } else if (l == Loss::kDkd && name == "beta") {
    o.dkd.beta = x;
  } else if (l == Loss::kUskd && name == "alpha") {
    o.uskd.alpha = x;
  } else if (l == Loss::kUskd && name == "beta") {
    o.uskd.beta = x;
  } else if (l == Loss::kUskd && name == "mu") {
    o.uskd.mu = x;
  } else if (l == Loss::kUskd && name == "smoothing") {
    o.uskd.smoothing = x;
  } else {
    ADD_FAILURE() << "no option " << name << " in " << loss_name(l);
  }
}

template <typename T>
std::vector<OptionCase> option_cases(Loss l) {
  std::vector<OptionCase> cases;
  auto add = [&](std::vector<OptionCase> more) { cases.insert(cases.end(), more.begin(), more.end()); };
  add(weight_cases<T>("grad_scale"));
  add(weight_cases<T>("ce_weight"));
  switch (l) {
    case Loss::kNkd:
      add(temperature_cases<T>("temperature"));
      add(weight_cases<T>("gamma"));
      break;
    case Loss::kKd:
      add(temperature_cases<T>("temperature"));
      add(weight_cases<T>("weight"));
      break;
    case Loss::kDkd:
      add(temperature_cases<T>("temperature"));
      add(weight_cases<T>("alpha"));
      add(weight_cases<T>("beta"));
      break;
    case Loss::kUskd:
      add(weight_cases<T>("alpha"));
      add(weight_cases<T>("beta"));
      add(weight_cases<T>("mu"));
      add(unit_interval("smoothing"));
      break;
  }
  return cases;
}

template <typename T>
void option_bounds(Loss l) {
  Rng rng(9);
  for (LabelKind kind : {LabelKind::kHard64, LabelKind::kSoft}) {
    const Batch<T> b = random_batch<T>(rng, 3, 7, 0, kind);
    for (const OptionCase& oc : option_cases<T>(l)) {
      std::ostringstream what;
      what.precision(17);
      what << loss_name(l) << " " << type_name(T()) << " " << label_name(kind) << " " << oc.name << " = "
           << oc.value;
      SCOPED_TRACE(what.str());
      AnyOptions o;
      set_option(l, o, oc.name, oc.value);
      const Output<T> out = run(l, o, b);
      if (oc.accepted) {
        EXPECT_EQ(out.status, Status::kSuccess) << fusedkd::status_name(out.status);
      } else {
        EXPECT_EQ(out.status, Status::kInvalidOption) << fusedkd::status_name(out.status);
        EXPECT_TRUE(untouched(out));
      }
    }
    // ignore_index: any int64 value (a row whose label equals it is skipped)
    for (int64_t ii : {std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()}) {
      AnyOptions o;
      o.common.ignore_index = ii;
      EXPECT_EQ(run(l, o, b).status, Status::kSuccess) << "ignore_index " << ii;
    }
    // the enums: their listed values, and nothing next to them
    for (int red : {-1, 0, 1, 2, 3}) {
      AnyOptions o;
      o.common.reduction = static_cast<Reduction>(red);
      const bool known = red == static_cast<int>(Reduction::kMean) || red == static_cast<int>(Reduction::kSum) ||
                         red == static_cast<int>(Reduction::kNone);
      const Output<T> out = run(l, o, b);
      EXPECT_EQ(out.status, known ? Status::kSuccess : Status::kInvalidOption) << "reduction " << red;
    }
    for (int kind : {-1, 4}) {  // Labels::Kind has four values, 0 to 3
      AnyOptions o;
      Labels lab = b.labels();
      lab.kind = static_cast<Labels::Kind>(kind);
      acc_t<T> loss = sentinel<acc_t<T>>();
      EXPECT_EQ(call<T>(l, o, b.s(), b.o(), lab, &loss), Status::kInvalidOption) << "Labels::Kind " << kind;
      EXPECT_EQ(loss, sentinel<acc_t<T>>());
    }
    // USKD's rank and soft target, NKD's non-target form: their enumerators, and nothing next to them
    if (l == Loss::kUskd) {
      for (int rank : {-1, 0, 1, 2, 3, 4, 5}) {
        AnyOptions o;
        o.uskd.rank = static_cast<fusedkd::UskdRank>(rank);
        const bool known = rank >= static_cast<int>(fusedkd::UskdRank::kReference) &&
                           rank <= static_cast<int>(fusedkd::UskdRank::kCombination);
        EXPECT_EQ(run(l, o, b).status, known ? Status::kSuccess : Status::kInvalidOption) << "rank " << rank;
      }
      for (int soft : {-1, 0, 4, 5}) {
        AnyOptions o;
        o.uskd.soft_target = static_cast<fusedkd::UskdSoftTarget>(soft);
        const bool known = soft >= 0 && soft <= static_cast<int>(fusedkd::UskdSoftTarget::kMeanNorm);
        EXPECT_EQ(run(l, o, b).status, known ? Status::kSuccess : Status::kInvalidOption)
            << "soft_target " << soft;
      }
    }
    if (l == Loss::kNkd) {
      for (int form : {-1, 0, 2, 3}) {
        AnyOptions o;
        o.nkd.non_target = static_cast<fusedkd::NkdNonTarget>(form);
        const bool known = form >= 0 && form <= static_cast<int>(fusedkd::NkdNonTarget::kNone);
        EXPECT_EQ(run(l, o, b).status, known ? Status::kSuccess : Status::kInvalidOption)
            << "non_target " << form;
      }
    }
  }
}

TEST_P(Strength, EveryOptionAcceptedAtItsBoundAndRefusedJustOutside) {
  option_bounds<double>(GetParam());
  option_bounds<float>(GetParam());
}

// =============================================================================================
// 4. NaN propagation
// =============================================================================================

// A NaN logit is never silently absorbed: its row's loss (reduction none) and the batch loss
// (mean, sum) are NaN, and so is every entry of its row's gradient; the other rows' losses and
// gradients are exactly those of the same batch with finite values in that row. USKD's batch
// mean of S_t^2 couples the rows: a NaN student logit makes every row's loss and student
// gradient NaN (the weak gradients, which do not read the mean, are unchanged); a NaN weak logit
// stays in its row (its loss and weak gradient NaN), as for the other losses.

enum class Where { kStudentOther, kStudentTarget, kOtherOther, kOtherTarget };

const char* where_name(Where w) {
  switch (w) {
    case Where::kStudentOther: return "student, non-target class";
    case Where::kStudentTarget: return "student, target class";
    case Where::kOtherOther: return "teacher/weak, non-target class";
    case Where::kOtherTarget: return "teacher/weak, target class";
  }
  return "?";
}

template <typename T>
bool row_all_nan(const Output<T>& out, int64_t r, bool weak) {
  for (int64_t i = 0; i < out.c; ++i)
    if (!std::isnan(weak ? out.gw_at(r, i) : out.gs_at(r, i))) return false;
  return true;
}

template <typename T>
bool rows_equal(const Output<T>& a, const Output<T>& b, int64_t r, bool weak) {
  for (int64_t i = 0; i < a.c; ++i)
    if (!same_bits(weak ? a.gw_at(r, i) : a.gs_at(r, i), weak ? b.gw_at(r, i) : b.gs_at(r, i))) return false;
  return true;
}

template <typename T>
void nan_propagation(Loss l) {
  // C = 29 with the target at 20: the NaN at class 3 sits in a run of 20 non-target classes, in
  // the eight-lane part of the float statistics loop (not its scalar tail).
  const int64_t n = 5, c = 29, bad = 2, target = 20;
  Rng rng(10);
  Batch<T> clean = random_batch<T>(rng, n, c, 1, LabelKind::kHard64);
  for (int64_t r = 0; r < n; ++r) clean.set_label(r, r == 4 ? 7 : target);
  for (Where where : {Where::kStudentOther, Where::kStudentTarget, Where::kOtherOther, Where::kOtherTarget}) {
    Batch<T> b = clean;
    const int64_t i = where == Where::kStudentOther || where == Where::kOtherOther ? 3 : target;
    const bool in_student = where == Where::kStudentOther || where == Where::kStudentTarget;
    (in_student ? b.z(bad, i) : b.v(bad, i)) = std::numeric_limits<T>::quiet_NaN();
    const bool uskd = l == Loss::kUskd;
    const bool poisons_batch = uskd && in_student;  // the batch mean of S_t^2 is NaN
    for (Reduction red : {Reduction::kNone, Reduction::kMean, Reduction::kSum}) {
      SCOPED_TRACE(std::string(loss_name(l)) + " " + type_name(T()) + " NaN in the " + where_name(where) + ", " +
                   reduction_name(red));
      AnyOptions o;
      o.common.reduction = red;
      o.common.ce_weight = 0.25;
      o.set_temperature(2.0);
      const Output<T> ref = run(l, o, clean), out = run(l, o, b);
      ASSERT_EQ(ref.status, Status::kSuccess);
      ASSERT_EQ(out.status, Status::kSuccess);
      for (int64_t k = 0; k < ref.nloss; ++k) ASSERT_FALSE(std::isnan(ref.loss[static_cast<size_t>(k)]));
      if (red == Reduction::kNone) {
        for (int64_t r = 0; r < n; ++r) {
          const auto got = out.loss[static_cast<size_t>(r)];
          if (r == bad || poisons_batch) {
            EXPECT_TRUE(std::isnan(got)) << "row " << r << " loss " << got;
          } else {
            EXPECT_TRUE(same_bits(got, ref.loss[static_cast<size_t>(r)])) << "row " << r << " loss changed";
          }
        }
      } else {
        EXPECT_TRUE(std::isnan(out.loss[0])) << "batch loss " << out.loss[0];
      }
      // the gradient the NaN enters: the student's, or the weak head's for a NaN weak logit
      const bool weak_side = uskd && !in_student;
      for (int64_t r = 0; r < n; ++r) {
        if (r == bad || poisons_batch) {
          EXPECT_TRUE(row_all_nan(out, r, weak_side)) << "row " << r << ": a gradient entry is not NaN";
        } else {
          EXPECT_TRUE(rows_equal(out, ref, r, weak_side)) << "row " << r << ": gradient changed";
        }
        if (uskd && !weak_side) {
          // a NaN student logit: the weak gradients do not read the batch mean
          EXPECT_TRUE(rows_equal(out, ref, r, true)) << "row " << r << ": weak gradient changed";
        }
        if (uskd && weak_side && r != bad) {
          EXPECT_TRUE(rows_equal(out, ref, r, false)) << "row " << r << ": student gradient changed";
        }
      }
    }
  }
  // KD without labels: the same, with no target
  if (l == Loss::kKd) {
    Batch<T> nl = clean;
    nl.kind = LabelKind::kNone;
    Batch<T> b = nl;
    b.v(bad, 0) = std::numeric_limits<T>::quiet_NaN();
    AnyOptions o;
    o.common.reduction = Reduction::kNone;
    const Output<T> ref = run(l, o, nl), out = run(l, o, b);
    ASSERT_EQ(out.status, Status::kSuccess);
    EXPECT_TRUE(std::isnan(out.loss[bad]));
    EXPECT_TRUE(row_all_nan(out, bad, false));
    for (int64_t r = 0; r < n; ++r) {
      if (r != bad) EXPECT_TRUE(rows_equal(out, ref, r, false)) << "row " << r;
    }
  }
}

TEST_P(Strength, NanLogitGivesNanRowAndBatchAndLeavesOtherRows) {
  nan_propagation<double>(GetParam());
  nan_propagation<float>(GetParam());
}

INSTANTIATE_TEST_SUITE_P(Losses, Strength, ::testing::ValuesIn(kAllLosses),
                         [](const ::testing::TestParamInfo<Loss>& i) { return loss_name(i.param); });

}  // namespace
