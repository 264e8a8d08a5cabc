// fusedkd/kernels/pair.cuh — the fused kernels of the teacher losses (NKD, KD, DKD).
//
// One launch per call (after the label pre-pass): a group of threads per row reads the row's
// targets, then the student and teacher rows once, merges the online-softmax statistics
// (core.hpp SplitStats), builds the loss's Row (core.hpp NkdRow / KdRow / DkdRow), writes the
// gradient row and the row loss; the row losses are summed in a fixed order in two levels
// (common.cuh batch_sum).
//
// In place (gradient over the student logits): every read of a row element that another thread
// writes — the target logits, which every thread of the group needs — happens before the group's
// reduction, whose barrier orders it before the first gradient write.
//
// Dispatch by C (V = elements per 128-bit vector: 4 for float, 8 for half / bfloat16):
//   C <= 64 V     a warp per row, 4 rows per 128-thread block, the row in registers (2 vectors
//                 per lane per tensor);
//   C <= 4096 V   a block per row, 32..512 threads chosen from C, the row in registers (up to 8
//                 vectors per thread per tensor);
//   larger        a block of 512 threads per row, streaming: one pass for the statistics, a
//                 second that re-reads the row and writes the gradient.
// Rows are read and written with 128-bit accesses when every row start is 16-byte aligned,
// element by element otherwise (same layout, so the same kernel serves both).
#pragma once

#include "fusedkd/kernels/common.cuh"

namespace fusedkd {
namespace cuda_detail {

using fusedkd::detail::DkdRow;
using fusedkd::detail::KdRow;
using fusedkd::detail::NkdRow;

/// The arguments of a teacher-loss kernel. `g` null: no gradient.
template <typename T>
struct PairArgs {
  const T* z;
  int64_t ldz;
  const T* v;
  int64_t ldv;
  T* g;
  int64_t ldg;
  LabelArgs labels;
  int64_t n, c;
  bool aligned;  ///< every row of z, v and g starts 16-byte aligned
  Reduction reduction;
  double grad_scale;
  float* loss;
  Header* header;
  float* row_loss;
  BatchRefs batch;
};

// The loss families: how a Row is made from the statistics (the formulas are core.hpp's).
struct NkdFamily {
  float inv, gamma, ce;
  fusedkd::detail::NkdTerms terms;
  __device__ __forceinline__ NkdRow<float> make(const SplitStats<float>& zs, const SplitStats<float>& vs,
                                                const RowTargets<float>& tg) const {
    return NkdRow<float>(zs, vs, tg, inv, gamma, ce, terms);
  }
};
struct KdFamily {
  float inv, weight, ce;
  __device__ __forceinline__ KdRow<float> make(const SplitStats<float>& zs, const SplitStats<float>& vs,
                                               const RowTargets<float>& tg) const {
    return KdRow<float>(zs, vs, tg, inv, weight, ce);
  }
};
struct DkdFamily {
  float inv, alpha, beta, ce;
  __device__ __forceinline__ DkdRow<float> make(const SplitStats<float>& zs, const SplitStats<float>& vs,
                                                const RowTargets<float>& tg) const {
    return DkdRow<float>(zs, vs, tg, inv, alpha, beta, ce);
  }
};

/// One row of a teacher loss, by a group of `group_size` threads (kGroup: 32 = a warp, 0 = the
/// block). K > 0: the row in registers, K vectors per thread; K == 0: streaming.
template <class F, typename T, int kGroup, int K>
__device__ __forceinline__ void pair_row(const PairArgs<T>& a, const F& f, int64_t row, int lane,
                                         int group_size, unsigned char* scratch) {
  constexpr int V = Vec<T>::kSize;
  const int64_t c = a.c;
  const T* zr = a.z + row * a.ldz;
  const T* vr = a.v + row * a.ldv;
  T* gr = a.g != nullptr ? a.g + row * a.ldg : nullptr;

  RowTargets<float> tg;
  const unsigned int bad = row_targets<kGroup>(a.labels, row, c, lane, group_size, false, tg, scratch);
  if (bad != 0u || tg.ignored) {  // uniform over the group
    const float value = bad != 0u ? __int_as_float(0x7fc00000) : 0.0f;
    if (bad == kEmptySoft && lane == 0) report(a.header, bad);
    if (gr != nullptr) fill_row<T>(gr, c, a.aligned, lane, group_size, value);
    if (lane == 0) write_row_loss(a, row, value);
    return;
  }

  const float factor = gradient_factor(a.reduction, a.grad_scale, a.header->active);
  const float inv = f.inv;
  const bool two = inv != 1.0f;
  const StatsPairMergeOp merge{inv, two};
  const int64_t stride = static_cast<int64_t>(group_size) * V;
  float acc = 0.0f;
  float row_loss;

  if constexpr (K > 0) {
    uint4 zq[K], vq[K];
    StatsPair st;
    // The target logits before the reduction (see the file comment: in place).
    const float z1 = tg.t1 >= 0 ? to_float(zr[tg.t1]) : 0.0f;
    const float v1 = tg.t1 >= 0 ? to_float(vr[tg.t1]) : 0.0f;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int64_t base = k * stride + static_cast<int64_t>(lane) * V;
      const int count = tail_count(c, base, V);
      zq[k] = load_vec<T>(zr + base, count, a.aligned);
      vq[k] = load_vec<T>(vr + base, count, a.aligned);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        if (j < count) {
          fusedkd::detail::accumulate(st.z, tg, base + j, vec_get<T>(zq[k], j), inv, two);
          fusedkd::detail::accumulate(st.v, tg, base + j, vec_get<T>(vq[k], j), inv, two);
        }
      }
    }
    st = group_allreduce<kGroup>(st, merge, scratch);
    if (tg.t1 >= 0) {
      st.z.x1 = z1;
      st.v.x1 = v1;
    }
    const auto r = f.make(st.z, st.v, tg);
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int64_t base = k * stride + static_cast<int64_t>(lane) * V;
      const int count = tail_count(c, base, V);
      uint4 out = make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        if (j < count) {
          const float gi = r.element(static_cast<int32_t>(base + j), vec_get<T>(zq[k], j), vec_get<T>(vq[k], j), acc);
          vec_set<T>(out, j, gi * factor);
        }
      }
      if (gr != nullptr && count > 0) store_vec<T>(gr + base, out, count, a.aligned);
    }
    acc = group_allreduce<kGroup>(acc, SumOp{}, scratch);
    row_loss = r.loss(acc);
  } else {
    StatsPair st;
    const float z1 = tg.t1 >= 0 ? to_float(zr[tg.t1]) : 0.0f;  // before the reduction: in place
    const float v1 = tg.t1 >= 0 ? to_float(vr[tg.t1]) : 0.0f;
    for (int64_t base = static_cast<int64_t>(lane) * V; base < c; base += stride) {
      const int count = tail_count(c, base, V);
      const uint4 zq = load_vec<T>(zr + base, count, a.aligned);
      const uint4 vq = load_vec<T>(vr + base, count, a.aligned);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        if (j < count) {
          fusedkd::detail::accumulate(st.z, tg, base + j, vec_get<T>(zq, j), inv, two);
          fusedkd::detail::accumulate(st.v, tg, base + j, vec_get<T>(vq, j), inv, two);
        }
      }
    }
    st = group_allreduce<kGroup>(st, merge, scratch);
    if (tg.t1 >= 0) {
      st.z.x1 = z1;
      st.v.x1 = v1;
    }
    const auto r = f.make(st.z, st.v, tg);
    for (int64_t base = static_cast<int64_t>(lane) * V; base < c; base += stride) {
      const int count = tail_count(c, base, V);
      const uint4 zq = load_vec<T>(zr + base, count, a.aligned);  // this thread's own elements
      const uint4 vq = load_vec<T>(vr + base, count, a.aligned);
      uint4 out = make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        if (j < count) {
          const float gi = r.element(static_cast<int32_t>(base + j), vec_get<T>(zq, j), vec_get<T>(vq, j), acc);
          vec_set<T>(out, j, gi * factor);
        }
      }
      if (gr != nullptr) store_vec<T>(gr + base, out, count, a.aligned);
    }
    acc = group_allreduce<kGroup>(acc, SumOp{}, scratch);
    row_loss = r.loss(acc);
  }
  if (lane == 0) write_row_loss(a, row, row_loss);
}

constexpr int kPairWarpRowsPerBlock = 4;
constexpr int kPairWarpVectors = 2;    // vectors per lane per tensor, warp path
constexpr int kPairBlockVectors = 8;   // vectors per thread per tensor, block path
constexpr int kPairBlockMaxThreads = 512;
constexpr int kPairStreamThreads = 512;

template <int kGroup>
constexpr int pair_max_threads() {
  return kGroup == 32 ? 32 * kPairWarpRowsPerBlock : kPairBlockMaxThreads;
}

template <class F, typename T, int kGroup, int K>
__global__ void __launch_bounds__(pair_max_threads<kGroup>()) pair_kernel(PairArgs<T> a, F f) {
  __shared__ alignas(16) unsigned char scratch[kScratchBytes];
  const int group_size = kGroup == 0 ? static_cast<int>(blockDim.x) : kGroup;
  const int lane = kGroup == 0 ? static_cast<int>(threadIdx.x) : static_cast<int>(threadIdx.x) % kGroup;
  const int64_t row = kGroup == 0 ? static_cast<int64_t>(blockIdx.x)
                                  : static_cast<int64_t>(blockIdx.x) * (blockDim.x / kGroup) + threadIdx.x / kGroup;
  if (row < a.n) pair_row<F, T, kGroup, K>(a, f, row, lane, group_size, scratch);
  if (a.reduction != Reduction::kNone) {
    const int64_t per_block = kGroup == 0 ? 1 : static_cast<int64_t>(blockDim.x / kGroup);
    const int64_t first = static_cast<int64_t>(blockIdx.x) * per_block;
    const int rows = static_cast<int>(a.n - first < per_block ? a.n - first : per_block);
    finish_batch_loss(a.batch, a.row_loss, a.n, first, rows, a.reduction, a.loss, scratch);
  }
}

/// Which kernel serves C (exposed for the tests and the docs).
enum class PairPath { kWarp, kBlock, kStream };

template <typename T>
inline PairPath pair_path(int64_t c) {
  constexpr int64_t V = Vec<T>::kSize;
  if (c <= 32 * V * kPairWarpVectors) return PairPath::kWarp;
  if (c <= kPairBlockMaxThreads * V * kPairBlockVectors) return PairPath::kBlock;
  return PairPath::kStream;
}

/// Launches the fused kernel of a teacher loss (the pre-pass has been launched already; n > 0).
template <class F, typename T>
inline Status launch_pair(const PairArgs<T>& a, const F& f, cudaStream_t stream) {
  constexpr int64_t V = Vec<T>::kSize;
  static_assert(kSegmentRows % kPairWarpRowsPerBlock == 0, "a block's rows lie in one segment");
  switch (pair_path<T>(a.c)) {
    case PairPath::kWarp: {
      const int64_t blocks = (a.n + kPairWarpRowsPerBlock - 1) / kPairWarpRowsPerBlock;
      return launch(pair_kernel<F, T, 32, kPairWarpVectors>, static_cast<unsigned int>(blocks),
                    32 * kPairWarpRowsPerBlock, stream, a, f);
    }
    case PairPath::kBlock: {
      const int64_t vectors = (a.c + V - 1) / V;
      int64_t threads = (vectors + kPairBlockVectors - 1) / kPairBlockVectors;
      threads = (threads + 31) / 32 * 32;
      return launch(pair_kernel<F, T, 0, kPairBlockVectors>, static_cast<unsigned int>(a.n),
                    static_cast<unsigned int>(threads), stream, a, f);
    }
    case PairPath::kStream:
      return launch(pair_kernel<F, T, 0, 0>, static_cast<unsigned int>(a.n), kPairStreamThreads, stream, a, f);
  }
  return Status::kNotSupported;
}

}  // namespace cuda_detail
}  // namespace fusedkd
