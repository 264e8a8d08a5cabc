// fusedkd/kernels/common.cuh — what every fusedkd CUDA kernel shares: element conversions,
// 128-bit row I/O with a scalar fallback, deterministic warp/block reductions, the workspace
// layout and its header (status word, block counter, active-row count, batch means), the label
// pre-pass, and the deterministic "last block reduces" epilogue.
//
// Internal: the public API is fusedkd/cuda.cuh. Everything here lives in fusedkd::cuda_detail.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <climits>
#include <cmath>
#include <cstring>

#include "fusedkd/detail/core.hpp"
#include "fusedkd/status.hpp"
#include "fusedkd/types.hpp"

namespace fusedkd {
namespace cuda_detail {

using fusedkd::detail::LogProb;
using fusedkd::detail::RowTargets;
using fusedkd::detail::SplitStats;

// ---------------------------------------------------------------------------------------------
// Elements: conversions between the logits type and float, and 128-bit vectors of elements.
// ---------------------------------------------------------------------------------------------

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

/// Bits of one element of type T (the low 16 bits for the 16-bit types).
template <typename T> __device__ __forceinline__ uint32_t to_bits(float x);
template <> __device__ __forceinline__ uint32_t to_bits<float>(float x) { return __float_as_uint(x); }
template <> __device__ __forceinline__ uint32_t to_bits<__half>(float x) {
  return static_cast<uint32_t>(__half_as_ushort(__float2half_rn(x)));
}
template <> __device__ __forceinline__ uint32_t to_bits<__nv_bfloat16>(float x) {
  return static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(x)));
}

template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

template <typename T> __device__ __forceinline__ float from_bits(uint32_t b);
template <> __device__ __forceinline__ float from_bits<float>(uint32_t b) { return __uint_as_float(b); }
template <> __device__ __forceinline__ float from_bits<__half>(uint32_t b) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(b & 0xffffu)));
}
template <> __device__ __forceinline__ float from_bits<__nv_bfloat16>(uint32_t b) {
  return __bfloat162float(__ushort_as_bfloat16(static_cast<unsigned short>(b & 0xffffu)));
}

/// Elements of T in one 128-bit vector: 4 floats or 8 halves.
template <typename T>
struct Vec {
  static constexpr int kSize = static_cast<int>(16 / sizeof(T));
};

/// Element j of a 128-bit vector of T held as a uint4 (j a compile-time constant after unrolling).
template <typename T>
__device__ __forceinline__ float vec_get(const uint4& u, int j) {
  constexpr int kPerWord = static_cast<int>(4 / sizeof(T));
  const int w = j / kPerWord;
  const uint32_t word = w == 0 ? u.x : w == 1 ? u.y : w == 2 ? u.z : u.w;
  const int shift = (j % kPerWord) * static_cast<int>(8 * sizeof(T));
  return from_bits<T>(word >> shift);
}

template <typename T>
__device__ __forceinline__ void vec_set(uint4& u, int j, float x) {
  constexpr int kPerWord = static_cast<int>(4 / sizeof(T));
  const int w = j / kPerWord;
  const int shift = (j % kPerWord) * static_cast<int>(8 * sizeof(T));
  const uint32_t mask = (sizeof(T) == 4 ? 0xffffffffu : 0xffffu) << shift;
  const uint32_t b = to_bits<T>(x) << shift;
  uint32_t& word = w == 0 ? u.x : w == 1 ? u.y : w == 2 ? u.z : u.w;
  word = (word & ~mask) | b;
}

/// The elements of the width-`w` run at `base` that lie in a row of c classes (0 past its end).
__device__ __forceinline__ int tail_count(int64_t c, int64_t base, int w) {
  return base >= c ? 0 : (c - base < w ? static_cast<int>(c - base) : w);
}

/// Loads the `count` (<= kSize) elements at p into a vector: one 128-bit load when `vector`
/// (p 16-byte aligned and count == kSize), else element by element; missing elements are 0.
template <typename T>
__device__ __forceinline__ uint4 load_vec(const T* p, int count, bool vector) {
  constexpr int V = Vec<T>::kSize;
  if (vector && count == V) return *reinterpret_cast<const uint4*>(p);
  uint4 u = make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
  for (int j = 0; j < V; ++j) {
    if (j < count) vec_set<T>(u, j, to_float(p[j]));
  }
  return u;
}

/// Stores the first `count` elements of a vector at p (one 128-bit store when possible).
template <typename T>
__device__ __forceinline__ void store_vec(T* p, const uint4& u, int count, bool vector) {
  constexpr int V = Vec<T>::kSize;
  if (vector && count == V) {
    *reinterpret_cast<uint4*>(p) = u;
    return;
  }
#pragma unroll
  for (int j = 0; j < V; ++j) {
    if (j < count) p[j] = from_float<T>(vec_get<T>(u, j));  // exact: the value is a T
  }
}

/// Fills a gradient row with `value` (zeros for an ignored row, NaN for a bad one), by the
/// threads lane = 0..group_size-1.
template <typename T>
__device__ __forceinline__ void fill_row(T* g, int64_t c, bool aligned, int lane, int group_size, float value) {
  constexpr int V = Vec<T>::kSize;
  uint4 u = make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
  for (int j = 0; j < V; ++j) vec_set<T>(u, j, value);
  for (int64_t base = static_cast<int64_t>(lane) * V; base < c; base += static_cast<int64_t>(group_size) * V) {
    store_vec<T>(g + base, u, tail_count(c, base, V), aligned);
  }
}

/// Loads `count` (<= V) floats at p into out[0..V) (missing: 0); float4 loads when aligned.
template <int V>
__device__ __forceinline__ void load_floats(const float* p, int count, bool aligned, float (&out)[V]) {
  if (aligned && count == V && V % 4 == 0) {
#pragma unroll
    for (int q = 0; q < V / 4; ++q) {
      const float4 f = reinterpret_cast<const float4*>(p)[q];
      out[4 * q] = f.x;
      out[4 * q + 1] = f.y;
      out[4 * q + 2] = f.z;
      out[4 * q + 3] = f.w;
    }
    return;
  }
#pragma unroll
  for (int j = 0; j < V; ++j) out[j] = j < count ? p[j] : 0.0f;
}

/// True when p and every row start (p + k * stride) are 16-byte aligned.
template <typename T>
inline bool rows_aligned(const T* p, int64_t stride) {
  return p == nullptr || (reinterpret_cast<uintptr_t>(p) % 16 == 0 &&
                          (static_cast<uint64_t>(stride) * sizeof(T)) % 16 == 0);
}

// ---------------------------------------------------------------------------------------------
// Deterministic reductions: a fixed xor butterfly within a warp, then the per-warp values folded
// in warp order. The result depends only on the data and the launch shape, never on timing, and
// every thread of the group gets the same bits.
// ---------------------------------------------------------------------------------------------

/// Shuffles a value of any trivially copyable type word by word: `shfl(word)` is one of the
/// __shfl*_sync intrinsics bound to its lane argument.
template <typename V, typename Shfl>
__device__ __forceinline__ V shuffle_words(const V& v, Shfl shfl) {
  static_assert(sizeof(V) % 4 == 0, "shuffled values are whole 32-bit words");
  constexpr int kWords = static_cast<int>(sizeof(V) / 4);
  uint32_t w[kWords];
  memcpy(w, &v, sizeof(V));
#pragma unroll
  for (int k = 0; k < kWords; ++k) w[k] = shfl(w[k]);
  V out;
  memcpy(&out, w, sizeof(V));
  return out;
}

template <typename V>
__device__ __forceinline__ V shfl_xor_value(const V& v, int mask) {
  return shuffle_words(v, [mask](uint32_t w) { return __shfl_xor_sync(0xffffffffu, w, mask); });
}

template <typename V>
__device__ __forceinline__ V shfl_value(const V& v, int src) {
  return shuffle_words(v, [src](uint32_t w) { return __shfl_sync(0xffffffffu, w, src); });
}

/// All-reduce over the kWidth (a power of two <= 32) lanes of each aligned lane group. The
/// butterfly's combines may round differently in partner lanes once the compiler contracts a*b+c
/// into an fma, so the group's first lane's value is broadcast: every lane gets the same bits.
template <int kWidth, typename V, typename Op>
__device__ __forceinline__ V warp_allreduce(V x, Op op) {
#pragma unroll
  for (int m = kWidth / 2; m >= 1; m >>= 1) x = op(x, shfl_xor_value(x, m));
  return shfl_value(x, static_cast<int>(threadIdx.x % 32) & ~(kWidth - 1));
}

/// Scratch for block_allreduce: one value per warp (blocks of up to 1024 threads).
constexpr int kScratchBytes = 32 * 48;

/// All-reduce over the whole block; every thread gets the result. `scratch` holds kScratchBytes.
/// Contains __syncthreads(): every thread of the block must call it.
template <typename V, typename Op>
__device__ __forceinline__ V block_allreduce(V x, Op op, unsigned char* scratch) {
  static_assert(sizeof(V) <= kScratchBytes / 32, "scratch too small for this value");
  V* part = reinterpret_cast<V*>(scratch);
  x = warp_allreduce<32>(x, op);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int warps = (blockDim.x + 31) / 32;
  if (lane == 0) part[warp] = x;
  __syncthreads();
  V r = part[0];
  for (int w = 1; w < warps; ++w) r = op(r, part[w]);
  __syncthreads();  // the scratch may be reused at once
  return r;
}

/// All-reduce over a group of kGroup lanes (32: a warp) or the whole block (kGroup == 0).
template <int kGroup, typename V, typename Op>
__device__ __forceinline__ V group_allreduce(V x, Op op, unsigned char* scratch) {
  if constexpr (kGroup == 0) {
    return block_allreduce(x, op, scratch);
  } else {
    (void)scratch;
    return warp_allreduce<kGroup>(x, op);
  }
}

struct SumOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
  __device__ __forceinline__ double operator()(double a, double b) const { return a + b; }
};

struct Float2 {
  float a, b;
};
struct Sum2Op {
  __device__ __forceinline__ Float2 operator()(Float2 x, Float2 y) const { return {x.a + y.a, x.b + y.b}; }
};

/// The SplitStats merges of two disjoint partials of the student and teacher (or weak) rows.
/// The target logits x1, x2 are not merged: the kernels load them directly.
struct StatsPair {
  SplitStats<float> z, v;
};
struct StatsPairMergeOp {
  float inv;
  bool two;
  __device__ __forceinline__ StatsPair operator()(StatsPair a, const StatsPair& b) const {
    a.z.merge(b.z, inv, two);
    a.v.merge(b.v, inv, two);
    return a;
  }
};

/// The two largest entries of a soft-label row (value descending, lower index first on ties:
/// a stable descending sort's first two) and the row's sum. Empty slots have index INT32_MAX.
struct Top2 {
  float v1 = -INFINITY, v2 = -INFINITY;
  int32_t i1 = INT32_MAX, i2 = INT32_MAX;
  float sum = 0.0f;

  __host__ __device__ __forceinline__ static bool better(float va, int32_t ia, float vb, int32_t ib) {
    return va > vb || (va == vb && ia < ib);
  }
  __host__ __device__ __forceinline__ void add(float v, int32_t i) {
    sum += v;
    if (better(v, i, v1, i1)) {
      v2 = v1;
      i2 = i1;
      v1 = v;
      i1 = i;
    } else if (better(v, i, v2, i2)) {
      v2 = v;
      i2 = i;
    }
  }
};
struct Top2MergeOp {
  __host__ __device__ __forceinline__ Top2 operator()(const Top2& a, const Top2& b) const {
    Top2 r;
    r.sum = a.sum + b.sum;
    if (Top2::better(a.v1, a.i1, b.v1, b.i1)) {
      r.v1 = a.v1, r.i1 = a.i1;
      if (Top2::better(a.v2, a.i2, b.v1, b.i1)) r.v2 = a.v2, r.i2 = a.i2;
      else r.v2 = b.v1, r.i2 = b.i1;
    } else {
      r.v1 = b.v1, r.i1 = b.i1;
      if (Top2::better(b.v2, b.i2, a.v1, a.i1)) r.v2 = b.v2, r.i2 = b.i2;
      else r.v2 = a.v1, r.i2 = a.i1;
    }
    return r;
  }
};

// ---------------------------------------------------------------------------------------------
// Workspace. Layout (each part 256-byte aligned, from the first 256-byte boundary at or after
// the caller's pointer): Header | float row_loss[N] | loss-specific parts.
// ---------------------------------------------------------------------------------------------

struct Header {
  unsigned int status;    ///< 0, or the fusedkd::Status of the first bad input the kernels saw
  unsigned int counter;   ///< finished blocks of the running kernel (last-block epilogues)
  long long active;       ///< rows that are not ignore_index
  double mean1, mean2;    ///< USKD: batch means of S_t1^2 and S_t2^2
  float harmonic;         ///< USKD: sum_{r=1..C} 1/r
  float pad_;
};

constexpr size_t kAlign = 256;
inline size_t align_up(size_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

inline Header* header_of(void* workspace) {
  const uintptr_t p = reinterpret_cast<uintptr_t>(workspace);
  return reinterpret_cast<Header*>((p + kAlign - 1) / kAlign * kAlign);
}

/// Carves the workspace into parts; with a null base only the size is computed.
struct Carver {
  unsigned char* base;
  size_t used = 0;
  explicit Carver(void* workspace) : base(workspace ? reinterpret_cast<unsigned char*>(header_of(workspace)) : nullptr) {}
  template <typename U>
  U* take(size_t count) {
    U* p = base ? reinterpret_cast<U*>(base + used) : nullptr;
    used += align_up(count * sizeof(U) > 0 ? count * sizeof(U) : 1);
    return p;
  }
  size_t bytes() const { return used + kAlign; }  // slack for aligning the caller's pointer
};

// ---------------------------------------------------------------------------------------------
// Per-row targets from the labels.
// ---------------------------------------------------------------------------------------------

/// The label inputs of a kernel.
struct LabelArgs {
  Labels::Kind kind;
  const void* data;
  const float* soft;  ///< soft labels (kind == kSoft)
  int64_t ld;         ///< soft labels: elements between rows
  bool soft_aligned;  ///< soft rows 16-byte aligned
  int64_t ignore_index;
};

__device__ __forceinline__ int64_t hard_label(const LabelArgs& l, int64_t row) {
  return l.kind == Labels::Kind::kIndex32 ? static_cast<int64_t>(static_cast<const int32_t*>(l.data)[row])
                                          : static_cast<const int64_t*>(l.data)[row];
}

/// Row status codes the kernels use (besides success): the fusedkd::Status values.
constexpr unsigned int kBadLabel = static_cast<unsigned int>(Status::kLabelOutOfRange);
constexpr unsigned int kEmptySoft = static_cast<unsigned int>(Status::kEmptySoftLabelRow);

/// Records a bad input in the status word. atomicMax: the same code whatever the timing.
__device__ __forceinline__ void report(Header* h, unsigned int code) { atomicMax(&h->status, code); }

/// The targets of a row: hard labels (read by every thread), none (KD), or the soft row's top
/// two (group-wide scan of the soft row; `two` keeps t2, else only t1 = the first maximum).
/// Returns 0 or a bad-row code. Group-collective when the labels are soft.
template <int kGroup>
__device__ __forceinline__ unsigned int row_targets(const LabelArgs& l, int64_t row, int64_t c,
                                                    int lane, int group_size, bool two,
                                                    RowTargets<float>& tg, unsigned char* scratch) {
  tg = RowTargets<float>();
  if (l.kind == Labels::Kind::kNone) return 0u;
  if (l.kind != Labels::Kind::kSoft) {
    const int64_t label = hard_label(l, row);
    if (label == l.ignore_index) {
      tg.ignored = true;
      return 0u;
    }
    if (label < 0 || label >= c) return kBadLabel;
    tg.t1 = static_cast<int32_t>(label);
    return 0u;
  }
  const float* y = l.soft + row * l.ld;
  Top2 top;
  constexpr int V = 4;
  for (int64_t base = static_cast<int64_t>(lane) * V; base < c; base += static_cast<int64_t>(group_size) * V) {
    float f[V];
    const int count = tail_count(c, base, V);
    load_floats<V>(y + base, count, l.soft_aligned, f);
#pragma unroll
    for (int j = 0; j < V; ++j) {
      if (j < count) top.add(f[j], static_cast<int32_t>(base + j));
    }
  }
  top = group_allreduce<kGroup>(top, Top2MergeOp{}, scratch);
  if (!(top.v1 > 0.0f)) return kEmptySoft;
  tg.t1 = top.i1;
  tg.v1 = top.v1;
  if (two) {
    tg.t2 = top.i2;
    tg.v2 = top.v2;
  }
  tg.ysum = top.sum;
  return 0u;
}

// ---------------------------------------------------------------------------------------------
// The label pre-pass (one block): resets the header, validates hard labels, counts the active
// rows, and (USKD) computes sum_{r<=C} 1/r and the segment offsets of the large-C sort.
// ---------------------------------------------------------------------------------------------

struct PrepassArgs {
  LabelArgs labels;
  int64_t n, c;
  Header* header;
  bool harmonic;       ///< compute header->harmonic
  int* offsets;        ///< non-null: offsets[k] = k * c for k = 0..offsets_count-1
  int offsets_count;
  float* loss;         ///< with n == 0 and a scalar reduction: written 0
  bool zero_loss;
};

constexpr int kPrepassThreads = 512;

struct CountBad {
  long long count;
  unsigned int bad;
  unsigned int pad_;
};
struct CountBadOp {
  __device__ __forceinline__ CountBad operator()(CountBad a, const CountBad& b) const {
    return {a.count + b.count, a.bad > b.bad ? a.bad : b.bad, 0u};
  }
};

// (Kernels in this header are templates, so that several translation units may include it.)
template <int kUnused = 0>
__global__ void __launch_bounds__(kPrepassThreads) prepass_kernel(PrepassArgs a) {
  __shared__ alignas(16) unsigned char scratch[kScratchBytes];
  CountBad cb{0, 0u, 0u};
  if (a.labels.kind == Labels::Kind::kIndex32 || a.labels.kind == Labels::Kind::kIndex64) {
    for (int64_t r = threadIdx.x; r < a.n; r += blockDim.x) {
      const int64_t label = hard_label(a.labels, r);
      if (label == a.labels.ignore_index) continue;
      ++cb.count;
      if (label < 0 || label >= a.c) cb.bad = kBadLabel;
    }
    cb = block_allreduce(cb, CountBadOp{}, scratch);
  } else {
    cb.count = a.n;
  }
  double h = 0.0;
  if (a.harmonic) {
    for (int64_t r = threadIdx.x + 1; r <= a.c; r += blockDim.x) h += 1.0 / static_cast<double>(r);
    h = block_allreduce(h, SumOp{}, scratch);
  }
  if (a.offsets != nullptr) {
    for (int k = threadIdx.x; k < a.offsets_count; k += blockDim.x) a.offsets[k] = static_cast<int>(k * a.c);
  }
  if (threadIdx.x == 0) {
    a.header->status = cb.bad;
    a.header->counter = 0u;
    a.header->active = cb.count;
    a.header->mean1 = 0.0;
    a.header->mean2 = 0.0;
    a.header->harmonic = static_cast<float>(h);
    a.header->pad_ = 0.0f;
    if (a.zero_loss) *a.loss = 0.0f;
  }
}

/// Synchronous validation of soft labels (Validation::kSync only): one block per row.
template <int kUnused = 0>
__global__ void __launch_bounds__(256) soft_check_kernel(LabelArgs l, int64_t c, Header* h) {
  __shared__ alignas(16) unsigned char scratch[kScratchBytes];
  RowTargets<float> tg;
  const unsigned int bad = row_targets<0>(l, blockIdx.x, c, threadIdx.x, blockDim.x, false, tg, scratch);
  if (bad != 0u && threadIdx.x == 0) report(h, bad);
}

// ---------------------------------------------------------------------------------------------
// The batch loss: the last block of a kernel to finish sums the per-row losses in a fixed order.
// ---------------------------------------------------------------------------------------------

/// The factor every gradient gets: grad_scale, over the active rows for a mean (as on the CPU).
__device__ __forceinline__ float gradient_factor(Reduction red, double grad_scale, long long active) {
  if (red != Reduction::kMean) return static_cast<float>(grad_scale);
  return active > 0 ? static_cast<float>(grad_scale / static_cast<double>(active)) : 0.0f;
}

/// Every thread of the block: true only in the grid's last block to get here, with the global
/// writes of every block (seen through their barriers) visible. The caller resets h->counter.
__device__ __forceinline__ bool last_block_to_finish(Header* h) {
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();  // cumulative: the block's writes (seen through the barrier) come first
    last = atomicAdd(&h->counter, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (last) __threadfence();
  return last;
}

/// The row's loss, where the reduction wants it (Args: PairArgs or UskdArgs).
template <typename Args>
__device__ __forceinline__ void write_row_loss(const Args& a, int64_t row, float value) {
  if (a.reduction == Reduction::kNone) a.loss[row] = value;
  else a.row_loss[row] = value;
}

/// Call after the block has written its rows' losses to row_loss (every thread of the block).
/// The last block of the grid to get here writes the batch loss: the per-row losses summed in
/// double in a fixed order (per-thread strided sums, then warp order), divided by the active
/// rows for a mean. It resets the counter for the next kernel of the call.
__device__ __forceinline__ void finish_batch_loss(Header* h, const float* row_loss, int64_t n,
                                                  Reduction red, float* loss,
                                                  unsigned char* scratch) {
  if (!last_block_to_finish(h)) return;
  double s = 0.0;
  for (int64_t r = threadIdx.x; r < n; r += blockDim.x) s += static_cast<double>(__ldcg(row_loss + r));
  s = block_allreduce(s, SumOp{}, scratch);
  if (threadIdx.x == 0) {
    if (red == Reduction::kMean) {
      const long long active = h->active;  // written by the pre-pass, an earlier kernel
      s = active > 0 ? s / static_cast<double>(active) : 0.0;
    }
    *loss = static_cast<float>(s);
    h->counter = 0u;
  }
}

/// Returns kCudaError when the last launch failed.
inline Status launch_status() {
  return cudaGetLastError() == cudaSuccess ? Status::kSuccess : Status::kCudaError;
}

}  // namespace cuda_detail
}  // namespace fusedkd
