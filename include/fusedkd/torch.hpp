// fusedkd/torch.hpp — the four losses as LibTorch functions with autograd (an optional layer).
//
// Include this header only where LibTorch is wanted: the rest of fusedkd never includes it.
//
//   at::Tensor loss = fusedkd::th::nkd(student, teacher, labels, fusedkd::NkdOptions{});
//   loss.backward();                       // student.grad = dLoss/dStudent
//
// * Forward calls the fused loss once: it computes the loss and the gradient in the same pass
//   and saves the gradient. Backward only multiplies the saved gradient by the incoming one (a
//   scalar for mean / sum, one value per row for none). When no gradient is needed (no_grad,
//   inputs that do not require grad) the gradient is not computed at all.
// * Teachers and soft labels are constants: they get no gradient. USKD returns gradients for the
//   student and the weak logits. Only first derivatives are available (the saved gradient is a
//   constant), so double backward gives wrong results: do not differentiate twice.
// * Devices: CPU tensors run the CPU backend (float32, float64; float16 and bfloat16 are computed
//   in float32 and the results cast back). CUDA tensors run the CUDA backend when this header is
//   compiled by nvcc (float32, float16, bfloat16; the workspace comes from PyTorch's caching
//   allocator, the kernels run on the current stream); otherwise they are refused.
// * Errors: anything the backends refuse, and every input they cannot take (wrong dtype, tensors
//   on different devices, logits whose rows are not unit-stride, labels of the wrong type or
//   shape), raises a c10::Error (a RuntimeError in Python) that says what is wrong. On CUDA, a
//   hard label outside [0, C) is found by the kernels asynchronously: the loss becomes NaN
//   (see docs/cuda.md), no exception is raised.
//
// `define_ops(m)` registers the dispatcher ops `fusedkd::nkd`, `kd`, `dkd` and `uskd` (the
// Python package calls them as torch.ops.fusedkd.*); one translation unit of a program writes
//   TORCH_LIBRARY(fusedkd, m) { fusedkd::th::define_ops(m); }
#pragma once

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <cstdint>
#include <string>

#include "fusedkd/fusedkd.hpp"  // with nvcc, this includes the CUDA backend too

#if defined(__CUDACC__)
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#endif

namespace fusedkd {
namespace th {

/// The loss of a batch with autograd. `labels`: int64 or int32 class indices [N] (rows equal to
/// `options.ignore_index` are skipped), or floating-point soft labels [N, C]. Returns a 0-dim
/// tensor (mean, sum) or [N] (none) in the logits' dtype. `options.grad_scale` must be 1: the
/// upstream gradient comes from autograd.
inline at::Tensor nkd(const at::Tensor& student, const at::Tensor& teacher,
                      const at::Tensor& labels, const NkdOptions& options = NkdOptions());
/// KD: `labels` may be empty (c10::nullopt) when `options.ce_weight` is 0.
inline at::Tensor kd(const at::Tensor& student, const at::Tensor& teacher,
                     const c10::optional<at::Tensor>& labels, const KdOptions& options = KdOptions());
inline at::Tensor dkd(const at::Tensor& student, const at::Tensor& teacher,
                      const at::Tensor& labels, const DkdOptions& options = DkdOptions());
/// USKD: `weak` = the logits of the caller's extra linear head; both get gradients.
inline at::Tensor uskd(const at::Tensor& student, const at::Tensor& weak, const at::Tensor& labels,
                       const UskdOptions& options = UskdOptions());

/// Registers fusedkd::nkd / kd / dkd / uskd (schemas below) in a TORCH_LIBRARY(fusedkd, m) block.
inline void define_ops(torch::Library& m);

// ================================================================================================
// Implementation.
// ================================================================================================

namespace detail {

/// What the forward pass returns: the loss and, when asked for, the gradient(s).
struct Result {
  at::Tensor loss;
  at::Tensor grad_a;  ///< dLoss/dStudent
  at::Tensor grad_b;  ///< dLoss/dWeak (USKD only)
};

inline void check_status(const char* op, Status s) {
  TORCH_CHECK(s == Status::kSuccess, op, ": ", status_string(s), " [", status_name(s), "]");
}

/// True when `t` ([N, C]) is a fusedkd Matrix: unit column stride and rows that do not overlap.
inline bool matrix_strides(const at::Tensor& t) {
  const bool cols_ok = t.size(1) <= 1 || t.stride(1) == 1;
  const bool rows_ok = t.size(0) <= 1 || t.stride(0) >= t.size(1);
  return cols_ok && rows_ok;
}

inline int64_t row_stride(const at::Tensor& t) {
  return t.size(0) <= 1 ? t.size(1) : t.stride(0);
}

template <typename T, typename S>
Matrix<T> view(const at::Tensor& t) {
  return Matrix<T>(reinterpret_cast<T*>(t.data_ptr<S>()), t.size(0), t.size(1), row_stride(t));
}

/// The checks every call makes on its two logits tensors ("student" and `b_name`).
inline void check_logits(const char* op, const at::Tensor& a, const at::Tensor& b, const char* b_name) {
  TORCH_CHECK(a.defined() && b.defined(), op, ": the student and ", b_name, " logits must be tensors");
  TORCH_CHECK(a.dim() == 2, op, ": the student logits must be 2-D [N, C], got shape ", a.sizes());
  TORCH_CHECK(a.sizes() == b.sizes(), op, ": the student logits ", a.sizes(), " and the ", b_name,
              " logits ", b.sizes(), " must have the same shape");
  TORCH_CHECK(a.device() == b.device(), op, ": the student logits are on ", a.device(), " but the ",
              b_name, " logits are on ", b.device());
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), op, ": the student logits are ", a.scalar_type(),
              " but the ", b_name, " logits are ", b.scalar_type(), "; give both the same dtype");
  const at::ScalarType t = a.scalar_type();
  TORCH_CHECK(t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16, op,
              ": logits must be float32, float64, float16 or bfloat16, got ", t);
  TORCH_CHECK(a.device().is_cpu() || a.device().is_cuda(), op,
              ": tensors must be on the CPU or a CUDA device, got ", a.device());
  TORCH_CHECK(matrix_strides(a) && matrix_strides(b), op,
              ": the logits' rows must be unit-stride (strides ", a.strides(), " and ", b.strides(),
              " given); call .contiguous() first");
}

/// The labels of a call, made contiguous, and the fusedkd view of them.
struct LabelView {
  at::Tensor tensor;
  Labels labels;
};

inline LabelView label_view(const char* op, const c10::optional<at::Tensor>& given,
                            const at::Tensor& logits, bool optional) {
  if (!given.has_value() || !given->defined()) {
    TORCH_CHECK(optional, op, ": labels are required");
    return {at::Tensor(), Labels::none()};
  }
  const at::Tensor& y = *given;
  const int64_t n = logits.size(0), c = logits.size(1);
  TORCH_CHECK(y.device() == logits.device(), op, ": the labels are on ", y.device(),
              " but the logits are on ", logits.device());
  const at::ScalarType t = y.scalar_type();
  if (t == at::kLong || t == at::kInt) {
    TORCH_CHECK(y.dim() == 1 && y.size(0) == n, op, ": hard labels must be 1-D [N] = [", n,
                "], got shape ", y.sizes());
    at::Tensor yc = y.contiguous();
    return {yc, t == at::kLong ? Labels::index(yc.data_ptr<int64_t>())
                               : Labels::index(yc.data_ptr<int32_t>())};
  }
  if (at::isFloatingType(t)) {
    TORCH_CHECK(y.dim() == 2 && y.size(0) == n && y.size(1) == c, op,
                ": soft labels must be 2-D [N, C] = [", n, ", ", c, "], got shape ", y.sizes(),
                " (hard labels must be int64 or int32)");
    at::Tensor yc = y.detach().to(at::kFloat).contiguous();
    return {yc, Labels::soft(yc.data_ptr<float>())};
  }
  TORCH_CHECK(false, op, ": labels must be int64 or int32 class indices [N], or floating-point "
              "soft labels [N, C]; got ", t);
  return {};
}

// One traits struct per loss: its name, options, whether it has a second gradient, and its
// backend calls. The CPU calls take float or double; the CUDA calls float, __half or bfloat16.
struct Nkd {
  using Options = NkdOptions;
  static constexpr const char* kName = "fusedkd.nkd";
  static constexpr const char* kSecond = "teacher";
  static constexpr bool kTwoGrads = false;
  static constexpr bool kLabelsOptional = false;
  template <typename T, typename L>
  static Status cpu(Matrix<const T> a, Matrix<const T> b, Labels y, const Options& o, L* loss,
                    Matrix<T> ga, Matrix<T>) {
    return fusedkd::cpu::nkd(a, b, y, o, loss, ga);
  }
#if defined(__CUDACC__)
  static size_t workspace(int64_t n, int64_t c, Labels::Kind k, const Options& o) {
    return fusedkd::cuda::nkd_workspace_size(n, c, k, o);
  }
  template <typename T>
  static Status gpu(Matrix<const T> a, Matrix<const T> b, Labels y, const Options& o, float* loss,
                    Matrix<T> ga, Matrix<T>, void* ws, size_t bytes, cudaStream_t st) {
    return fusedkd::cuda::nkd(a, b, y, o, loss, ga, ws, bytes, st);
  }
#endif
};

struct Kd {
  using Options = KdOptions;
  static constexpr const char* kName = "fusedkd.kd";
  static constexpr const char* kSecond = "teacher";
  static constexpr bool kTwoGrads = false;
  static constexpr bool kLabelsOptional = true;
  template <typename T, typename L>
  static Status cpu(Matrix<const T> a, Matrix<const T> b, Labels y, const Options& o, L* loss,
                    Matrix<T> ga, Matrix<T>) {
    return fusedkd::cpu::kd(a, b, y, o, loss, ga);
  }
#if defined(__CUDACC__)
  static size_t workspace(int64_t n, int64_t c, Labels::Kind k, const Options& o) {
    return fusedkd::cuda::kd_workspace_size(n, c, k, o);
  }
  template <typename T>
  static Status gpu(Matrix<const T> a, Matrix<const T> b, Labels y, const Options& o, float* loss,
                    Matrix<T> ga, Matrix<T>, void* ws, size_t bytes, cudaStream_t st) {
    return fusedkd::cuda::kd(a, b, y, o, loss, ga, ws, bytes, st);
  }
#endif
};

struct Dkd {
  using Options = DkdOptions;
  static constexpr const char* kName = "fusedkd.dkd";
  static constexpr const char* kSecond = "teacher";
  static constexpr bool kTwoGrads = false;
  static constexpr bool kLabelsOptional = false;
  template <typename T, typename L>
  static Status cpu(Matrix<const T> a, Matrix<const T> b, Labels y, const Options& o, L* loss,
                    Matrix<T> ga, Matrix<T>) {
    return fusedkd::cpu::dkd(a, b, y, o, loss, ga);
  }
#if defined(__CUDACC__)
  static size_t workspace(int64_t n, int64_t c, Labels::Kind k, const Options& o) {
    return fusedkd::cuda::dkd_workspace_size(n, c, k, o);
  }
  template <typename T>
  static Status gpu(Matrix<const T> a, Matrix<const T> b, Labels y, const Options& o, float* loss,
                    Matrix<T> ga, Matrix<T>, void* ws, size_t bytes, cudaStream_t st) {
    return fusedkd::cuda::dkd(a, b, y, o, loss, ga, ws, bytes, st);
  }
#endif
};

struct Uskd {
  using Options = UskdOptions;
  static constexpr const char* kName = "fusedkd.uskd";
  static constexpr const char* kSecond = "weak";
  static constexpr bool kTwoGrads = true;
  static constexpr bool kLabelsOptional = false;
  template <typename T, typename L>
  static Status cpu(Matrix<const T> a, Matrix<const T> b, Labels y, const Options& o, L* loss,
                    Matrix<T> ga, Matrix<T> gb) {
    return fusedkd::cpu::uskd(a, b, y, o, loss, ga, gb);
  }
#if defined(__CUDACC__)
  static size_t workspace(int64_t n, int64_t c, Labels::Kind k, const Options& o) {
    return fusedkd::cuda::uskd_workspace_size(n, c, k, o);
  }
  template <typename T>
  static Status gpu(Matrix<const T> a, Matrix<const T> b, Labels y, const Options& o, float* loss,
                    Matrix<T> ga, Matrix<T> gb, void* ws, size_t bytes, cudaStream_t st) {
    return fusedkd::cuda::uskd(a, b, y, o, loss, ga, gb, ws, bytes, st);
  }
#endif
};

/// The (empty) sizes of a 0-dim tensor: the loss of mean and sum.
inline at::IntArrayRef no_dims() { return {}; }

/// One CPU call in element type T (float or double): the loss and gradients are T as well.
template <typename Loss, typename T>
Status cpu_call(const at::Tensor& a, const at::Tensor& b, const LabelView& y,
                const typename Loss::Options& o, const at::Tensor& loss, const at::Tensor& ga,
                const at::Tensor& gb) {
  return Loss::template cpu<T>(view<const T, T>(a), view<const T, T>(b), y.labels, o,
                               loss.data_ptr<T>(), ga.defined() ? view<T, T>(ga) : Matrix<T>(),
                               gb.defined() ? view<T, T>(gb) : Matrix<T>());
}

template <typename Loss>
Result run_cpu(const at::Tensor& a_in, const at::Tensor& b_in, const LabelView& y,
               const typename Loss::Options& o, bool want_grad) {
  // float16 / bfloat16: the CPU backend has no such overloads; compute in float32.
  const at::ScalarType given = a_in.scalar_type();
  const at::ScalarType ct = given == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor a = a_in.detach().to(ct);
  const at::Tensor b = b_in.detach().to(ct);
  const int64_t n = a.size(0), c = a.size(1);
  const auto opts = a.options();
  at::Tensor loss = o.reduction == Reduction::kNone ? at::empty({n}, opts) : at::empty(no_dims(), opts);
  at::Tensor ga, gb;
  if (want_grad) {
    ga = at::empty({n, c}, opts);
    if (Loss::kTwoGrads) gb = at::empty({n, c}, opts);
  }
  const Status s = ct == at::kDouble ? cpu_call<Loss, double>(a, b, y, o, loss, ga, gb)
                                     : cpu_call<Loss, float>(a, b, y, o, loss, ga, gb);
  check_status(Loss::kName, s);
  Result r{loss.to(given), ga, gb};
  if (ct != given) {
    if (r.grad_a.defined()) r.grad_a = r.grad_a.to(given);
    if (r.grad_b.defined()) r.grad_b = r.grad_b.to(given);
  }
  return r;
}

#if defined(__CUDACC__)
template <typename Loss, typename T, typename S>
Status gpu_call(const at::Tensor& a, const at::Tensor& b, const LabelView& y,
                const typename Loss::Options& o, const at::Tensor& loss, const at::Tensor& ga,
                const at::Tensor& gb, const at::Tensor& ws, cudaStream_t stream) {
  return Loss::template gpu<T>(view<const T, S>(a), view<const T, S>(b), y.labels, o,
                               loss.data_ptr<float>(), ga.defined() ? view<T, S>(ga) : Matrix<T>(),
                               gb.defined() ? view<T, S>(gb) : Matrix<T>(), ws.data_ptr(),
                               static_cast<size_t>(ws.numel()), stream);
}

template <typename Loss>
Result run_cuda(const at::Tensor& a_in, const at::Tensor& b_in, const LabelView& y,
                const typename Loss::Options& o, bool want_grad) {
  const at::ScalarType t = a_in.scalar_type();
  TORCH_CHECK(t != at::kDouble, Loss::kName,
              ": the CUDA backend takes float32, float16 or bfloat16 logits, not float64");
  const c10::cuda::CUDAGuard guard(a_in.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const at::Tensor a = a_in.detach(), b = b_in.detach();
  const int64_t n = a.size(0), c = a.size(1);
  const auto fopts = a.options().dtype(at::kFloat);
  at::Tensor loss = o.reduction == Reduction::kNone ? at::empty({n}, fopts) : at::empty(no_dims(), fopts);
  at::Tensor ga, gb;
  if (want_grad) {
    ga = at::empty({n, c}, a.options());
    if (Loss::kTwoGrads) gb = at::empty({n, c}, a.options());
  }
  // The workspace: bytes from the caching allocator, stream-ordered like the kernels.
  const size_t bytes = Loss::workspace(n, c, y.labels.kind, o);
  const at::Tensor ws = at::empty({static_cast<int64_t>(bytes > 0 ? bytes : 1)}, a.options().dtype(at::kByte));
  Status s;
  if (t == at::kFloat) {
    s = gpu_call<Loss, float, float>(a, b, y, o, loss, ga, gb, ws, stream);
  } else if (t == at::kHalf) {
    s = gpu_call<Loss, __half, at::Half>(a, b, y, o, loss, ga, gb, ws, stream);
  } else {
    s = gpu_call<Loss, __nv_bfloat16, at::BFloat16>(a, b, y, o, loss, ga, gb, ws, stream);
  }
  check_status(Loss::kName, s);
  return {loss.to(t), ga, gb};
}
#endif

template <typename Loss>
Result forward(const at::Tensor& a, const at::Tensor& b, const c10::optional<at::Tensor>& labels,
               const typename Loss::Options& o, bool want_grad) {
  check_logits(Loss::kName, a, b, Loss::kSecond);
  TORCH_CHECK(o.grad_scale == 1.0, Loss::kName,
              ": options.grad_scale must be 1 here (autograd passes the upstream gradient)");
  const LabelView y = label_view(Loss::kName, labels, a, Loss::kLabelsOptional);
  TORCH_CHECK(y.labels.kind != Labels::Kind::kNone || o.ce_weight == 0.0, Loss::kName,
              ": ce_weight needs labels (the cross-entropy term's target)");
  if (a.size(0) == 0) {  // an empty batch: loss 0 (mean, sum) or [0]; tensors have no data
    const auto opts = a.options();
    Result r{o.reduction == Reduction::kNone ? at::zeros({0}, opts) : at::zeros(no_dims(), opts)};
    if (want_grad) r.grad_a = at::zeros_like(a);
    if (want_grad && Loss::kTwoGrads) r.grad_b = at::zeros_like(b);
    return r;
  }
  if (a.device().is_cpu()) return run_cpu<Loss>(a, b, y, o, want_grad);
#if defined(__CUDACC__)
  return run_cuda<Loss>(a, b, y, o, want_grad);
#else
  TORCH_CHECK(false, Loss::kName, ": CUDA tensors need fusedkd/torch.hpp compiled by nvcc (this "
              "build has the CPU backend only)");
  return {};
#endif
}

/// The autograd node: forward runs the fused loss with its gradient, backward scales it.
/// `Self` names the node (grad_fn shows NkdFunction, ...).
template <typename Loss, typename Self>
struct FusedFunction : public torch::autograd::Function<Self> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& a,
                            const at::Tensor& b, const c10::optional<at::Tensor>& labels,
                            const typename Loss::Options& o) {
    Result r = detail::forward<Loss>(a, b, labels, o, /*want_grad=*/true);
    ctx->saved_data["grad_a"] = r.grad_a;
    ctx->saved_data["grad_b"] = r.grad_b;
    ctx->saved_data["per_row"] = o.reduction == Reduction::kNone;
    return r.loss;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const at::Tensor& g = grad_out[0];
    const bool per_row = ctx->saved_data["per_row"].toBool();
    auto scale = [&](const at::Tensor& grad) -> at::Tensor {
      if (!grad.defined()) return {};
      if (per_row) return grad * g.to(grad.scalar_type()).unsqueeze(1);
      // The common case, loss.backward(): the saved gradient is already the answer.
      if (g.device().is_cpu() && g.item<double>() == 1.0) return grad;
      return grad * g.to(grad.scalar_type());
    };
    at::Tensor ga = ctx->saved_data["grad_a"].toTensor();
    at::Tensor gb = Loss::kTwoGrads ? ctx->saved_data["grad_b"].toTensor() : at::Tensor();
    // One entry per forward argument: student, teacher / weak, labels, options.
    return {scale(ga), scale(gb), at::Tensor(), at::Tensor()};
  }
};

struct NkdFunction : FusedFunction<Nkd, NkdFunction> {};
struct KdFunction : FusedFunction<Kd, KdFunction> {};
struct DkdFunction : FusedFunction<Dkd, DkdFunction> {};
struct UskdFunction : FusedFunction<Uskd, UskdFunction> {};

template <typename Loss>
struct FunctionOf;
template <>
struct FunctionOf<Nkd> { using type = NkdFunction; };
template <>
struct FunctionOf<Kd> { using type = KdFunction; };
template <>
struct FunctionOf<Dkd> { using type = DkdFunction; };
template <>
struct FunctionOf<Uskd> { using type = UskdFunction; };

template <typename Loss>
at::Tensor call(const at::Tensor& a, const at::Tensor& b, const c10::optional<at::Tensor>& labels,
                const typename Loss::Options& o) {
  const bool needs_grad =
      at::GradMode::is_enabled() && ((a.defined() && a.requires_grad()) ||
                                     (Loss::kTwoGrads && b.defined() && b.requires_grad()));
  if (!needs_grad) return detail::forward<Loss>(a, b, labels, o, /*want_grad=*/false).loss;
  return FunctionOf<Loss>::type::apply(a, b, labels, o);
}

inline Reduction parse_reduction(const char* op, c10::string_view r) {
  if (r == "mean") return Reduction::kMean;
  if (r == "sum") return Reduction::kSum;
  if (r == "none") return Reduction::kNone;
  TORCH_CHECK(false, op, ": reduction must be 'mean', 'sum' or 'none', got '", std::string(r), "'");
  return Reduction::kMean;
}

inline UskdRank parse_rank(c10::string_view r) {
  if (r == "reference") return UskdRank::kReference;
  if (r == "paper") return UskdRank::kPaper;
  if (r == "weak") return UskdRank::kWeak;
  if (r == "final") return UskdRank::kFinal;
  if (r == "combination") return UskdRank::kCombination;
  TORCH_CHECK(false, "fusedkd.uskd: rank must be 'reference', 'paper', 'weak', 'final' or "
              "'combination', got '", std::string(r), "'");
  return UskdRank::kReference;
}

template <typename O>
void set_common(O* o, const char* op, c10::string_view reduction, int64_t ignore_index, double ce_weight) {
  o->reduction = parse_reduction(op, reduction);
  o->ignore_index = ignore_index;
  o->ce_weight = ce_weight;
}

// The dispatcher ops: plain arguments (the schema types), options built here.
inline at::Tensor nkd_op(const at::Tensor& student, const at::Tensor& teacher, const at::Tensor& labels,
                         double temperature, double gamma, c10::string_view reduction,
                         int64_t ignore_index, double ce_weight) {
  NkdOptions o;
  set_common(&o, Nkd::kName, reduction, ignore_index, ce_weight);
  o.temperature = temperature;
  o.gamma = gamma;
  return th::nkd(student, teacher, labels, o);
}

inline at::Tensor kd_op(const at::Tensor& student, const at::Tensor& teacher,
                        const c10::optional<at::Tensor>& labels, double temperature, double weight,
                        c10::string_view reduction, int64_t ignore_index, double ce_weight) {
  KdOptions o;
  set_common(&o, Kd::kName, reduction, ignore_index, ce_weight);
  o.temperature = temperature;
  o.weight = weight;
  return th::kd(student, teacher, labels, o);
}

inline at::Tensor dkd_op(const at::Tensor& student, const at::Tensor& teacher, const at::Tensor& labels,
                         double alpha, double beta, double temperature, c10::string_view reduction,
                         int64_t ignore_index, double ce_weight) {
  DkdOptions o;
  set_common(&o, Dkd::kName, reduction, ignore_index, ce_weight);
  o.alpha = alpha;
  o.beta = beta;
  o.temperature = temperature;
  return th::dkd(student, teacher, labels, o);
}

inline at::Tensor uskd_op(const at::Tensor& student, const at::Tensor& weak, const at::Tensor& labels,
                          double alpha, double beta, double mu, double smoothing,
                          c10::string_view rank, c10::string_view reduction, int64_t ignore_index,
                          double ce_weight) {
  UskdOptions o;
  set_common(&o, Uskd::kName, reduction, ignore_index, ce_weight);
  o.alpha = alpha;
  o.beta = beta;
  o.mu = mu;
  o.smoothing = smoothing;
  o.rank = parse_rank(rank);
  return th::uskd(student, weak, labels, o);
}

}  // namespace detail

inline at::Tensor nkd(const at::Tensor& student, const at::Tensor& teacher, const at::Tensor& labels,
                      const NkdOptions& options) {
  return detail::call<detail::Nkd>(student, teacher, labels, options);
}

inline at::Tensor kd(const at::Tensor& student, const at::Tensor& teacher,
                     const c10::optional<at::Tensor>& labels, const KdOptions& options) {
  return detail::call<detail::Kd>(student, teacher, labels, options);
}

inline at::Tensor dkd(const at::Tensor& student, const at::Tensor& teacher, const at::Tensor& labels,
                      const DkdOptions& options) {
  return detail::call<detail::Dkd>(student, teacher, labels, options);
}

inline at::Tensor uskd(const at::Tensor& student, const at::Tensor& weak, const at::Tensor& labels,
                       const UskdOptions& options) {
  return detail::call<detail::Uskd>(student, weak, labels, options);
}

inline void define_ops(torch::Library& m) {
  // Registered as composite ops: the autograd Function inside records the backward, and the
  // device is chosen by the function itself (CPU backend, or CUDA when compiled by nvcc).
  m.def("nkd(Tensor student, Tensor teacher, Tensor labels, float temperature=1.0, "
        "float gamma=1.5, str reduction=\"mean\", int ignore_index=-100, float ce_weight=0.0) "
        "-> Tensor",
        &detail::nkd_op);
  m.def("kd(Tensor student, Tensor teacher, Tensor? labels=None, float temperature=4.0, "
        "float weight=1.0, str reduction=\"mean\", int ignore_index=-100, float ce_weight=0.0) "
        "-> Tensor",
        &detail::kd_op);
  m.def("dkd(Tensor student, Tensor teacher, Tensor labels, float alpha=1.0, float beta=8.0, "
        "float temperature=4.0, str reduction=\"mean\", int ignore_index=-100, "
        "float ce_weight=0.0) -> Tensor",
        &detail::dkd_op);
  m.def("uskd(Tensor student, Tensor weak, Tensor labels, float alpha=1.0, float beta=0.1, "
        "float mu=0.005, float smoothing=0.1, str rank=\"reference\", str reduction=\"mean\", "
        "int ignore_index=-100, float ce_weight=0.0) -> Tensor",
        &detail::uskd_op);
}

}  // namespace th
}  // namespace fusedkd
