// tests/torch_layer_test.cpp — fusedkd/torch.hpp from C++: the autograd functions a LibTorch
// trainer calls (fusedkd::th::nkd, ...) against the float64 LibTorch reference of tests/reference
// (values, and gradients through loss.backward(), per-row upstream gradients for `none`), the
// no-grad path, and bad inputs raising c10::Error. The Python package's tests (python/tests)
// cover the same layer through torch.ops.fusedkd.* with a wider sweep.
#include <gtest/gtest.h>

#include <fusedkd/torch.hpp>

#include "reference/reference.hpp"

namespace {

using torch::Tensor;

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

struct Inputs {
  Tensor z, b, hard, soft;
};

Inputs make(int64_t n, int64_t c, uint64_t seed) {
  torch::manual_seed(seed);
  Inputs in;
  in.z = torch::randn({n, c}, kF64) * 2;
  in.b = torch::randn({n, c}, kF64) * 2;
  in.hard = torch::randint(0, c, {n}, torch::kInt64);
  in.hard.index_put_({0}, -100);  // one ignored row
  // mixup of two one-hots with weights k / 8 (exact in float32, the library's soft-label type)
  const Tensor a = torch::randint(0, c, {n}, torch::kInt64);
  const Tensor b = torch::randint(0, c, {n}, torch::kInt64);
  const Tensor lam = torch::randint(2, 7, {n, 1}, kF64) / 8;
  in.soft = lam * torch::one_hot(a, c).to(torch::kFloat64) +
            (1 - lam) * torch::one_hot(b, c).to(torch::kFloat64);
  return in;
}

template <typename Options>
void set_common(Options* o, fusedkd::Reduction r) {
  o->reduction = r;
  o->ce_weight = 0.25;
}

/// Runs `fused(z, b, labels, options)` with autograd and compares its value and the gradients
/// of sum(loss * w) with the reference's (w: one weight per row for none, 1.5 otherwise).
template <typename Options, typename Fused, typename Ref>
void check(Fused fused, Ref ref, Options o, const Tensor& labels, bool weak_grad) {
  const Inputs in = make(9, 23, 7);
  Tensor z = in.z.clone().requires_grad_(true);
  Tensor b = in.b.clone().requires_grad_(weak_grad);
  const Tensor loss = fused(z, b, labels, o);
  const bool none = o.reduction == fusedkd::Reduction::kNone;
  const Tensor w = none ? torch::linspace(0.5, 2.0, 9, kF64) : torch::full({}, 1.5, kF64);
  (loss * w).sum().backward();

  ref::Result r = ref(in.z, in.b, labels, o);  // grads of the reduced loss (sum of rows for none)
  EXPECT_TRUE(torch::allclose(loss.detach(), r.loss, 1e-9, 1e-12));
  // Each row's gradient comes from that row's loss alone (USKD's batch mean is a constant), so
  // the gradient of sum(loss * w) is the reference's gradient with row i scaled by w_i.
  const Tensor scale = none ? w.unsqueeze(1) : w;
  EXPECT_TRUE(torch::allclose(z.grad(), r.grad_student * scale, 1e-9, 1e-12));
  if (weak_grad) EXPECT_TRUE(torch::allclose(b.grad(), r.grad_weak * scale, 1e-9, 1e-12));
  if (!weak_grad) EXPECT_FALSE(b.grad().defined());
}

class Layer : public ::testing::TestWithParam<std::tuple<fusedkd::Reduction, bool>> {};

TEST_P(Layer, MatchesReference) {
  const fusedkd::Reduction red = std::get<0>(GetParam());
  const Inputs in = make(9, 23, 7);
  const Tensor labels = std::get<1>(GetParam()) ? in.soft : in.hard;
  {
    fusedkd::NkdOptions o = fusedkd::NkdOptions::cifar100();
    set_common(&o, red);
    check([](auto... a) { return fusedkd::th::nkd(a...); }, ref::nkd, o, labels, false);
  }
  {
    fusedkd::KdOptions o;
    set_common(&o, red);
    check([](const Tensor& z, const Tensor& b, const Tensor& y, const fusedkd::KdOptions& opt) {
      return fusedkd::th::kd(z, b, y, opt);
    }, ref::kd, o, labels, false);
  }
  {
    fusedkd::DkdOptions o;
    set_common(&o, red);
    check([](auto... a) { return fusedkd::th::dkd(a...); }, ref::dkd, o, labels, false);
  }
  {
    fusedkd::UskdOptions o = fusedkd::UskdOptions::cifar100();
    set_common(&o, red);
    check([](auto... a) { return fusedkd::th::uskd(a...); }, ref::uskd, o, labels, true);
  }
}

INSTANTIATE_TEST_SUITE_P(All, Layer,
                         ::testing::Combine(::testing::Values(fusedkd::Reduction::kMean,
                                                              fusedkd::Reduction::kSum,
                                                              fusedkd::Reduction::kNone),
                                            ::testing::Bool()));

TEST(LayerNoGrad, NoGraphAndSameValue) {
  const Inputs in = make(5, 11, 3);
  const Tensor z = in.z.clone().requires_grad_(true);
  Tensor loss;
  {
    torch::NoGradGuard ng;
    loss = fusedkd::th::nkd(z, in.b, in.hard);
  }
  EXPECT_FALSE(loss.requires_grad());
  EXPECT_TRUE(torch::allclose(loss, ref::nkd(in.z, in.b, in.hard, {}).loss, 1e-9, 1e-12));
}

TEST(LayerErrors, RaiseC10Error) {
  const Inputs in = make(4, 6, 1);
  const Tensor y = torch::tensor({0, 1, 2, 3}, torch::kInt64);
  EXPECT_THROW(fusedkd::th::nkd(in.z.t(), in.b.t(), torch::arange(6)), c10::Error);
  EXPECT_THROW(fusedkd::th::nkd(in.z, in.b.to(torch::kFloat32), y), c10::Error);
  EXPECT_THROW(fusedkd::th::nkd(in.z, in.b, y.to(torch::kFloat32)), c10::Error);
  EXPECT_THROW(fusedkd::th::nkd(in.z, in.b, torch::tensor({0, 1, 2, 9}, torch::kInt64)), c10::Error);
  fusedkd::NkdOptions scaled;
  scaled.grad_scale = 2.0;
  EXPECT_THROW(fusedkd::th::nkd(in.z, in.b, y, scaled), c10::Error);
  try {
    fusedkd::th::uskd(in.z, in.b, torch::tensor({0, 1, 2, 9}, torch::kInt64));
    FAIL() << "no error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("label_out_of_range"), std::string::npos) << e.what();
  }
}

}  // namespace
