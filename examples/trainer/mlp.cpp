// mlp.cpp — forward and backward with cblas_sgemm.
#include "mlp.hpp"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace trainer {

Linear::Linear(int64_t in_, int64_t out_, Rng& rng)
    : in(in_),
      out(out_),
      w(in_ * out_),
      b(out_, 0.0f),
      gw(in_ * out_),
      gb(out_),
      vw(in_ * out_, 0.0f),
      vb(out_, 0.0f) {
  const double std_dev = std::sqrt(2.0 / double(in));
  for (float& v : w) v = float(rng.normal() * std_dev);
}

void Linear::forward(const float* x, int64_t batch, float* y) const {
  for (int64_t r = 0; r < batch; ++r) std::memcpy(y + r * out, b.data(), sizeof(float) * out);
  // y[B, out] += x[B, in] * W[in, out]
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(batch), int(out), int(in), 1.0f, x,
              int(in), w.data(), int(out), 1.0f, y, int(out));
}

void Linear::backward(const float* x, const float* dy, int64_t batch, float* dx) {
  // gW[in, out] = x^T[in, B] * dy[B, out]
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(in), int(out), int(batch), 1.0f, x,
              int(in), dy, int(out), 0.0f, gw.data(), int(out));
  std::fill(gb.begin(), gb.end(), 0.0f);
  for (int64_t r = 0; r < batch; ++r) {
    const float* row = dy + r * out;
    for (int64_t j = 0; j < out; ++j) gb[j] += row[j];
  }
  if (dx) {
    // dx[B, in] = dy[B, out] * W^T[out, in]
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(batch), int(in), int(out), 1.0f, dy,
                int(out), w.data(), int(out), 0.0f, dx, int(in));
  }
}

void Linear::sgd_step(float lr, float momentum, float weight_decay) {
  for (size_t i = 0; i < w.size(); ++i) {
    vw[i] = momentum * vw[i] + gw[i] + weight_decay * w[i];
    w[i] -= lr * vw[i];
  }
  for (size_t i = 0; i < b.size(); ++i) {
    vb[i] = momentum * vb[i] + gb[i];
    b[i] -= lr * vb[i];
  }
}

double Linear::grad_sq() const {
  double s = 0;
  for (float g : gw) s += double(g) * g;
  for (float g : gb) s += double(g) * g;
  return s;
}

void Linear::scale_grad(float f) {
  for (float& g : gw) g *= f;
  for (float& g : gb) g *= f;
}

Mlp::Mlp(const std::vector<int64_t>& sizes, Rng& rng) : sizes_(sizes) {
  for (size_t i = 0; i + 1 < sizes.size(); ++i) layers_.emplace_back(sizes[i], sizes[i + 1], rng);
  acts_.resize(sizes.size());
  grads_.resize(sizes.size());
}

int64_t Mlp::num_params() const {
  int64_t n = 0;
  for (const Linear& l : layers_) n += l.in * l.out + l.out;
  return n;
}

const float* Mlp::forward(const float* x, int64_t batch) {
  batch_ = batch;
  acts_[0].assign(x, x + batch * sizes_[0]);
  for (size_t i = 0; i < layers_.size(); ++i) {
    std::vector<float>& y = acts_[i + 1];
    y.resize(size_t(batch * sizes_[i + 1]));
    layers_[i].forward(acts_[i].data(), batch, y.data());
    if (i + 1 < layers_.size()) {
      for (float& v : y) v = v > 0.0f ? v : 0.0f;  // ReLU on hidden layers
    }
  }
  return acts_.back().data();
}

void Mlp::backward(const float* grad_logits, const float* extra_hidden0) {
  const size_t L = layers_.size();
  grads_[L].assign(grad_logits, grad_logits + batch_ * sizes_[L]);
  for (size_t i = L; i-- > 0;) {
    // grads_[i + 1] is dL/d(output of layer i); for hidden layers it is taken through the ReLU.
    std::vector<float>& dy = grads_[i + 1];
    if (i + 1 < L) {
      if (i == 0 && extra_hidden0) {
        for (size_t k = 0; k < dy.size(); ++k) dy[k] += extra_hidden0[k];
      }
      const std::vector<float>& y = acts_[i + 1];
      for (size_t k = 0; k < dy.size(); ++k) dy[k] = y[k] > 0.0f ? dy[k] : 0.0f;
    }
    float* dx = nullptr;
    if (i > 0) {
      grads_[i].resize(size_t(batch_ * sizes_[i]));
      dx = grads_[i].data();
    }
    layers_[i].backward(acts_[i].data(), dy.data(), batch_, dx);
  }
}

void Mlp::sgd_step(const SgdConfig& cfg, float lr) {
  for (Linear& l : layers_) l.sgd_step(lr, cfg.momentum, cfg.weight_decay);
}

double Mlp::grad_sq() const {
  double s = 0;
  for (const Linear& l : layers_) s += l.grad_sq();
  return s;
}

void Mlp::scale_grad(float f) {
  for (Linear& l : layers_) l.scale_grad(f);
}

std::vector<float> predict_logits(Mlp& net, const float* x, int64_t n, int64_t batch) {
  const int64_t c = net.out_dim();
  std::vector<float> out(size_t(n * c));
  for (int64_t s = 0; s < n; s += batch) {
    const int64_t b = std::min(batch, n - s);
    const float* logits = net.forward(x + s * net.in_dim(), b);
    std::memcpy(out.data() + s * c, logits, sizeof(float) * size_t(b * c));
  }
  return out;
}

int64_t count_correct(const float* logits, const int32_t* labels, int64_t n, int64_t c) {
  int64_t correct = 0;
  for (int64_t r = 0; r < n; ++r) {
    const float* row = logits + r * c;
    const int64_t pred = std::max_element(row, row + c) - row;  // first maximum
    correct += pred == labels[r];
  }
  return correct;
}

double accuracy(const float* logits, const int32_t* labels, int64_t n, int64_t c) {
  return n == 0 ? 0.0 : double(count_correct(logits, labels, n, c)) / double(n);
}

}  // namespace trainer
