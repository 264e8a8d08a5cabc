// fusedkd/kernels/uskd.cuh — the USKD kernels.
//
// USKD couples the rows through the batch mean of S_t^2, which every row's gradient needs, so a
// call runs (after the label pre-pass):
//   1. uskd_stats_kernel (a block per row, streaming): the row's targets, the student and weak
//      online-softmax statistics and S_tk^2 into the workspace (O(N)); the two-level batch sum
//      (common.cuh batch_sum) averages S_tk^2 over the active rows in a fixed order.
//   2. C <= 4096: uskd_sort_kernel (a block per row, the row in registers): the rank keys R of all
//      C classes, one CUB BlockRadixSort of packed (key, index) pairs (256, 1024 or 4096 keys,
//      the smallest that holds C), the ranks into shared memory, then both gradient rows and the
//      row loss; the batch sum reduces the loss.
//      C > 4096, in chunks of rows: uskd_keys_kernel writes the packed keys into the workspace,
//      cub::DeviceSegmentedRadixSort sorts each row's keys, uskd_rank_kernel turns them into
//      ranks and writes the gradient rows and row losses.
// The logits are read twice for C <= 4096 (statistics, then the fused pass) and three times
// beyond (statistics, keys, gradient pass). docs/cuda.md discusses the cost.
//
// The packed key of class i: (~ordered(R_i)) << b | i, with ordered() the order-preserving
// float -> uint32 map and b the bits of C - 1. Ascending packed keys are R descending, ties by
// the lower class index: the CPU's stable order (-0 ties with +0, NaN after every number).
#pragma once

#include <cub/block/block_radix_sort.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

#include "fusedkd/kernels/common.cuh"

namespace fusedkd {
namespace cuda_detail {

using fusedkd::detail::UskdRankKey;
using fusedkd::detail::UskdRow;

/// What the statistics pass keeps per row.
struct UskdRowState {
  RowTargets<float> tg;
  SplitStats<float> zs, ws;
  unsigned int bad;
  unsigned int pad_;
};

template <typename T>
struct UskdArgs {
  const T* z;
  int64_t ldz;
  const T* w;
  int64_t ldw;
  T* gz;  ///< null: no gradients (then gw is null too)
  int64_t ldgz;
  T* gw;
  int64_t ldgw;
  LabelArgs labels;
  int64_t n, c;
  bool aligned;  ///< every row of z, w, gz, gw starts 16-byte aligned
  Reduction reduction;
  double grad_scale;
  float* loss;
  Header* header;
  float* row_loss;
  BatchRefs batch;
  UskdRowState* states;
  float2* sq;  ///< u_1, u_2 per row: S_tk^2 (S_tk without `square`)
  float2* vals;  ///< V_1, V_2 per row (-1 for ignored rows, NaN for bad ones)
  int soft_mode;  ///< UskdSoftTarget as an int (core.hpp uskd_soft_target)
  float alpha, beta, mu, eps, ce;
  int rank_mode;  ///< UskdRank as an int (core.hpp UskdRankKey)
  bool square;
  fusedkd::detail::UskdTerms terms;
  int index_bits;  ///< b: bits of C - 1 (at least 1)
  // The large-C path: a chunk of rows starting at row0.
  int64_t row0;
  unsigned long long* keys;          ///< [chunk, C] packed keys (keys kernel output)
  const unsigned long long* sorted;  ///< [chunk, C] sorted keys (rank kernel input)
  int* ranks;                        ///< [chunk, C] ranks (rank kernel scratch)
};

__host__ __device__ __forceinline__ unsigned long long pack_rank_key(float r, int64_t i, int index_bits) {
  r += 0.0f;  // -0 becomes +0, which compares equal
  uint32_t u;
  memcpy(&u, &r, sizeof u);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);  // ascending in r
  uint32_t hi = ~u;                                  // ascending in -r
  if (r != r) hi = 0xffffffffu;                      // NaN after every number, as on the CPU
  return (static_cast<unsigned long long>(hi) << index_bits) | static_cast<unsigned long long>(i);
}

/// The sort's padding entries (classes >= C): one bit above every packed key.
__host__ __device__ __forceinline__ unsigned long long pad_rank_key(int index_bits) {
  return 1ull << (32 + index_bits);
}

/// Statistics pass: a block per row.
template <typename T>
__global__ void __launch_bounds__(512) uskd_stats_kernel(UskdArgs<T> a) {
  constexpr int V = Vec<T>::kSize;
  __shared__ alignas(16) unsigned char scratch[kScratchBytes];
  const int64_t row = blockIdx.x;
  const int64_t c = a.c;
  const int lane = threadIdx.x, group = blockDim.x;
  const bool soft = a.labels.kind == Labels::Kind::kSoft;

  UskdRowState s;
  s.bad = row_targets<0>(a.labels, row, c, lane, group, soft, s.tg, scratch);
  s.pad_ = 0u;
  float2 sq = make_float2(0.0f, 0.0f);
  float2 vals = make_float2(-1.0f, -1.0f);
  if (s.bad != 0u) {
    if (s.bad == kEmptySoft && lane == 0) report(a.header, s.bad);
    sq = make_float2(__int_as_float(0x7fc00000), __int_as_float(0x7fc00000));  // poisons the means
    vals = sq;
  } else if (!s.tg.ignored) {
    vals = make_float2(s.tg.v1, s.tg.t2 >= 0 ? s.tg.v2 : 0.0f);
    const T* zr = a.z + row * a.ldz;
    const T* wr = a.w + row * a.ldw;
    StatsPair st;
    for (int64_t base = static_cast<int64_t>(lane) * V; base < c; base += static_cast<int64_t>(group) * V) {
      const int count = tail_count(c, base, V);
      const uint4 zq = load_vec<T>(zr + base, count, a.aligned);
      const uint4 wq = load_vec<T>(wr + base, count, a.aligned);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        if (j < count) {
          fusedkd::detail::accumulate(st.z, s.tg, base + j, vec_get<T>(zq, j), 1.0f, false);
          fusedkd::detail::accumulate(st.v, s.tg, base + j, vec_get<T>(wq, j), 1.0f, false);
        }
      }
    }
    st = block_allreduce(st, StatsPairMergeOp{1.0f, false}, scratch);
    st.z.x1 = to_float(zr[s.tg.t1]);
    st.v.x1 = to_float(wr[s.tg.t1]);
    if (s.tg.t2 >= 0) {
      st.z.x2 = to_float(zr[s.tg.t2]);
      st.v.x2 = to_float(wr[s.tg.t2]);
    }
    s.zs = st.z;
    s.ws = st.v;
    fusedkd::detail::uskd_target_squares(s.zs, s.tg, sq.x, sq.y, a.square);
  }
  if (lane == 0) {
    a.states[row] = s;
    a.sq[row] = sq;
    a.vals[row] = vals;
  }

  // The batch sum averages S_tk^2 over the active rows, in a fixed order.
  const float2* sqs = a.sq;
  const auto load = [sqs](int64_t r) {
    const float2 q = __ldcg(sqs + r);
    return make_double2(static_cast<double>(q.x), static_cast<double>(q.y));
  };
  double2 sum;
  if (!batch_sum(a.batch, a.n, row, 1, load, sum, scratch)) return;
  if (lane == 0) {
    const long long active = a.header->active;
    a.header->mean1 = active > 0 ? sum.x / static_cast<double>(active) : 0.0;
    a.header->mean2 = active > 0 ? sum.y / static_cast<double>(active) : 0.0;
  }
  // Table 8's other soft targets: min, max, sum of exp(u) and sum of V per column, over the
  // active rows in row order, by one thread (as the CPU backend sums them; a variant for
  // ablations, not a fast path).
  if (a.soft_mode != 0 && lane == 0) {
    double e[2] = {0.0, 0.0}, v[2] = {0.0, 0.0};
    float lo[2] = {0.0f, 0.0f}, hi[2] = {0.0f, 0.0f};
    bool first = true;
    for (int64_t r = 0; r < a.n; ++r) {
      const float2 vv = __ldcg(a.vals + r);
      if (vv.x < 0.0f) continue;  // ignored (a bad row's NaN goes on and poisons the sums)
      const float2 q = __ldcg(a.sq + r);
      const float u[2] = {q.x, q.y}, w[2] = {vv.x, vv.y};
      for (int k = 0; k < 2; ++k) {
        e[k] += exp(static_cast<double>(u[k]));
        v[k] += static_cast<double>(w[k]);
        lo[k] = first || u[k] < lo[k] ? u[k] : lo[k];
        hi[k] = first || u[k] > hi[k] ? u[k] : hi[k];
      }
      first = false;
    }
    for (int k = 0; k < 2; ++k) {
      a.header->col_min[k] = lo[k];
      a.header->col_max[k] = hi[k];
      a.header->col_sum_exp[k] = static_cast<float>(e[k]);
      a.header->col_sum_v[k] = static_cast<float>(v[k]);
    }
  }
}

/// The row's constants of the gradient pass, once the target ranks are known.
template <typename T>
__device__ __forceinline__ UskdRow<float> make_uskd_row(const UskdArgs<T>& a, const UskdRowState& s,
                                                        float2 sq, int rank1, int rank2) {
  fusedkd::detail::UskdColumn<float> col[2];
  col[0].mean = static_cast<float>(a.header->mean1);
  col[1].mean = static_cast<float>(a.header->mean2);
  if (a.soft_mode != 0) {
    for (int k = 0; k < 2; ++k) {
      col[k].min = a.header->col_min[k];
      col[k].max = a.header->col_max[k];
      col[k].sum_exp = a.header->col_sum_exp[k];
      col[k].sum_v = a.header->col_sum_v[k];
    }
  }
  const float p1 = fusedkd::detail::uskd_soft_target(a.soft_mode, sq.x, s.tg.v1, col[0]);
  const float p2 =
      s.tg.t2 >= 0 ? fusedkd::detail::uskd_soft_target(a.soft_mode, sq.y, s.tg.v2, col[1]) : 0.0f;
  return UskdRow<float>(s.zs, s.ws, s.tg, p1, p2, rank1, rank2, a.header->harmonic, a.c, a.alpha, a.beta,
                        a.mu, a.eps, a.ce, a.terms);
}

/// Writes both gradient rows with `value` (ignored: 0, bad: NaN) by a block, and the row loss.
template <typename T>
__device__ __forceinline__ void uskd_fill_row(const UskdArgs<T>& a, int64_t row, float value) {
  if (a.gz != nullptr) {
    fill_row<T>(a.gz + row * a.ldgz, a.c, a.aligned, threadIdx.x, blockDim.x, value);
    fill_row<T>(a.gw + row * a.ldgw, a.c, a.aligned, threadIdx.x, blockDim.x, value);
  }
  if (threadIdx.x == 0) write_row_loss(a, row, value);
}

/// C <= kBlockThreads * kItems: a block per row, the row in registers (blocked: thread t holds
/// classes [t * kItems, (t + 1) * kItems)), one block radix sort for the ranks.
template <typename T, int kBlockThreads, int kItems>
__global__ void __launch_bounds__(kBlockThreads) uskd_sort_kernel(UskdArgs<T> a) {
  constexpr int V = Vec<T>::kSize;
  static_assert(kItems % V == 0, "a thread's classes are whole vectors");
  using Sort = cub::BlockRadixSort<unsigned long long, kBlockThreads, kItems>;
  __shared__ union SortOrRanks {
    typename Sort::TempStorage sort;
    int rank[kBlockThreads * kItems];
  } smem;
  __shared__ alignas(16) unsigned char scratch[kScratchBytes];

  const int64_t row = blockIdx.x;
  const int64_t c = a.c;
  const UskdRowState s = a.states[row];
  if (s.bad != 0u || s.tg.ignored) {  // uniform over the block
    uskd_fill_row(a, row, s.bad != 0u ? __int_as_float(0x7fc00000) : 0.0f);
  } else {
    const T* zr = a.z + row * a.ldz;
    const T* wr = a.w + row * a.ldw;
    const int64_t first = static_cast<int64_t>(threadIdx.x) * kItems;
    float zv[kItems], wv[kItems];
#pragma unroll
    for (int q = 0; q < kItems / V; ++q) {
      const int64_t base = first + q * V;
      const int count = tail_count(c, base, V);
      const uint4 zq = load_vec<T>(zr + base, count, a.aligned);
      const uint4 wq = load_vec<T>(wr + base, count, a.aligned);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        zv[q * V + j] = vec_get<T>(zq, j);
        wv[q * V + j] = vec_get<T>(wq, j);
      }
    }

    // Rank keys, one block-wide sort, the ranks into shared memory.
    const UskdRankKey<float> key(s.zs.full(1.0f, s.tg), s.ws.full(1.0f, s.tg), s.zs, s.ws, s.tg,
                                 a.rank_mode);
    unsigned long long keys[kItems];
    const int end_bit = 33 + a.index_bits;  // the packed key and the padding bit
    const unsigned long long pad = pad_rank_key(a.index_bits);
#pragma unroll
    for (int k = 0; k < kItems; ++k) {
      const int64_t i = first + k;
      keys[k] = i < c ? pack_rank_key(key(zv[k], wv[k]), i, a.index_bits) : pad;
    }
    Sort(smem.sort).Sort(keys, 0, end_bit);
    __syncthreads();  // the sort's storage becomes the rank array
    const unsigned long long index_mask = (1ull << a.index_bits) - 1ull;
#pragma unroll
    for (int k = 0; k < kItems; ++k) {
      const int64_t position = first + k;  // blocked arrangement: sorted position
      if (position < c) smem.rank[keys[k] & index_mask] = static_cast<int>(position + 1);
    }
    __syncthreads();

    const float2 sq = a.sq[row];
    const UskdRow<float> r =
        make_uskd_row(a, s, sq, smem.rank[s.tg.t1], s.tg.t2 >= 0 ? smem.rank[s.tg.t2] : 1);
    const float factor = gradient_factor(a.reduction, a.grad_scale, a.header->active);
    const bool soft = a.labels.kind == Labels::Kind::kSoft;
    float yv[kItems];
    if (soft) {
      const float* y = a.labels.soft + row * a.labels.ld;
      const int count = tail_count(c, first, kItems);
      load_floats<kItems>(y + first, count, a.labels.soft_aligned, yv);
    } else {
#pragma unroll
      for (int k = 0; k < kItems; ++k) yv[k] = first + k == s.tg.t1 ? 1.0f : 0.0f;
    }
    Float2 acc{0.0f, 0.0f};
    T* gzr = a.gz != nullptr ? a.gz + row * a.ldgz : nullptr;
    T* gwr = a.gw != nullptr ? a.gw + row * a.ldgw : nullptr;
#pragma unroll
    for (int q = 0; q < kItems / V; ++q) {
      const int64_t base = first + q * V;
      const int count = tail_count(c, base, V);
      uint4 dzq = make_uint4(0u, 0u, 0u, 0u), dwq = make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        if (j < count) {
          const int k = q * V + j;
          float dz, dw;
          r.element(static_cast<int32_t>(base + j), zv[k], wv[k], yv[k], smem.rank[base + j], dz, dw, acc.a, acc.b);
          vec_set<T>(dzq, j, dz * factor);
          vec_set<T>(dwq, j, dw * factor);
        }
      }
      if (gzr != nullptr && count > 0) {
        store_vec<T>(gzr + base, dzq, count, a.aligned);
        store_vec<T>(gwr + base, dwq, count, a.aligned);
      }
    }
    acc = block_allreduce(acc, Sum2Op{}, scratch);
    if (threadIdx.x == 0) write_row_loss(a, row, r.loss(acc.a, acc.b));
  }
  if (a.reduction != Reduction::kNone) {
    finish_batch_loss(a.batch, a.row_loss, a.n, row, 1, a.reduction, a.loss, scratch);
  }
}

constexpr int kUskdStreamThreads = 512;

/// C > 4096, step 1: the packed rank keys of a chunk of rows into the workspace.
template <typename T>
__global__ void __launch_bounds__(kUskdStreamThreads) uskd_keys_kernel(UskdArgs<T> a) {
  constexpr int V = Vec<T>::kSize;
  const int64_t row = a.row0 + blockIdx.x;
  const int64_t c = a.c;
  unsigned long long* keys = a.keys + static_cast<int64_t>(blockIdx.x) * c;
  const UskdRowState s = a.states[row];
  if (s.bad != 0u || s.tg.ignored) {
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) keys[i] = static_cast<unsigned long long>(i);
    return;
  }
  const T* zr = a.z + row * a.ldz;
  const T* wr = a.w + row * a.ldw;
  const UskdRankKey<float> key(s.zs.full(1.0f, s.tg), s.ws.full(1.0f, s.tg), s.zs, s.ws, s.tg,
                               a.rank_mode);
  for (int64_t base = static_cast<int64_t>(threadIdx.x) * V; base < c; base += static_cast<int64_t>(blockDim.x) * V) {
    const int count = tail_count(c, base, V);
    const uint4 zq = load_vec<T>(zr + base, count, a.aligned);
    const uint4 wq = load_vec<T>(wr + base, count, a.aligned);
#pragma unroll
    for (int j = 0; j < V; ++j) {
      if (j < count) keys[base + j] = pack_rank_key(key(vec_get<T>(zq, j), vec_get<T>(wq, j)), base + j, a.index_bits);
    }
  }
}

/// C > 4096, step 3: ranks from the sorted keys, then both gradient rows and the row loss.
template <typename T>
__global__ void __launch_bounds__(kUskdStreamThreads) uskd_rank_kernel(UskdArgs<T> a) {
  constexpr int V = Vec<T>::kSize;
  __shared__ alignas(16) unsigned char scratch[kScratchBytes];
  const int64_t row = a.row0 + blockIdx.x;
  const int64_t c = a.c;
  const UskdRowState s = a.states[row];
  if (s.bad != 0u || s.tg.ignored) {
    uskd_fill_row(a, row, s.bad != 0u ? __int_as_float(0x7fc00000) : 0.0f);
  } else {
    const unsigned long long* sorted = a.sorted + static_cast<int64_t>(blockIdx.x) * c;
    int* rank = a.ranks + static_cast<int64_t>(blockIdx.x) * c;
    const unsigned long long index_mask = (1ull << a.index_bits) - 1ull;
    for (int64_t p = threadIdx.x; p < c; p += blockDim.x) rank[sorted[p] & index_mask] = static_cast<int>(p + 1);
    __syncthreads();  // makes the block's global writes visible to the whole block

    const float2 sq = a.sq[row];
    const UskdRow<float> r = make_uskd_row(a, s, sq, rank[s.tg.t1], s.tg.t2 >= 0 ? rank[s.tg.t2] : 1);
    const float factor = gradient_factor(a.reduction, a.grad_scale, a.header->active);
    const bool soft = a.labels.kind == Labels::Kind::kSoft;
    const float* y = soft ? a.labels.soft + row * a.labels.ld : nullptr;
    const T* zr = a.z + row * a.ldz;
    const T* wr = a.w + row * a.ldw;
    T* gzr = a.gz != nullptr ? a.gz + row * a.ldgz : nullptr;
    T* gwr = a.gw != nullptr ? a.gw + row * a.ldgw : nullptr;
    Float2 acc{0.0f, 0.0f};
    for (int64_t base = static_cast<int64_t>(threadIdx.x) * V; base < c; base += static_cast<int64_t>(blockDim.x) * V) {
      const int count = tail_count(c, base, V);
      const uint4 zq = load_vec<T>(zr + base, count, a.aligned);
      const uint4 wq = load_vec<T>(wr + base, count, a.aligned);
      float yv[V];
      if (soft) {
        load_floats<V>(y + base, count, a.labels.soft_aligned, yv);
      } else {
#pragma unroll
        for (int j = 0; j < V; ++j) yv[j] = base + j == s.tg.t1 ? 1.0f : 0.0f;
      }
      uint4 dzq = make_uint4(0u, 0u, 0u, 0u), dwq = make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        if (j < count) {
          float dz, dw;
          r.element(static_cast<int32_t>(base + j), vec_get<T>(zq, j), vec_get<T>(wq, j), yv[j], rank[base + j], dz, dw, acc.a, acc.b);
          vec_set<T>(dzq, j, dz * factor);
          vec_set<T>(dwq, j, dw * factor);
        }
      }
      if (gzr != nullptr) {
        store_vec<T>(gzr + base, dzq, count, a.aligned);
        store_vec<T>(gwr + base, dwq, count, a.aligned);
      }
    }
    acc = block_allreduce(acc, Sum2Op{}, scratch);
    if (threadIdx.x == 0) write_row_loss(a, row, r.loss(acc.a, acc.b));
  }
  if (a.reduction != Reduction::kNone) {  // the segments fill up across the chunks' launches
    finish_batch_loss(a.batch, a.row_loss, a.n, row, 1, a.reduction, a.loss, scratch);
  }
}

// ---------------------------------------------------------------------------------------------
// Host side: workspace layout and launches.
// ---------------------------------------------------------------------------------------------

constexpr int kUskdSortItems = 8;            // keys per thread of uskd_sort_kernel
constexpr int64_t kUskdTinySortMax = 256;     // uskd_sort_kernel<T, 32, 8>
constexpr int64_t kUskdSmallSortMax = 1024;   // uskd_sort_kernel<T, 128, 8>
constexpr int64_t kUskdBlockSortMax = 4096;   // uskd_sort_kernel<T, 512, 8>

/// Threads of the block sort for C (C <= kUskdBlockSortMax): the smallest shape that holds C,
/// so that C = 10 sorts 256 keys, not 4096.
inline int uskd_sort_threads(int64_t c) {
  return c <= kUskdTinySortMax ? 32 : c <= kUskdSmallSortMax ? 128 : 512;
}
constexpr int64_t kUskdKeyBufferBytes = int64_t(64) << 20;  // per key buffer, large-C path
constexpr size_t kUskdCubBytes = size_t(64) << 10;          // CUB's scratch, large-C path

/// Rows per chunk of the large-C path (0 when C <= kUskdBlockSortMax or N == 0).
inline int64_t uskd_chunk_rows(int64_t n, int64_t c) {
  if (c <= kUskdBlockSortMax || n <= 0) return 0;
  int64_t rows = kUskdKeyBufferBytes / (c * 8);
  const int64_t max_items = int64_t(1) << 30;  // CUB's item count is an int
  if (rows * c > max_items) rows = max_items / c;
  if (rows < 1) rows = 1;
  return rows < n ? rows : n;
}

struct UskdLayout {
  BatchParts batch;
  Header* header = nullptr;
  float* row_loss = nullptr;
  UskdRowState* states = nullptr;
  float2* sq = nullptr;
  float2* vals = nullptr;
  int* offsets = nullptr;
  unsigned long long* keys0 = nullptr;
  unsigned long long* keys1 = nullptr;
  void* cub = nullptr;
  int64_t chunk = 0;
  size_t bytes = 0;
};

inline UskdLayout uskd_layout(void* workspace, int64_t n, int64_t c) {
  UskdLayout l;
  Carver cv(workspace);
  l.batch = carve_batch(cv, n);
  l.header = l.batch.header;
  l.row_loss = l.batch.row_loss;
  l.states = cv.take<UskdRowState>(static_cast<size_t>(n));
  l.sq = cv.take<float2>(static_cast<size_t>(n));
  l.vals = cv.take<float2>(static_cast<size_t>(n));
  l.chunk = uskd_chunk_rows(n, c);
  if (l.chunk > 0) {
    l.offsets = cv.take<int>(static_cast<size_t>(l.chunk + 1));
    l.keys0 = cv.take<unsigned long long>(static_cast<size_t>(l.chunk * c));
    l.keys1 = cv.take<unsigned long long>(static_cast<size_t>(l.chunk * c));
    l.cub = cv.take<unsigned char>(kUskdCubBytes);
  }
  l.bytes = cv.bytes();
  return l;
}

inline int index_bits_of(int64_t c) {
  int b = 1;
  while ((int64_t(1) << b) < c) ++b;  // 2^b >= c: indices 0..c-1 fit in b bits
  return b;
}

inline unsigned int stream_threads(int64_t c, int vec) {
  int64_t t = (c + 4 * vec - 1) / (4 * vec);
  t = (t + 31) / 32 * 32;
  if (t < 32) t = 32;
  if (t > kUskdStreamThreads) t = kUskdStreamThreads;
  return static_cast<unsigned int>(t);
}

/// Launches the USKD kernels after the pre-pass (n > 0). `a` has every field but the chunk ones.
template <typename T>
inline Status launch_uskd(UskdArgs<T> a, const UskdLayout& l, cudaStream_t stream) {
  constexpr int V = Vec<T>::kSize;
  const unsigned int grid = static_cast<unsigned int>(a.n);
  Status s = launch(uskd_stats_kernel<T>, grid, stream_threads(a.c, V), stream, a);
  if (s != Status::kSuccess) return s;
  if (a.c <= kUskdBlockSortMax) {
    switch (uskd_sort_threads(a.c)) {
      case 32: return launch(uskd_sort_kernel<T, 32, kUskdSortItems>, grid, 32, stream, a);
      case 128: return launch(uskd_sort_kernel<T, 128, kUskdSortItems>, grid, 128, stream, a);
      default: return launch(uskd_sort_kernel<T, 512, kUskdSortItems>, grid, 512, stream, a);
    }
  }
  // Large C, in chunks of rows. CUB's segmented sort launches its own kernels and reports their
  // outcome through the thread's last-error state (cudaPeekAtLastError): an error the caller's
  // earlier work left pending there makes this path return kCudaError (see cuda.cuh).
  const int end_bit = 32 + a.index_bits;
  for (int64_t row0 = 0; row0 < a.n; row0 += l.chunk) {
    const int64_t rows = a.n - row0 < l.chunk ? a.n - row0 : l.chunk;
    a.row0 = row0;
    a.keys = l.keys0;
    s = launch(uskd_keys_kernel<T>, static_cast<unsigned int>(rows), kUskdStreamThreads, stream, a);
    if (s != Status::kSuccess) return s;
    cub::DoubleBuffer<unsigned long long> buffers(l.keys0, l.keys1);
    size_t cub_bytes = kUskdCubBytes;
    s = cuda_status(cub::DeviceSegmentedRadixSort::SortKeys(l.cub, cub_bytes, buffers, static_cast<int>(rows * a.c),
                                                            static_cast<int>(rows), l.offsets, l.offsets + 1, 0,
                                                            end_bit, stream));
    if (s != Status::kSuccess) return s;
    a.sorted = buffers.Current();
    a.ranks = reinterpret_cast<int*>(buffers.Alternate());
    s = launch(uskd_rank_kernel<T>, static_cast<unsigned int>(rows), kUskdStreamThreads, stream, a);
    if (s != Status::kSuccess) return s;
  }
  return Status::kSuccess;
}

/// The CUB scratch the large-C path needs (checked against kUskdCubBytes before a call). A
/// template so that only the translation units that call USKD compile CUB's sort kernels.
template <int kDeferred = 0>
inline Status uskd_check_cub_bytes(const UskdLayout& l, int64_t c, int index_bits) {
  if (l.chunk == 0) return Status::kSuccess;
  cub::DoubleBuffer<unsigned long long> buffers(l.keys0, l.keys1);
  size_t need = 0;
  if (cub::DeviceSegmentedRadixSort::SortKeys(nullptr, need, buffers, static_cast<int>(l.chunk * c),
                                              static_cast<int>(l.chunk), l.offsets, l.offsets + 1, 0,
                                              32 + index_bits) != cudaSuccess) {
    return Status::kCudaError;
  }
  return need <= kUskdCubBytes ? Status::kSuccess : Status::kNotSupported;
}

}  // namespace cuda_detail
}  // namespace fusedkd
