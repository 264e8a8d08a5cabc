// tests/unit_edge_cases_test.cpp — edge cases, checked against closed forms written out here
// (never against values produced by the library): C = 2, all rows ignored, logits of magnitude
// 1e4, equal logits (USKD rank ties broken by class index), N = 0.
#include <numeric>

#include "test_util.hpp"

namespace {

using namespace tu;

/// max |a - b| over a row-major [n, c] expectation and the output's gradient.
template <typename T>
double grad_diff(const Output<T>& out, bool weak, const std::vector<double>& expected) {
  double m = 0;
  for (int64_t r = 0; r < out.n; ++r)
    for (int64_t i = 0; i < out.c; ++i) {
      const double g = static_cast<double>(weak ? out.gw_at(r, i) : out.gs_at(r, i));
      m = std::max(m, std::fabs(g - expected[static_cast<size_t>(r * out.c + i)]));
    }
  return m;
}

template <typename T>
constexpr double tol() {
  return std::is_same<T, double>::value ? 1e-12 : 2e-6;
}

/// softmax of a 2-vector at temperature t
void softmax2(double a, double b, double t, double& pa, double& pb) {
  const double m = std::max(a, b);
  const double ea = std::exp((a - m) / t), eb = std::exp((b - m) / t);
  pa = ea / (ea + eb);
  pb = eb / (ea + eb);
}

// ---- C = 2 ---------------------------------------------------------------------------------

/// With two classes the non-target set has one class: NKD's and DKD's non-target terms and
/// USKD's L_non vanish, DKD's TCKD is KD over the two classes.
template <typename T>
void two_classes(Loss loss) {
  Rng rng(7);
  const int64_t n = 5;
  Batch<T> b = random_batch<T>(rng, n, 2, 1, LabelKind::kHard64);
  b.set_label(3, -100);
  AnyOptions o;
  o.common.ce_weight = 0.4;
  o.common.grad_scale = 1.5;
  o.set_temperature(2.5);
  o.dkd.alpha = 1.3;
  o.dkd.beta = 5.0;
  o.uskd.mu = 0.2;
  const Output<T> out = run(loss, o, b);
  ASSERT_EQ(out.status, Status::kSuccess);

  const double ce = o.common.ce_weight;
  int64_t active = 0;
  for (int64_t r = 0; r < n; ++r) active += b.label(r) != -100;
  // USKD: the batch mean of S_t^2 over the active rows
  double mean_sq = 0;
  for (int64_t r = 0; r < n; ++r) {
    if (b.label(r) == -100) continue;
    double p[2];
    softmax2(b.z(r, 0), b.z(r, 1), 1.0, p[0], p[1]);
    mean_sq += p[b.label(r)] * p[b.label(r)] / static_cast<double>(active);
  }
  double total = 0;
  std::vector<double> gz(static_cast<size_t>(n * 2), 0.0), gw(static_cast<size_t>(n * 2), 0.0);
  for (int64_t r = 0; r < n; ++r) {
    const int64_t t = b.label(r);
    if (t == -100) continue;
    double s[2], q[2], pt[2], qt[2];
    softmax2(b.z(r, 0), b.z(r, 1), 1.0, s[0], s[1]);
    softmax2(b.v(r, 0), b.v(r, 1), 1.0, q[0], q[1]);
    double row = -ce * std::log(s[t]);
    double g[2] = {ce * (s[0] - (t == 0)), ce * (s[1] - (t == 1))};
    switch (loss) {
      case Loss::kNkd: {
        const double tt = q[t];  // teacher target probability at temperature 1
        row += -tt * std::log(s[t]);
        for (int i = 0; i < 2; ++i) g[i] += tt * (s[i] - (i == t));
        break;
      }
      case Loss::kKd:
      case Loss::kDkd: {
        const double temp = 2.5, w = loss == Loss::kKd ? 1.0 : 1.3;
        softmax2(b.z(r, 0), b.z(r, 1), temp, pt[0], pt[1]);
        softmax2(b.v(r, 0), b.v(r, 1), temp, qt[0], qt[1]);
        double kl = 0;
        for (int i = 0; i < 2; ++i) kl += qt[i] * (std::log(qt[i]) - std::log(pt[i]));
        row += w * temp * temp * kl;
        for (int i = 0; i < 2; ++i) g[i] += w * temp * (pt[i] - qt[i]);
        break;
      }
      case Loss::kUskd: {
        const double p = s[t] * s[t] + 1.0 - mean_sq;  // alpha = 1
        row += -p * std::log(s[t]);
        for (int i = 0; i < 2; ++i) g[i] += p * (s[i] - (i == t));
        double wp[2];
        softmax2(b.v(r, 0), b.v(r, 1), 1.0, wp[0], wp[1]);
        const double eps = 0.1, mu = 0.2;
        for (int i = 0; i < 2; ++i) {
          const double qi = (1 - eps) * (i == t) + eps / 2;
          row += -mu * qi * std::log(wp[i]);
          gw[static_cast<size_t>(r * 2 + i)] = mu * (wp[i] - qi) * 1.5 / static_cast<double>(active);
        }
        break;
      }
    }
    total += row;
    for (int i = 0; i < 2; ++i) gz[static_cast<size_t>(r * 2 + i)] = g[i] * 1.5 / static_cast<double>(active);
  }
  const double expected = total / static_cast<double>(active);
  EXPECT_NEAR(out.loss[0], expected, tol<T>() * std::max(1.0, std::fabs(expected)));
  EXPECT_LE(grad_diff(out, false, gz), tol<T>());
  if (loss == Loss::kUskd) {
    EXPECT_LE(grad_diff(out, true, gw), tol<T>());
  }
}

TEST(EdgeCases, TwoClassesMatchClosedForms) {
  for (Loss l : kAllLosses) {
    SCOPED_TRACE(loss_name(l));
    two_classes<double>(l);
    two_classes<float>(l);
  }
}

/// DKD over two classes is KD (NCKD = 0): the two losses must agree.
TEST(EdgeCases, DkdWithTwoClassesIsKd) {
  Rng rng(8);
  const Batch<double> b = random_batch<double>(rng, 9, 2, 0, LabelKind::kHard64);
  AnyOptions o;
  o.set_temperature(3.0);
  o.dkd.beta = 100.0;
  const Output<double> kd = run(Loss::kKd, o, b), dkd = run(Loss::kDkd, o, b);
  ASSERT_EQ(kd.status, Status::kSuccess);
  ASSERT_EQ(dkd.status, Status::kSuccess);
  EXPECT_NEAR(kd.loss[0], dkd.loss[0], 1e-13);
  for (int64_t k = 0; k < b.n * 2; ++k) EXPECT_NEAR(kd.gs[static_cast<size_t>(k)], dkd.gs[static_cast<size_t>(k)], 1e-13);
}

// ---- all rows ignored ----------------------------------------------------------------------

template <typename T>
void all_ignored(Loss loss) {
  for (Reduction red : {Reduction::kMean, Reduction::kSum, Reduction::kNone}) {
    for (LabelKind kind : {LabelKind::kHard32, LabelKind::kHard64}) {
      Rng rng(9);
      Batch<T> b = random_batch<T>(rng, 6, 11, 2, kind, 1.0, -7);
      AnyOptions o;
      o.common.reduction = red;
      o.common.ignore_index = -7;
      o.common.ce_weight = 1.0;
      const Output<T> out = run(loss, o, b, 3);
      ASSERT_EQ(out.status, Status::kSuccess);
      for (int64_t k = 0; k < out.nloss; ++k) EXPECT_EQ(out.loss[static_cast<size_t>(k)], 0) << "loss[" << k << "]";
      for (int64_t r = 0; r < b.n; ++r)
        for (int64_t i = 0; i < b.c; ++i) {
          EXPECT_EQ(out.gs_at(r, i), T(0));
          if (loss == Loss::kUskd) {
            EXPECT_EQ(out.gw_at(r, i), T(0));
          }
        }
      EXPECT_TRUE(outside_untouched(loss, out));
    }
  }
}
TEST(EdgeCases, AllRowsIgnored) {
  for (Loss l : kAllLosses) {
    SCOPED_TRACE(loss_name(l));
    all_ignored<double>(l);
    all_ignored<float>(l);
  }
}

// ---- logits of magnitude 1e4 ---------------------------------------------------------------

template <typename T>
::testing::AssertionResult all_finite(const Output<T>& out) {
  for (int64_t k = 0; k < out.nloss; ++k) {
    if (!std::isfinite(static_cast<double>(out.loss[static_cast<size_t>(k)]))) {
      return ::testing::AssertionFailure() << "loss[" << k << "] = " << out.loss[static_cast<size_t>(k)];
    }
  }
  for (int64_t r = 0; r < out.n; ++r)
    for (int64_t i = 0; i < out.c; ++i)
      if (!std::isfinite(static_cast<double>(out.gs_at(r, i))) ||
          !std::isfinite(static_cast<double>(out.gw_at(r, i)))) {
        return ::testing::AssertionFailure() << "gradient (" << r << ", " << i << ") not finite";
      }
  return ::testing::AssertionSuccess();
}

template <typename T>
void huge_logits(Loss loss) {
  for (int64_t c : {2, 3, 10, 1000}) {
    for (LabelKind kind : {LabelKind::kHard64, LabelKind::kSoft}) {
      if (loss == Loss::kUskd && kind == LabelKind::kSoft && c < 3) continue;
      for (double temp : {1.0, 4.0}) {
        SCOPED_TRACE("C=" + std::to_string(c) + " " + label_name(kind) + " T=" + std::to_string(temp));
        Rng rng(static_cast<uint64_t>(c) * 3 + 1);
        // N(0, 1e4^2) logits, plus rows at exactly +-1e4 and rows with every logit equal to 1e4
        Batch<T> b = random_batch<T>(rng, 8, c, 0, kind, 0.0, -100, 1e4, 1e4);
        for (int64_t i = 0; i < c; ++i) {
          b.z(0, i) = T(i % 2 ? 1e4 : -1e4);
          b.v(0, i) = T(i % 3 ? -1e4 : 1e4);
          b.z(1, i) = T(1e4);
          b.v(1, i) = T(-1e4);
        }
        AnyOptions o;
        o.set_temperature(temp);
        o.common.ce_weight = 0.5;
        if (loss == Loss::kKd && kind == LabelKind::kSoft) o.common.ce_weight = 0.0;
        const Output<T> out = run(loss, o, b);
        ASSERT_EQ(out.status, Status::kSuccess);
        EXPECT_TRUE(all_finite(out));
      }
    }
  }
}
TEST(EdgeCases, LogitsOfMagnitude1e4StayFinite) {
  for (Loss l : kAllLosses) {
    SCOPED_TRACE(loss_name(l));
    huge_logits<double>(l);
    huge_logits<float>(l);
  }
}

/// Adding 1e4 to every logit of a row changes no softmax, so no loss. The values z + 1e4 with
/// z a multiple of 1/64 in [-8, 8] are exact in float, so float must agree too.
template <typename T>
void shift_invariance(Loss loss) {
  for (int64_t c : {3, 10, 257}) {
    Rng rng(static_cast<uint64_t>(c));
    Batch<T> b = random_batch<T>(rng, 6, c, 0, c == 3 ? LabelKind::kHard64 : LabelKind::kSoft);
    for (int64_t r = 0; r < b.n; ++r)
      for (int64_t i = 0; i < c; ++i) {
        b.z(r, i) = T(std::round(b.z(r, i) * 64) / 64);
        b.v(r, i) = T(std::round(b.v(r, i) * 64) / 64);
      }
    Batch<T> s = b;
    for (int64_t r = 0; r < b.n; ++r)
      for (int64_t i = 0; i < c; ++i) {
        s.z(r, i) += T(1e4);
        s.v(r, i) -= T(1e4);
      }
    AnyOptions o;
    o.common.ce_weight = 0.25;
    o.set_temperature(2.0);
    const Output<T> a = run(loss, o, b), d = run(loss, o, s);
    ASSERT_EQ(a.status, Status::kSuccess);
    ASSERT_EQ(d.status, Status::kSuccess);
    const double t = std::is_same<T, double>::value ? 1e-12 : 1e-5;
    EXPECT_NEAR(a.loss[0], d.loss[0], t * std::max(1.0, std::fabs(static_cast<double>(a.loss[0])))) << "C=" << c;
    const double gmax = max_abs_grad(a, false);
    for (int64_t k = 0; k < b.n * c; ++k) EXPECT_NEAR(a.gs[static_cast<size_t>(k)], d.gs[static_cast<size_t>(k)], t * gmax);
  }
}
TEST(EdgeCases, ShiftBy1e4ChangesNothing) {
  for (Loss l : kAllLosses) {
    SCOPED_TRACE(loss_name(l));
    shift_invariance<double>(l);
    shift_invariance<float>(l);
  }
}

// ---- equal logits --------------------------------------------------------------------------

/// USKD with every logit equal: all rank keys tie, so class i gets rank i + 1 (ties by class
/// index) and Zhat_i = (1/(i+1)) / sum over non-targets j of 1/(j+1). With equal rows, P_k = V_k
/// exactly (hard labels: 1). Closed-form loss and gradients for both rank modes.
template <typename T>
void uskd_equal_logits(bool soft, fusedkd::UskdRank mode, int64_t c) {
  const int64_t n = 3;
  Batch<T> b(n, c, 2, soft ? LabelKind::kSoft : LabelKind::kHard64);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < c; ++i) {
      b.z(r, i) = T(0.625);
      b.v(r, i) = T(-2.5);
    }
  // targets: hard t = c - 2 (so the Zipf sum skips an inner rank); soft: values that tie
  // pairwise, so t1, t2 are the lower indices of the ties.
  std::vector<std::vector<float>> y(static_cast<size_t>(n), std::vector<float>(static_cast<size_t>(c), 0.0f));
  std::vector<int64_t> t1(static_cast<size_t>(n)), t2(static_cast<size_t>(n), -1);
  std::vector<double> v1(static_cast<size_t>(n), 1.0), v2(static_cast<size_t>(n), 0.0);
  for (int64_t r = 0; r < n; ++r) {
    if (!soft) {
      t1[static_cast<size_t>(r)] = c - 2;
      b.set_label(r, c - 2);
      continue;
    }
    auto& yr = y[static_cast<size_t>(r)];
    if (r == 0) {  // 0.4 at 1 and c-1, 0.2 at 0: t1 = 1, t2 = c-1
      yr[1] = 0.4f; yr[static_cast<size_t>(c - 1)] = 0.4f; yr[0] = 0.2f;
      t1[0] = 1; t2[0] = c - 1;
    } else if (r == 1) {  // one-hot at c-1: t1 = c-1, t2 = 0 (first of the zeros), V2 = 0
      yr[static_cast<size_t>(c - 1)] = 1.0f;
      t1[1] = c - 1; t2[1] = 0;
    } else {  // three-way tie at 2, 0, c-1: t1 = 0, t2 = 2
      yr[2] = 0.25f; yr[0] = 0.25f; yr[static_cast<size_t>(c - 1)] = 0.25f; yr[1] = 0.125f;
      t1[2] = 0; t2[2] = 2;
    }
    for (int64_t i = 0; i < c; ++i) b.y(r, i) = yr[static_cast<size_t>(i)];
    v1[static_cast<size_t>(r)] = yr[static_cast<size_t>(t1[static_cast<size_t>(r)])];
    v2[static_cast<size_t>(r)] = yr[static_cast<size_t>(t2[static_cast<size_t>(r)])];
  }
  AnyOptions o;
  o.uskd.alpha = 0.7;
  o.uskd.beta = 0.45;
  o.uskd.mu = 0.3;
  o.uskd.smoothing = 0.2;
  o.uskd.rank = mode;
  o.common.ce_weight = 0.15;
  o.common.reduction = Reduction::kSum;
  const Output<T> out = run(Loss::kUskd, o, b);
  ASSERT_EQ(out.status, Status::kSuccess);

  const double C = static_cast<double>(c), alpha = 0.7, beta = 0.45, mu = 0.3, eps = 0.2, ce = 0.15;
  std::vector<double> gz(static_cast<size_t>(n * c)), gw(static_cast<size_t>(n * c));
  std::vector<double> rows(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) {
    const size_t R = static_cast<size_t>(r);
    auto is_t = [&](int64_t i) { return i == t1[R] || i == t2[R]; };
    const double k = soft ? 2.0 : 1.0;
    double zsum = 0;
    for (int64_t j = 0; j < c; ++j)
      if (!is_t(j)) zsum += 1.0 / static_cast<double>(j + 1);
    double ysum = 0;
    for (int64_t j = 0; j < c; ++j) ysum += soft ? y[R][static_cast<size_t>(j)] : (j == t1[R] ? 1.0 : 0.0);
    const double qsum = (1 - eps) * ysum + eps;
    // P_k = V_k (S_t^2 - mean S_t^2 = 0); P = 0 where V = 0
    const double p1 = v1[R], p2 = soft ? v2[R] : 0.0;
    // -sum Zhat log Shat = log(C - k): Shat is uniform over the C - k non-targets, sum Zhat = 1
    rows[R] = alpha * (p1 + p2) * std::log(C) + beta * std::log(C - k) + mu * qsum * std::log(C) +
              ce * std::log(C);
    for (int64_t i = 0; i < c; ++i) {
      const double s = 1.0 / C;
      double g = alpha * ((p1 + p2) * s - (i == t1[R] ? p1 : 0.0) - (i == t2[R] ? p2 : 0.0));
      g += ce * (s - (i == t1[R] ? 1.0 : 0.0));
      if (!is_t(i)) g += beta * (1.0 / (C - k) - (1.0 / static_cast<double>(i + 1)) / zsum);
      gz[R * static_cast<size_t>(c) + static_cast<size_t>(i)] = g;
      const double yi = soft ? y[R][static_cast<size_t>(i)] : (i == t1[R] ? 1.0 : 0.0);
      const double qi = (1 - eps) * yi + eps / C;
      gw[R * static_cast<size_t>(c) + static_cast<size_t>(i)] = mu * (qsum / C - qi);
    }
  }
  const double expected = std::accumulate(rows.begin(), rows.end(), 0.0);
  EXPECT_NEAR(out.loss[0], expected, tol<T>() * 10 * std::max(1.0, std::fabs(expected)));
  EXPECT_LE(grad_diff(out, false, gz), tol<T>()) << "grad_student: rank ties must go to the lower class index";
  EXPECT_LE(grad_diff(out, true, gw), tol<T>());
}

TEST(EdgeCases, UskdEqualLogitsRankTiesByClassIndex) {
  for (int64_t c : {3, 4, 10, 1000}) {
    for (bool soft : {false, true}) {
      for (auto mode : {fusedkd::UskdRank::kReference, fusedkd::UskdRank::kPaper}) {
        SCOPED_TRACE("C=" + std::to_string(c) + (soft ? " soft" : " hard") +
                     (mode == fusedkd::UskdRank::kPaper ? " paper" : " reference"));
        uskd_equal_logits<double>(soft, mode, c);
        uskd_equal_logits<float>(soft, mode, c);
      }
    }
  }
}

/// NKD, KD, DKD with equal logits everywhere (student and teacher): closed forms.
template <typename T>
void teacher_losses_equal_logits(Loss loss, int64_t c) {
  const int64_t n = 2;
  Batch<T> b(n, c, 0, LabelKind::kHard64);
  for (int64_t r = 0; r < n; ++r) {
    b.set_label(r, r == 0 ? 0 : c - 1);
    for (int64_t i = 0; i < c; ++i) {
      b.z(r, i) = T(-1.25);
      b.v(r, i) = T(3.5);
    }
  }
  AnyOptions o;
  o.common.ce_weight = 0.5;
  o.nkd.temperature = 2.0;
  o.nkd.gamma = 1.5;
  const Output<T> out = run(loss, o, b);
  ASSERT_EQ(out.status, Status::kSuccess);
  const double C = static_cast<double>(c), ce = 0.5;
  double row = ce * std::log(C);
  double coef = ce;  // weight of (S_i - [i == t])
  if (loss == Loss::kNkd) {
    row += std::log(C) / C + 1.5 * 4.0 * std::log(C - 1);  // T_t = 1/C; That = Shat uniform
    coef += 1.0 / C;
  }
  std::vector<double> g(static_cast<size_t>(n * c));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < c; ++i)
      g[static_cast<size_t>(r * c + i)] = coef * (1.0 / C - (i == b.label(r) ? 1.0 : 0.0)) / 2.0;
  EXPECT_NEAR(out.loss[0], row, tol<T>() * 10 * std::max(1.0, row));
  EXPECT_LE(grad_diff(out, false, g), tol<T>());
}

TEST(EdgeCases, TeacherLossesEqualLogits) {
  for (Loss l : {Loss::kNkd, Loss::kKd, Loss::kDkd}) {
    for (int64_t c : {2, 3, 1001}) {
      SCOPED_TRACE(std::string(loss_name(l)) + " C=" + std::to_string(c));
      teacher_losses_equal_logits<double>(l, c);
      teacher_losses_equal_logits<float>(l, c);
    }
  }
}

// ---- N = 0 ---------------------------------------------------------------------------------

template <typename T>
void empty_batch(Loss loss) {
  for (Reduction red : {Reduction::kMean, Reduction::kSum, Reduction::kNone}) {
    for (LabelKind kind : {LabelKind::kHard32, LabelKind::kHard64, LabelKind::kSoft}) {
      Batch<T> b(0, 10, 0, kind);
      AnyOptions o;
      o.common.reduction = red;
      const Output<T> out = run(loss, o, b);
      ASSERT_EQ(out.status, Status::kSuccess) << fusedkd::status_name(out.status);
      if (red == Reduction::kNone) {
        EXPECT_EQ(out.loss[0], sentinel<acc_t<T>>()) << "none with N = 0 has no loss to write";
      } else {
        EXPECT_EQ(out.loss[0], 0) << "a mean or sum over no rows is 0";
        EXPECT_EQ(out.loss[1], sentinel<acc_t<T>>());
      }
      EXPECT_EQ(out.gs[0], sentinel<T>());
      EXPECT_EQ(out.gw[0], sentinel<T>());
      // without gradient buffers as well
      const Output<T> ng = run(loss, o, b, 0, false);
      EXPECT_EQ(ng.status, Status::kSuccess);
    }
  }
}
TEST(EdgeCases, EmptyBatch) {
  for (Loss l : kAllLosses) {
    SCOPED_TRACE(loss_name(l));
    empty_batch<double>(l);
    empty_batch<float>(l);
  }
}

}  // namespace
