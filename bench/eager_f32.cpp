// bench/eager_f32.cpp — the released PyTorch losses in LibTorch, float32, eager forward plus
// autograd backward (see eager_f32.hpp). Python of the released code in the comments.
#include "eager_f32.hpp"

#include <torch/torch.h>

#include "released.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <vector>

#if defined(FUSEDKD_BENCH_HAVE_REFERENCE)
#include "reference.hpp"
#endif

namespace bench_eager {
namespace {

using released::dkd_loss;
using released::kd_loss;
using released::nkd_loss;
using released::uskd_loss;
using torch::Tensor;

const auto kF32 = torch::TensorOptions().dtype(torch::kFloat32);
const auto kI64 = torch::TensorOptions().dtype(torch::kInt64);

class TorchProblem final : public Problem {
 public:
  TorchProblem(Loss loss, const Options& o, const float* a, const float* b, const int64_t* labels,
               int64_t n, int64_t c)
      : loss_(loss), o_(o) {
    a_ = torch::from_blob(const_cast<float*>(a), {n, c}, kF32).clone();
    b_ = torch::from_blob(const_cast<float*>(b), {n, c}, kF32).clone();
    labels_ = torch::from_blob(const_cast<int64_t*>(labels), {n}, kI64).clone();
    a_.requires_grad_(true);
    if (loss_ == Loss::kUskd) {
      b_.requires_grad_(true);
      zipf_ = 1.0 / torch::arange(1, c + 1, kF32);
    }
  }

  float run() override {
    Tensor loss;
    switch (loss_) {
      case Loss::kNkd: loss = nkd_loss(a_, b_, labels_, o_.nkd.temperature, o_.nkd.gamma); break;
      case Loss::kKd: loss = kd_loss(a_, b_, o_.kd.temperature, o_.kd.weight); break;
      case Loss::kDkd:
        loss = dkd_loss(a_, b_, labels_, o_.dkd.alpha, o_.dkd.beta, o_.dkd.temperature);
        break;
      case Loss::kUskd:
        loss = uskd_loss(a_, b_, labels_, zipf_, o_.uskd.alpha, o_.uskd.beta, o_.uskd.mu,
                         o_.uskd.smoothing);
        break;
    }
    if (loss_ == Loss::kUskd) {
      grads_ = torch::autograd::grad({loss}, {a_, b_});
    } else {
      grads_ = torch::autograd::grad({loss}, {a_});
    }
    return loss.item<float>();
  }

  void gradients(float* grad_a, float* grad_b) const override {
    const Tensor ga = grads_.at(0).contiguous();
    std::memcpy(grad_a, ga.data_ptr<float>(), sizeof(float) * ga.numel());
    if (grad_b != nullptr && grads_.size() > 1) {
      const Tensor gb = grads_.at(1).contiguous();
      std::memcpy(grad_b, gb.data_ptr<float>(), sizeof(float) * gb.numel());
    }
  }

  void release() override { grads_.clear(); }

 private:
  Loss loss_;
  Options o_;
  Tensor a_, b_, labels_, zipf_;
  std::vector<Tensor> grads_;
};

}  // namespace

bool available() { return true; }

void set_threads(int threads) { torch::set_num_threads(threads); }

std::unique_ptr<Problem> make_problem(Loss loss, const Options& options, const float* a,
                                      const float* b, const int64_t* labels, int64_t n, int64_t c) {
  return std::make_unique<TorchProblem>(loss, options, a, b, labels, n, c);
}

std::string check_against_reference(Loss loss, const Options& o) {
#if defined(FUSEDKD_BENCH_HAVE_REFERENCE)
  torch::manual_seed(7);
  const int64_t n = 16, c = 37;
  const Tensor a = torch::randn({n, c}, kF32) * 3;
  const Tensor b = torch::randn({n, c}, kF32) * 3;
  const Tensor labels = torch::randint(0, c, {n}, kI64);
  auto p = make_problem(loss, o, a.data_ptr<float>(), b.data_ptr<float>(),
                        labels.data_ptr<int64_t>(), n, c);
  const float eager_loss = p->run();
  std::vector<float> ga(n * c), gb(n * c);
  p->gradients(ga.data(), gb.data());
  ref::Result r;
  switch (loss) {
    case Loss::kNkd: r = ref::nkd(a, b, labels, o.nkd); break;
    case Loss::kKd: r = ref::kd(a, b, Tensor(), o.kd); break;
    case Loss::kDkd: r = ref::dkd(a, b, labels, o.dkd); break;
    case Loss::kUskd: r = ref::uskd(a, b, labels, o.uskd); break;
  }
  const double dl = std::abs(eager_loss - r.loss.item<double>());
  auto max_diff = [&](const std::vector<float>& g, const Tensor& ref_g) {
    const Tensor e = torch::from_blob(const_cast<float*>(g.data()), {n, c}, kF32).to(torch::kFloat64);
    return (e - ref_g).abs().max().item<double>();
  };
  double dg = max_diff(ga, r.grad_student);
  if (loss == Loss::kUskd) dg = std::max(dg, max_diff(gb, r.grad_weak));
  std::ostringstream s;
  s << "eager float32 port vs float64 reference: |dloss| = " << dl << ", max |dgrad| = " << dg;
  return s.str();
#else
  (void)loss;
  (void)o;
  return "";
#endif
}

}  // namespace bench_eager
