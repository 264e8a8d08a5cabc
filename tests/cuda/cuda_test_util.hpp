// tests/cuda/cuda_test_util.hpp — what the GPU tests share: random problems (with the USKD
// rank near-ties a float kernel may legitimately order differently removed), the float64 CPU
// backend's results on the same inputs, and the comparisons with the conformance tolerances.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "fusedkd/fusedkd.hpp"
#include "runner/runner.hpp"

namespace cuda_test {


using fkcuda::DType;
using fkcuda::LabelKind;
using fkcuda::Loss;
using fkcuda::Problem;
using fkcuda::Result;
using fusedkd::Reduction;
using fusedkd::Status;

#define SKIP_WITHOUT_GPU()                                            \
  do {                                                                \
    std::string why_;                                                 \
    if (!fkcuda::device_available(&why_)) GTEST_SKIP() << why_;       \
  } while (0)

inline constexpr Loss kLosses[] = {Loss::kNkd, Loss::kKd, Loss::kDkd, Loss::kUskd};
inline constexpr DType kDTypes[] = {DType::kFloat32, DType::kFloat16, DType::kBFloat16};

/// The targets of row r as the CPU backend finds them (hard label, or the soft row's top two).
inline fusedkd::detail::RowTargets<double> row_targets(const Problem& p, int64_t r) {
  fusedkd::detail::RowTargets<double> tg;
  if (p.label_kind == LabelKind::kSoft) {
    const float* y = p.soft.data() + r * p.c;
    int32_t b1 = 0, b2 = -1;
    for (int32_t i = 1; i < p.c; ++i) {
      if (y[i] > y[b1]) {
        b2 = b1;
        b1 = i;
      } else if (b2 < 0 || y[i] > y[b2]) {
        b2 = i;
      }
    }
    tg.t1 = b1;
    tg.t2 = b2;
    tg.v1 = y[b1];
    tg.v2 = y[b2];
  } else if (p.label_kind != LabelKind::kNone) {
    const int64_t label = p.label_kind == LabelKind::kHard32 ? p.labels32[r] : p.labels64[r];
    if (label == p.common().ignore_index || label < 0 || label >= p.c) tg.ignored = true;
    else tg.t1 = static_cast<int32_t>(label);
  }
  return tg;
}

/// Whether the float64 USKD rank keys of row r have two of their 32 largest values so close that
/// float rounding in a kernel could swap them. A swap at rank r moves two Zipf values by about
/// 1 / r^2 / H(C): above rank 32 that is far below every tolerance, within it a swap is a
/// legitimate float-versus-double difference, not a bug, so such rows are regenerated.
inline bool uskd_near_tie(const Problem& p, int64_t r) {
  using namespace fusedkd::detail;
  const fusedkd::detail::RowTargets<double> tg = row_targets(p, r);
  if (tg.ignored || p.c < 2) return false;
  const int64_t ld = p.stride();
  SplitStats<double> zs, ws;
  for (int64_t i = 0; i < p.c; ++i) {
    accumulate(zs, tg, i, double(p.student[r * ld + i]), 1.0, false);
    accumulate(ws, tg, i, double(p.other[r * ld + i]), 1.0, false);
  }
  const UskdRankKey<double> key(zs.full(1.0, tg), ws.full(1.0, tg), zs, ws, tg,
                                static_cast<int>(p.uskd.rank));
  std::vector<double> k(static_cast<size_t>(p.c));
  for (int64_t i = 0; i < p.c; ++i) k[i] = key(double(p.student[r * ld + i]), double(p.other[r * ld + i]));
  const size_t top = std::min<size_t>(33, k.size());
  std::partial_sort(k.begin(), k.begin() + top, k.end(), std::greater<double>());
  for (size_t i = 0; i + 1 < top; ++i) {
    const double a = k[i], b = k[i + 1];
    if (a - b < 3e-6 * (std::fabs(a) + std::fabs(b)) + 1e-7) return true;
  }
  return false;
}

/// Redraws the logits of USKD rows with near-ties (deterministically: the same problem gives the
/// same result). Call again after changing the rank mode or the labels.
inline void avoid_uskd_near_ties(Problem& p) {
  if (p.loss != Loss::kUskd) return;
  const int64_t ld = p.stride();
  for (int64_t r = 0; r < p.n; ++r) {
    std::mt19937 rng(static_cast<uint32_t>(7919 * r + 17));
    std::normal_distribution<float> normal(0.0f, 2.0f);
    for (int attempt = 0; attempt < 50 && uskd_near_tie(p, r); ++attempt) {
      for (int64_t i = 0; i < p.c; ++i) {
        p.student[r * ld + i] = fkcuda::round_to(p.dtype, normal(rng));
        p.other[r * ld + i] = fkcuda::round_to(p.dtype, normal(rng));
      }
    }
  }
}

/// A random problem: logits ~ N(0, 2^2) rounded to the dtype, hard labels with every 7th row
/// ignored (ignore_index -100), soft labels positive with some exact zeros; padding columns
/// (ld > C) hold large values a kernel must never read.
inline Problem make_problem(Loss loss, DType dtype, int64_t n, int64_t c, LabelKind kind, uint32_t seed,
                     int64_t ld = 0) {
  Problem p;
  p.loss = loss;
  p.dtype = dtype;
  p.n = n;
  p.c = c;
  p.ld = ld;
  p.label_kind = kind;
  const int64_t stride = p.stride();
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  p.student.assign(static_cast<size_t>(n * stride), 0.0f);
  p.other.assign(static_cast<size_t>(n * stride), 0.0f);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t i = 0; i < stride; ++i) {
      const bool pad = i >= c;  // padding: large values a kernel must never read
      p.student[r * stride + i] = pad ? 3.0e4f : normal(rng);
      p.other[r * stride + i] = pad ? -3.0e4f : normal(rng);
    }
  }
  fkcuda::round_inputs(p);
  std::uniform_int_distribution<int64_t> cls(0, c > 0 ? c - 1 : 0);
  if (n == 0) {  // non-null label pointers, as for any batch (the CPU refuses a null one)
    p.labels64.push_back(0);
    p.labels32.push_back(0);
    p.soft.push_back(1.0f);
  }
  if (kind == LabelKind::kHard32 || kind == LabelKind::kHard64) {
    for (int64_t r = 0; r < n; ++r) {
      const int64_t label = (r % 7 == 5) ? -100 : cls(rng);
      p.labels64.push_back(label);
      p.labels32.push_back(static_cast<int32_t>(label));
    }
  } else if (kind == LabelKind::kSoft && n > 0) {
    p.soft.assign(static_cast<size_t>(n * c), 0.0f);
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    for (int64_t r = 0; r < n; ++r) {
      float sum = 0.0f;
      for (int64_t i = 0; i < c; ++i) {
        const float x = u(rng);
        const float y = x < 0.3f ? 0.0f : std::exp(4.0f * x);
        p.soft[r * c + i] = y;
        sum += y;
      }
      if (sum == 0.0f) p.soft[r * c] = sum = 1.0f;
      for (int64_t i = 0; i < c; ++i) p.soft[r * c + i] /= sum;
    }
  }
  avoid_uskd_near_ties(p);
  return p;
}

/// float64 results of the CPU backend on the same (rounded) inputs.
struct Reference {
  Status status = Status::kSuccess;
  std::vector<double> loss, gs, gw;
};

inline Reference cpu_reference(const Problem& p) {
  Reference ref;
  const int64_t n = p.n, c = p.c, ld = p.stride();
  const std::vector<double> z(p.student.begin(), p.student.end());
  const std::vector<double> o(p.other.begin(), p.other.end());
  ref.loss.assign(static_cast<size_t>(p.loss_count() > 0 ? p.loss_count() : 1), 0.0);
  ref.gs.assign(z.size() + 1, 0.0);
  ref.gw.assign(z.size() + 1, 0.0);
  const auto zm = fusedkd::matrix<const double>(z.data(), n, c, ld);
  const auto om = fusedkd::matrix<const double>(o.data(), n, c, ld);
  const fusedkd::Matrix<double> gsm =
      p.want_grad ? fusedkd::matrix<double>(ref.gs.data(), n, c, ld) : fusedkd::Matrix<double>();
  const fusedkd::Matrix<double> gwm =
      p.want_grad ? fusedkd::matrix<double>(ref.gw.data(), n, c, ld) : fusedkd::Matrix<double>();
  const fusedkd::Labels labels = p.labels();
  switch (p.loss) {
    case Loss::kNkd: ref.status = fusedkd::cpu::nkd(zm, om, labels, p.nkd, ref.loss.data(), gsm); break;
    case Loss::kKd: ref.status = fusedkd::cpu::kd(zm, om, labels, p.kd, ref.loss.data(), gsm); break;
    case Loss::kDkd: ref.status = fusedkd::cpu::dkd(zm, om, labels, p.dkd, ref.loss.data(), gsm); break;
    case Loss::kUskd: ref.status = fusedkd::cpu::uskd(zm, om, labels, p.uskd, ref.loss.data(), gsm, gwm); break;
  }
  ref.loss.resize(static_cast<size_t>(p.loss_count()));
  return ref;
}

inline std::string describe(const Problem& p) {
  std::ostringstream os;
  os << fkcuda::loss_name(p.loss) << " " << fkcuda::dtype_name(p.dtype) << " N=" << p.n << " C=" << p.c
     << " ld=" << p.stride() << " labels=" << fkcuda::label_name(p.label_kind)
     << " reduction=" << static_cast<int>(p.common().reduction) << (p.in_place ? " in-place" : "")
     << (p.misalign ? " misaligned" : "") << (p.graph ? " graph" : "");
  return os.str();
}

inline void tolerances(DType d, double& loss_rtol, double& grad_rtol) {
  switch (d) {
    case DType::kFloat32: loss_rtol = 1e-4, grad_rtol = 1e-4; break;
    case DType::kFloat16: loss_rtol = 1e-3, grad_rtol = 2e-3; break;
    case DType::kBFloat16: loss_rtol = 1e-3, grad_rtol = 1e-2; break;
  }
}

/// Compares one gradient over the [n, c] part (max |got - want| <= rtol * max |want|, beyond the
/// rounding of want to the dtype); checks the padding columns were left alone.
inline void expect_grad_close(const Problem& p, const std::vector<float>& got, const std::vector<double>& want,
                       const std::vector<float>& before, double rtol, const char* name) {
  const int64_t ld = p.stride();
  ASSERT_EQ(got.size(), static_cast<size_t>(p.n * ld)) << name;
  double max_want = 0.0, max_diff = 0.0;
  int64_t worst = -1;
  for (int64_t r = 0; r < p.n; ++r) {
    for (int64_t i = 0; i < p.c; ++i) max_want = std::max(max_want, std::fabs(want[r * ld + i]));
  }
  for (int64_t r = 0; r < p.n; ++r) {
    for (int64_t i = 0; i < ld; ++i) {
      const size_t k = static_cast<size_t>(r * ld + i);
      if (i >= p.c) {  // padding: untouched
        if (p.in_place) {
          ASSERT_EQ(std::memcmp(&got[k], &before[k], sizeof(float)), 0) << name << " padding written at " << r << "," << i;
        } else {
          ASSERT_TRUE(fkcuda::is_sentinel(p.dtype, got[k])) << name << " padding written at " << r << "," << i;
        }
        continue;
      }
      // The error beyond what storing the exact value in the dtype must cost (a half-ulp; it
      // matters for float16 gradients so small they are subnormal).
      const double stored = static_cast<double>(fkcuda::round_to(p.dtype, static_cast<float>(want[k])));
      const double d = std::max(0.0, std::fabs(static_cast<double>(got[k]) - want[k]) - std::fabs(stored - want[k]));
      if (!(d <= max_diff)) {  // NaN propagates
        max_diff = std::isnan(d) ? INFINITY : d;
        worst = static_cast<int64_t>(k);
      }
    }
  }
  EXPECT_LE(max_diff, rtol * max_want) << name << ": max |diff| " << max_diff << " at [" << worst / ld << ", "
                                       << worst % ld << "] (got " << (worst >= 0 ? got[worst] : 0.0f) << ", want "
                                       << (worst >= 0 ? want[worst] : 0.0) << "), max |want| " << max_want;
}

/// Runs p on the GPU and compares with the CPU backend.
inline Result check_against_cpu(Problem p) {
  avoid_uskd_near_ties(p);
  SCOPED_TRACE(describe(p));
  const Reference ref = cpu_reference(p);
  const Result r = fkcuda::run(p);
  EXPECT_TRUE(r.error.empty()) << r.error;
  EXPECT_EQ(r.status, ref.status) << fusedkd::status_name(r.status) << " vs CPU " << fusedkd::status_name(ref.status);
  if (ref.status != Status::kSuccess || r.status != Status::kSuccess) return r;
  EXPECT_EQ(r.check, Status::kSuccess) << fusedkd::status_name(r.check);
  double loss_rtol = 0, grad_rtol = 0;
  tolerances(p.dtype, loss_rtol, grad_rtol);
  EXPECT_EQ(r.loss.size(), ref.loss.size());
  for (size_t k = 0; k < r.loss.size() && k < ref.loss.size(); ++k) {
    EXPECT_LE(std::fabs(r.loss[k] - ref.loss[k]), loss_rtol * std::max(std::fabs(ref.loss[k]), 1.0))
        << "loss[" << k << "]: got " << r.loss[k] << ", want " << ref.loss[k];
  }
  if (p.want_grad) {
    expect_grad_close(p, r.grad_student, ref.gs, p.student, grad_rtol, "grad_student");
    if (p.loss == Loss::kUskd) expect_grad_close(p, r.grad_weak, ref.gw, p.other, grad_rtol, "grad_weak");
  }
  return r;
}

inline bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

}  // namespace cuda_test
