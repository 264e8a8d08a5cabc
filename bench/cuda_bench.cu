// bench/cuda_bench.cu — fusedkd_bench_cuda: the fused CUDA losses against the unfused CUDA
// pipeline of the released code (unfused_cuda.cuh) and, when built with a LibTorch that has CUDA,
// against LibTorch-CUDA eager (eager_cuda.cpp).
//
// Benchmark names: <loss>/<method>/<dtype>/N:<n>/C:<c>, method = fused | unfused | torch,
// dtype = f32 | bf16; copy/d2d/MiB:<m> is the device-to-device copy bandwidth of this GPU.
// Every figure is per call of forward + backward (the loss and every gradient):
//   time              CUDA events around the call alone, the L2 cache flushed (a memset of twice
//                     its size) before each iteration; median over --fusedkd_reps repetitions
//   ideal_bytes       each input read once, each gradient written once, the labels read once:
//                     NKD / KD / DKD 3 * N * C * sizeof(T), USKD 4 * N * C * sizeof(T), + 8 N (not KD)
//   bytes_per_second  ideal_bytes / time (scripts/plot_bench.py divides by the copy's)
//   peak_extra_bytes  fused: the workspace it asks for (it allocates nothing else); unfused: the
//                     high-water mark of its temporaries; torch: the caching allocator's peak
//                     during one call beyond what was in use before, less the gradients
//   launches          kernel launches (and cub calls) per call of the unfused pipeline
//   max_rel_diff      max |grad_fused - grad_baseline| / max |grad_baseline| (a sanity check)
//
// Flags (before Google Benchmark's): --fusedkd_shapes=NxC,..., --fusedkd_losses=nkd,uskd,...,
// --fusedkd_dtypes=f32,bf16, --fusedkd_methods=fused,unfused,torch, --fusedkd_reps=K (default 5),
// --fusedkd_min_time=S (default 0.05), --fusedkd_small (image shapes only). Default shapes: 128 and
// 256 x 100 and 1000; 4096 and 8192 x 32000 and 128256; 10^6 x 10, 100 and 1000.
#include <benchmark/benchmark.h>

#include "flags.hpp"
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "fusedkd/cuda.cuh"
#include "unfused_cuda.cuh"

#if defined(FUSEDKD_BENCH_TORCH_CUDA)
#include "eager_cuda.hpp"
#endif

namespace {

#define BENCH_CUDA(call)                                                                       \
  do {                                                                                         \
    const cudaError_t e_ = (call);                                                             \
    if (e_ != cudaSuccess) {                                                                   \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      std::exit(1);                                                                            \
    }                                                                                          \
  } while (0)

enum class LossId { kNkd, kKd, kDkd, kUskd };
enum class Method { kFused, kUnfused, kTorch };
enum class DType { kF32, kBF16 };

struct Shape {
  int64_t n, c;
};

const char* loss_name(LossId l) {
  switch (l) {
    case LossId::kNkd: return "nkd";
    case LossId::kKd: return "kd";
    case LossId::kDkd: return "dkd";
    case LossId::kUskd: return "uskd";
  }
  return "?";
}
const char* method_name(Method m) {
  return m == Method::kFused ? "fused" : m == Method::kUnfused ? "unfused" : "torch";
}
const char* dtype_name(DType d) { return d == DType::kF32 ? "f32" : "bf16"; }
size_t dtype_size(DType d) { return d == DType::kF32 ? 4 : 2; }
int tensors_moved(LossId l) { return l == LossId::kUskd ? 4 : 3; }

// The released configs' defaults (ImageNet): the same options as the CPU benchmark.
const fusedkd::NkdOptions kNkd;
const fusedkd::KdOptions kKd;
const fusedkd::DkdOptions kDkd;
const fusedkd::UskdOptions kUskd;

// ---- device state -----------------------------------------------------------------------------
cudaStream_t g_stream = nullptr;  // the legacy default stream: LibTorch's current stream too
cudaEvent_t g_start, g_stop;
void* g_flush = nullptr;
size_t g_flush_bytes = 0;

void init_device() {
  BENCH_CUDA(cudaEventCreate(&g_start));
  BENCH_CUDA(cudaEventCreate(&g_stop));
  int dev = 0, l2 = 0;
  BENCH_CUDA(cudaGetDevice(&dev));
  BENCH_CUDA(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
  g_flush_bytes = static_cast<size_t>(std::max(l2, 1 << 20)) * 2;
  BENCH_CUDA(cudaMalloc(&g_flush, g_flush_bytes));
}

void flush_l2() { BENCH_CUDA(cudaMemsetAsync(g_flush, 0, g_flush_bytes, g_stream)); }

/// Times `call` (CUDA events around it alone), L2 flushed before each iteration.
template <class F>
void timed_loop(benchmark::State& state, F&& call) {
  for (auto _ : state) {
    flush_l2();
    BENCH_CUDA(cudaEventRecord(g_start, g_stream));
    call();
    BENCH_CUDA(cudaEventRecord(g_stop, g_stream));
    BENCH_CUDA(cudaEventSynchronize(g_stop));
    float ms = 0.f;
    BENCH_CUDA(cudaEventElapsedTime(&ms, g_start, g_stop));
    state.SetIterationTime(static_cast<double>(ms) * 1e-3);
  }
}

/// The inputs and outputs of one shape and dtype on the device (one set at a time).
struct DevData {
  Shape shape{0, 0};
  DType dtype = DType::kF32;
  void *z = nullptr, *v = nullptr, *gz = nullptr, *gw = nullptr, *gref = nullptr, *gwref = nullptr;
  int64_t* labels = nullptr;
  float* loss = nullptr;

  void release() {
    for (void* p : {z, v, gz, gw, gref, gwref, static_cast<void*>(labels), static_cast<void*>(loss)}) {
      if (p != nullptr) cudaFree(p);
    }
    z = v = gz = gw = gref = gwref = nullptr;
    labels = nullptr;
    loss = nullptr;
    shape = {0, 0};
  }
};

DevData g_data;

bool fits(size_t bytes) {
  size_t free_b = 0, total = 0;
  BENCH_CUDA(cudaMemGetInfo(&free_b, &total));
  return bytes + (size_t(256) << 20) < free_b;
}

// Random inputs drawn on the device (the large shapes hold 10^9 elements): the CPU benchmark's
// distribution, student N(0, 2^2), teacher / weak = 0.7 z + N(0, 1.5^2), the label the teacher's
// argmax with probability 0.7 and a uniform class otherwise. A counter-based hash as the RNG.
__device__ __forceinline__ uint32_t hash32(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return static_cast<uint32_t>(x);
}
__device__ __forceinline__ float uniform01(uint64_t key) { return (hash32(key) + 0.5f) * 2.3283064e-10f; }
__device__ __forceinline__ float normal(uint64_t key) {
  const float u1 = uniform01(2 * key), u2 = uniform01(2 * key + 1);
  return sqrtf(-2.f * logf(u1)) * cospif(2.f * u2);
}

template <typename T>
__global__ void gen_logits_kernel(T* z, T* v, int64_t count, uint64_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const float zi = 2.f * normal(seed + 2 * static_cast<uint64_t>(i));
    const float vi = 0.7f * zi + 1.5f * normal(seed + 2 * static_cast<uint64_t>(i) + 1);
    z[i] = unfused::st<T>(zi);
    v[i] = unfused::st<T>(vi);
  }
}

template <typename T>
__global__ void gen_labels_kernel(const T* v, int64_t c, int64_t* labels, uint64_t seed) {
  __shared__ float best_v[256];
  __shared__ int64_t best_i[256];
  const int64_t r = blockIdx.x;
  float bv = -INFINITY;
  int64_t bi = 0;
  for (int64_t i = threadIdx.x; i < c; i += blockDim.x) {
    const float x = unfused::ld(v[r * c + i]);
    if (x > bv) {
      bv = x;
      bi = i;
    }
  }
  best_v[threadIdx.x] = bv;
  best_i[threadIdx.x] = bi;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) {
      const float o = best_v[threadIdx.x + s];
      const int64_t oi = best_i[threadIdx.x + s];
      if (o > best_v[threadIdx.x] || (o == best_v[threadIdx.x] && oi < best_i[threadIdx.x])) {
        best_v[threadIdx.x] = o;
        best_i[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const uint64_t key = seed ^ (0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(r + 1));
    labels[r] = uniform01(key) < 0.7f ? best_i[0] : static_cast<int64_t>(hash32(key + 1) % static_cast<uint64_t>(c));
  }
}

/// The inputs of one shape and dtype (one set at a time). False when they do not fit.
bool data_for(Shape s, DType d) {
  if (g_data.shape.n == s.n && g_data.shape.c == s.c && g_data.dtype == d) return true;
  g_data.release();
  const size_t count = static_cast<size_t>(s.n * s.c), es = dtype_size(d);
  if (!fits(6 * count * es)) return false;
  for (void** p : {&g_data.z, &g_data.v, &g_data.gz, &g_data.gw, &g_data.gref, &g_data.gwref}) {
    BENCH_CUDA(cudaMalloc(p, count * es));
  }
  BENCH_CUDA(cudaMalloc(&g_data.labels, sizeof(int64_t) * static_cast<size_t>(s.n)));
  BENCH_CUDA(cudaMalloc(&g_data.loss, sizeof(float) * 2));
  const uint64_t seed = 12345 + static_cast<uint64_t>(s.n) * 7 + static_cast<uint64_t>(s.c);
  const unsigned blocks = static_cast<unsigned>(std::min<size_t>((count + 255) / 256, 65535 * 8));
  if (d == DType::kF32) {
    gen_logits_kernel<<<blocks, 256, 0, g_stream>>>(static_cast<float*>(g_data.z), static_cast<float*>(g_data.v),
                                                    static_cast<int64_t>(count), seed);
    gen_labels_kernel<<<static_cast<unsigned>(s.n), 256, 0, g_stream>>>(static_cast<const float*>(g_data.v), s.c,
                                                                         g_data.labels, seed);
  } else {
    gen_logits_kernel<<<blocks, 256, 0, g_stream>>>(static_cast<__nv_bfloat16*>(g_data.z),
                                                    static_cast<__nv_bfloat16*>(g_data.v),
                                                    static_cast<int64_t>(count), seed);
    gen_labels_kernel<<<static_cast<unsigned>(s.n), 256, 0, g_stream>>>(
        static_cast<const __nv_bfloat16*>(g_data.v), s.c, g_data.labels, seed);
  }
  BENCH_CUDA(cudaGetLastError());
  BENCH_CUDA(cudaStreamSynchronize(g_stream));
  g_data.shape = s;
  g_data.dtype = d;
  return true;
}

// ---- the methods ------------------------------------------------------------------------------
template <typename T>
struct Fused {
  LossId loss;
  Shape s;
  void* ws = nullptr;
  size_t ws_bytes = 0;

  size_t workspace_size() const {
    const auto k = fusedkd::Labels::Kind::kIndex64;
    switch (loss) {
      case LossId::kNkd: return fusedkd::cuda::nkd_workspace_size(s.n, s.c, k, kNkd);
      case LossId::kKd: return fusedkd::cuda::kd_workspace_size(s.n, s.c, fusedkd::Labels::Kind::kNone, kKd);
      case LossId::kDkd: return fusedkd::cuda::dkd_workspace_size(s.n, s.c, k, kDkd);
      case LossId::kUskd: return fusedkd::cuda::uskd_workspace_size(s.n, s.c, k, kUskd);
    }
    return 0;
  }

  fusedkd::Status call(T* gz, T* gw) {
    using fusedkd::matrix;
    const auto z = matrix<const T>(static_cast<const T*>(g_data.z), s.n, s.c);
    const auto v = matrix<const T>(static_cast<const T*>(g_data.v), s.n, s.c);
    const auto labels = fusedkd::Labels::index(static_cast<const int64_t*>(g_data.labels));
    switch (loss) {
      case LossId::kNkd:
        return fusedkd::cuda::nkd(z, v, labels, kNkd, g_data.loss, matrix(gz, s.n, s.c), ws, ws_bytes, g_stream);
      case LossId::kKd:
        // the released KDLoss takes no labels
        return fusedkd::cuda::kd(z, v, fusedkd::Labels::none(), kKd, g_data.loss, matrix(gz, s.n, s.c), ws, ws_bytes,
                                 g_stream);
      case LossId::kDkd:
        return fusedkd::cuda::dkd(z, v, labels, kDkd, g_data.loss, matrix(gz, s.n, s.c), ws, ws_bytes, g_stream);
      case LossId::kUskd:
        return fusedkd::cuda::uskd(z, v, labels, kUskd, g_data.loss, matrix(gz, s.n, s.c), matrix(gw, s.n, s.c), ws,
                                   ws_bytes, g_stream);
    }
    return fusedkd::Status::kNotSupported;
  }
};

template <typename T>
int unfused_call(unfused::Pool& pool, LossId loss, Shape s, T* gz, T* gw, float* loss_out, cudaError_t* err) {
  unfused::Ctx x(pool, g_stream);
  const T* z = static_cast<const T*>(g_data.z);
  const T* v = static_cast<const T*>(g_data.v);
  const int64_t* lab = g_data.labels;
  switch (loss) {
    case LossId::kNkd:
      unfused::nkd<T>(x, z, v, lab, s.n, s.c, float(kNkd.temperature), float(kNkd.gamma), loss_out, gz);
      break;
    case LossId::kKd:
      unfused::kd<T>(x, z, v, s.n, s.c, float(kKd.temperature), float(kKd.weight), loss_out, gz);
      break;
    case LossId::kDkd:
      unfused::dkd<T>(x, z, v, lab, s.n, s.c, float(kDkd.temperature), float(kDkd.alpha), float(kDkd.beta), loss_out,
                      gz);
      break;
    case LossId::kUskd:
      unfused::uskd<T>(x, z, v, lab, s.n, s.c, float(kUskd.alpha), float(kUskd.beta), float(kUskd.mu),
                       float(kUskd.smoothing), loss_out, gz, gw);
      break;
  }
  if (err != nullptr) *err = x.error();
  return x.launches();
}

// max |a - b| and max |b| over count elements, on the device.
template <typename T>
__global__ void diff_kernel(const T* a, const T* b, int64_t count, float* out) {
  float d = 0.f, m = 0.f;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const float x = unfused::ld(a[i]), y = unfused::ld(b[i]);
    d = fmaxf(d, fabsf(x - y));
    m = fmaxf(m, fabsf(y));
  }
  // float atomics on non-negative values: compare as ints
  atomicMax(reinterpret_cast<int*>(out), __float_as_int(d));
  atomicMax(reinterpret_cast<int*>(out) + 1, __float_as_int(m));
}

template <typename T>
double max_rel_diff(const void* a, const void* b, int64_t count) {
  float* d = nullptr;
  BENCH_CUDA(cudaMalloc(&d, 2 * sizeof(float)));
  BENCH_CUDA(cudaMemset(d, 0, 2 * sizeof(float)));
  diff_kernel<T><<<1024, 256, 0, g_stream>>>(static_cast<const T*>(a), static_cast<const T*>(b), count, d);
  float h[2];
  BENCH_CUDA(cudaMemcpy(h, d, sizeof(h), cudaMemcpyDeviceToHost));
  BENCH_CUDA(cudaFree(d));
  return h[1] > 0.f ? h[0] / h[1] : h[0];
}

int64_t ideal_bytes(LossId l, Shape s, DType d) {
  return static_cast<int64_t>(tensors_moved(l)) * s.n * s.c * static_cast<int64_t>(dtype_size(d)) +
         (l == LossId::kKd ? 0 : 8 * s.n);  // KD runs without labels
}

void set_counters(benchmark::State& state, LossId l, Shape s, DType d, int64_t peak, int launches) {
  const int64_t bytes = ideal_bytes(l, s, d);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * bytes);
  state.counters["ideal_bytes"] = static_cast<double>(bytes);
  state.counters["peak_extra_bytes"] = static_cast<double>(peak);
  if (launches > 0) state.counters["launches"] = launches;
}

template <typename T>
void bm_fused(benchmark::State& state, LossId l, Shape s, DType d) {
  if (!data_for(s, d)) return state.SkipWithError("inputs do not fit in device memory");
  Fused<T> f{l, s};
  f.ws_bytes = f.workspace_size();
  if (!fits(f.ws_bytes)) return state.SkipWithError("workspace does not fit");
  BENCH_CUDA(cudaMalloc(&f.ws, std::max<size_t>(f.ws_bytes, 1)));
  T* gz = static_cast<T*>(g_data.gz);
  T* gw = static_cast<T*>(g_data.gw);
  fusedkd::Status st = f.call(gz, gw);  // warm-up
  if (st == fusedkd::Status::kSuccess) st = fusedkd::cuda::check(f.ws, g_stream);
  if (st != fusedkd::Status::kSuccess) {
    cudaFree(f.ws);
    return state.SkipWithError(fusedkd::status_string(st));
  }
  // Sanity check against the unfused pipeline, when it fits: once per loss, shape and dtype
  // (Google Benchmark calls this function again for every repetition; NaN: did not fit).
  static std::map<std::tuple<int, int64_t, int64_t>, double> checked;  // per T: per dtype
  const auto key = std::make_tuple(static_cast<int>(l), s.n, s.c);
  auto it = checked.find(key);
  if (it == checked.end()) {
    double r = std::numeric_limits<double>::quiet_NaN();
    unfused::Pool pool;
    pool.plan();
    unfused_call<T>(pool, l, s, nullptr, nullptr, nullptr, nullptr);
    if (fits(pool.peak()) && pool.materialize() == cudaSuccess) {
      pool.start_run();
      unfused_call<T>(pool, l, s, static_cast<T*>(g_data.gref), static_cast<T*>(g_data.gwref), g_data.loss + 1,
                      nullptr);
      r = max_rel_diff<T>(gz, g_data.gref, s.n * s.c);
      if (l == LossId::kUskd) r = std::max(r, max_rel_diff<T>(gw, g_data.gwref, s.n * s.c));
    }
    it = checked.emplace(key, r).first;
  }
  if (!std::isnan(it->second)) state.counters["max_rel_diff"] = it->second;
  timed_loop(state, [&] { f.call(gz, gw); });
  set_counters(state, l, s, d, static_cast<int64_t>(f.ws_bytes), 0);
  BENCH_CUDA(cudaFree(f.ws));
}

template <typename T>
void bm_unfused(benchmark::State& state, LossId l, Shape s, DType d) {
  if (!data_for(s, d)) return state.SkipWithError("inputs do not fit in device memory");
  unfused::Pool pool;
  pool.plan();
  const int launches = unfused_call<T>(pool, l, s, nullptr, nullptr, nullptr, nullptr);
  if (!fits(pool.peak())) return state.SkipWithError("the unfused temporaries do not fit in device memory");
  BENCH_CUDA(pool.materialize());
  T* gz = static_cast<T*>(g_data.gref);
  T* gw = static_cast<T*>(g_data.gwref);
  cudaError_t err = cudaSuccess;
  pool.start_run();
  unfused_call<T>(pool, l, s, gz, gw, g_data.loss + 1, &err);  // warm-up
  if (err == cudaSuccess) err = cudaStreamSynchronize(g_stream);
  if (err != cudaSuccess) return state.SkipWithError(cudaGetErrorString(err));
  timed_loop(state, [&] {
    pool.start_run();
    unfused_call<T>(pool, l, s, gz, gw, g_data.loss + 1, nullptr);
  });
  set_counters(state, l, s, d, static_cast<int64_t>(pool.peak()), launches);
}

#if defined(FUSEDKD_BENCH_TORCH_CUDA)
void bm_torch(benchmark::State& state, LossId l, Shape s, DType d) {
  if (!data_for(s, d)) return state.SkipWithError("inputs do not fit in device memory");
  double o[4] = {0, 0, 0, 0};
  switch (l) {
    case LossId::kNkd: o[0] = kNkd.temperature; o[1] = kNkd.gamma; break;
    case LossId::kKd: o[0] = kKd.temperature; o[1] = kKd.weight; break;
    case LossId::kDkd: o[0] = kDkd.temperature; o[1] = kDkd.alpha; o[2] = kDkd.beta; break;
    case LossId::kUskd: o[0] = kUskd.alpha; o[1] = kUskd.beta; o[2] = kUskd.mu; o[3] = kUskd.smoothing; break;
  }
  void* p = bench_torch_cuda::make(static_cast<int>(l), d == DType::kBF16 ? 1 : 0, g_data.z, g_data.v, g_data.labels,
                                   s.n, s.c, o);
  if (p == nullptr || !bench_torch_cuda::run(p)) {
    if (p != nullptr) bench_torch_cuda::destroy(p);
    return state.SkipWithError("LibTorch-CUDA failed (out of memory?)");
  }
  const long long peak = bench_torch_cuda::peak_extra(p);
  timed_loop(state, [&] { bench_torch_cuda::run(p); });
  bench_torch_cuda::destroy(p);
  set_counters(state, l, s, d, peak, 0);
}
#endif

void bm_copy(benchmark::State& state, size_t bytes) {
  void *a = nullptr, *b = nullptr;
  if (!fits(2 * bytes)) return state.SkipWithError("does not fit");
  BENCH_CUDA(cudaMalloc(&a, bytes));
  BENCH_CUDA(cudaMalloc(&b, bytes));
  BENCH_CUDA(cudaMemset(a, 1, bytes));
  BENCH_CUDA(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, g_stream));  // warm-up
  timed_loop(state, [&] { BENCH_CUDA(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, g_stream)); });
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(2 * bytes));
  state.counters["ideal_bytes"] = static_cast<double>(2 * bytes);
  BENCH_CUDA(cudaFree(a));
  BENCH_CUDA(cudaFree(b));
}

// ---- flags ------------------------------------------------------------------------------------
using bench_flags::split;
using bench_flags::take;
using bench_flags::listed;

}  // namespace

int main(int argc, char** argv) {
  std::vector<Shape> shapes;
  std::vector<std::string> losses, dtypes, methods;
  int reps = 5;
  double min_time = 0.05;
  bool small = false;
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    std::string v;
    if (take(a, "--fusedkd_shapes", &v)) {
      for (const auto& p : split(v, ',')) {
        const auto nc = split(p, 'x');
        if (nc.size() == 2) shapes.push_back({std::atoll(nc[0].c_str()), std::atoll(nc[1].c_str())});
      }
    } else if (take(a, "--fusedkd_losses", &v)) {
      losses = split(v, ',');
    } else if (take(a, "--fusedkd_dtypes", &v)) {
      dtypes = split(v, ',');
    } else if (take(a, "--fusedkd_methods", &v)) {
      methods = split(v, ',');
    } else if (take(a, "--fusedkd_reps", &v)) {
      reps = std::max(1, std::atoi(v.c_str()));
    } else if (take(a, "--fusedkd_min_time", &v)) {
      min_time = std::atof(v.c_str());
    } else if (a == "--fusedkd_small") {
      small = true;
    } else {
      argv[out++] = argv[i];
    }
  }
  argc = out;
  if (shapes.empty()) {
    shapes = {{128, 100}, {256, 100}, {128, 1000}, {256, 1000}};
    if (!small) {
      for (int64_t c : {int64_t(32000), int64_t(128256)}) {
        for (int64_t n : {int64_t(4096), int64_t(8192)}) shapes.push_back({n, c});
      }
      // Large N, small C: the batch sum, the label pre-pass and (USKD) the sort shape dominate.
      for (int64_t c : {int64_t(10), int64_t(100), int64_t(1000)}) shapes.push_back({1000000, c});
    }
  }

  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    std::fprintf(stderr, "fusedkd_bench_cuda: no CUDA device\n");
    return 2;
  }
  cudaDeviceProp prop;
  BENCH_CUDA(cudaGetDeviceProperties(&prop, dev));
  init_device();
  std::ostringstream desc;
  desc << prop.name << ", " << prop.multiProcessorCount << " SMs, " << (prop.totalGlobalMem >> 20) << " MiB, L2 "
       << (prop.l2CacheSize >> 20) << " MiB, sm_" << prop.major << prop.minor;
  benchmark::AddCustomContext("fusedkd_device", desc.str());
  benchmark::AddCustomContext("fusedkd_repetitions", std::to_string(reps));
#if defined(FUSEDKD_BENCH_TORCH_CUDA)
  const bool have_torch = true;
#else
  const bool have_torch = false;
#endif
  benchmark::AddCustomContext("fusedkd_torch_cuda", have_torch ? "yes" : "no");

  auto configure = [&](benchmark::internal::Benchmark* b) {
    b->UseManualTime()->Unit(benchmark::kMicrosecond)->Repetitions(reps)->ReportAggregatesOnly(true)->MinTime(min_time);
  };
  // The copy bandwidth: 2 x 1 GiB (or the largest that fits), far beyond the L2.
  {
    size_t bytes = size_t(1) << 30;
    while (bytes > (size_t(64) << 20) && !fits(2 * bytes)) bytes /= 2;
    configure(benchmark::RegisterBenchmark(("copy/d2d/MiB:" + std::to_string(bytes >> 20)).c_str(), bm_copy, bytes));
  }
  const LossId all_losses[] = {LossId::kNkd, LossId::kKd, LossId::kDkd, LossId::kUskd};
  for (const Shape& s : shapes) {
    for (DType d : {DType::kF32, DType::kBF16}) {
      if (!listed(dtypes, dtype_name(d))) continue;
      for (LossId l : all_losses) {
        if (!listed(losses, loss_name(l))) continue;
        for (Method m : {Method::kFused, Method::kUnfused, Method::kTorch}) {
          if (!listed(methods, method_name(m))) continue;
          if (m == Method::kTorch && !have_torch) continue;
          const std::string name = std::string(loss_name(l)) + "/" + method_name(m) + "/" + dtype_name(d) +
                                   "/N:" + std::to_string(s.n) + "/C:" + std::to_string(s.c);
          benchmark::internal::Benchmark* b = nullptr;
          if (m == Method::kFused) {
            b = d == DType::kF32 ? benchmark::RegisterBenchmark(name.c_str(), bm_fused<float>, l, s, d)
                                 : benchmark::RegisterBenchmark(name.c_str(), bm_fused<__nv_bfloat16>, l, s, d);
          } else if (m == Method::kUnfused) {
            b = d == DType::kF32 ? benchmark::RegisterBenchmark(name.c_str(), bm_unfused<float>, l, s, d)
                                 : benchmark::RegisterBenchmark(name.c_str(), bm_unfused<__nv_bfloat16>, l, s, d);
          } else {
#if defined(FUSEDKD_BENCH_TORCH_CUDA)
            b = benchmark::RegisterBenchmark(name.c_str(), bm_torch, l, s, d);
#endif
          }
          if (b != nullptr) configure(b);
        }
      }
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_data.release();
  return 0;
}
