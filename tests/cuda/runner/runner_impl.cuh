// tests/cuda/runner/runner_impl.cuh — the device side of the runner (internal): buffers, the
// calls, timing. runner.cu holds the dtype-independent parts; runner_f32.cu, runner_f16.cu and
// runner_bf16.cu each instantiate run_t / time_call for one logits type, so the kernels of the three
// types compile in three translation units (in parallel) and nothing else compiles them.
#pragma once

#include "runner.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fusedkd/cuda.cuh"

namespace fkcuda {
namespace detail {

using fusedkd::Labels;
using fusedkd::Matrix;
using fusedkd::Status;


inline float sentinel_float() {
  float f;
  const uint32_t b = kSentinelBits;
  std::memcpy(&f, &b, sizeof f);
  return f;
}

// ---- host <-> device element conversion ----

template <typename T> T to_t(float x);
template <> inline float to_t<float>(float x) { return x; }
template <> inline __half to_t<__half>(float x) { return __float2half_rn(x); }
template <> inline __nv_bfloat16 to_t<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
inline float from_t(float x) { return x; }
inline float from_t(__half x) { return __half2float(x); }
inline float from_t(__nv_bfloat16 x) { return __bfloat162float(x); }

/// The sentinel in T: float keeps the payload; the 16-bit types get a NaN with their own payload.
template <typename T> T sentinel_t();
template <> inline float sentinel_t<float>() { return sentinel_float(); }
template <> inline __half sentinel_t<__half>() { return __ushort_as_half(static_cast<unsigned short>(0x7e5du)); }
template <> inline __nv_bfloat16 sentinel_t<__nv_bfloat16>() {
  return __ushort_as_bfloat16(static_cast<unsigned short>(0x7fadu));
}

/// Device memory freed on scope exit.
struct DeviceBuffer {
  void* ptr = nullptr;
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr != nullptr) cudaFree(ptr);
  }
  cudaError_t alloc(size_t bytes) { return cudaMalloc(&ptr, bytes > 0 ? bytes : 1); }
};

struct Failure {
  std::string what;
};

inline void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Failure{std::string(what) + ": " + cudaGetErrorString(e)};
}

/// The device side of one problem: buffers for logits, labels, outputs and workspace.
template <typename T>
struct Device {
  const Problem& p;
  int64_t n, c, ld;
  size_t elems;
  int offset;  // elements past the allocation start (misalign)
  DeviceBuffer zb, ob, gzb, gwb, lossb, labb, wsb;
  T *z = nullptr, *o = nullptr, *gz = nullptr, *gw = nullptr;
  float* loss = nullptr;
  const void* labels = nullptr;
  void* ws = nullptr;
  size_t ws_bytes = 0;

  explicit Device(const Problem& p_)
      : p(p_), n(p_.n), c(p_.c), ld(p_.stride()), elems(static_cast<size_t>(p_.n * p_.stride())),
        offset(p_.misalign ? 1 : 0) {}

  bool other_shape() const { return p.other_n >= 0 && p.other_c >= 0; }

  T* matrix_buffer(DeviceBuffer& b, const std::vector<float>* values, size_t count) {
    ck(b.alloc((count + 16) * sizeof(T)), "cudaMalloc");
    T* d = static_cast<T*>(b.ptr) + offset;
    std::vector<T> h(count + 1, sentinel_t<T>());
    if (values != nullptr) {
      for (size_t k = 0; k < count && k < values->size(); ++k) h[k] = to_t<T>((*values)[k]);
    }
    ck(cudaMemcpy(d, h.data(), count * sizeof(T), cudaMemcpyHostToDevice), "upload");
    return d;
  }
  T* matrix_buffer(DeviceBuffer& b, const std::vector<float>* values) { return matrix_buffer(b, values, elems); }

  void upload() {
    z = matrix_buffer(zb, &p.student);
    o = other_shape() ? matrix_buffer(ob, &p.other, static_cast<size_t>(p.other_n * p.other_c))
                      : matrix_buffer(ob, &p.other);
    if (p.want_grad && !p.in_place) {
      gz = matrix_buffer(gzb, nullptr);
      if (p.loss == Loss::kUskd) gw = matrix_buffer(gwb, nullptr);
    } else if (p.want_grad) {
      gz = z;
      if (p.loss == Loss::kUskd) gw = other_shape() ? nullptr : o;
    }
    const size_t lc = static_cast<size_t>(p.loss_count() > 0 ? p.loss_count() : 1);
    ck(lossb.alloc(lc * sizeof(float)), "cudaMalloc");
    loss = static_cast<float*>(lossb.ptr);
    const std::vector<float> ls(lc, sentinel_float());
    ck(cudaMemcpy(loss, ls.data(), lc * sizeof(float), cudaMemcpyHostToDevice), "upload");
    switch (p.label_kind) {
      case LabelKind::kNone: break;
      case LabelKind::kHard32:
        ck(labb.alloc(p.labels32.size() * 4 + 4), "cudaMalloc");
        ck(cudaMemcpy(labb.ptr, p.labels32.data(), p.labels32.size() * 4, cudaMemcpyHostToDevice), "upload");
        break;
      case LabelKind::kHard64:
        ck(labb.alloc(p.labels64.size() * 8 + 8), "cudaMalloc");
        ck(cudaMemcpy(labb.ptr, p.labels64.data(), p.labels64.size() * 8, cudaMemcpyHostToDevice), "upload");
        break;
      case LabelKind::kSoft:
        ck(labb.alloc(p.soft.size() * 4 + 4), "cudaMalloc");
        ck(cudaMemcpy(labb.ptr, p.soft.data(), p.soft.size() * 4, cudaMemcpyHostToDevice), "upload");
        break;
    }
    labels = labb.ptr;
    if (p.misalign_labels && labels != nullptr) {  // the call must refuse these, never read them
      labels = static_cast<const unsigned char*>(labels) + (p.label_kind == LabelKind::kHard64 ? 4 : 2);
    }
    const Labels::Kind kind = device_labels().kind;
    switch (p.loss) {
      case Loss::kNkd: ws_bytes = fusedkd::cuda::nkd_workspace_size(n, c, kind, p.nkd); break;
      case Loss::kKd: ws_bytes = fusedkd::cuda::kd_workspace_size(n, c, kind, p.kd); break;
      case Loss::kDkd: ws_bytes = fusedkd::cuda::dkd_workspace_size(n, c, kind, p.dkd); break;
      case Loss::kUskd: ws_bytes = fusedkd::cuda::uskd_workspace_size(n, c, kind, p.uskd); break;
    }
    if (p.workspace_shrink > 0) {
      ws_bytes = ws_bytes > static_cast<size_t>(p.workspace_shrink) ? ws_bytes - static_cast<size_t>(p.workspace_shrink) : 0;
    }
    ck(wsb.alloc(ws_bytes), "cudaMalloc");
    ws = wsb.ptr;
    ck(cudaMemset(ws, 0xab, ws_bytes), "cudaMemset");  // no reliance on a zeroed workspace
    // cudaMemset and the pageable cudaMemcpy uploads above are queued on the legacy default
    // stream (or may still be in flight), which the calls' non-blocking stream is not ordered
    // after: wait for them here.
    ck(cudaDeviceSynchronize(), "cudaDeviceSynchronize after the uploads");
  }

  Labels device_labels() const {
    switch (p.label_kind) {
      case LabelKind::kNone: return Labels::none();
      case LabelKind::kHard32: return Labels::index(static_cast<const int32_t*>(labels));
      case LabelKind::kHard64: return Labels::index(static_cast<const int64_t*>(labels));
      case LabelKind::kSoft: return Labels::soft(static_cast<const float*>(labels), p.soft_ld);
    }
    return Labels::none();
  }

  Status call(cudaStream_t stream) {
    const auto zm = fusedkd::matrix<const T>(z, n, c, ld);
    const auto om = other_shape() ? fusedkd::matrix<const T>(o, p.other_n, p.other_c)
                                  : fusedkd::matrix<const T>(o, n, c, ld);
    const Matrix<T> gzm = gz != nullptr ? fusedkd::matrix<T>(gz, n, c, ld) : Matrix<T>();
    const Matrix<T> gwm = gw != nullptr ? fusedkd::matrix<T>(gw, n, c, ld) : Matrix<T>();
    const auto v = p.sync_validation ? fusedkd::cuda::Validation::kSync : fusedkd::cuda::Validation::kAsync;
    const Labels l = device_labels();
    switch (p.loss) {
      case Loss::kNkd: return fusedkd::cuda::nkd(zm, om, l, p.nkd, loss, gzm, ws, ws_bytes, stream, v);
      case Loss::kKd: return fusedkd::cuda::kd(zm, om, l, p.kd, loss, gzm, ws, ws_bytes, stream, v);
      case Loss::kDkd: return fusedkd::cuda::dkd(zm, om, l, p.dkd, loss, gzm, ws, ws_bytes, stream, v);
      case Loss::kUskd:
        return fusedkd::cuda::uskd(zm, om, l, p.uskd, loss, gzm, gwm, ws, ws_bytes, stream, v);
    }
    return Status::kNotSupported;
  }

  std::vector<float> download(const T* d) {
    std::vector<T> h(elems);
    ck(cudaMemcpy(h.data(), d, elems * sizeof(T), cudaMemcpyDeviceToHost), "download");
    std::vector<float> out(elems);
    for (size_t k = 0; k < elems; ++k) out[k] = from_t(h[k]);
    return out;
  }
};

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { ck(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate"); }
  ~Stream() { cudaStreamDestroy(s); }
};

/// Milliseconds of device time that `work` (enqueued on s) takes; the events go on any exit.
template <typename F>
double elapsed_ms(cudaStream_t s, F&& work) {
  struct Events {
    cudaEvent_t a = nullptr, b = nullptr;
    ~Events() {
      if (a != nullptr) cudaEventDestroy(a);
      if (b != nullptr) cudaEventDestroy(b);
    }
  } e;
  ck(cudaEventCreate(&e.a), "cudaEventCreate");
  ck(cudaEventCreate(&e.b), "cudaEventCreate");
  ck(cudaEventRecord(e.a, s), "cudaEventRecord");
  work();
  ck(cudaEventRecord(e.b, s), "cudaEventRecord");
  ck(cudaEventSynchronize(e.b), "cudaEventSynchronize");
  float ms = 0.0f;
  ck(cudaEventElapsedTime(&ms, e.a, e.b), "cudaEventElapsedTime");
  return static_cast<double>(ms);
}

template <typename T>
Result run_t(const Problem& p) {
  Result r;
  try {
    Device<T> d(p);
    d.upload();
    Stream stream;
    if (p.graph) {
      cudaGraph_t graph = nullptr;
      cudaGraphExec_t exec = nullptr;
      ck(cudaStreamBeginCapture(stream.s, cudaStreamCaptureModeGlobal), "cudaStreamBeginCapture");
      r.status = d.call(stream.s);
      const cudaError_t end = cudaStreamEndCapture(stream.s, &graph);
      if (r.status == Status::kSuccess) {
        ck(end, "cudaStreamEndCapture");
        ck(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
        // Replayed twice: the second replay must find the workspace as the first left it and
        // still give the same results (the call resets what it needs at its start).
        ck(cudaGraphLaunch(exec, stream.s), "cudaGraphLaunch");
        ck(cudaGraphLaunch(exec, stream.s), "cudaGraphLaunch (replay)");
      }
      ck(cudaStreamSynchronize(stream.s), "cudaStreamSynchronize");
      if (exec != nullptr) cudaGraphExecDestroy(exec);
      if (graph != nullptr) cudaGraphDestroy(graph);
    } else if (p.pending_error) {
      void* huge = nullptr;
      if (cudaMalloc(&huge, size_t(1) << 62) == cudaSuccess) cudaFree(huge);  // fails: stays pending
      r.status = d.call(stream.s);
      r.pending_error_kept = cudaGetLastError() == cudaErrorMemoryAllocation;
    } else {
      r.status = d.call(stream.s);
    }
    r.check = fusedkd::cuda::check(d.ws, stream.s);
    ck(cudaStreamSynchronize(stream.s), "cudaStreamSynchronize");
    ck(cudaGetLastError(), "kernel");
    r.loss.resize(static_cast<size_t>(p.loss_count() > 0 ? p.loss_count() : 1));
    ck(cudaMemcpy(r.loss.data(), d.loss, r.loss.size() * sizeof(float), cudaMemcpyDeviceToHost), "download");
    r.loss.resize(static_cast<size_t>(p.loss_count()));
    if (d.gz != nullptr) r.grad_student = d.download(d.gz);
    if (d.gw != nullptr) r.grad_weak = d.download(d.gw);
  } catch (const Failure& f) {
    r.error = f.what;
  }
  return r;
}

template <typename T>
double time_call(const Problem& p, int iters) {
  try {
    Device<T> d(p);
    d.upload();
    Stream stream;
    for (int k = 0; k < 3; ++k) {
      if (d.call(stream.s) != Status::kSuccess) return -1.0;
    }
    const double ms = elapsed_ms(stream.s, [&] {
      for (int k = 0; k < iters; ++k) d.call(stream.s);
    });
    return ms / iters;
  } catch (const Failure&) {
    return -1.0;
  }
}


}  // namespace detail
}  // namespace fkcuda

/// One logits type's instantiations (in runner_<dtype>.cu).
#define FKCUDA_RUNNER_INSTANTIATE(T)                                          \
  namespace fkcuda {                                                          \
  namespace detail {                                                          \
  template Result run_t<T>(const Problem& p);                                 \
  template double time_call<T>(const Problem& p, int iters);                     \
  }                                                                           \
  }
