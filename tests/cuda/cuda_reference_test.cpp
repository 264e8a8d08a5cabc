// tests/cuda/cuda_reference_test.cpp — the CUDA backend against the float64 LibTorch reference
// (tests/reference/, a port of the released PyTorch code that shares nothing with the library),
// for every loss and logits type, on shapes that reach every kernel path, C = 128256 included.
// Built when LibTorch is found; every test skips without a CUDA device.
#include <torch/torch.h>

#include "cuda_test_util.hpp"
#include "reference/reference.hpp"

namespace {

using namespace cuda_test;

torch::Tensor logits_tensor(const std::vector<float>& v, int64_t n, int64_t c, int64_t ld) {
  return torch::from_blob(const_cast<float*>(v.data()), {n, c}, {ld, 1}, torch::kFloat32).to(torch::kFloat64);
}

torch::Tensor labels_tensor(const Problem& p) {
  switch (p.label_kind) {
    case LabelKind::kNone: return torch::Tensor();
    case LabelKind::kHard32: return torch::from_blob(const_cast<int32_t*>(p.labels32.data()), {p.n}, torch::kInt32).clone();
    case LabelKind::kHard64: return torch::from_blob(const_cast<int64_t*>(p.labels64.data()), {p.n}, torch::kInt64).clone();
    case LabelKind::kSoft:
      return torch::from_blob(const_cast<float*>(p.soft.data()), {p.n, p.c}, torch::kFloat32).clone();
  }
  return torch::Tensor();
}

void expect_matches_reference(Problem p) {
  avoid_uskd_near_ties(p);
  SCOPED_TRACE(describe(p));
  const int64_t ld = p.stride();
  const torch::Tensor z = logits_tensor(p.student, p.n, p.c, ld), o = logits_tensor(p.other, p.n, p.c, ld);
  const torch::Tensor y = labels_tensor(p);
  ref::Result e;
  switch (p.loss) {
    case Loss::kNkd: e = ref::nkd(z, o, y, p.nkd); break;
    case Loss::kKd: e = ref::kd(z, o, y, p.kd); break;
    case Loss::kDkd: e = ref::dkd(z, o, y, p.dkd); break;
    case Loss::kUskd: e = ref::uskd(z, o, y, p.uskd); break;
  }
  const Result r = fkcuda::run(p);
  ASSERT_TRUE(r.error.empty()) << r.error;
  ASSERT_EQ(r.status, Status::kSuccess) << fusedkd::status_name(r.status);
  EXPECT_EQ(r.check, Status::kSuccess);
  double loss_rtol = 0, grad_rtol = 0;
  tolerances(p.dtype, loss_rtol, grad_rtol);
  const torch::Tensor el = e.loss.reshape({-1}).contiguous();
  ASSERT_EQ(static_cast<size_t>(el.numel()), r.loss.size());
  for (size_t k = 0; k < r.loss.size(); ++k) {
    const double want = el[static_cast<int64_t>(k)].item<double>();
    EXPECT_LE(std::fabs(r.loss[k] - want), loss_rtol * std::max(std::fabs(want), 1.0)) << "loss[" << k << "]";
  }
  const auto grad = [&](const std::vector<float>& got, const torch::Tensor& want, const std::vector<float>& before,
                        const char* name) {
    std::vector<double> w(static_cast<size_t>(p.n * ld), 0.0);
    const torch::Tensor c = want.contiguous();
    const double* d = c.data_ptr<double>();
    for (int64_t i = 0; i < p.n; ++i) {
      for (int64_t j = 0; j < p.c; ++j) w[i * ld + j] = d[i * p.c + j];
    }
    expect_grad_close(p, got, w, before, grad_rtol, name);
  };
  grad(r.grad_student, e.grad_student, p.student, "grad_student");
  if (p.loss == Loss::kUskd) grad(r.grad_weak, e.grad_weak, p.other, "grad_weak");
}

TEST(CudaReference, EveryLossAndDtypeAgainstLibTorch) {
  SKIP_WITHOUT_GPU();
  uint32_t seed = 900;
  for (Loss loss : kLosses) {
    for (DType d : kDTypes) {
      for (const auto& nc : std::vector<std::pair<int64_t, int64_t>>{{3, 10}, {37, 1000}, {5, 1001}, {2, 32000}, {1, 128256}}) {
        expect_matches_reference(make_problem(loss, d, nc.first, nc.second, LabelKind::kHard64, seed++));
        Problem s = make_problem(loss, d, nc.first, nc.second, LabelKind::kSoft, seed++);
        s.common().reduction = fusedkd::Reduction::kNone;
        expect_matches_reference(s);
        if (loss == Loss::kKd) expect_matches_reference(make_problem(loss, d, nc.first, nc.second, LabelKind::kNone, seed++));
      }
    }
  }
}

TEST(CudaReference, OptionPresets) {
  SKIP_WITHOUT_GPU();
  uint32_t seed = 950;
  for (Loss loss : kLosses) {
    for (int64_t c : std::vector<int64_t>{100, 3000}) {
      Problem p = make_problem(loss, DType::kFloat32, 16, c, LabelKind::kHard32, seed++);
      p.nkd = fusedkd::NkdOptions::cifar100();
      p.uskd = fusedkd::UskdOptions::cifar100();
      p.uskd.rank = fusedkd::UskdRank::kPaper;
      p.kd.temperature = 2.0;
      p.dkd.temperature = 2.0, p.dkd.beta = 2.0;
      p.common().ce_weight = 0.5;
      p.common().grad_scale = 3.0;
      p.common().reduction = fusedkd::Reduction::kSum;
      expect_matches_reference(p);
    }
  }
}

}  // namespace
