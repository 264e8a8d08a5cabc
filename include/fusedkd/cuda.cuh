// fusedkd/cuda.cuh — the four losses on CUDA (include from a .cu file; needs nvcc).
//
// Each loss has one overload per logits type — float, __half, __nv_bfloat16 — with the CPU
// backend's arguments (see nkd.hpp, uskd.hpp, kd.hpp, dkd.hpp) plus three:
//
//   Status fusedkd::cuda::nkd(student, teacher, labels, options, loss, grad_student,
//                             workspace, workspace_bytes, stream [, validation]);
//
//   * Every pointer is a DEVICE pointer: logits, labels (int32 / int64 indices or float soft
//     labels), `loss` (float: 1 value for mean / sum, N for none), the gradients (in the logits'
//     type, optionally the same memory as the logits: in place), and the workspace.
//   * `workspace`: device memory of at least `*_workspace_size(...)` bytes for the same N, C,
//     labels kind and options (any alignment; O(N) bytes, plus up to 128 MiB of sort buffers for
//     USKD with C > 4096). It holds the call's status word until the next call that uses it.
//     One workspace per call in flight: concurrent calls (other streams) need their own.
//   * `stream`: the call is stream-ordered. It allocates nothing, never synchronizes and copies
//     nothing between host and device, so it can be captured in a CUDA graph. Accumulation is
//     in float; results are bitwise the same run after run.
//
// Errors. A call validates on the host what the host knows (shapes, strides, pointers, options,
// workspace size) and returns that Status without launching anything. What only the device can
// see — a hard label outside [0, C) that is not ignore_index, a soft-label row with no positive
// entry — is found by the kernels, which then
//   * set the status word in the workspace (read it with `fusedkd::cuda::check`), and
//   * write NaN as the affected row's loss and gradient rows (so the batch loss is NaN too; for
//     USKD, whose rows share the batch mean of S_t^2, every row becomes NaN),
// so the results are never silently plausible. Two ways to learn of it:
//   * `Status fusedkd::cuda::check(workspace, stream)` after the call: synchronizes the stream
//     and returns kLabelOutOfRange / kEmptySoftLabelRow / kSuccess (or kCudaError);
//   * `Validation::kSync` as the last argument: the call validates the labels on the device
//     first, synchronizes, and returns the error having written nothing, like the CPU backend
//     (this one synchronizes: not for graph capture).
// A launch failure returns kCudaError. A combination the kernels do not handle returns
// kNotSupported (N or C beyond 2^31 - 1; a pointer not aligned to its element type, e.g. int64
// labels at an address that is not a multiple of 8).
//
// CUDA's error state. A call reports the failures of its own work only: each launch's own return
// value, never cudaGetLastError, so an error that the caller's earlier CUDA work left pending is
// neither blamed on this call nor cleared (a sticky error — a corrupted context — fails every
// launch and is reported). One exception: USKD with C > 4096 runs CUB's segmented sort, which
// reads the last-error state itself; there a pending error makes the call return kCudaError.
//
// Compile time. The overloads below are function templates in disguise (a defaulted, unused
// template parameter): a translation unit that includes this header compiles the kernels of the
// overloads it calls, not all 45 (4 losses x 3 types x kernel paths).
#pragma once

#if !defined(__CUDACC__)
#error "fusedkd/cuda.cuh is CUDA C++: include it from a .cu file compiled by nvcc"
#endif

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "fusedkd/fusedkd.hpp"
#include "fusedkd/kernels/common.cuh"
#include "fusedkd/kernels/pair.cuh"
#include "fusedkd/kernels/uskd.cuh"

namespace fusedkd {
namespace cuda {

/// How a call learns of bad labels (a label outside [0, C) that is not ignore_index, an empty
/// soft-label row).
enum class Validation {
  kAsync,  ///< the kernels flag them (status word + NaN results); `check` reads the flag
  kSync,   ///< validate on the device, synchronize, and refuse the call (writes nothing)
};

/// Workspace bytes a call needs for N rows of C classes (the labels kind and options are part of
/// the contract; today only USKD's size depends on C).
inline size_t nkd_workspace_size(int64_t n, int64_t c, Labels::Kind labels = Labels::Kind::kIndex64,
                                 const NkdOptions& options = NkdOptions());
inline size_t kd_workspace_size(int64_t n, int64_t c, Labels::Kind labels = Labels::Kind::kIndex64,
                                const KdOptions& options = KdOptions());
inline size_t dkd_workspace_size(int64_t n, int64_t c, Labels::Kind labels = Labels::Kind::kIndex64,
                                 const DkdOptions& options = DkdOptions());
inline size_t uskd_workspace_size(int64_t n, int64_t c, Labels::Kind labels = Labels::Kind::kIndex64,
                                  const UskdOptions& options = UskdOptions());

/// Waits for the stream and returns the status the kernels of the last call that used this
/// workspace recorded: kSuccess, kLabelOutOfRange or kEmptySoftLabelRow (kCudaError if the
/// copy fails). Synchronizes: call it where a host sync is acceptable (tests, debug, a check
/// every K steps).
inline Status check(const void* workspace, cudaStream_t stream = nullptr);

// ---- NKD ---------------------------------------------------------------------------------------
template <int kDeferred = 0>
inline Status nkd(Matrix<const float> student, Matrix<const float> teacher, Labels labels,
                  const NkdOptions& options, float* loss, Matrix<float> grad_student, void* workspace,
                  size_t workspace_bytes, cudaStream_t stream = nullptr,
                  Validation validation = Validation::kAsync);
template <int kDeferred = 0>
inline Status nkd(Matrix<const __half> student, Matrix<const __half> teacher, Labels labels,
                  const NkdOptions& options, float* loss, Matrix<__half> grad_student, void* workspace,
                  size_t workspace_bytes, cudaStream_t stream = nullptr,
                  Validation validation = Validation::kAsync);
template <int kDeferred = 0>
inline Status nkd(Matrix<const __nv_bfloat16> student, Matrix<const __nv_bfloat16> teacher, Labels labels,
                  const NkdOptions& options, float* loss, Matrix<__nv_bfloat16> grad_student,
                  void* workspace, size_t workspace_bytes, cudaStream_t stream = nullptr,
                  Validation validation = Validation::kAsync);

// ---- KD (Labels::none() allowed when ce_weight == 0) -------------------------------------------
template <int kDeferred = 0>
inline Status kd(Matrix<const float> student, Matrix<const float> teacher, Labels labels,
                 const KdOptions& options, float* loss, Matrix<float> grad_student, void* workspace,
                 size_t workspace_bytes, cudaStream_t stream = nullptr,
                 Validation validation = Validation::kAsync);
template <int kDeferred = 0>
inline Status kd(Matrix<const __half> student, Matrix<const __half> teacher, Labels labels,
                 const KdOptions& options, float* loss, Matrix<__half> grad_student, void* workspace,
                 size_t workspace_bytes, cudaStream_t stream = nullptr,
                 Validation validation = Validation::kAsync);
template <int kDeferred = 0>
inline Status kd(Matrix<const __nv_bfloat16> student, Matrix<const __nv_bfloat16> teacher, Labels labels,
                 const KdOptions& options, float* loss, Matrix<__nv_bfloat16> grad_student,
                 void* workspace, size_t workspace_bytes, cudaStream_t stream = nullptr,
                 Validation validation = Validation::kAsync);

// ---- DKD ---------------------------------------------------------------------------------------
template <int kDeferred = 0>
inline Status dkd(Matrix<const float> student, Matrix<const float> teacher, Labels labels,
                  const DkdOptions& options, float* loss, Matrix<float> grad_student, void* workspace,
                  size_t workspace_bytes, cudaStream_t stream = nullptr,
                  Validation validation = Validation::kAsync);
template <int kDeferred = 0>
inline Status dkd(Matrix<const __half> student, Matrix<const __half> teacher, Labels labels,
                  const DkdOptions& options, float* loss, Matrix<__half> grad_student, void* workspace,
                  size_t workspace_bytes, cudaStream_t stream = nullptr,
                  Validation validation = Validation::kAsync);
template <int kDeferred = 0>
inline Status dkd(Matrix<const __nv_bfloat16> student, Matrix<const __nv_bfloat16> teacher, Labels labels,
                  const DkdOptions& options, float* loss, Matrix<__nv_bfloat16> grad_student,
                  void* workspace, size_t workspace_bytes, cudaStream_t stream = nullptr,
                  Validation validation = Validation::kAsync);

// ---- USKD (grad_student and grad_weak: both, or both empty) ------------------------------------
template <int kDeferred = 0>
inline Status uskd(Matrix<const float> student, Matrix<const float> weak, Labels labels,
                   const UskdOptions& options, float* loss, Matrix<float> grad_student,
                   Matrix<float> grad_weak, void* workspace, size_t workspace_bytes,
                   cudaStream_t stream = nullptr, Validation validation = Validation::kAsync);
template <int kDeferred = 0>
inline Status uskd(Matrix<const __half> student, Matrix<const __half> weak, Labels labels,
                   const UskdOptions& options, float* loss, Matrix<__half> grad_student,
                   Matrix<__half> grad_weak, void* workspace, size_t workspace_bytes,
                   cudaStream_t stream = nullptr, Validation validation = Validation::kAsync);
template <int kDeferred = 0>
inline Status uskd(Matrix<const __nv_bfloat16> student, Matrix<const __nv_bfloat16> weak, Labels labels,
                   const UskdOptions& options, float* loss, Matrix<__nv_bfloat16> grad_student,
                   Matrix<__nv_bfloat16> grad_weak, void* workspace, size_t workspace_bytes,
                   cudaStream_t stream = nullptr, Validation validation = Validation::kAsync);

// ================================================================================================
// Implementation.
// ================================================================================================

namespace impl {

using cuda_detail::Carver;
using cuda_detail::Header;
using cuda_detail::LabelArgs;

inline size_t pair_workspace_size(int64_t n) {
  Carver cv(nullptr);
  cuda_detail::carve_batch(cv, n > 0 ? n : 0);
  return cv.bytes();
}

inline LabelArgs label_args(const Labels& l, int64_t c, int64_t ignore_index) {
  LabelArgs a;
  a.kind = l.kind;
  a.data = l.data;
  a.soft = l.kind == Labels::Kind::kSoft ? static_cast<const float*>(l.data) : nullptr;
  a.ld = l.stride > 0 ? l.stride : c;
  a.soft_aligned = a.soft != nullptr && cuda_detail::rows_aligned(a.soft, a.ld);
  a.ignore_index = ignore_index;
  return a;
}

/// Copies the status word to the host after the stream's work so far.
inline Status read_status(const Header* h, cudaStream_t stream) {
  unsigned int word = 0u;
  if (cudaMemcpyAsync(&word, &h->status, sizeof(word), cudaMemcpyDeviceToHost, stream) != cudaSuccess ||
      cudaStreamSynchronize(stream) != cudaSuccess) {
    return Status::kCudaError;
  }
  return cuda_detail::status_from_word(word);
}

/// Whether every pointer of a call is aligned for its element type (labels: their kind's).
template <typename T>
bool pointers_aligned(const T* a, const typename cuda_detail::NoDeduce<T>::type* b,
                      const typename cuda_detail::NoDeduce<T>::type* g1,
                      const typename cuda_detail::NoDeduce<T>::type* g2, const float* loss, const LabelArgs& l) {
  using cuda_detail::element_aligned;
  return element_aligned(a, sizeof(T)) && element_aligned(b, sizeof(T)) && element_aligned(g1, sizeof(T)) &&
         element_aligned(g2, sizeof(T)) && element_aligned(loss, sizeof(float)) && cuda_detail::labels_aligned(l);
}

/// Zeroes the workspace's Header and segment counters, then runs the label pre-pass (and, for
/// Validation::kSync, the device-side validation and its wait). A template so that only the
/// translation units that call a loss compile its kernels.
template <int kDeferred = 0>
Status prepass(const LabelArgs& labels, int64_t n, int64_t c, const cuda_detail::BatchParts& batch, bool harmonic,
               int* offsets, int offsets_count, const CommonOptions& o, float* loss, Validation validation,
               cudaStream_t stream) {
  Header* header = batch.header;
  Status s = cuda_detail::cuda_status(cudaMemsetAsync(header, 0, batch.reset_bytes, stream));
  if (s != Status::kSuccess) return s;
  cuda_detail::PrepassArgs p;
  p.labels = labels;
  p.n = n;
  p.c = c;
  p.header = header;
  p.harmonic = harmonic;
  p.offsets = offsets;
  p.offsets_count = offsets_count;
  p.loss = loss;
  p.zero_loss = n == 0 && o.reduction != Reduction::kNone;
  s = cuda_detail::launch(cuda_detail::prepass_kernel<kDeferred>, cuda_detail::prepass_blocks(n),
                          cuda_detail::kPrepassThreads, stream, p);
  if (s != Status::kSuccess || validation != Validation::kSync) return s;
  if (labels.kind == Labels::Kind::kSoft && n > 0) {
    s = cuda_detail::launch(cuda_detail::soft_check_kernel<kDeferred>, static_cast<unsigned int>(n), 256, stream,
                            labels, c, header);
    if (s != Status::kSuccess) return s;
  }
  return read_status(header, stream);
}

/// A teacher loss (NKD, KD, DKD) after its options have been checked.
template <class F, typename T>
Status run_pair(Matrix<const T> z, Matrix<const T> v, const Labels& labels, const CommonOptions& o,
                bool labels_optional, const F& family, float* loss, Matrix<T> g, void* workspace,
                size_t workspace_bytes, cudaStream_t stream, Validation validation) {
  Status s = fusedkd::detail::check_pair(z, v, labels, o, loss, g, labels_optional);
  if (s != Status::kSuccess) return s;
  const int64_t n = z.rows, c = z.cols;
  if (n > INT32_MAX) return Status::kNotSupported;  // (C: check_pair)
  if (workspace_bytes < pair_workspace_size(n)) return Status::kWorkspaceTooSmall;
  if (workspace == nullptr) return Status::kNullPointer;

  const LabelArgs la = label_args(labels, c, o.ignore_index);
  if (!pointers_aligned(z.data, v.data, g.data, nullptr, loss, la)) {
    return Status::kNotSupported;
  }

  Carver cv(workspace);
  const cuda_detail::BatchParts batch = cuda_detail::carve_batch(cv, n);
  s = prepass(la, n, c, batch, false, nullptr, 0, o, loss, validation, stream);
  if (s != Status::kSuccess || n == 0) return s;

  cuda_detail::PairArgs<T> a;
  a.z = z.data;
  a.ldz = z.stride;
  a.v = v.data;
  a.ldv = v.stride;
  a.g = g.data;
  a.ldg = g.data != nullptr ? g.stride : 0;
  a.labels = la;
  a.n = n;
  a.c = c;
  a.aligned = cuda_detail::rows_aligned(z.data, z.stride) && cuda_detail::rows_aligned(v.data, v.stride) &&
              cuda_detail::rows_aligned(g.data, a.ldg);
  a.reduction = o.reduction;
  a.grad_scale = o.grad_scale;
  a.loss = loss;
  a.header = batch.header;
  a.row_loss = batch.row_loss;
  a.batch = cuda_detail::batch_refs(batch);
  return cuda_detail::launch_pair(a, family, stream);
}

template <typename T>
Status nkd(Matrix<const T> z, Matrix<const T> v, const Labels& labels, const NkdOptions& o, float* loss,
           Matrix<T> g, void* ws, size_t ws_bytes, cudaStream_t stream, Validation validation) {
  if (!fusedkd::detail::valid_options(o)) return Status::kInvalidOption;
  const cuda_detail::NkdFamily f{static_cast<float>(1.0 / o.temperature), static_cast<float>(o.gamma),
                                 static_cast<float>(o.ce_weight), fusedkd::detail::nkd_terms(o)};
  return run_pair(z, v, labels, o, false, f, loss, g, ws, ws_bytes, stream, validation);
}

template <typename T>
Status kd(Matrix<const T> z, Matrix<const T> v, const Labels& labels, const KdOptions& o, float* loss,
          Matrix<T> g, void* ws, size_t ws_bytes, cudaStream_t stream, Validation validation) {
  if (!fusedkd::detail::valid_options(o)) return Status::kInvalidOption;
  const cuda_detail::KdFamily f{static_cast<float>(1.0 / o.temperature), static_cast<float>(o.weight),
                                static_cast<float>(o.ce_weight)};
  return run_pair(z, v, labels, o, true, f, loss, g, ws, ws_bytes, stream, validation);
}

template <typename T>
Status dkd(Matrix<const T> z, Matrix<const T> v, const Labels& labels, const DkdOptions& o, float* loss,
           Matrix<T> g, void* ws, size_t ws_bytes, cudaStream_t stream, Validation validation) {
  if (!fusedkd::detail::valid_options(o)) return Status::kInvalidOption;
  const cuda_detail::DkdFamily f{static_cast<float>(1.0 / o.temperature), static_cast<float>(o.alpha),
                                 static_cast<float>(o.beta), static_cast<float>(o.ce_weight)};
  return run_pair(z, v, labels, o, false, f, loss, g, ws, ws_bytes, stream, validation);
}

template <typename T>
Status uskd(Matrix<const T> z, Matrix<const T> w, const Labels& labels, const UskdOptions& o, float* loss,
            Matrix<T> gz, Matrix<T> gw, void* ws, size_t ws_bytes, cudaStream_t stream, Validation validation) {
  const int64_t n = z.rows, c = z.cols;
  Status s = fusedkd::detail::check_uskd(z, w, labels, o, loss, gz, gw);
  if (s != Status::kSuccess) return s;
  if (n > INT32_MAX) return Status::kNotSupported;  // (C: check_pair)
  const cuda_detail::UskdLayout l = cuda_detail::uskd_layout(ws, n, c);
  if (ws_bytes < l.bytes) return Status::kWorkspaceTooSmall;
  if (ws == nullptr) return Status::kNullPointer;
  const LabelArgs la = label_args(labels, c, o.ignore_index);
  if (!pointers_aligned(z.data, w.data, gz.data, gz.data != nullptr ? gw.data : nullptr, loss, la)) {
    return Status::kNotSupported;
  }
  const int index_bits = cuda_detail::index_bits_of(c);
  s = cuda_detail::uskd_check_cub_bytes(l, c, index_bits);
  if (s != Status::kSuccess) return s;

  s = prepass(la, n, c, l.batch, true, l.offsets, l.chunk > 0 ? static_cast<int>(l.chunk + 1) : 0, o, loss,
              validation, stream);
  if (s != Status::kSuccess || n == 0) return s;

  cuda_detail::UskdArgs<T> a;
  a.z = z.data;
  a.ldz = z.stride;
  a.w = w.data;
  a.ldw = w.stride;
  a.gz = gz.data;
  a.ldgz = gz.data != nullptr ? gz.stride : 0;
  a.gw = gz.data != nullptr ? gw.data : nullptr;
  a.ldgw = gz.data != nullptr ? gw.stride : 0;
  a.labels = la;
  a.n = n;
  a.c = c;
  a.aligned = cuda_detail::rows_aligned(z.data, z.stride) && cuda_detail::rows_aligned(w.data, w.stride) &&
              cuda_detail::rows_aligned(a.gz, a.ldgz) && cuda_detail::rows_aligned(a.gw, a.ldgw);
  a.reduction = o.reduction;
  a.grad_scale = o.grad_scale;
  a.loss = loss;
  a.header = l.header;
  a.row_loss = l.row_loss;
  a.batch = cuda_detail::batch_refs(l.batch);
  a.states = l.states;
  a.sq = l.sq;
  a.vals = l.vals;
  a.soft_mode = static_cast<int>(o.soft_target);
  a.alpha = static_cast<float>(o.alpha);
  a.beta = static_cast<float>(o.beta);
  a.mu = static_cast<float>(o.mu);
  a.eps = static_cast<float>(o.smoothing);
  a.ce = static_cast<float>(o.ce_weight);
  a.rank_mode = static_cast<int>(o.rank);
  a.square = o.square;
  a.terms = fusedkd::detail::uskd_terms(o);
  a.index_bits = index_bits;
  a.row0 = 0;
  a.keys = nullptr;
  a.sorted = nullptr;
  a.ranks = nullptr;
  return cuda_detail::launch_uskd(a, l, stream);
}

}  // namespace impl

inline size_t nkd_workspace_size(int64_t n, int64_t, Labels::Kind, const NkdOptions&) {
  return impl::pair_workspace_size(n);
}
inline size_t kd_workspace_size(int64_t n, int64_t, Labels::Kind, const KdOptions&) {
  return impl::pair_workspace_size(n);
}
inline size_t dkd_workspace_size(int64_t n, int64_t, Labels::Kind, const DkdOptions&) {
  return impl::pair_workspace_size(n);
}
inline size_t uskd_workspace_size(int64_t n, int64_t c, Labels::Kind, const UskdOptions&) {
  return cuda_detail::uskd_layout(nullptr, n > 0 ? n : 0, c > 0 ? c : 0).bytes;
}

inline Status check(const void* workspace, cudaStream_t stream) {
  if (workspace == nullptr) return Status::kNullPointer;
  return impl::read_status(cuda_detail::header_of(const_cast<void*>(workspace)), stream);
}

// The public overloads: templates whose body names the implementation through a dependent type,
// so that nothing is instantiated (no kernel compiled) until an overload is called.
namespace impl {
template <typename T, int kDeferred>
struct Deferred {
  using type = T;
};
}  // namespace impl

#define FUSEDKD_CUDA_PAIR_OVERLOAD(NAME, OPTIONS, T)                                                   \
  template <int kDeferred>                                                                             \
  inline Status NAME(Matrix<const T> student, Matrix<const T> teacher, Labels labels, const OPTIONS& options, \
                     float* loss, Matrix<T> grad_student, void* workspace, size_t workspace_bytes,      \
                     cudaStream_t stream, Validation validation) {                                     \
    return impl::NAME<typename impl::Deferred<T, kDeferred>::type>(student, teacher, labels, options, loss, grad_student, workspace, workspace_bytes, \
                         stream, validation);                                                          \
  }
FUSEDKD_CUDA_PAIR_OVERLOAD(nkd, NkdOptions, float)
FUSEDKD_CUDA_PAIR_OVERLOAD(nkd, NkdOptions, __half)
FUSEDKD_CUDA_PAIR_OVERLOAD(nkd, NkdOptions, __nv_bfloat16)
FUSEDKD_CUDA_PAIR_OVERLOAD(kd, KdOptions, float)
FUSEDKD_CUDA_PAIR_OVERLOAD(kd, KdOptions, __half)
FUSEDKD_CUDA_PAIR_OVERLOAD(kd, KdOptions, __nv_bfloat16)
FUSEDKD_CUDA_PAIR_OVERLOAD(dkd, DkdOptions, float)
FUSEDKD_CUDA_PAIR_OVERLOAD(dkd, DkdOptions, __half)
FUSEDKD_CUDA_PAIR_OVERLOAD(dkd, DkdOptions, __nv_bfloat16)
#undef FUSEDKD_CUDA_PAIR_OVERLOAD

#define FUSEDKD_CUDA_USKD_OVERLOAD(T)                                                                  \
  template <int kDeferred>                                                                             \
  inline Status uskd(Matrix<const T> student, Matrix<const T> weak, Labels labels, const UskdOptions& options, \
                     float* loss, Matrix<T> grad_student, Matrix<T> grad_weak, void* workspace,         \
                     size_t workspace_bytes, cudaStream_t stream, Validation validation) {             \
    return impl::uskd<typename impl::Deferred<T, kDeferred>::type>(student, weak, labels, options, loss, grad_student, grad_weak, workspace,      \
                         workspace_bytes, stream, validation);                                          \
  }
FUSEDKD_CUDA_USKD_OVERLOAD(float)
FUSEDKD_CUDA_USKD_OVERLOAD(__half)
FUSEDKD_CUDA_USKD_OVERLOAD(__nv_bfloat16)
#undef FUSEDKD_CUDA_USKD_OVERLOAD

}  // namespace cuda
}  // namespace fusedkd
