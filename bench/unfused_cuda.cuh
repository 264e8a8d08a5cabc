// bench/unfused_cuda.cuh — the unfused CUDA baseline: the released PyTorch losses composed of
// separate simple kernels, one per operation, the way eager PyTorch runs them (see released.hpp
// for the Python): a softmax kernel per softmax, a gather, a fill + scatter for each mask, a
// boolean-mask select (cub::DeviceSelect + the count copied to the host, as torch.nonzero does),
// cub segmented radix sorts for torch.sort / argsort, row sums, means, elementwise kernels for
// every arithmetic operation, and the backward pass autograd would run, kernel by kernel.
//
// Intermediate tensors are in the logits' type T (float or bf16) as PyTorch stores them, with
// float math inside each kernel. Temporaries come from a Pool (first fit, freed when PyTorch's
// caching allocator would get them back: when no later kernel or the backward needs them), whose
// high-water mark is the "peak extra memory" of the unfused path. A call is planned once (no
// launches: sizes and the peak only), then run on a pool of exactly that size.
//
// Hard labels (int64), mean reduction, ce_weight 0: the benchmarked case.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cub/cub.cuh>
#include <thrust/iterator/counting_iterator.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <vector>

namespace unfused {

__device__ __forceinline__ float ld(float x) { return x; }
__device__ __forceinline__ float ld(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T st(float x);
template <> __device__ __forceinline__ float st<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 st<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// ---- memory -----------------------------------------------------------------------------------
/// First-fit allocator over one device buffer; in plan mode it only counts.
class Pool {
 public:
  void plan() {
    base_ = nullptr;
    reset();
  }
  /// Allocates the planned peak on the device.
  cudaError_t materialize() {
    release_device();
    reset_keep_peak();
    return cudaMalloc(&device_, peak_ > 0 ? peak_ : 256);
  }
  void start_run() {
    base_ = static_cast<char*>(device_);
    reset_keep_peak();
  }
  ~Pool() { release_device(); }

  void* alloc(size_t bytes) {
    bytes = (bytes + 255) / 256 * 256;
    if (bytes == 0) bytes = 256;
    size_t off = SIZE_MAX;
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second >= bytes) {
        off = it->first;
        const size_t left = it->second - bytes;
        free_.erase(it);
        if (left > 0) free_[off + bytes] = left;
        break;
      }
    }
    if (off == SIZE_MAX) {
      // grow at the top (merging a free block that ends at the top)
      off = top_;
      if (!free_.empty()) {
        auto last = std::prev(free_.end());
        if (last->first + last->second == top_) {
          off = last->first;
          free_.erase(last);
        }
      }
      top_ = off + bytes;
      peak_ = std::max(peak_, top_);
    }
    used_[off] = bytes;
    return base_ != nullptr ? static_cast<void*>(base_ + off) : reinterpret_cast<void*>(off + 4096);
  }

  void free(const void* p) {
    const size_t off = base_ != nullptr ? static_cast<size_t>(static_cast<const char*>(p) - base_)
                                        : reinterpret_cast<size_t>(p) - 4096;
    auto it = used_.find(off);
    if (it == used_.end()) return;
    size_t start = off, size = it->second;
    used_.erase(it);
    // coalesce with the neighbours
    auto next = free_.lower_bound(start);
    if (next != free_.end() && next->first == start + size) {
      size += next->second;
      next = free_.erase(next);
    }
    if (next != free_.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == start) {
        start = prev->first;
        size += prev->second;
        free_.erase(prev);
      }
    }
    if (start + size == top_) {
      top_ = start;
    } else {
      free_[start] = size;
    }
  }

  size_t peak() const { return peak_; }
  bool planning() const { return base_ == nullptr; }

 private:
  void reset() {
    reset_keep_peak();
    peak_ = 0;
  }
  void reset_keep_peak() {
    free_.clear();
    used_.clear();
    top_ = 0;
  }
  void release_device() {
    if (device_ != nullptr) cudaFree(device_);
    device_ = nullptr;
  }
  char* base_ = nullptr;
  void* device_ = nullptr;
  size_t top_ = 0, peak_ = 0;
  std::map<size_t, size_t> free_, used_;
};

// ---- kernels ----------------------------------------------------------------------------------
struct MaxOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

template <class F>
__global__ void map_kernel(int64_t n, F f) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) f(i);
}

/// One block per row: out(r, sum over i of f(r, i)).
template <int BS, class F, class G>
__global__ void row_sum_kernel(int64_t c, F f, G out) {
  using Reduce = cub::BlockReduce<float, BS>;
  __shared__ typename Reduce::TempStorage tmp;
  const int64_t r = blockIdx.x;
  float s = 0.f;
  for (int64_t i = threadIdx.x; i < c; i += BS) s += f(r, i);
  s = Reduce(tmp).Sum(s);
  if (threadIdx.x == 0) out(r, s);
}

/// softmax / log_softmax of each row of `in` ([rows, c]) into `out`: max, sum, write (3 reads).
template <int BS, typename T>
__global__ void softmax_kernel(const T* in, T* out, int64_t c, bool log) {
  using Reduce = cub::BlockReduce<float, BS>;
  __shared__ typename Reduce::TempStorage tmp;
  __shared__ float s_max, s_sum;
  const T* x = in + blockIdx.x * c;
  T* y = out + blockIdx.x * c;
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < c; i += BS) m = fmaxf(m, ld(x[i]));
  m = Reduce(tmp).Reduce(m, MaxOp());
  if (threadIdx.x == 0) s_max = m;
  __syncthreads();
  m = s_max;
  float s = 0.f;
  for (int64_t i = threadIdx.x; i < c; i += BS) s += __expf(ld(x[i]) - m);
  s = Reduce(tmp).Sum(s);
  if (threadIdx.x == 0) s_sum = s;
  __syncthreads();
  s = s_sum;
  const float ls = __logf(s), inv = 1.f / s;
  for (int64_t i = threadIdx.x; i < c; i += BS) {
    const float d = ld(x[i]) - m;
    y[i] = st<T>(log ? d - ls : __expf(d) * inv);
  }
}

/// One block: out(sum over i < n of f(i)).
template <int BS, class F, class G>
__global__ void reduce_kernel(int64_t n, F f, G out) {
  using Reduce = cub::BlockReduce<float, BS>;
  __shared__ typename Reduce::TempStorage tmp;
  float s = 0.f;
  for (int64_t i = threadIdx.x; i < n; i += BS) s += f(i);
  s = Reduce(tmp).Sum(s);
  if (threadIdx.x == 0) out(s);
}

// ---- the launcher -----------------------------------------------------------------------------
/// Launches (or, while planning, only counts) the kernels of one call.
class Ctx {
 public:
  Ctx(Pool& pool, cudaStream_t stream) : pool_(pool), s_(stream) {}

  template <typename U>
  U* alloc(int64_t count) {
    return static_cast<U*>(pool_.alloc(sizeof(U) * static_cast<size_t>(count)));
  }
  void free(const void* p) { pool_.free(p); }
  bool planning() const { return pool_.planning(); }
  int launches() const { return launches_; }
  cudaError_t error() const { return err_; }

  /// f(i) for i in [0, n).
  template <class F>
  void map(int64_t n, F f) {
    ++launches_;
    if (planning() || n == 0) return;
    const int64_t blocks = std::min<int64_t>((n + 255) / 256, 65535 * 16);
    map_kernel<<<static_cast<unsigned>(blocks), 256, 0, s_>>>(n, f);
    note();
  }
  /// out(r, sum_i f(r, i)) for each of `rows` rows of `c` elements.
  template <class F, class G>
  void row_sum(int64_t rows, int64_t c, F f, G out) {
    ++launches_;
    if (planning() || rows == 0) return;
    if (c >= 4096) {
      row_sum_kernel<512><<<static_cast<unsigned>(rows), 512, 0, s_>>>(c, f, out);
    } else {
      row_sum_kernel<128><<<static_cast<unsigned>(rows), 128, 0, s_>>>(c, f, out);
    }
    note();
  }
  /// out(sum_i f(i)), one block.
  template <class F, class G>
  void reduce(int64_t n, F f, G out) {
    ++launches_;
    if (planning()) return;
    reduce_kernel<512><<<1, 512, 0, s_>>>(n, f, out);
    note();
  }
  template <typename T>
  void softmax(const T* in, T* out, int64_t rows, int64_t c, bool log) {
    ++launches_;
    if (planning() || rows == 0) return;
    if (c >= 4096) {
      softmax_kernel<512, T><<<static_cast<unsigned>(rows), 512, 0, s_>>>(in, out, c, log);
    } else {
      softmax_kernel<128, T><<<static_cast<unsigned>(rows), 128, 0, s_>>>(in, out, c, log);
    }
    note();
  }

  /// torch.nonzero of a bool [count] mask (flat indices into `idx`), with the host sync that
  /// boolean indexing needs for the result's size. Returns the count (planning: `expected`).
  int64_t nonzero(const bool* mask, int64_t count, int64_t* idx, int64_t expected) {
    int64_t* d_num = alloc<int64_t>(1);
    size_t bytes = 0;
    cub::DeviceSelect::Flagged(nullptr, bytes, thrust::counting_iterator<int64_t>(0), mask, idx, d_num, count, s_);
    void* tmp = pool_.alloc(bytes);
    ++launches_;
    int64_t selected = expected;
    if (!planning()) {
      cub::DeviceSelect::Flagged(tmp, bytes, thrust::counting_iterator<int64_t>(0), mask, idx, d_num, count, s_);
      note();
      note(cudaMemcpyAsync(&selected, d_num, sizeof(selected), cudaMemcpyDeviceToHost, s_));
      note(cudaStreamSynchronize(s_));
    }
    free(tmp);
    free(d_num);
    return selected;
  }

  /// torch.sort(keys, dim=-1, descending) over `rows` rows of `c`: the sorted values and the
  /// indices (int64 in PyTorch; int32 here, which only favours this baseline).
  template <typename K>
  void sort_rows(const K* keys, K* keys_out, const int32_t* values, int32_t* values_out, int64_t rows, int64_t c,
                 bool descending) {
    int32_t* offsets = alloc<int32_t>(rows + 1);
    map(rows + 1, [=] __device__(int64_t i) { offsets[i] = static_cast<int32_t>(i * c); });
    size_t bytes = 0;
    const int items = static_cast<int>(rows * c), segments = static_cast<int>(rows);
    if (descending) {
      cub::DeviceSegmentedRadixSort::SortPairsDescending(nullptr, bytes, keys, keys_out, values, values_out, items,
                                                         segments, offsets, offsets + 1, 0, sizeof(K) * 8, s_);
    } else {
      cub::DeviceSegmentedRadixSort::SortPairs(nullptr, bytes, keys, keys_out, values, values_out, items, segments,
                                               offsets, offsets + 1, 0, sizeof(K) * 8, s_);
    }
    void* tmp = pool_.alloc(bytes);
    ++launches_;
    if (!planning()) {
      if (descending) {
        note(cub::DeviceSegmentedRadixSort::SortPairsDescending(tmp, bytes, keys, keys_out, values, values_out, items,
                                                                segments, offsets, offsets + 1, 0, sizeof(K) * 8, s_));
      } else {
        note(cub::DeviceSegmentedRadixSort::SortPairs(tmp, bytes, keys, keys_out, values, values_out, items, segments,
                                                      offsets, offsets + 1, 0, sizeof(K) * 8, s_));
      }
    }
    free(tmp);
    free(offsets);
  }

 private:
  void note(cudaError_t e = cudaGetLastError()) {
    if (err_ == cudaSuccess && e != cudaSuccess) err_ = e;
  }
  Pool& pool_;
  cudaStream_t s_;
  int launches_ = 0;
  cudaError_t err_ = cudaSuccess;
};

// ---- building blocks the losses share --------------------------------------------------------
/// ones_like(x).scatter_(1, label, 0).bool() (value 0) or zeros_like(x).scatter_(1, label, 1).bool()
/// (value 1): fill, scatter, convert. Returns the bool mask.
template <typename T>
bool* label_mask(Ctx& x, const int64_t* lab, int64_t n, int64_t c, float fill, float at_label) {
  const int64_t nc = n * c;
  T* m = x.alloc<T>(nc);
  x.map(nc, [=] __device__(int64_t i) { m[i] = st<T>(fill); });
  x.map(n, [=] __device__(int64_t r) { m[r * c + lab[r]] = st<T>(at_label); });
  bool* b = x.alloc<bool>(nc);
  x.map(nc, [=] __device__(int64_t i) { b[i] = ld(m[i]) != 0.f; });
  x.free(m);
  return b;
}

/// out[i] = in[idx[i]] (advanced indexing with the nonzero indices).
template <typename T>
T* index_select_flat(Ctx& x, const T* in, const int64_t* idx, int64_t count) {
  T* out = x.alloc<T>(count);
  x.map(count, [=] __device__(int64_t i) { out[i] = in[idx[i]]; });
  return out;
}

/// log_softmax backward: dx = g - exp(y) * sum_row(g), y the log_softmax output.
/// `out`: where to write (autograd's result tensor; allocated from the pool when null).
template <typename T>
T* log_softmax_backward(Ctx& x, const T* g, const T* y, int64_t rows, int64_t c, T* out = nullptr) {
  float* rs = x.alloc<float>(rows);
  x.row_sum(rows, c, [=] __device__(int64_t r, int64_t i) { return ld(g[r * c + i]); },
            [=] __device__(int64_t r, float s) { rs[r] = s; });
  T* dx = out != nullptr ? out : x.alloc<T>(rows * c);
  x.map(rows * c, [=] __device__(int64_t i) { dx[i] = st<T>(ld(g[i]) - __expf(ld(y[i])) * rs[i / c]); });
  x.free(rs);
  return dx;
}

/// softmax backward: dx = y * (g - sum_row(g * y)).
template <typename T>
T* softmax_backward(Ctx& x, const T* g, const T* y, int64_t rows, int64_t c) {
  T* gy = x.alloc<T>(rows * c);
  x.map(rows * c, [=] __device__(int64_t i) { gy[i] = st<T>(ld(g[i]) * ld(y[i])); });
  float* rs = x.alloc<float>(rows);
  x.row_sum(rows, c, [=] __device__(int64_t r, int64_t i) { return ld(gy[r * c + i]); },
            [=] __device__(int64_t r, float s) { rs[r] = s; });
  T* dx = x.alloc<T>(rows * c);
  x.map(rows * c, [=] __device__(int64_t i) { dx[i] = st<T>(ld(y[i]) * (ld(g[i]) - rs[i / c])); });
  x.free(rs);
  x.free(gy);
  return dx;
}

/// A [count] tensor filled with `value` (the expand of a scalar gradient, materialized by
/// the mul backward).
template <typename T>
T* full(Ctx& x, int64_t count, float value) {
  T* t = x.alloc<T>(count);
  x.map(count, [=] __device__(int64_t i) { t[i] = st<T>(value); });
  return t;
}

/// zeros [nc], then values scattered at idx (index_put_ / the backward of boolean indexing).
template <typename T>
T* index_put_zeros(Ctx& x, int64_t nc, const int64_t* idx, const T* values, int64_t count) {
  T* out = full<T>(x, nc, 0.f);
  x.map(count, [=] __device__(int64_t i) { out[idx[i]] = values[i]; });
  return out;
}

// ---- the losses -------------------------------------------------------------------------------
/// NKDLoss forward + autograd backward. loss: 1 float; gz: [n, c].
template <typename T>
void nkd(Ctx& x, const T* z, const T* v, const int64_t* lab, int64_t n, int64_t c, float temp, float gamma,
         float* loss, T* gz) {
  const int64_t nc = n * c, m = c - 1, nm = n * m;
  // forward
  T* s_i = x.alloc<T>(nc);
  x.softmax(z, s_i, n, c, true);
  T* t_i = x.alloc<T>(nc);
  x.softmax(v, t_i, n, c, false);
  T* s_t = x.alloc<T>(n);
  x.map(n, [=] __device__(int64_t r) { s_t[r] = s_i[r * c + lab[r]]; });
  T* t_t = x.alloc<T>(n);
  x.map(n, [=] __device__(int64_t r) { t_t[r] = t_i[r * c + lab[r]]; });
  x.free(t_i);
  T* prod_t = x.alloc<T>(n);
  x.map(n, [=] __device__(int64_t r) { prod_t[r] = st<T>(ld(t_t[r]) * ld(s_t[r])); });
  float* loss_t = x.alloc<float>(1);
  x.reduce(n, [=] __device__(int64_t i) { return ld(prod_t[i]); }, [=] __device__(float s) { *loss_t = s / n; });
  x.map(1, [=] __device__(int64_t) { *loss_t = -*loss_t; });
  x.free(prod_t);
  x.free(s_t);
  bool* mask = label_mask<T>(x, lab, n, c, 1.f, 0.f);
  int64_t* idx = x.alloc<int64_t>(nm);
  x.nonzero(mask, nc, idx, nm);
  x.free(mask);
  T* ns = index_select_flat(x, z, idx, nm);
  T* nt = index_select_flat(x, v, idx, nm);
  T* nsd = x.alloc<T>(nm);
  x.map(nm, [=] __device__(int64_t i) { nsd[i] = st<T>(ld(ns[i]) / temp); });
  T* ntd = x.alloc<T>(nm);
  x.map(nm, [=] __device__(int64_t i) { ntd[i] = st<T>(ld(nt[i]) / temp); });
  x.free(ns);
  x.free(nt);
  T* S_i = x.alloc<T>(nm);
  x.softmax(nsd, S_i, n, m, true);
  T* T_i = x.alloc<T>(nm);
  x.softmax(ntd, T_i, n, m, false);
  x.free(nsd);
  x.free(ntd);
  T* prod = x.alloc<T>(nm);
  x.map(nm, [=] __device__(int64_t i) { prod[i] = st<T>(ld(T_i[i]) * ld(S_i[i])); });
  T* rs = x.alloc<T>(n);
  x.row_sum(n, m, [=] __device__(int64_t r, int64_t i) { return ld(prod[r * m + i]); },
            [=] __device__(int64_t r, float s) { rs[r] = st<T>(s); });
  x.free(prod);
  float* loss_non = x.alloc<float>(1);
  x.reduce(n, [=] __device__(int64_t i) { return ld(rs[i]); }, [=] __device__(float s) { *loss_non = s / n; });
  x.free(rs);
  const float k = -gamma * temp * temp;
  x.map(1, [=] __device__(int64_t) { *loss_non = k * *loss_non; });
  x.map(1, [=] __device__(int64_t) { *loss = *loss_t + *loss_non; });
  // backward: loss_non path (mean -> sum -> mul -> log_softmax -> div -> index)
  T* d_rs = full<T>(x, n, k / n);
  T* dS = x.alloc<T>(nm);
  x.map(nm, [=] __device__(int64_t i) { dS[i] = st<T>(ld(d_rs[i / m]) * ld(T_i[i])); });
  x.free(d_rs);
  x.free(T_i);
  T* dnsd = log_softmax_backward(x, dS, S_i, n, m);
  x.free(dS);
  x.free(S_i);
  T* dns = x.alloc<T>(nm);
  x.map(nm, [=] __device__(int64_t i) { dns[i] = st<T>(ld(dnsd[i]) / temp); });
  x.free(dnsd);
  T* gz_a = index_put_zeros(x, nc, idx, dns, nm);
  x.free(dns);
  x.free(idx);
  // loss_t path (mean -> mul -> gather -> log_softmax)
  T* d_prod_t = full<T>(x, n, -1.f / n);
  T* d_st = x.alloc<T>(n);
  x.map(n, [=] __device__(int64_t r) { d_st[r] = st<T>(ld(d_prod_t[r]) * ld(t_t[r])); });
  x.free(d_prod_t);
  x.free(t_t);
  T* gz_b = full<T>(x, nc, 0.f);
  x.map(n, [=] __device__(int64_t r) { gz_b[r * c + lab[r]] = d_st[r]; });
  x.free(d_st);
  T* gz_c = log_softmax_backward(x, gz_b, s_i, n, c);
  x.free(gz_b);
  x.free(s_i);
  // autograd accumulates the two paths into logit_s.grad
  x.map(nc, [=] __device__(int64_t i) { gz[i] = st<T>(ld(gz_a[i]) + ld(gz_c[i])); });
  x.free(gz_a);
  x.free(gz_c);
  x.free(loss_t);
  x.free(loss_non);
}

/// KDLoss forward + backward: -alpha T^2 (softmax(v/T) * log(softmax(z/T))).sum(1).mean().
template <typename T>
void kd(Ctx& x, const T* z, const T* v, int64_t n, int64_t c, float temp, float alpha, float* loss, T* gz) {
  const int64_t nc = n * c;
  T* zd = x.alloc<T>(nc);
  x.map(nc, [=] __device__(int64_t i) { zd[i] = st<T>(ld(z[i]) / temp); });
  T* vd = x.alloc<T>(nc);
  x.map(nc, [=] __device__(int64_t i) { vd[i] = st<T>(ld(v[i]) / temp); });
  T* S = x.alloc<T>(nc);
  x.softmax(zd, S, n, c, false);
  x.free(zd);
  T* Tt = x.alloc<T>(nc);
  x.softmax(vd, Tt, n, c, false);
  x.free(vd);
  T* logS = x.alloc<T>(nc);
  x.map(nc, [=] __device__(int64_t i) { logS[i] = st<T>(__logf(ld(S[i]))); });
  T* prod = x.alloc<T>(nc);
  x.map(nc, [=] __device__(int64_t i) { prod[i] = st<T>(ld(Tt[i]) * ld(logS[i])); });
  x.free(logS);
  T* rs = x.alloc<T>(n);
  x.row_sum(n, c, [=] __device__(int64_t r, int64_t i) { return ld(prod[r * c + i]); },
            [=] __device__(int64_t r, float s) { rs[r] = st<T>(s); });
  x.free(prod);
  const float k = -alpha * temp * temp;
  x.reduce(n, [=] __device__(int64_t i) { return ld(rs[i]); }, [=] __device__(float s) { *loss = k * s / n; });
  x.free(rs);
  // backward: mean -> sum -> mul -> log -> softmax -> div
  T* d_rs = full<T>(x, n, k / n);
  T* d_log = x.alloc<T>(nc);
  x.map(nc, [=] __device__(int64_t i) { d_log[i] = st<T>(ld(d_rs[i / c]) * ld(Tt[i])); });
  x.free(d_rs);
  x.free(Tt);
  T* dS = x.alloc<T>(nc);
  x.map(nc, [=] __device__(int64_t i) { dS[i] = st<T>(ld(d_log[i]) / ld(S[i])); });
  x.free(d_log);
  T* dzd = softmax_backward(x, dS, S, n, c);
  x.free(dS);
  x.free(S);
  x.map(nc, [=] __device__(int64_t i) { gz[i] = st<T>(ld(dzd[i]) / temp); });
  x.free(dzd);
}

/// mdistiller dkd_loss forward + backward.
template <typename T>
void dkd(Ctx& x, const T* z, const T* v, const int64_t* lab, int64_t n, int64_t c, float temp, float alpha,
         float beta, float* loss, T* gz) {
  const int64_t nc = n * c;
  bool* gt = label_mask<T>(x, lab, n, c, 0.f, 1.f);
  bool* other = label_mask<T>(x, lab, n, c, 1.f, 0.f);
  T* zd = x.alloc<T>(nc);
  x.map(nc, [=] __device__(int64_t i) { zd[i] = st<T>(ld(z[i]) / temp); });
  T* vd = x.alloc<T>(nc);
  x.map(nc, [=] __device__(int64_t i) { vd[i] = st<T>(ld(v[i]) / temp); });
  T* ps = x.alloc<T>(nc);
  x.softmax(zd, ps, n, c, false);
  T* pt = x.alloc<T>(nc);
  x.softmax(vd, pt, n, c, false);
  // cat_mask: (t * mask1).sum(1), (t * mask2).sum(1), cat -> [n, 2], for student and teacher
  auto cat_mask = [&](const T* p) {
    T* a = x.alloc<T>(nc);
    x.map(nc, [=] __device__(int64_t i) { a[i] = st<T>(gt[i] ? ld(p[i]) : 0.f); });
    T* b = x.alloc<T>(nc);
    x.map(nc, [=] __device__(int64_t i) { b[i] = st<T>(other[i] ? ld(p[i]) : 0.f); });
    T* s1 = x.alloc<T>(n);
    x.row_sum(n, c, [=] __device__(int64_t r, int64_t i) { return ld(a[r * c + i]); },
              [=] __device__(int64_t r, float s) { s1[r] = st<T>(s); });
    T* s2 = x.alloc<T>(n);
    x.row_sum(n, c, [=] __device__(int64_t r, int64_t i) { return ld(b[r * c + i]); },
              [=] __device__(int64_t r, float s) { s2[r] = st<T>(s); });
    x.free(a);
    x.free(b);
    T* cat = x.alloc<T>(2 * n);
    x.map(2 * n, [=] __device__(int64_t i) { cat[i] = (i & 1) ? s2[i / 2] : s1[i / 2]; });
    x.free(s1);
    x.free(s2);
    return cat;
  };
  T* bs = cat_mask(ps);
  T* bt = cat_mask(pt);
  x.free(pt);
  T* log_bs = x.alloc<T>(2 * n);
  x.map(2 * n, [=] __device__(int64_t i) { log_bs[i] = st<T>(__logf(ld(bs[i]))); });
  // kl_div(log_bs, bt, sum) * T^2 / n
  const float k = temp * temp / n;
  float* tckd = x.alloc<float>(1);
  x.reduce(2 * n, [=] __device__(int64_t i) {
    const float q = ld(bt[i]);
    return q > 0.f ? q * (__logf(q) - ld(log_bs[i])) : 0.f;
  }, [=] __device__(float s) { *tckd = s * k; });
  // part 2: softmax(v/T - 1000 gt), log_softmax(z/T - 1000 gt)
  T* gtf = x.alloc<T>(nc);
  x.map(nc, [=] __device__(int64_t i) { gtf[i] = st<T>(gt[i] ? 1000.f : 0.f); });
  T* z2 = x.alloc<T>(nc);
  x.map(nc, [=] __device__(int64_t i) { z2[i] = st<T>(ld(zd[i]) - ld(gtf[i])); });
  T* v2 = x.alloc<T>(nc);
  x.map(nc, [=] __device__(int64_t i) { v2[i] = st<T>(ld(vd[i]) - ld(gtf[i])); });
  x.free(gtf);
  x.free(zd);
  x.free(vd);
  T* pt2 = x.alloc<T>(nc);
  x.softmax(v2, pt2, n, c, false);
  T* lps2 = x.alloc<T>(nc);
  x.softmax(z2, lps2, n, c, true);
  x.free(v2);
  x.free(z2);
  float* nckd = x.alloc<float>(1);
  x.reduce(nc, [=] __device__(int64_t i) {
    const float q = ld(pt2[i]);
    return q > 0.f ? q * (__logf(q) - ld(lps2[i])) : 0.f;
  }, [=] __device__(float s) { *nckd = s * k; });
  x.map(1, [=] __device__(int64_t) { *loss = alpha * *tckd + beta * *nckd; });
  // backward, NCKD: d lps2 = -beta k pt2 -> log_softmax backward -> sub (identity) -> div T
  T* d_l2 = x.alloc<T>(nc);
  const float kb = -beta * k;
  x.map(nc, [=] __device__(int64_t i) { d_l2[i] = st<T>(kb * ld(pt2[i])); });
  x.free(pt2);
  T* dz2 = log_softmax_backward(x, d_l2, lps2, n, c);
  x.free(d_l2);
  x.free(lps2);
  // TCKD: d log_bs = -alpha k bt -> log backward (/bs) -> cat backward -> sum backward (expand)
  //       -> mask mul backward -> softmax backward -> div T
  T* d_lbs = x.alloc<T>(2 * n);
  const float ka = -alpha * k;
  x.map(2 * n, [=] __device__(int64_t i) { d_lbs[i] = st<T>(ka * ld(bt[i]) / ld(bs[i])); });
  x.free(bt);
  x.free(bs);
  x.free(log_bs);
  T* d_ps = x.alloc<T>(nc);
  x.map(nc, [=] __device__(int64_t i) {
    const int64_t r = i / c;
    d_ps[i] = st<T>((gt[i] ? ld(d_lbs[2 * r]) : 0.f) + (other[i] ? ld(d_lbs[2 * r + 1]) : 0.f));
  });
  x.free(d_lbs);
  T* dzd = softmax_backward(x, d_ps, ps, n, c);
  x.free(d_ps);
  x.free(ps);
  // accumulate both paths into (z / T), then the div backward
  x.map(nc, [=] __device__(int64_t i) { gz[i] = st<T>((ld(dzd[i]) + ld(dz2[i])) / temp); });
  x.free(dzd);
  x.free(dz2);
  x.free(gt);
  x.free(other);
  x.free(tckd);
  x.free(nckd);
}

/// USKDLoss forward + backward (hard labels). gz, gw: [n, c].
template <typename T>
void uskd(Ctx& x, const T* z, const T* w, const int64_t* lab, int64_t n, int64_t c, float alpha, float beta,
          float mu, float eps, float* loss, T* gz, T* gw) {
  const int64_t nc = n * c, m = c - 1, nm = n * m;
  // soft target label: s_i = softmax(z); s_t = gather; p_t = s_t**2 + 1 - mean(s_t**2); detach
  T* sm = x.alloc<T>(nc);
  x.softmax(z, sm, n, c, false);
  T* s_t0 = x.alloc<T>(n);
  x.map(n, [=] __device__(int64_t r) { s_t0[r] = sm[r * c + lab[r]]; });
  x.free(sm);
  T* p_t = x.alloc<T>(n);
  x.map(n, [=] __device__(int64_t r) { p_t[r] = st<T>(ld(s_t0[r]) * ld(s_t0[r])); });
  x.free(s_t0);
  float* p_mean = x.alloc<float>(1);
  x.reduce(n, [=] __device__(int64_t i) { return ld(p_t[i]); }, [=] __device__(float s) { *p_mean = s / n; });
  x.map(n, [=] __device__(int64_t r) { p_t[r] = st<T>(ld(p_t[r]) + 1.f - *p_mean); });
  x.free(p_mean);
  {  // p_t[value == 0] = 0: a comparison, then boolean-mask assignment (nonzero, its sync, and
     // an index_put of what it found: nothing for hard labels, whose value is 1)
    bool* vz = x.alloc<bool>(n);
    x.map(n, [=] __device__(int64_t r) { vz[r] = false; });
    int64_t* hit = x.alloc<int64_t>(n);
    const int64_t found = x.nonzero(vz, n, hit, 0);
    x.map(found, [=] __device__(int64_t i) { p_t[hit[i]] = st<T>(0.f); });
    x.free(hit);
    x.free(vz);
  }
  // s_i = log_softmax(z); s_t = gather; loss_t = -(p_t * s_t).sum(1).mean()
  T* s_i = x.alloc<T>(nc);
  x.softmax(z, s_i, n, c, true);
  T* s_t = x.alloc<T>(n);
  x.map(n, [=] __device__(int64_t r) { s_t[r] = s_i[r * c + lab[r]]; });
  float* loss_t = x.alloc<float>(1);
  x.reduce(n, [=] __device__(int64_t i) { return ld(p_t[i]) * ld(s_t[i]); },
           [=] __device__(float s) { *loss_t = -s / n; });
  // target = zeros.scatter_(1, label, 1 - eps) + eps * ones / c
  T* tz = full<T>(x, nc, 0.f);
  x.map(n, [=] __device__(int64_t r) { tz[r * c + lab[r]] = st<T>(1.f - eps); });
  T* to = full<T>(x, nc, 1.f);
  x.map(nc, [=] __device__(int64_t i) { to[i] = st<T>(eps * ld(to[i]) / c); });
  T* target = x.alloc<T>(nc);
  x.map(nc, [=] __device__(int64_t i) { target[i] = st<T>(ld(tz[i]) + ld(to[i])); });
  x.free(tz);
  x.free(to);
  // w_i = log_softmax(w); loss_weak = -(mu * target * w_i).sum(1).mean()
  T* wl = x.alloc<T>(nc);
  x.softmax(w, wl, n, c, true);
  T* mt = x.alloc<T>(nc);
  x.map(nc, [=] __device__(int64_t i) { mt[i] = st<T>(mu * ld(target[i])); });
  T* prod_w = x.alloc<T>(nc);
  x.map(nc, [=] __device__(int64_t i) { prod_w[i] = st<T>(ld(mt[i]) * ld(wl[i])); });
  T* rs_w = x.alloc<T>(n);
  x.row_sum(n, c, [=] __device__(int64_t r, int64_t i) { return ld(prod_w[r * c + i]); },
            [=] __device__(int64_t r, float s) { rs_w[r] = st<T>(s); });
  x.free(prod_w);
  float* loss_weak = x.alloc<float>(1);
  x.reduce(n, [=] __device__(int64_t i) { return ld(rs_w[i]); }, [=] __device__(float s) { *loss_weak = -s / n; });
  x.free(rs_w);
  // w_i = softmax(w); w_t = gather; rank = w_i / (1 - w_t + 1e-6) + s_i / (1 - s_t + 1e-6)
  T* ws = x.alloc<T>(nc);
  x.softmax(w, ws, n, c, false);
  T* w_t = x.alloc<T>(n);
  x.map(n, [=] __device__(int64_t r) { w_t[r] = ws[r * c + lab[r]]; });
  T* den_w = x.alloc<T>(n);
  x.map(n, [=] __device__(int64_t r) { den_w[r] = st<T>(1.f - ld(w_t[r]) + 1e-6f); });
  T* den_s = x.alloc<T>(n);
  x.map(n, [=] __device__(int64_t r) { den_s[r] = st<T>(1.f - ld(s_t[r]) + 1e-6f); });
  x.free(w_t);
  T* ra = x.alloc<T>(nc);
  x.map(nc, [=] __device__(int64_t i) { ra[i] = st<T>(ld(ws[i]) / ld(den_w[i / c])); });
  T* rb = x.alloc<T>(nc);
  x.map(nc, [=] __device__(int64_t i) { rb[i] = st<T>(ld(s_i[i]) / ld(den_s[i / c])); });
  x.free(ws);
  x.free(den_w);
  x.free(den_s);
  T* rank = x.alloc<T>(nc);
  x.map(nc, [=] __device__(int64_t i) { rank[i] = st<T>(ld(ra[i]) + ld(rb[i])); });
  x.free(ra);
  x.free(rb);
  // _, rank = torch.sort(rank, descending=True); ids_sort = torch.argsort(rank)
  int32_t* iota = x.alloc<int32_t>(nc);
  x.map(nc, [=] __device__(int64_t i) { iota[i] = static_cast<int32_t>(i % c); });
  T* sorted = x.alloc<T>(nc);
  int32_t* order = x.alloc<int32_t>(nc);
  x.sort_rows(rank, sorted, iota, order, n, c, true);
  x.free(sorted);
  x.free(rank);
  int32_t* order_sorted = x.alloc<int32_t>(nc);
  int32_t* ids_sort = x.alloc<int32_t>(nc);
  x.sort_rows(order, order_sorted, iota, ids_sort, n, c, false);
  x.free(order_sorted);
  x.free(order);
  x.free(iota);
  // z_i = zipf.repeat(N, 1); z_i = gather(z_i, 1, ids_sort)
  float* zipf_rep = x.alloc<float>(nc);
  x.map(nc, [=] __device__(int64_t i) { zipf_rep[i] = 1.f / static_cast<float>(i % c + 1); });
  float* z_i = x.alloc<float>(nc);
  x.map(nc, [=] __device__(int64_t i) { z_i[i] = zipf_rep[(i / c) * c + ids_sort[i]]; });
  x.free(zipf_rep);
  x.free(ids_sort);
  // mask; ns_i = log_softmax(z[mask]); nz_i = z_i[mask]; nz_i / nz_i.sum(1)
  bool* mask = label_mask<T>(x, lab, n, c, 1.f, 0.f);
  int64_t* idx = x.alloc<int64_t>(nm);
  x.nonzero(mask, nc, idx, nm);
  x.free(mask);
  T* ns = index_select_flat(x, z, idx, nm);
  T* ns_i = x.alloc<T>(nm);
  x.softmax(ns, ns_i, n, m, true);
  x.free(ns);
  float* nz = index_select_flat(x, static_cast<const float*>(z_i), idx, nm);
  x.free(z_i);
  float* nz_sum = x.alloc<float>(n);
  x.row_sum(n, m, [=] __device__(int64_t r, int64_t i) { return nz[r * m + i]; },
            [=] __device__(int64_t r, float s) { nz_sum[r] = s; });
  float* nz_i = x.alloc<float>(nm);
  x.map(nm, [=] __device__(int64_t i) { nz_i[i] = nz[i] / nz_sum[i / m]; });
  x.free(nz);
  x.free(nz_sum);
  // loss_non = -(nz_i * ns_i).sum(1).mean()
  float* prod_n = x.alloc<float>(nm);
  x.map(nm, [=] __device__(int64_t i) { prod_n[i] = nz_i[i] * ld(ns_i[i]); });
  float* rs_n = x.alloc<float>(n);
  x.row_sum(n, m, [=] __device__(int64_t r, int64_t i) { return prod_n[r * m + i]; },
            [=] __device__(int64_t r, float s) { rs_n[r] = s; });
  x.free(prod_n);
  float* loss_non = x.alloc<float>(1);
  x.reduce(n, [=] __device__(int64_t i) { return rs_n[i]; }, [=] __device__(float s) { *loss_non = -s / n; });
  x.free(rs_n);
  x.map(1, [=] __device__(int64_t) { *loss = alpha * *loss_t + beta * *loss_non + *loss_weak; });
  // backward, loss_non: d ns_i = -beta / n * nz_i -> log_softmax backward -> index backward
  T* d_ns = x.alloc<T>(nm);
  const float kb = -beta / n;
  x.map(nm, [=] __device__(int64_t i) { d_ns[i] = st<T>(kb * nz_i[i]); });
  x.free(nz_i);
  T* d_ns2 = log_softmax_backward(x, d_ns, ns_i, n, m);
  x.free(d_ns);
  x.free(ns_i);
  T* gz_a = index_put_zeros(x, nc, idx, d_ns2, nm);
  x.free(d_ns2);
  x.free(idx);
  // loss_t: d s_t = -alpha / n * p_t -> gather backward -> log_softmax backward
  T* d_st = x.alloc<T>(n);
  const float ka = -alpha / n;
  x.map(n, [=] __device__(int64_t r) { d_st[r] = st<T>(ka * ld(p_t[r])); });
  x.free(p_t);
  x.free(s_t);
  T* gz_b = full<T>(x, nc, 0.f);
  x.map(n, [=] __device__(int64_t r) { gz_b[r * c + lab[r]] = d_st[r]; });
  x.free(d_st);
  T* gz_c = log_softmax_backward(x, gz_b, s_i, n, c);
  x.free(gz_b);
  x.free(s_i);
  x.map(nc, [=] __device__(int64_t i) { gz[i] = st<T>(ld(gz_a[i]) + ld(gz_c[i])); });
  x.free(gz_a);
  x.free(gz_c);
  // loss_weak: d wl = -(1 / n) * mt -> log_softmax backward
  T* d_wl = x.alloc<T>(nc);
  const float kw = -1.f / n;
  x.map(nc, [=] __device__(int64_t i) { d_wl[i] = st<T>(kw * ld(mt[i])); });
  x.free(mt);
  x.free(target);
  log_softmax_backward(x, d_wl, wl, n, c, gw);  // the caller's gradient buffer is autograd's result
  x.free(d_wl);
  x.free(wl);
  x.free(loss_t);
  x.free(loss_non);
  x.free(loss_weak);
}

}  // namespace unfused
