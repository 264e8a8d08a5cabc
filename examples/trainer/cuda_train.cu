// cuda_train.cu — `fusedkd-train --device cuda`: train_run on the GPU. The network is the CPU
// path's MLP (same sizes, the same initial weights copied from a host Mlp built from the same
// seed, the same batch order, schedule and clipping); its layers are cuBLAS sgemm calls plus a few
// small kernels (bias, ReLU, column sums, SGD), and the loss is one fusedkd::cuda call per batch
// whose gradient goes straight into the backward pass, as on the CPU. Everything stays on the
// device but the batch's label/order indices (uploaded per epoch), the running statistics and
// the clipping norm (one small copy per step).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "fusedkd/cuda.cuh"
#include "progress.hpp"
#include "train.hpp"

namespace trainer {

bool cuda_available() { return true; }

namespace {

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    throw std::runtime_error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(e));
  }
}

void blas_check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    throw std::runtime_error(std::string("cuBLAS: ") + what + " failed (status " +
                             std::to_string(int(s)) + ")");
  }
}

void loss_check(fusedkd::Status s, const char* call) {
  if (s != fusedkd::Status::kSuccess) {
    throw std::runtime_error(std::string("fusedkd::cuda::") + call +
                             " failed: " + fusedkd::status_string(s));
  }
}

/// A device array that frees itself.
template <typename T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  Dev() = default;
  explicit Dev(size_t count) { resize(count); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  ~Dev() {
    if (p) cudaFree(p);
  }
  void resize(size_t count) {
    if (count <= n) return;
    if (p) cudaFree(p);
    p = nullptr;
    cuda_check(cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(T)), "cudaMalloc");
    n = count;
  }
  void upload(const T* h, size_t count) {
    resize(count);
    cuda_check(cudaMemcpy(p, h, count * sizeof(T), cudaMemcpyHostToDevice), "upload");
  }
  void zero(size_t count) {
    resize(count);
    cuda_check(cudaMemset(p, 0, count * sizeof(T)), "memset");
  }
};

template <typename T>
std::vector<T> download(const T* d, size_t count) {
  std::vector<T> h(count);
  cuda_check(cudaMemcpy(h.data(), d, count * sizeof(T), cudaMemcpyDeviceToHost), "download");
  return h;
}

constexpr int kThreads = 256;
int blocks_for(int64_t n) { return int(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535)); }

/// y[r, j] += b[j], then ReLU when `relu`.
__global__ void bias_act(float* y, const float* b, int64_t rows, int64_t cols, bool relu) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < rows * cols;
       k += int64_t(gridDim.x) * blockDim.x) {
    const float v = y[k] + b[k % cols];
    y[k] = relu ? fmaxf(v, 0.0f) : v;
  }
}

/// dy = (dy + extra) * (y > 0): the gradient through a hidden layer's ReLU (extra may be null).
__global__ void relu_back(float* dy, const float* extra, const float* y, int64_t n) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x) {
    const float g = dy[k] + (extra ? extra[k] : 0.0f);
    dy[k] = y[k] > 0.0f ? g : 0.0f;
  }
}

/// gb[j] = sum over rows of dy[r, j], in row order (one thread per column).
__global__ void column_sums(const float* dy, float* gb, int64_t rows, int64_t cols) {
  const int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (j >= cols) return;
  float s = 0.0f;
  for (int64_t r = 0; r < rows; ++r) s += dy[r * cols + j];
  gb[j] = s;
}

/// v = momentum * v + g + wd * w; w -= lr * v.
__global__ void sgd(float* w, const float* g, float* v, int64_t n, float lr, float momentum,
                    float wd) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x) {
    v[k] = momentum * v[k] + g[k] + wd * w[k];
    w[k] -= lr * v[k];
  }
}

/// dst[r, :] = src[idx[r], :].
template <typename T>
__global__ void gather_rows(T* dst, const T* src, const int64_t* idx, int64_t rows, int64_t cols) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < rows * cols;
       k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = k / cols, j = k % cols;
    dst[k] = src[idx[r] * cols + j];
  }
}

/// A Linear layer on the device: W [in, out] row-major, as on the host.
struct GpuLinear {
  int64_t in = 0, out = 0;
  Dev<float> w, b, gw, gb, vw, vb;

  void init(const Linear& h) {
    in = h.in;
    out = h.out;
    w.upload(h.w.data(), h.w.size());
    b.upload(h.b.data(), h.b.size());
    gw.zero(h.w.size());
    gb.zero(h.b.size());
    vw.zero(h.w.size());
    vb.zero(h.b.size());
  }

  // Row-major y[B, out] = x[B, in] W[in, out] is column-major y^T = W^T x^T.
  void forward(cublasHandle_t h, const float* x, int64_t batch, float* y, bool relu) const {
    const float one = 1.0f, zero = 0.0f;
    blas_check(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, int(out), int(batch), int(in), &one, w.p,
                           int(out), x, int(in), &zero, y, int(out)),
               "sgemm forward");
    bias_act<<<blocks_for(batch * out), kThreads>>>(y, b.p, batch, out, relu);
  }

  // gW[in, out] = x^T dy (column-major gW^T = dy^T x); dx[B, in] = dy W^T (dx^T = W dy^T).
  void backward(cublasHandle_t h, const float* x, const float* dy, int64_t batch, float* dx) {
    const float one = 1.0f, zero = 0.0f;
    blas_check(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_T, int(out), int(in), int(batch), &one, dy,
                           int(out), x, int(in), &zero, gw.p, int(out)),
               "sgemm weight gradient");
    column_sums<<<int((out + kThreads - 1) / kThreads), kThreads>>>(dy, gb.p, batch, out);
    if (dx) {
      blas_check(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, int(in), int(batch), int(out), &one, w.p,
                             int(out), dy, int(out), &zero, dx, int(in)),
                 "sgemm input gradient");
    }
  }

  double grad_sq(cublasHandle_t h) const {
    float a = 0, c = 0;
    blas_check(cublasSnrm2(h, int(in * out), gw.p, 1, &a), "snrm2");
    blas_check(cublasSnrm2(h, int(out), gb.p, 1, &c), "snrm2");
    return double(a) * a + double(c) * c;
  }

  void scale_grad(cublasHandle_t h, float f) {
    blas_check(cublasSscal(h, int(in * out), &f, gw.p, 1), "sscal");
    blas_check(cublasSscal(h, int(out), &f, gb.p, 1), "sscal");
  }

  void step(float lr, float momentum, float wd) {
    sgd<<<blocks_for(in * out), kThreads>>>(w.p, gw.p, vw.p, in * out, lr, momentum, wd);
    sgd<<<blocks_for(out), kThreads>>>(b.p, gb.p, vb.p, out, lr, momentum, 0.0f);
  }

  void to_host(Linear& h) const {
    h.w = download(w.p, size_t(in * out));
    h.b = download(b.p, size_t(out));
  }
};

/// The MLP on the device: ReLU between layers, activations kept for backward.
struct GpuMlp {
  std::vector<int64_t> sizes;
  std::vector<GpuLinear> layers;
  std::vector<Dev<float>> acts, grads;  // acts[0] = input, acts[i + 1] = output of layer i
  int64_t batch = 0;

  GpuMlp(const Mlp& h, int64_t max_batch) : sizes(h.sizes()), layers(h.layers().size()) {
    for (size_t i = 0; i < layers.size(); ++i) layers[i].init(h.layers()[i]);
    acts = std::vector<Dev<float>>(sizes.size());
    grads = std::vector<Dev<float>>(sizes.size());
    for (size_t i = 0; i < sizes.size(); ++i) {
      acts[i].resize(size_t(max_batch * sizes[i]));
      grads[i].resize(size_t(max_batch * sizes[i]));
    }
  }

  /// x: device [B, in], copied into acts[0]. Returns the device logits.
  float* forward(cublasHandle_t h, const float* x, int64_t b) {
    batch = b;
    cuda_check(cudaMemcpy(acts[0].p, x, sizeof(float) * size_t(b * sizes[0]),
                          cudaMemcpyDeviceToDevice),
               "input copy");
    for (size_t i = 0; i < layers.size(); ++i) {
      layers[i].forward(h, acts[i].p, b, acts[i + 1].p, i + 1 < layers.size());
    }
    return acts.back().p;
  }

  const float* hidden0() const { return acts[1].p; }

  /// dlogits: device [B, out]; extra0: device dL/d(hidden 0) [B, sizes[1]] or null.
  void backward(cublasHandle_t h, const float* dlogits, const float* extra0) {
    const size_t L = layers.size();
    const float* dy = dlogits;
    for (size_t i = L; i-- > 0;) {
      float* dyw = nullptr;
      if (i + 1 < L) {
        dyw = grads[i + 1].p;
        relu_back<<<blocks_for(batch * sizes[i + 1]), kThreads>>>(
            dyw, i == 0 ? extra0 : nullptr, acts[i + 1].p, batch * sizes[i + 1]);
        dy = dyw;
      }
      layers[i].backward(h, acts[i].p, dy, batch, i > 0 ? grads[i].p : nullptr);
      if (i > 0) dy = grads[i].p;
    }
  }

  double grad_sq(cublasHandle_t h) const {
    double s = 0;
    for (const GpuLinear& l : layers) s += l.grad_sq(h);
    return s;
  }
  void scale_grad(cublasHandle_t h, float f) {
    for (GpuLinear& l : layers) l.scale_grad(h, f);
  }
  void step(const SgdConfig& cfg, float lr) {
    for (GpuLinear& l : layers) l.step(lr, cfg.momentum, cfg.weight_decay);
  }
  void to_host(Mlp& h) const {
    for (size_t i = 0; i < layers.size(); ++i) layers[i].to_host(h.layers()[i]);
  }
};

/// Test accuracy of the device network on a device copy of the test images.
double test_accuracy(cublasHandle_t h, GpuMlp& net, const Dev<float>& x, const Dataset& test,
                     int64_t max_batch) {
  const int64_t c = kNumClasses;
  int64_t correct = 0;
  for (int64_t s = 0; s < test.n; s += max_batch) {
    const int64_t b = std::min(max_batch, test.n - s);
    const float* logits = net.forward(h, x.p + s * test.dim, b);
    const std::vector<float> hl = download(logits, size_t(b * c));
    correct += count_correct(hl.data(), test.y.data() + s, b, c);
  }
  return test.n == 0 ? 0.0 : double(correct) / double(test.n);
}

struct Blas {
  cublasHandle_t h = nullptr;
  Blas() {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
      throw std::runtime_error("--device cuda: no CUDA device is visible");
    }
    blas_check(cublasCreate(&h), "cublasCreate");
    blas_check(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST), "pointer mode");
  }
  ~Blas() {
    if (h) cublasDestroy(h);
  }
};

}  // namespace

RunResult train_run_cuda(Method method, const std::vector<int64_t>& sizes, const TrainConfig& cfg,
                         const RunInputs& in, uint64_t seed, uint64_t stream,
                         const std::string& label, bool tty, Mlp* net_out) {
  const Dataset& train = *in.train;
  const Dataset& test = *in.test;
  const int64_t n = train.n, dim = train.dim, C = kNumClasses;
  const bool needs_teacher = uses_teacher(method, in);
  // The same random streams as train_run: the host network gives the initial weights.
  RunStreams rng(seed, stream);
  Mlp host(sizes, rng.init);
  Linear host_weak;
  if (method == Method::kUSKD) host_weak = Linear(sizes[1], C, rng.weak);

  const int64_t B = cfg.batch_size;
  Blas blas;
  cublasHandle_t h = blas.h;
  GpuMlp net(host, std::max<int64_t>(B, 500));
  GpuLinear weak;
  if (method == Method::kUSKD) weak.init(host_weak);

  // The data, once.
  Dev<float> x_train, x_test, teacher, xb, tb, dz, wz, dw, dh0;
  Dev<int32_t> y_train, yb;
  Dev<int64_t> idx;
  x_train.upload(train.x.data(), train.x.size());
  x_test.upload(test.x.data(), test.x.size());
  y_train.upload(train.y.data(), train.y.size());
  if (needs_teacher) teacher.upload(in.teacher_logits->data(), in.teacher_logits->size());
  xb.resize(size_t(B * dim));
  tb.resize(size_t(B * C));
  dz.resize(size_t(B * C));
  wz.resize(size_t(B * C));
  dw.resize(size_t(B * C));
  dh0.resize(size_t(B * sizes[1]));
  yb.resize(size_t(B));
  idx.resize(size_t(n));
  Dev<float> loss_d(1);
  // One workspace for every loss: the largest size any of them asks for at this shape.
  size_t ws_bytes = std::max({fusedkd::cuda::kd_workspace_size(B, C),
                              fusedkd::cuda::dkd_workspace_size(B, C),
                              fusedkd::cuda::nkd_workspace_size(B, C, fusedkd::Labels::Kind::kIndex32, cfg.nkd),
                              fusedkd::cuda::uskd_workspace_size(B, C, fusedkd::Labels::Kind::kIndex32, cfg.uskd)});
  Dev<unsigned char> ws(ws_bytes);

  const int64_t batches = (n + B - 1) / B;
  const int64_t total_steps = batches * cfg.epochs;
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  RunResult result;
  result.method = method_name(method);
  result.seed = seed;
  Progress progress(label, cfg.epochs, total_steps, tty);

  int64_t step = 0;
  for (int epoch = 1; epoch <= cfg.epochs; ++epoch) {
    rng.order.shuffle(order);
    idx.upload(order.data(), order.size());
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    const int warmup = std::max(1, cfg.epochs / 4);
    const double ramp = std::min(1.0, double(epoch) / warmup);
    for (int64_t b0 = 0; b0 < n; b0 += B) {
      const int64_t bs = std::min(B, n - b0);
      const int64_t* bidx = idx.p + b0;
      gather_rows<<<blocks_for(bs * dim), kThreads>>>(xb.p, x_train.p, bidx, bs, dim);
      gather_rows<<<blocks_for(bs), kThreads>>>(yb.p, y_train.p, bidx, bs, int64_t(1));
      if (needs_teacher) gather_rows<<<blocks_for(bs * C), kThreads>>>(tb.p, teacher.p, bidx, bs, C);
      const float* logits = net.forward(h, xb.p, bs);

      const auto z = fusedkd::matrix<const float>(logits, bs, C);
      const auto t = fusedkd::matrix<const float>(tb.p, bs, C);
      const auto grad = fusedkd::matrix(dz.p, bs, C);
      const fusedkd::Labels labels = fusedkd::Labels::index(yb.p);
      switch (method) {
        case Method::kCE: {
          fusedkd::KdOptions o;
          o.weight = 0.0;
          o.ce_weight = 1.0;
          loss_check(fusedkd::cuda::kd(z, z, labels, o, loss_d.p, grad, ws.p, ws_bytes, nullptr), "kd");
          break;
        }
        case Method::kKD: {
          fusedkd::KdOptions o;
          o.ce_weight = 1.0;
          loss_check(fusedkd::cuda::kd(z, t, labels, o, loss_d.p, grad, ws.p, ws_bytes, nullptr), "kd");
          break;
        }
        case Method::kDKD: {
          fusedkd::DkdOptions o;
          o.alpha *= ramp;
          o.beta *= ramp;
          o.ce_weight = 1.0;
          loss_check(fusedkd::cuda::dkd(z, t, labels, o, loss_d.p, grad, ws.p, ws_bytes, nullptr), "dkd");
          break;
        }
        case Method::kNKD: {
          fusedkd::NkdOptions o = cfg.nkd;
          o.ce_weight = 1.0;
          loss_check(fusedkd::cuda::nkd(z, t, labels, o, loss_d.p, grad, ws.p, ws_bytes, nullptr), "nkd");
          break;
        }
        case Method::kUSKD: {
          weak.forward(h, net.hidden0(), bs, wz.p, /*relu=*/false);
          fusedkd::UskdOptions o = cfg.uskd;
          o.ce_weight = 1.0;
          loss_check(fusedkd::cuda::uskd(z, fusedkd::matrix<const float>(wz.p, bs, C), labels, o,
                                         loss_d.p, grad, fusedkd::matrix(dw.p, bs, C), ws.p,
                                         ws_bytes, nullptr),
                     "uskd");
          weak.backward(h, net.hidden0(), dw.p, bs, dh0.p);
          break;
        }
      }
      // The labels were checked on the host side of the data (Fashion-MNIST's 0..9); a bad one
      // would show as a NaN loss here.
      const std::vector<float> hl = download(logits, size_t(bs * C));
      std::vector<int32_t> hy(static_cast<size_t>(bs));
      for (int64_t r = 0; r < bs; ++r) hy[size_t(r)] = train.y[size_t(order[size_t(b0 + r)])];
      correct += count_correct(hl.data(), hy.data(), bs, C);
      loss_sum += double(download(loss_d.p, 1)[0]) * double(bs);
      seen += bs;

      net.backward(h, dz.p, method == Method::kUSKD ? dh0.p : nullptr);
      if (cfg.sgd.clip > 0) {
        const double norm = std::sqrt(net.grad_sq(h) + (method == Method::kUSKD ? weak.grad_sq(h) : 0.0));
        if (norm > cfg.sgd.clip) {
          const float f = float(cfg.sgd.clip / norm);
          net.scale_grad(h, f);
          if (method == Method::kUSKD) weak.scale_grad(h, f);
        }
      }
      const float lr = float(0.5 * cfg.sgd.lr *
                             (1.0 + std::cos(3.141592653589793 * double(step) / double(total_steps))));
      net.step(cfg.sgd, lr);
      if (method == Method::kUSKD) weak.step(lr, cfg.sgd.momentum, cfg.sgd.weight_decay);
      cuda_check(cudaGetLastError(), "kernel launch");
      ++step;
      progress.step(step, epoch, loss_sum / double(seen), double(correct) / double(seen));
    }
    EpochStats s;
    s.train_loss = loss_sum / double(seen);
    s.train_acc = double(correct) / double(seen);
    s.test_acc = test_accuracy(h, net, x_test, test, std::max<int64_t>(B, 500));
    cuda_check(cudaDeviceSynchronize(), "epoch");
    s.seconds = progress.elapsed();
    result.epochs.push_back(s);
    progress.epoch_end(epoch, s.train_loss, s.train_acc, s.test_acc);
  }
  progress.finish(result.final_test_acc());
  if (net_out) {
    net.to_host(host);
    *net_out = std::move(host);
  }
  return result;
}

}  // namespace trainer
