// fusedkd/kernels/common.cuh — what every fusedkd CUDA kernel shares: element conversions,
// 128-bit row I/O with a scalar fallback, deterministic warp/block reductions, the workspace
// layout and its header (status word, segment counter, active-row count, batch means), the
// multi-block label pre-pass, the two-level deterministic batch sum, and kernel launches that
// report only their own failure.
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

/// All-reduce over a group of kGroup lanes (32: a warp) or the whole block (kGroup == 0). Both
/// end with a barrier of the group (__syncthreads / __syncwarp) that orders every memory access
/// of the group's threads before the call against every access after it: a kernel that reads a
/// row before the reduction may overwrite it after (in-place gradients).
template <int kGroup, typename V, typename Op>
__device__ __forceinline__ V group_allreduce(V x, Op op, unsigned char* scratch) {
  if constexpr (kGroup == 0) {
    return block_allreduce(x, op, scratch);
  } else {
    static_assert(kGroup == 32, "lane groups are whole warps (the shuffles use the full mask)");
    (void)scratch;
    x = warp_allreduce<kGroup>(x, op);
    __syncwarp();  // a shuffle is not a memory barrier; __syncwarp is
    return x;
  }
}

struct SumOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
  __device__ __forceinline__ double operator()(double a, double b) const { return a + b; }
  __device__ __forceinline__ double2 operator()(double2 a, double2 b) const {
    return make_double2(a.x + b.x, a.y + b.y);
  }
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
// the caller's pointer): Header | unsigned seg_count[S] | double2 partial[S] | float row_loss[N]
// | loss-specific parts, with S = ceil(N / kSegmentRows) segments of the batch sum. Each call
// first zeroes Header and seg_count (one cudaMemsetAsync): the workspace may hold anything.
// ---------------------------------------------------------------------------------------------

struct Header {
  unsigned int status;    ///< 0, or the fusedkd::Status of the worst bad input the kernels saw
  unsigned int counter;   ///< finished segments of the running kernel's batch sum
  long long active;       ///< rows that are not ignore_index
  double mean1, mean2;    ///< USKD: batch means of u_1, u_2 (S_tk^2, or S_tk without square)
  float col_min[2], col_max[2], col_sum_exp[2], col_sum_v[2];  ///< USKD: the other soft targets' batch statistics
  float harmonic;         ///< USKD: sum_{r=1..C} 1/r
  float pad_;
};

/// Rows per segment of the two-level batch sum (a multiple of every kernel's rows per block).
constexpr int64_t kSegmentRows = 1024;
inline int64_t segments_of(int64_t n) { return n > 0 ? (n + kSegmentRows - 1) / kSegmentRows : 0; }

/// The status word's value as a Status: the words the kernels write, anything else (a workspace
/// that no call has written, or one overwritten since) kCudaError.
__host__ __device__ inline Status status_from_word(unsigned int word) {
  switch (word) {
    case 0u: return Status::kSuccess;
    case static_cast<unsigned int>(Status::kLabelOutOfRange): return Status::kLabelOutOfRange;
    case static_cast<unsigned int>(Status::kEmptySoftLabelRow): return Status::kEmptySoftLabelRow;
    default: return Status::kCudaError;
  }
}

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

/// The parts every call's workspace starts with (see the layout above).
struct BatchParts {
  Header* header = nullptr;
  unsigned int* seg_count = nullptr;  ///< rows finished per segment (reset by its finisher)
  double2* partial = nullptr;         ///< per-segment sums
  float* row_loss = nullptr;          ///< [N] row losses (mean / sum reductions)
  int64_t segments = 0;
  size_t reset_bytes = 0;  ///< from header: Header and seg_count, zeroed before the pre-pass
};

inline BatchParts carve_batch(Carver& cv, int64_t n) {
  BatchParts b;
  b.segments = segments_of(n);
  const size_t before = cv.used;
  b.header = cv.take<Header>(1);
  b.seg_count = cv.take<unsigned int>(static_cast<size_t>(b.segments));
  b.reset_bytes = cv.used - before;
  b.partial = cv.take<double2>(static_cast<size_t>(b.segments));
  b.row_loss = cv.take<float>(static_cast<size_t>(n));
  return b;
}

/// Where a kernel's two-level batch sum keeps its state (the device side of BatchParts).
struct BatchRefs {
  Header* header;
  unsigned int* seg_count;
  double2* partial;
  int64_t segments;
};
inline BatchRefs batch_refs(const BatchParts& b) { return {b.header, b.seg_count, b.partial, b.segments}; }

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

/// Whether p is aligned for its element type (a misaligned int64 label or float would fault).
inline bool element_aligned(const void* p, size_t size) {
  return p == nullptr || reinterpret_cast<uintptr_t>(p) % size == 0;
}

/// Whether the labels' pointer suits their kind (int32 / float: 4 bytes, int64: 8).
inline bool labels_aligned(const LabelArgs& l) {
  switch (l.kind) {
    case Labels::Kind::kNone: return true;
    case Labels::Kind::kIndex32: return element_aligned(l.data, 4);
    case Labels::Kind::kIndex64: return element_aligned(l.data, 8);
    case Labels::Kind::kSoft: return element_aligned(l.data, 4);
  }
  return false;
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
// The label pre-pass (a grid-stride kernel after the memset of Header and seg_count): validates
// hard labels, counts the active rows, and (block 0) computes the USKD harmonic sum, the segment
// offsets of the large-C sort and the zero loss of an empty batch.
// ---------------------------------------------------------------------------------------------

struct PrepassArgs {
  LabelArgs labels;
  int64_t n, c;
  Header* header;      ///< zeroed before the kernel
  bool harmonic;       ///< compute header->harmonic
  int* offsets;        ///< non-null: offsets[k] = k * c for k = 0..offsets_count-1
  int offsets_count;
  float* loss;         ///< with n == 0 and a scalar reduction: written 0
  bool zero_loss;
};

constexpr int kPrepassThreads = 512;
constexpr int64_t kPrepassRowsPerThread = 8;
constexpr int64_t kPrepassMaxBlocks = 1024;

/// Blocks of the pre-pass for N rows: about kPrepassRowsPerThread labels per thread, at least one
/// block (block 0 does the per-call work even when N == 0).
inline unsigned int prepass_blocks(int64_t n) {
  const int64_t per_block = kPrepassThreads * kPrepassRowsPerThread;
  int64_t b = (n + per_block - 1) / per_block;
  if (b < 1) b = 1;
  if (b > kPrepassMaxBlocks) b = kPrepassMaxBlocks;
  return static_cast<unsigned int>(b);
}

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
// The per-block counts meet in the header through integer atomics: the same total whatever the
// order in which the blocks finish.
template <int kUnused = 0>
__global__ void __launch_bounds__(kPrepassThreads) prepass_kernel(PrepassArgs a) {
  __shared__ alignas(16) unsigned char scratch[kScratchBytes];
  if (a.labels.kind == Labels::Kind::kIndex32 || a.labels.kind == Labels::Kind::kIndex64) {
    CountBad cb{0, 0u, 0u};
    const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < a.n; r += step) {
      const int64_t label = hard_label(a.labels, r);
      if (label == a.labels.ignore_index) continue;
      ++cb.count;
      if (label < 0 || label >= a.c) cb.bad = kBadLabel;
    }
    cb = block_allreduce(cb, CountBadOp{}, scratch);
    if (threadIdx.x == 0) {
      if (cb.count != 0) {
        atomicAdd(reinterpret_cast<unsigned long long*>(&a.header->active),
                  static_cast<unsigned long long>(cb.count));
      }
      if (cb.bad != 0u) report(a.header, cb.bad);
    }
  } else if (blockIdx.x == 0 && threadIdx.x == 0) {
    a.header->active = a.n;
  }
  if (blockIdx.x != 0) return;
  if (a.harmonic) {
    double h = 0.0;
    for (int64_t r = threadIdx.x + 1; r <= a.c; r += blockDim.x) h += 1.0 / static_cast<double>(r);
    h = block_allreduce(h, SumOp{}, scratch);
    if (threadIdx.x == 0) a.header->harmonic = static_cast<float>(h);
  }
  if (a.offsets != nullptr) {
    for (int k = threadIdx.x; k < a.offsets_count; k += blockDim.x) a.offsets[k] = static_cast<int>(k * a.c);
  }
  if (threadIdx.x == 0 && a.zero_loss) *a.loss = 0.0f;
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

/// The row's loss, where the reduction wants it (Args: PairArgs or UskdArgs).
template <typename Args>
__device__ __forceinline__ void write_row_loss(const Args& a, int64_t row, float value) {
  if (a.reduction == Reduction::kNone) a.loss[row] = value;
  else a.row_loss[row] = value;
}

/// The two-level batch sum. Call with every thread of the block once the block has written the
/// values of its rows [first, first + rows), which lie in one segment of kSegmentRows rows.
/// `load(r)` reads row r's value pair (with __ldcg: written by other blocks of this kernel).
///   1. The block that finishes a segment's last row (counted with atomics on seg_count) sums
///      the segment's rows in a fixed order (strided per-thread sums, then the block fold) into
///      partial[segment], and resets the segment's counter.
///   2. The block that finishes the last segment (header->counter) sums the partials the same
///      way, resets the counter, and returns true with the total in `total` (every thread).
/// Which block does the work depends on timing; the order of the additions does not (it depends
/// on the launch shape only), so the result is bitwise the same run after run. Every other
/// block returns false. Both levels read at most max(kSegmentRows, S) values per block, so no
/// block is left alone with the whole batch (N = 10^6: about 1000 + 1000 values).
template <typename Load>
__device__ __forceinline__ bool batch_sum(const BatchRefs& b, int64_t n, int64_t first, int rows, Load load,
                                          double2& total, unsigned char* scratch) {
  __shared__ bool finisher;
  const int64_t seg = first / kSegmentRows;
  const int64_t seg_begin = seg * kSegmentRows;
  const int64_t seg_end = seg_begin + kSegmentRows < n ? seg_begin + kSegmentRows : n;
  __threadfence();  // this thread's writes, before the block's count below
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();  // cumulative: the block's writes (seen through the barrier) come first
    const unsigned int done = atomicAdd(&b.seg_count[seg], static_cast<unsigned int>(rows)) + rows;
    finisher = done == static_cast<unsigned int>(seg_end - seg_begin);
  }
  __syncthreads();
  if (!finisher) return false;
  __threadfence();
  double2 s = make_double2(0.0, 0.0);
#pragma unroll 4
  for (int64_t r = seg_begin + threadIdx.x; r < seg_end; r += blockDim.x) s = SumOp{}(s, load(r));
  s = block_allreduce(s, SumOp{}, scratch);
  if (threadIdx.x == 0) {
    b.partial[seg] = s;
    b.seg_count[seg] = 0u;  // for the next kernel of the call
    __threadfence();
    finisher = atomicAdd(&b.header->counter, 1u) == static_cast<unsigned int>(b.segments - 1);
  }
  __syncthreads();
  if (!finisher) return false;
  __threadfence();
  double2 t = make_double2(0.0, 0.0);
#pragma unroll 4
  for (int64_t k = threadIdx.x; k < b.segments; k += blockDim.x) t = SumOp{}(t, __ldcg(b.partial + k));
  total = block_allreduce(t, SumOp{}, scratch);
  if (threadIdx.x == 0) b.header->counter = 0u;  // for the next kernel of the call
  return true;
}

/// Call after the block has written its rows' losses to row_loss (every thread of the block).
/// The block that completes the batch sum (batch_sum) writes the batch loss: the row losses
/// summed in double, divided by the active rows for a mean.
__device__ __forceinline__ void finish_batch_loss(const BatchRefs& b, const float* row_loss, int64_t n,
                                                  int64_t first, int rows, Reduction red, float* loss,
                                                  unsigned char* scratch) {
  double2 total;
  const auto load = [row_loss](int64_t r) { return make_double2(static_cast<double>(__ldcg(row_loss + r)), 0.0); };
  if (!batch_sum(b, n, first, rows, load, total, scratch)) return;
  if (threadIdx.x == 0) {
    double s = total.x;
    if (red == Reduction::kMean) {
      const long long active = b.header->active;  // written by the pre-pass, an earlier kernel
      s = active > 0 ? s / static_cast<double>(active) : 0.0;
    }
    *loss = static_cast<float>(s);
  }
}

// ---------------------------------------------------------------------------------------------
// Launches. A kernel is launched with cudaLaunchKernel, whose return value is that launch's own
// outcome: an error that the caller's earlier CUDA work left pending in the thread's last-error
// state is neither reported as this call's failure nor cleared (cudaGetLastError after a <<<>>>
// launch would do both). A sticky error (a corrupted context) fails every launch and so is
// reported. A failed launch also stays in the last-error state, as CUDA's own calls leave it.
// ---------------------------------------------------------------------------------------------

template <typename T>
struct NoDeduce {
  using type = T;
};

/// Launches `kernel<<<grid, block, 0, stream>>>(args...)`; kCudaError when the launch fails.
template <typename... P>
inline Status launch(void (*kernel)(P...), unsigned int grid, unsigned int block, cudaStream_t stream,
                     typename NoDeduce<P>::type... args) {
  void* argv[sizeof...(P) > 0 ? sizeof...(P) : 1] = {static_cast<void*>(&args)...};
  const cudaError_t e = cudaLaunchKernel(reinterpret_cast<const void*>(kernel), dim3(grid), dim3(block), argv, 0,
                                         stream);
  return e == cudaSuccess ? Status::kSuccess : Status::kCudaError;
}

/// A cudaError_t as the Status of a fusedkd call.
inline Status cuda_status(cudaError_t e) { return e == cudaSuccess ? Status::kSuccess : Status::kCudaError; }

}  // namespace cuda_detail
}  // namespace fusedkd
