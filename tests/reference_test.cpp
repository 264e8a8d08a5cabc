// tests/reference_test.cpp — the CPU backend against the float64 LibTorch reference.
//
// Sweep: every loss x {double, float} x C in {2, 3, 10, 100, 1000, 1001, 32000} x N in
// {1, 2, 3, 37, 256} (C = 32000 only with N in {1, 3}); label kind, reduction, option preset,
// grad_scale, ce_weight, ignore_index and row padding vary from case to case. OptionsGrid: every
// option preset x label kind x reduction of every loss at one shape. Plus the edge cases
// (equal logits, all rows ignored, logits of magnitude 1e4) against the reference.
//
// Tolerances. double: |loss - ref| <= 1e-9 * max(|ref|, 1) and max|grad - ref| <= 1e-9 *
// max|ref| (a wrong formula is off by far more; float64 rounding in a row of 32000 classes stays
// below 1e-12). float: 1e-4 for both, the conformance format's float32 tolerance. A float
// result is compared with the reference evaluated on the same (float-representable) inputs.
// USKD in float: the rank is a sort of float keys, so inputs whose rank keys have near-ties
// (closer than float rounding can resolve) are regenerated; see `avoid_near_ties`.
#include <gtest/gtest.h>

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "reference/reference.hpp"
#include "test_util.hpp"

namespace {

using namespace tu;
using fusedkd::UskdRank;

// ---- tensors from batches ------------------------------------------------------------------

template <typename T>
constexpr torch::ScalarType scalar_type() {
  return std::is_same<T, double>::value ? torch::kFloat64 : torch::kFloat32;
}

/// A float64 copy of the logical [n, c] view of a strided buffer.
template <typename T>
torch::Tensor view_to_tensor(const std::vector<T>& buf, int64_t n, int64_t c, int64_t stride) {
  auto t = torch::from_blob(const_cast<T*>(buf.data()), {n, c}, {stride, 1},
                            torch::TensorOptions().dtype(scalar_type<T>()));
  return t.to(torch::kFloat64).clone();
}

template <typename T>
torch::Tensor labels_tensor(const Batch<T>& b) {
  switch (b.kind) {
    case LabelKind::kNone: return torch::Tensor();
    case LabelKind::kHard32:
      return torch::from_blob(const_cast<int32_t*>(b.l32.data()), {b.n}, torch::kInt32).clone();
    case LabelKind::kHard64:
      return torch::from_blob(const_cast<int64_t*>(b.l64.data()), {b.n}, torch::kInt64).clone();
    case LabelKind::kSoft:
      return torch::from_blob(const_cast<float*>(b.soft.data()), {b.n, b.c},
                              {b.soft_stride ? b.soft_stride : b.c, 1}, torch::kFloat32)
          .clone();
  }
  return torch::Tensor();
}

template <typename T>
ref::Result reference(Loss loss, const Batch<T>& b, const AnyOptions& o) {
  const torch::Tensor s = view_to_tensor(b.student, b.n, b.c, b.stride);
  const torch::Tensor v = view_to_tensor(b.other, b.n, b.c, b.stride);
  const torch::Tensor y = labels_tensor(b);
  switch (loss) {
    case Loss::kNkd: return ref::nkd(s, v, y, o.nkd_options());
    case Loss::kKd: return ref::kd(s, v, y, o.kd_options());
    case Loss::kDkd: return ref::dkd(s, v, y, o.dkd_options());
    case Loss::kUskd: return ref::uskd(s, v, y, o.uskd_options());
  }
  return {};
}

// ---- comparison ----------------------------------------------------------------------------

/// Compares one gradient: max|got - exp| <= tol * max|exp| (exactly 0 when exp is all 0).
template <typename T>
::testing::AssertionResult grad_close(const Output<T>& out, bool weak, const torch::Tensor& expected,
                                      double tol) {
  const torch::Tensor e = expected.contiguous();
  const double* ep = e.data_ptr<double>();
  double scale = 0, worst = -1;
  int64_t wr = -1, wi = -1;
  for (int64_t k = 0; k < out.n * out.c; ++k) scale = std::max(scale, std::fabs(ep[k]));
  for (int64_t r = 0; r < out.n; ++r) {
    for (int64_t i = 0; i < out.c; ++i) {
      const double g = static_cast<double>(weak ? out.gw_at(r, i) : out.gs_at(r, i));
      const double d = std::isfinite(g) ? std::fabs(g - ep[r * out.c + i]) : HUGE_VAL;
      if (d > worst) {
        worst = d;
        wr = r;
        wi = i;
      }
    }
  }
  if (out.n * out.c == 0 || worst <= tol * scale) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << (weak ? "grad_weak" : "grad_student") << ": max|got - expected| = " << worst
         << " > " << tol << " * max|expected| (= " << scale << "); worst at row " << wr
         << " class " << wi << ": expected " << ep[wr * out.c + wi] << ", got "
         << static_cast<double>(weak ? out.gw_at(wr, wi) : out.gs_at(wr, wi))
         << " (relative error " << worst / scale << ")";
}

template <typename T>
::testing::AssertionResult loss_close(const Output<T>& out, const torch::Tensor& expected, double tol) {
  const torch::Tensor e = expected.reshape({-1}).contiguous();
  if (e.numel() != out.nloss) {
    return ::testing::AssertionFailure() << "loss has " << out.nloss << " values, expected " << e.numel();
  }
  const double* ep = e.data_ptr<double>();
  for (int64_t k = 0; k < out.nloss; ++k) {
    const double g = static_cast<double>(out.loss[static_cast<size_t>(k)]);
    const double d = std::fabs(g - ep[k]);
    if (!(d <= tol * std::max(std::fabs(ep[k]), 1.0))) {
      return ::testing::AssertionFailure()
             << "loss[" << k << "]: expected " << ep[k] << ", got " << g << " (|diff| = " << d
             << ", allowed " << tol * std::max(std::fabs(ep[k]), 1.0) << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

template <typename T>
void expect_matches_reference(Loss loss, const Batch<T>& b, const AnyOptions& o, int64_t grad_pad,
                              double tol) {
  SCOPED_TRACE(std::string(loss_name(loss)) + (std::is_same<T, double>::value ? " double" : " float") +
               " N=" + std::to_string(b.n) + " C=" + std::to_string(b.c) + " labels=" +
               label_name(b.kind) + " stride=" + std::to_string(b.stride) + " " + o.describe(loss));
  const Output<T> out = run(loss, o, b, grad_pad);
  ASSERT_EQ(out.status, Status::kSuccess) << fusedkd::status_name(out.status);
  EXPECT_TRUE(outside_untouched(loss, out));
  const ref::Result e = reference(loss, b, o);
  EXPECT_TRUE(loss_close(out, e.loss, tol));
  EXPECT_TRUE(grad_close(out, false, e.grad_student, tol));
  if (loss == Loss::kUskd) {
    EXPECT_TRUE(grad_close(out, true, e.grad_weak, tol));
  }
}

// ---- USKD near-ties ------------------------------------------------------------------------

/// Rows whose rank keys have two values closer than `rel` * (|a| + |b|) + `floor`: float
/// rounding inside the library could order them differently from the float64 reference (a
/// legitimate difference, not a bug), so tests regenerate such rows. Errors of the float keys
/// common to a whole row (the log-sum-exp, the denominators) cannot reorder it; what can is the
/// per-element rounding, a few float ulps of the key: 3e-6 relative leaves a 10x margin.
template <typename T>
std::vector<int64_t> near_tie_rows(const Batch<T>& b, const AnyOptions& o) {
  const bool dbl = std::is_same<T, double>::value;
  // The reference-mode key W/a + log S/b can cancel to ~0, where the rounding of log S (absolute,
  // ~ ulp(|log S|) / b) dominates: an absolute floor. The paper-mode key W/a + S/b is a sum of
  // positive terms whose rounding is relative: no floor (keys go down to e^-40).
  const bool paper = o.uskd.rank != UskdRank::kReference;
  const double rel = dbl ? 1e-12 : 3e-6;
  const double floor = paper ? 0.0 : (dbl ? 1e-15 : 1e-7);
  const torch::Tensor keys =
      ref::uskd_rank_keys(view_to_tensor(b.student, b.n, b.c, b.stride),
                          view_to_tensor(b.other, b.n, b.c, b.stride), labels_tensor(b),
                          o.uskd_options());
  const torch::Tensor sorted = std::get<0>(torch::sort(keys, /*stable=*/true, 1, true)).contiguous();
  const double* k = sorted.data_ptr<double>();
  std::vector<int64_t> rows;
  for (int64_t r = 0; r < b.n; ++r) {
    if (b.kind != LabelKind::kSoft && b.label(r) == o.common.ignore_index) continue;
    for (int64_t i = 0; i + 1 < b.c; ++i) {
      const double a = k[r * b.c + i], c = k[r * b.c + i + 1];
      if (a - c < rel * (std::fabs(a) + std::fabs(c)) + floor) {
        rows.push_back(r);
        break;
      }
    }
  }
  return rows;
}

/// Regenerates the logits of rows with near-ties until there are none. In float with C >= 1000
/// random keys are nearly always too dense (C^2 / 2 gaps over a range of a few units), so the rows are built so that the keys are well apart: the
/// student logits are a random permutation of an evenly spaced grid, and the weak logits an
/// increasing function of them (both terms of the key then increase with z_i).
template <typename T>
void avoid_near_ties(Rng& rng, Batch<T>& b, const AnyOptions& o) {
  const bool grid = !std::is_same<T, double>::value && b.c > 100;
  auto regen = [&](int64_t r) {
    if (grid) {
      std::vector<int64_t> perm(static_cast<size_t>(b.c));
      for (int64_t i = 0; i < b.c; ++i) perm[static_cast<size_t>(i)] = i;
      std::shuffle(perm.begin(), perm.end(), rng.g);
      const double d = 40.0 / static_cast<double>(b.c);
      for (int64_t i = 0; i < b.c; ++i) {
        const double zi = (static_cast<double>(perm[static_cast<size_t>(i)]) - b.c / 2.0) * d;
        b.z(r, i) = static_cast<T>(zi);
        b.v(r, i) = static_cast<T>(0.5 * zi + 0.25);
      }
    } else {
      for (int64_t i = 0; i < b.c; ++i) {
        b.z(r, i) = static_cast<T>(3.0 * rng.normal());
        b.v(r, i) = static_cast<T>(3.0 * rng.normal());
      }
    }
  };
  if (grid) {
    for (int64_t r = 0; r < b.n; ++r) regen(r);
  }
  for (int attempt = 0; attempt < 100; ++attempt) {
    const std::vector<int64_t> rows = near_tie_rows(b, o);
    if (rows.empty()) return;
    for (int64_t r : rows) regen(r);
  }
  FAIL() << "could not build USKD inputs without near-ties in the rank keys";
}

// ---- cases ---------------------------------------------------------------------------------

struct Case {
  Loss loss = Loss::kNkd;
  bool dbl = true;
  int64_t n = 1, c = 2, pad = 0;
  LabelKind kind = LabelKind::kHard64;
  double ignore_frac = 0.0;
  AnyOptions opt;
  uint64_t seed = 0;
  std::string name;
};

std::ostream& operator<<(std::ostream& os, const Case& c) { return os << c.name; }

int num_presets(Loss l) {
  switch (l) {
    case Loss::kNkd: return 9;
    case Loss::kKd: return 3;
    case Loss::kDkd: return 4;
    case Loss::kUskd: return 11;
  }
  return 1;
}

/// The loss-specific options of preset `p` (the released configs first, then others).
void apply_preset(Loss l, int p, AnyOptions& o) {
  switch (l) {
    case Loss::kNkd: {
      // 4-8: the paper's variants (Tables 5, 14) at temperatures 1 and not 1.
      const double t[] = {1.0, 3.0, 2.0, 0.5, 1.0, 2.0, 1.0, 3.0, 0.7},
                   g[] = {1.5, 3.5, 1.0, 2.5, 1.5, 1.0, 1.5, 3.5, 2.0};
      using NT = fusedkd::NkdNonTarget;
      const NT nt[] = {NT::kNormalized, NT::kNormalized, NT::kNormalized, NT::kNormalized,
                       NT::kPlain,      NT::kPlain,      NT::kNormalized, NT::kNone,
                       NT::kPlain};
      const bool target[] = {true, true, true, true, true, false, false, true, true};
      const bool t2[] = {false, false, false, false, false, false, true, true, true};
      o.nkd.temperature = t[p];
      o.nkd.gamma = g[p];
      o.nkd.non_target = nt[p];
      o.nkd.target = target[p];
      o.nkd.t2 = t2[p];
      break;
    }
    case Loss::kKd: {
      const double t[] = {4.0, 1.0, 2.5}, w[] = {1.0, 0.5, 2.0};
      o.kd.temperature = t[p];
      o.kd.weight = w[p];
      break;
    }
    case Loss::kDkd: {
      const double t[] = {4.0, 1.0, 2.0, 8.0}, a[] = {1.0, 0.5, 2.0, 0.0}, b[] = {8.0, 2.0, 0.0, 1.0};
      o.dkd.temperature = t[p];
      o.dkd.alpha = a[p];
      o.dkd.beta = b[p];
      break;
    }
    case Loss::kUskd: {
      // 5-10: the paper's variants (Tables 6, 8, 9, 12, 15).
      const double al[] = {1.0, 0.1, 1.0, 0.5, 1.0, 1.0, 0.5, 1.0, 1.0, 0.7, 1.0},
                   be[] = {0.1, 0.1, 0.1, 0.3, 1.0, 0.3, 0.1, 0.5, 0.2, 0.3, 0.1},
                   mu[] = {0.005, 0.1, 0.005, 0.2, 0.05, 0.1, 0.05, 0.2, 0.1, 0.1, 0.3},
                   sm[] = {0.1, 0.1, 0.1, 0.0, 0.3, 0.1, 0.1, 0.2, 0.1, 0.1, 0.1};
      using R = UskdRank;
      using ST = fusedkd::UskdSoftTarget;
      const R rk[] = {R::kReference, R::kReference, R::kPaper, R::kReference, R::kPaper,
                      R::kWeak,      R::kFinal,     R::kCombination, R::kPaper, R::kReference,
                      R::kWeak};
      const ST st[] = {ST::kMeanShift, ST::kMeanShift, ST::kMeanShift, ST::kMeanShift,
                       ST::kMeanShift, ST::kSoftmax,   ST::kSqrtMin,   ST::kMaxNorm,
                       ST::kMeanNorm,  ST::kMeanShift, ST::kSoftmax};
      const bool sq[] = {true, true, true, true, true, false, false, false, true, false, true};
      const bool target[] = {true, true, true, true, true, true, true, true, false, true, false};
      const bool non[] = {true, true, true, true, true, true, false, true, true, true, true};
      const bool t2[] = {false, false, false, false, false, false, false, true, true, true, false};
      o.uskd.alpha = al[p];
      o.uskd.beta = be[p];
      o.uskd.mu = mu[p];
      o.uskd.smoothing = sm[p];
      o.uskd.rank = rk[p];
      o.uskd.soft_target = st[p];
      o.uskd.square = sq[p];
      o.uskd.target = target[p];
      o.uskd.non_target = non[p];
      o.uskd.t2 = t2[p];
      break;
    }
  }
}

/// Label kinds: 0 hard64, 1 hard32, 2 soft, 3 hard64 with ignored rows, 4 none (KD only).
int num_label_variants(Loss l) { return l == Loss::kKd ? 5 : 4; }

void apply_label_variant(int v, Case& cs) {
  const LabelKind kinds[] = {LabelKind::kHard64, LabelKind::kHard32, LabelKind::kSoft,
                             LabelKind::kHard64, LabelKind::kNone};
  cs.kind = kinds[v];
  cs.ignore_frac = v == 3 ? 0.3 : (v == 1 ? 0.1 : 0.0);
  if (cs.loss == Loss::kUskd && cs.kind == LabelKind::kSoft && cs.c < 3) cs.kind = LabelKind::kHard64;
  if (cs.kind == LabelKind::kNone) cs.opt.common.ce_weight = 0.0;
}

std::string case_name(const Case& cs, const std::string& prefix) {
  std::ostringstream os;
  os << prefix << loss_name(cs.loss) << "_" << (cs.dbl ? "f64" : "f32") << "_N" << cs.n << "_C" << cs.c
     << "_" << label_name(cs.kind) << (cs.ignore_frac > 0 ? "ign" : "") << "_"
     << reduction_name(cs.opt.common.reduction) << "_pad" << cs.pad;
  return os.str();
}

std::vector<Case> sweep_cases() {
  std::vector<Case> out;
  const int64_t cs_[] = {2, 3, 10, 100, 1000, 1001, 32000};
  const Reduction reds[] = {Reduction::kMean, Reduction::kSum, Reduction::kNone};
  const double scales[] = {1.0, 0.37, 2.5, 1.0, -0.5};
  const int64_t ignores[] = {-100, -1, 7};
  int k = 0;
  for (Loss loss : kAllLosses) {
    for (int64_t c : cs_) {
      std::vector<int64_t> ns = {1, 2, 3, 37, 256};
      if (c == 32000) ns = {1, 3};
      for (int64_t n : ns) {
        for (int d = 0; d < 2; ++d, ++k) {
          Case cs;
          cs.loss = loss;
          cs.dbl = d == 0;
          cs.n = n;
          cs.c = c;
          cs.pad = (k / 3) % 2 ? 5 : 0;
          cs.opt.common.reduction = reds[k % 3];
          cs.opt.common.grad_scale = scales[k % 5];
          cs.opt.common.ce_weight = (k % 7) < 3 ? 0.7 : 0.0;
          cs.opt.common.ignore_index = ignores[(k / 2) % 3];
          if (cs.opt.common.ignore_index >= 0 && cs.opt.common.ignore_index < c) {
            cs.opt.common.ignore_index = -100;  // an in-range ignore_index would hide a class
          }
          apply_preset(loss, k % num_presets(loss), cs.opt);
          apply_label_variant((k + k / 5) % num_label_variants(loss), cs);
          cs.seed = 1000 + static_cast<uint64_t>(k);
          cs.name = case_name(cs, "");
          out.push_back(cs);
        }
      }
    }
  }
  return out;
}

std::vector<Case> grid_cases() {
  std::vector<Case> out;
  const Reduction reds[] = {Reduction::kMean, Reduction::kSum, Reduction::kNone};
  int k = 0;
  for (Loss loss : kAllLosses) {
    for (int p = 0; p < num_presets(loss); ++p) {
      for (int lv = 0; lv < num_label_variants(loss); ++lv) {
        for (Reduction red : reds) {
          for (int d = 0; d < 2; ++d, ++k) {
            Case cs;
            cs.loss = loss;
            cs.dbl = d == 0;
            cs.n = 37;
            cs.c = 100;
            cs.pad = k % 2 ? 3 : 0;
            cs.opt.common.reduction = red;
            cs.opt.common.grad_scale = k % 3 == 0 ? 1.0 : 1.75;
            cs.opt.common.ce_weight = (k / 2) % 2 ? 0.5 : 0.0;
            apply_preset(loss, p, cs.opt);
            apply_label_variant(lv, cs);
            cs.seed = 5000 + static_cast<uint64_t>(k);
            cs.name = case_name(cs, "p" + std::to_string(p) + "_");
            out.push_back(cs);
          }
        }
      }
    }
  }
  return out;
}

template <typename T>
void run_case(const Case& cs) {
  Rng rng(cs.seed);
  Batch<T> b = random_batch<T>(rng, cs.n, cs.c, cs.pad, cs.kind, cs.ignore_frac,
                               cs.opt.common.ignore_index);
  if (cs.loss == Loss::kUskd) {
    avoid_near_ties(rng, b, cs.opt);
    if (::testing::Test::HasFatalFailure()) return;
  }
  const double tol = std::is_same<T, double>::value ? 1e-9 : 1e-4;
  expect_matches_reference(cs.loss, b, cs.opt, cs.pad, tol);
}

class Sweep : public ::testing::TestWithParam<Case> {};
TEST_P(Sweep, MatchesReference) {
  const Case& cs = GetParam();
  if (cs.dbl) {
    run_case<double>(cs);
  } else {
    run_case<float>(cs);
  }
}
INSTANTIATE_TEST_SUITE_P(Shapes, Sweep, ::testing::ValuesIn(sweep_cases()),
                         [](const ::testing::TestParamInfo<Case>& i) { return i.param.name; });

class OptionsGrid : public ::testing::TestWithParam<Case> {};
TEST_P(OptionsGrid, MatchesReference) {
  const Case& cs = GetParam();
  if (cs.dbl) {
    run_case<double>(cs);
  } else {
    run_case<float>(cs);
  }
}
INSTANTIATE_TEST_SUITE_P(AllOptions, OptionsGrid, ::testing::ValuesIn(grid_cases()),
                         [](const ::testing::TestParamInfo<Case>& i) { return i.param.name; });

// ---- edge cases against the reference ------------------------------------------------------

class EdgeVsReference : public ::testing::TestWithParam<Loss> {};

/// Equal logits everywhere: every rank key ties, so the Zipf ranks follow the class index.
TEST_P(EdgeVsReference, EqualLogitsTiesByClassIndex) {
  const Loss loss = GetParam();
  for (int64_t c : {2, 3, 10, 1000}) {
    for (LabelKind kind : {LabelKind::kHard64, LabelKind::kSoft}) {
      if (loss == Loss::kUskd && kind == LabelKind::kSoft && c < 3) continue;
      Rng rng(static_cast<uint64_t>(c));
      Batch<double> b = random_batch<double>(rng, 5, c, 1, kind);
      for (int64_t r = 0; r < b.n; ++r) {
        for (int64_t i = 0; i < c; ++i) {
          b.z(r, i) = 0.75;
          b.v(r, i) = r == 0 ? 0.75 : -1.5;
        }
      }
      AnyOptions o;
      o.common.ce_weight = 0.3;
      expect_matches_reference(loss, b, o, 0, 1e-9);
      Batch<float> bf = b.cast<float>();
      expect_matches_reference(loss, bf, o, 2, 1e-4);
      o.uskd.rank = UskdRank::kPaper;
      expect_matches_reference(loss, b, o, 0, 1e-9);
    }
  }
}

TEST_P(EdgeVsReference, AllRowsIgnored) {
  const Loss loss = GetParam();
  for (Reduction red : {Reduction::kMean, Reduction::kSum, Reduction::kNone}) {
    Rng rng(3);
    Batch<double> b = random_batch<double>(rng, 4, 10, 0, LabelKind::kHard64, 1.0);
    AnyOptions o;
    o.common.reduction = red;
    o.common.ce_weight = 1.0;
    expect_matches_reference(loss, b, o, 0, 1e-9);
  }
}

/// Logits of magnitude 1e4: softmaxes saturate to exact 0 / 1 in float64 too.
TEST_P(EdgeVsReference, LogitsOfMagnitude1e4) {
  const Loss loss = GetParam();
  for (int64_t c : {2, 3, 10, 1001}) {
    for (LabelKind kind : {LabelKind::kHard64, LabelKind::kSoft}) {
      if (loss == Loss::kUskd && kind == LabelKind::kSoft && c < 3) continue;
      Rng rng(static_cast<uint64_t>(c) + 17);
      Batch<double> b = random_batch<double>(rng, 6, c, 0, kind, 0.0, -100, 1e4, 1e4);
      AnyOptions o;
      o.common.ce_weight = 0.5;
      o.set_temperature(2.0);
      expect_matches_reference(loss, b, o, 0, 1e-9);
      // shifted rows: 1e4 plus a spread of ~10 (the softmax is not saturated)
      for (int64_t r = 0; r < b.n; ++r)
        for (int64_t i = 0; i < c; ++i) {
          b.z(r, i) = 1e4 + 3.0 * rng.normal();
          b.v(r, i) = -1e4 + 3.0 * rng.normal();
        }
      expect_matches_reference(loss, b, o, 0, 1e-9);
    }
  }
}

/// Teacher probabilities that underflow to exactly 0 (in float only, or in float and double):
/// the 0 x log 0 convention. (A -inf teacher logit, where the reference itself computes
/// 0 * -inf = NaN, is in unit_strength_test.cpp against an independent computation.)
TEST_P(EdgeVsReference, TeacherProbabilityUnderflowsToZero) {
  const Loss loss = GetParam();
  if (loss == Loss::kUskd) GTEST_SKIP() << "USKD has no teacher";
  for (double temp : {1.0, 2.0}) {
    Rng rng(23);
    Batch<double> b = random_batch<double>(rng, 4, 13, 1, LabelKind::kHard64);
    for (int64_t r = 0; r < b.n; ++r) b.set_label(r, 5);
    b.v(0, 2) = -1e4;  // 0 in float and double
    b.v(1, 9) = -300;  // exp(-300 / T) is 0 in float only
    b.v(1, 10) = -1e4;
    b.v(2, 5) = -1e4;  // the target
    b.v(3, 5) = -2e4;  // the target and a non-target
    b.v(3, 0) = -3e4;
    AnyOptions o;
    o.common.ce_weight = 0.5;
    o.set_temperature(temp);
    for (Reduction red : {Reduction::kNone, Reduction::kMean}) {
      o.common.reduction = red;
      expect_matches_reference(loss, b, o, 0, 1e-9);
      expect_matches_reference(loss, b.cast<float>(), o, 0, 1e-4);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Losses, EdgeVsReference, ::testing::ValuesIn(kAllLosses),
                         [](const ::testing::TestParamInfo<Loss>& i) { return loss_name(i.param); });

// ---- sanity of the reference itself (closed forms, independent of the library) --------------

TEST(Reference, KdIsZeroWhenStudentEqualsTeacher) {
  auto z = torch::randn({4, 7}, torch::kFloat64);
  fusedkd::KdOptions o;
  const auto r = ref::kd(z, z, torch::Tensor(), o);
  EXPECT_NEAR(r.loss.item<double>(), 0.0, 1e-14);
  EXPECT_LE(r.grad_student.abs().max().item<double>(), 1e-14);
}

TEST(Reference, NkdWithTwoClassesIsTargetCrossEntropy) {
  // C = 2: the non-target softmax has one class with probability 1, so L_non = 0 and the
  // row loss is -T_t log S_t.
  auto z = torch::tensor({{0.3, -1.2}}, torch::kFloat64);
  auto v = torch::tensor({{2.0, 0.5}}, torch::kFloat64);
  auto y = torch::tensor({1}, torch::kInt64);
  fusedkd::NkdOptions o;
  const auto r = ref::nkd(z, v, y, o);
  const double st = std::exp(-1.2) / (std::exp(0.3) + std::exp(-1.2));
  const double tt = std::exp(0.5) / (std::exp(2.0) + std::exp(0.5));
  EXPECT_NEAR(r.loss.item<double>(), -tt * std::log(st), 1e-14);
  EXPECT_NEAR(r.grad_student[0][1].item<double>(), -tt * (1 - st), 1e-14);
}

TEST(Reference, UskdHardLabelSingleRowHasPEqualOne) {
  // N = 1, hard labels: P = S_t^2 + 1 - S_t^2 = 1, so with beta = mu = 0 the loss is -log S_t.
  auto z = torch::tensor({{0.1, 0.4, -0.3, 2.0}}, torch::kFloat64);
  auto w = torch::zeros({1, 4}, torch::kFloat64);
  auto y = torch::tensor({2}, torch::kInt64);
  fusedkd::UskdOptions o;
  o.beta = 0;
  o.mu = 0;
  const auto r = ref::uskd(z, w, y, o);
  EXPECT_NEAR(r.loss.item<double>(), -torch::log_softmax(z, 1)[0][2].item<double>(), 1e-14);
}

}  // namespace
