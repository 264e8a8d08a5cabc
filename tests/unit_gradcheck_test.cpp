// tests/unit_gradcheck_test.cpp — finite-difference gradient checks in double for every loss.
//
// The library's gradient (divided by grad_scale) must match the central difference
// (L(x + h e_k) - L(x - h e_k)) / 2h of its own loss, h = 1e-6, where L is the reduced loss
// (the sum of the rows for `none`). The difference's error is ~ h^2 L''' + eps |L| / h ~ 1e-9,
// so the tolerance 1e-6 * max(1, max|g|) is loose for rounding and tight for a wrong term.
// USKD: P, the ranks and Zhat are constants by definition, so the check must hold them fixed.
// With N = 1, P = 1 exactly for hard labels and P_k = V_k for soft labels (S_t^2 - mean S_t^2
// = 0), so any loss options work; at N > 1 alpha = 0 removes P. Ranks are piecewise constant:
// away from ties (random logits) the central difference does not cross a rank change.
#include "test_util.hpp"

namespace {

using namespace tu;

struct FdCase {
  Loss loss;
  int64_t n, c;
  LabelKind kind;
  double ignore_frac;
  Reduction red;
  double temperature;
  double ce_weight;
  double grad_scale;
  int preset;  // loss-specific variation
};

AnyOptions options_of(const FdCase& f) {
  AnyOptions o;
  o.common.reduction = f.red;
  o.common.ce_weight = f.kind == LabelKind::kNone ? 0.0 : f.ce_weight;
  o.common.grad_scale = f.grad_scale;
  o.set_temperature(f.temperature);
  o.nkd.gamma = f.preset == 0 ? 1.5 : 3.5;
  o.kd.weight = f.preset == 0 ? 1.0 : 0.6;
  o.dkd.alpha = f.preset == 0 ? 1.0 : 0.4;
  o.dkd.beta = f.preset == 0 ? 8.0 : 2.0;
  o.uskd.alpha = f.n == 1 ? (f.preset == 0 ? 1.0 : 0.3) : 0.0;
  o.uskd.beta = f.preset == 0 ? 0.1 : 0.8;
  o.uskd.mu = f.preset == 0 ? 0.005 : 0.4;
  o.uskd.smoothing = f.preset == 0 ? 0.1 : 0.25;
  o.uskd.rank = f.preset == 0 ? fusedkd::UskdRank::kReference : fusedkd::UskdRank::kPaper;
  // Presets 2+: the paper's variants (NKD Tables 5, 14; USKD Tables 6, 8, 9, 12, 15). At N = 1
  // every soft-target smoothing makes P a constant of the row (a batch of one), so the check
  // holds with alpha != 0 there, the T2 term included.
  using NT = fusedkd::NkdNonTarget;
  using ST = fusedkd::UskdSoftTarget;
  using R = fusedkd::UskdRank;
  switch (f.preset) {
    case 2:
      o.nkd.non_target = NT::kPlain;
      o.nkd.t2 = true;
      o.uskd.square = false;
      o.uskd.soft_target = ST::kSoftmax;
      o.uskd.rank = R::kWeak;
      o.uskd.t2 = true;
      break;
    case 3:
      o.nkd.non_target = NT::kNormalized;
      o.nkd.target = false;
      o.nkd.t2 = true;
      o.uskd.soft_target = ST::kMaxNorm;
      o.uskd.rank = R::kFinal;
      o.uskd.target = false;
      o.uskd.t2 = true;
      break;
    case 4:
      o.nkd.non_target = NT::kNone;
      o.nkd.t2 = true;
      o.uskd.soft_target = ST::kMeanNorm;
      o.uskd.rank = R::kCombination;
      o.uskd.non_target = false;
      break;
    case 5:
      o.nkd.non_target = NT::kPlain;
      o.nkd.target = false;
      o.uskd.soft_target = ST::kSqrtMin;
      o.uskd.square = false;
      o.uskd.t2 = true;
      break;
    default: break;
  }
  return o;
}

double objective(Loss loss, const AnyOptions& o, const Batch<double>& b) {
  const Output<double> out = run(loss, o, b, 0, false);
  EXPECT_EQ(out.status, Status::kSuccess);
  return out.objective();
}

void check_fd(const FdCase& f, uint64_t seed) {
  Rng rng(seed);
  Batch<double> b = random_batch<double>(rng, f.n, f.c, 1, f.kind, f.ignore_frac, -100, 2.0, 2.0);
  const AnyOptions o = options_of(f);
  SCOPED_TRACE(std::string(loss_name(f.loss)) + " N=" + std::to_string(f.n) + " C=" + std::to_string(f.c) +
               " " + label_name(f.kind) + " " + o.describe(f.loss));
  const Output<double> out = run(f.loss, o, b);
  ASSERT_EQ(out.status, Status::kSuccess);
  const double h = 1e-6;
  for (int which = 0; which < (f.loss == Loss::kUskd ? 2 : 1); ++which) {
    const bool weak = which == 1;
    const double gmax = max_abs_grad(out, weak) / std::fabs(f.grad_scale);
    const double tol = 1e-6 * std::max(1.0, gmax);
    for (int64_t r = 0; r < b.n; ++r) {
      for (int64_t i = 0; i < b.c; ++i) {
        double& x = weak ? b.v(r, i) : b.z(r, i);
        const double x0 = x;
        x = x0 + h;
        const double lp = objective(f.loss, o, b);
        x = x0 - h;
        const double lm = objective(f.loss, o, b);
        x = x0;
        const double fd = (lp - lm) / (2 * h);
        const double g = (weak ? out.gw_at(r, i) : out.gs_at(r, i)) / f.grad_scale;
        EXPECT_NEAR(g, fd, tol) << (weak ? "grad_weak" : "grad_student") << " at row " << r << " class " << i;
      }
    }
  }
}

std::vector<FdCase> fd_cases() {
  std::vector<FdCase> v;
  const int64_t cs[] = {2, 3, 5, 12};
  const Reduction reds[] = {Reduction::kMean, Reduction::kSum, Reduction::kNone};
  const double temps[] = {1.0, 4.0, 0.7, 2.5};
  int k = 0;
  for (Loss loss : kAllLosses) {
    for (int64_t c : cs) {
      for (int64_t n : {int64_t{1}, int64_t{4}}) {
        for (LabelKind kind : {LabelKind::kHard64, LabelKind::kSoft, LabelKind::kNone}) {
          if (kind == LabelKind::kNone && loss != Loss::kKd) continue;
          if (loss == Loss::kUskd && kind == LabelKind::kSoft && c < 3) continue;
          const int presets = loss == Loss::kNkd || loss == Loss::kUskd ? 6 : 2;
          for (int preset = 0; preset < presets; ++preset, ++k) {
            FdCase f{loss, n, c, kind, n > 1 && kind == LabelKind::kHard64 ? 0.3 : 0.0, reds[k % 3],
                     temps[k % 4], (k % 3 == 1) ? 0.6 : 0.0, (k % 4 == 2) ? -1.7 : 1.0, preset};
            v.push_back(f);
          }
        }
      }
    }
  }
  return v;
}

class FiniteDifference : public ::testing::TestWithParam<Loss> {};

TEST_P(FiniteDifference, GradientMatchesCentralDifference) {
  uint64_t seed = 100;
  for (const FdCase& f : fd_cases()) {
    if (f.loss != GetParam()) continue;
    check_fd(f, seed++);
  }
}

INSTANTIATE_TEST_SUITE_P(Losses, FiniteDifference, ::testing::ValuesIn(kAllLosses),
                         [](const ::testing::TestParamInfo<Loss>& i) { return loss_name(i.param); });

/// USKD at N > 1 with alpha != 0 is not a plain function of the logits (P is a constant
/// computed from them); check instead that the gradient w.r.t. the weak logits, which P does
/// not touch, still matches the difference, and that alpha = 0 is not needed for it.
TEST(FiniteDifferenceUskd, WeakGradientWithCoupledRows) {
  Rng rng(77);
  Batch<double> b = random_batch<double>(rng, 5, 7, 0, LabelKind::kSoft, 0.0, -100, 2.0, 2.0);
  AnyOptions o;
  o.uskd.alpha = 1.0;
  o.uskd.mu = 0.3;
  o.common.reduction = Reduction::kSum;
  const Output<double> out = run(Loss::kUskd, o, b);
  ASSERT_EQ(out.status, Status::kSuccess);
  const double h = 1e-6;
  for (int64_t r = 0; r < b.n; ++r)
    for (int64_t i = 0; i < b.c; ++i) {
      const double x0 = b.v(r, i);
      b.v(r, i) = x0 + h;
      const double lp = objective(Loss::kUskd, o, b);
      b.v(r, i) = x0 - h;
      const double lm = objective(Loss::kUskd, o, b);
      b.v(r, i) = x0;
      EXPECT_NEAR(out.gw_at(r, i), (lp - lm) / (2 * h), 1e-7) << "row " << r << " class " << i;
    }
}

}  // namespace
