// mlp.hpp — a multi-layer perceptron with ReLU, forward and backward by hand on BLAS (sgemm),
// trained with SGD + momentum. Small on purpose: it is the "trainer" that fusedkd plugs into.
#pragma once

#include <cstdint>
#include <vector>

#include "rng.hpp"

namespace trainer {

/// Fully connected layer y = x W + b, W stored [in, out] row-major.
struct Linear {
  int64_t in = 0, out = 0;
  std::vector<float> w, b;    // parameters
  std::vector<float> gw, gb;  // gradients of the last backward()
  std::vector<float> vw, vb;  // momentum buffers

  Linear() = default;
  /// He (Kaiming) normal initialization, bias 0.
  Linear(int64_t in, int64_t out, Rng& rng);

  /// y[B, out] = x[B, in] W + b.
  void forward(const float* x, int64_t batch, float* y) const;
  /// From dy[B, out] and the layer's input x[B, in]: sets gw, gb; writes dx[B, in] unless null.
  void backward(const float* x, const float* dy, int64_t batch, float* dx);
  /// v = momentum * v + (g + weight_decay * w); w -= lr * v. No weight decay on the bias.
  void sgd_step(float lr, float momentum, float weight_decay);
  /// Sum of squares of gw and gb.
  double grad_sq() const;
  /// Multiplies gw and gb by f.
  void scale_grad(float f);
};

/// SGD hyper-parameters.
struct SgdConfig {
  float lr = 0.05f;
  float momentum = 0.9f;
  float weight_decay = 5e-4f;
  float clip = 0.0f;  ///< clip the global gradient norm to this (0: no clipping)
};

/// Linear layers with ReLU between them: sizes {784, 1024, 1024, 10} is 784-1024-1024-10.
class Mlp {
 public:
  Mlp() = default;
  Mlp(const std::vector<int64_t>& sizes, Rng& rng);

  /// Runs the batch x[B, in] through the net and keeps the activations for backward().
  /// Returns the logits [B, out] (valid until the next forward()).
  const float* forward(const float* x, int64_t batch);

  /// Output of hidden layer `i` (after ReLU) of the last forward(): [B, sizes[i + 1]].
  const float* hidden(int i) const { return acts_[i + 1].data(); }

  /// Backpropagates dL/dlogits [B, out] of the last forward(). `extra_hidden0`, when not null,
  /// is an additional dL/d(hidden(0)) [B, sizes[1]] — the gradient that a side head on the
  /// first hidden layer (USKD's weak classifier) sends back into the network.
  void backward(const float* grad_logits, const float* extra_hidden0 = nullptr);

  void sgd_step(const SgdConfig& cfg, float lr);
  double grad_sq() const;
  void scale_grad(float f);

  int64_t in_dim() const { return sizes_.front(); }
  int64_t out_dim() const { return sizes_.back(); }
  const std::vector<int64_t>& sizes() const { return sizes_; }
  int64_t num_params() const;
  /// The layers (the CUDA path copies its initial weights from them).
  const std::vector<Linear>& layers() const { return layers_; }
  std::vector<Linear>& layers() { return layers_; }

 private:
  std::vector<int64_t> sizes_;
  std::vector<Linear> layers_;
  std::vector<std::vector<float>> acts_;   // acts_[0] = input copy, acts_[i+1] = output of layer i
  std::vector<std::vector<float>> grads_;  // scratch: dL/d(acts_[i])
  int64_t batch_ = 0;
};

/// Logits of a whole dataset in batches (no activations kept beyond one batch).
std::vector<float> predict_logits(Mlp& net, const float* x, int64_t n, int64_t batch = 500);

/// Number of rows of `logits` [n, c] whose argmax (first maximum) equals the label.
int64_t count_correct(const float* logits, const int32_t* labels, int64_t n, int64_t c);

/// Fraction of rows of `logits` [n, c] whose argmax (first maximum) equals the label.
double accuracy(const float* logits, const int32_t* labels, int64_t n, int64_t c);

}  // namespace trainer
