// train.cpp — minibatch SGD where the loss and dL/dlogits come from fusedkd::cpu.
#include "train.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <numeric>
#include <stdexcept>

#include "fusedkd/fusedkd.hpp"
#include "progress.hpp"

namespace trainer {

const char* method_name(Method m) {
  switch (m) {
    case Method::kCE: return "CE";
    case Method::kKD: return "KD";
    case Method::kDKD: return "DKD";
    case Method::kNKD: return "NKD";
    case Method::kUSKD: return "USKD";
  }
  return "?";
}

const char* method_setting(Method m) {
  switch (m) {
    case Method::kCE: return "cpu::kd, weight 0, ce_weight 1 (= cross-entropy)";
    case Method::kKD: return "cpu::kd, T 4, weight 1, ce_weight 1";
    case Method::kDKD:
      return "cpu::dkd, T 4, alpha 1, beta 8 (ramped up over the first quarter), ce_weight 1";
    case Method::kNKD: return "cpu::nkd, NkdOptions::cifar100() (lambda 3, gamma 3.5), ce_weight 1";
    case Method::kUSKD:
      return "cpu::uskd, UskdOptions::cifar100() (alpha 0.1, beta 0.1, mu 0.1), ce_weight 1";
  }
  return "?";
}

bool parse_method(const std::string& s, Method* m) {
  std::string u;
  for (char c : s) u += char(std::toupper(static_cast<unsigned char>(c)));
  for (Method k : {Method::kCE, Method::kKD, Method::kDKD, Method::kNKD, Method::kUSKD}) {
    if (u == method_name(k)) {
      *m = k;
      return true;
    }
  }
  return false;
}

namespace {

void check(fusedkd::Status s, const char* call) {
  if (s != fusedkd::Status::kSuccess) {
    throw std::runtime_error(std::string("fusedkd::cpu::") + call +
                             " failed: " + fusedkd::status_string(s));
  }
}

using fusedkd::Labels;
using fusedkd::matrix;

}  // namespace

bool uses_teacher(Method method, const RunInputs& in) {
  const bool needs =
      method == Method::kKD || method == Method::kDKD || method == Method::kNKD;
  if (needs && (!in.teacher_logits || in.train == nullptr ||
                int64_t(in.teacher_logits->size()) != in.train->n * kNumClasses)) {
    throw std::runtime_error(std::string(method_name(method)) + " needs the teacher's logits");
  }
  return needs;
}

RunResult train_run(Method method, const std::vector<int64_t>& sizes, const TrainConfig& cfg,
                    const RunInputs& in, uint64_t seed, uint64_t stream, const std::string& label,
                    bool tty, Mlp* net_out) {
  const Dataset& train = *in.train;
  const Dataset& test = *in.test;
  const int64_t n = train.n, dim = train.dim, C = kNumClasses;
  const bool needs_teacher = uses_teacher(method, in);

  RunStreams rng(seed, stream);
  Mlp net(sizes, rng.init);
  // USKD's weak classifier: a linear layer on the first hidden layer's activations.
  Linear weak;
  if (method == Method::kUSKD) weak = Linear(sizes[1], C, rng.weak);

  const int64_t B = cfg.batch_size;
  const int64_t batches = (n + B - 1) / B;
  const int64_t total_steps = batches * cfg.epochs;

  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::vector<float> xb(size_t(B * dim)), tb(size_t(B * C)), dz(size_t(B * C));
  std::vector<float> wz(size_t(B * C)), dw(size_t(B * C)), dh0;
  std::vector<int32_t> yb(static_cast<size_t>(B));

  RunResult result;
  result.method = method_name(method);
  result.seed = seed;
  Progress progress(label, cfg.epochs, total_steps, tty);

  int64_t step = 0;
  for (int epoch = 1; epoch <= cfg.epochs; ++epoch) {
    rng.order.shuffle(order);
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;

    // DKD's warm-up (as in mdistiller): its distillation weights ramp up linearly over the
    // first epochs, because the full-strength NCKD term (beta 8) swamps the random start.
    const int warmup = std::max(1, cfg.epochs / 4);
    const double ramp = std::min(1.0, double(epoch) / warmup);

    for (int64_t b0 = 0; b0 < n; b0 += B) {
      const int64_t bs = std::min(B, n - b0);
      for (int64_t r = 0; r < bs; ++r) {
        const int64_t i = order[size_t(b0 + r)];
        std::memcpy(&xb[size_t(r * dim)], &train.x[size_t(i * dim)], sizeof(float) * size_t(dim));
        yb[size_t(r)] = train.y[size_t(i)];
        if (needs_teacher) {
          std::memcpy(&tb[size_t(r * C)], &(*in.teacher_logits)[size_t(i * C)], sizeof(float) * C);
        }
      }
      const float* logits = net.forward(xb.data(), bs);

      // ---- the loss: one fusedkd call gives the batch loss and dL/dlogits ----------------------
      const auto z = matrix(logits, bs, C);                  // student logits [bs, 10]
      const auto t = matrix<const float>(tb.data(), bs, C);  // teacher logits [bs, 10]
      const auto grad = matrix(dz.data(), bs, C);            // dL/dz, written by fusedkd
      const Labels labels = Labels::index(yb.data());
      float loss = 0;
      switch (method) {
        case Method::kCE: {  // plain cross-entropy: KD with no KL term and ce_weight 1
          fusedkd::KdOptions o;
          o.weight = 0.0;
          o.ce_weight = 1.0;
          check(fusedkd::cpu::kd(z, z, labels, o, &loss, grad), "kd");
          break;
        }
        case Method::kKD: {
          fusedkd::KdOptions o;  // T = 4, weight 1
          o.ce_weight = 1.0;
          check(fusedkd::cpu::kd(z, t, labels, o, &loss, grad), "kd");
          break;
        }
        case Method::kDKD: {
          fusedkd::DkdOptions o;  // T = 4, alpha = 1, beta = 8
          o.alpha *= ramp;
          o.beta *= ramp;
          o.ce_weight = 1.0;
          check(fusedkd::cpu::dkd(z, t, labels, o, &loss, grad), "dkd");
          break;
        }
        case Method::kNKD: {
          fusedkd::NkdOptions o = cfg.nkd;  // cifar100(): lambda = 3, gamma = 3.5
          o.ce_weight = 1.0;
          check(fusedkd::cpu::nkd(z, t, labels, o, &loss, grad), "nkd");
          break;
        }
        case Method::kUSKD: {
          // No teacher: the weak head reads the first hidden layer; fusedkd returns dL/dw too.
          const float* h0 = net.hidden(0);
          weak.forward(h0, bs, wz.data());
          fusedkd::UskdOptions o = cfg.uskd;  // cifar100(): alpha 0.1, beta 0.1, mu 0.1
          o.ce_weight = 1.0;
          check(fusedkd::cpu::uskd(z, matrix<const float>(wz.data(), bs, C), labels, o, &loss, grad,
                                   matrix(dw.data(), bs, C)),
                "uskd");
          dh0.resize(size_t(bs * sizes[1]));
          weak.backward(h0, dw.data(), bs, dh0.data());  // dL/dh0 through the weak head
          break;
        }
      }

      // Running statistics (before the step, on the logits the loss saw).
      loss_sum += double(loss) * double(bs);
      correct += count_correct(logits, yb.data(), bs, C);
      seen += bs;

      net.backward(dz.data(), method == Method::kUSKD ? dh0.data() : nullptr);
      if (cfg.sgd.clip > 0) {
        const double norm =
            std::sqrt(net.grad_sq() + (method == Method::kUSKD ? weak.grad_sq() : 0.0));
        if (norm > cfg.sgd.clip) {
          const float f = float(cfg.sgd.clip / norm);
          net.scale_grad(f);
          weak.scale_grad(f);
        }
      }
      const float lr =
          float(0.5 * cfg.sgd.lr *
                (1.0 + std::cos(3.141592653589793 * double(step) / double(total_steps))));
      net.sgd_step(cfg.sgd, lr);
      if (method == Method::kUSKD) weak.sgd_step(lr, cfg.sgd.momentum, cfg.sgd.weight_decay);
      ++step;
      progress.step(step, epoch, loss_sum / double(seen), double(correct) / double(seen));
    }

    const std::vector<float> test_logits = predict_logits(net, test.x.data(), test.n);
    EpochStats s;
    s.train_loss = loss_sum / double(seen);
    s.train_acc = double(correct) / double(seen);
    s.test_acc = accuracy(test_logits.data(), test.y.data(), test.n, C);
    s.seconds = progress.elapsed();
    result.epochs.push_back(s);
    progress.epoch_end(epoch, s.train_loss, s.train_acc, s.test_acc);
  }
  progress.finish(result.final_test_acc());
  if (net_out) *net_out = std::move(net);
  return result;
}

#if !defined(FUSEDKD_TRAINER_CUDA)
bool cuda_available() { return false; }

RunResult train_run_cuda(Method, const std::vector<int64_t>&, const TrainConfig&, const RunInputs&,
                         uint64_t, uint64_t, const std::string&, bool, Mlp*) {
  throw std::runtime_error(
      "this fusedkd-train was built without CUDA (it needs nvcc and cuBLAS at configure time)");
}
#endif

}  // namespace trainer
