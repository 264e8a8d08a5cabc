// fusedkd/kernels/shard.cuh — the kernels of the column-sharded teacher losses (cuda_shard.cuh).
//
// A block of kShardThreads per row, streaming over the rank's slice (a slice is C / world wide:
// the large-C case, where the unsharded kernels stream too). The math is shard_core.hpp's and
// core.hpp's, as on the CPU:
//   shard_stats_kernel   the row's targets (hard label, or the soft row's first maximum over all
//                        C classes), the slice's SplitStats of student and teacher (block-wide
//                        merge), the 8-value record;
//   shard_finish_kernel  the gathered records merged in rank order, the loss's Row, the gradient
//                        slice and the row's loss share; the last block sums the shares (mean,
//                        sum) in a fixed order (the unsharded kernels' two-level batch sum).
// Bad labels: the status word in the workspace, and NaN in the row's record (phase 1) or its
// gradient and share (phase 2), like the unsharded kernels.
#pragma once

#include "fusedkd/detail/shard_core.hpp"
#include "fusedkd/kernels/common.cuh"
#include "fusedkd/kernels/pair.cuh"

namespace fusedkd {
namespace cuda_detail {

/// The arguments of both shard kernels. `g` null: no gradient.
template <typename T>
struct ShardArgs {
  const T* z;
  int64_t ldz;
  const T* v;
  int64_t ldv;
  T* g;
  int64_t ldg;
  LabelArgs labels;
  int64_t n;      ///< rows
  int64_t w;      ///< the slice's width
  int64_t first;  ///< the slice's first class
  int64_t c;      ///< classes of the full rows
  float* stats;           ///< phase 1: this rank's records [n][8]
  const float* gathered;  ///< phase 2: all ranks' records [world][n][8]
  int world;
  Reduction reduction;
  double grad_scale;
  float* loss;
  Header* header;
  float* row_loss;
  BatchRefs batch;
};

constexpr int kShardThreads = 256;

template <class F, typename T>
__global__ void __launch_bounds__(kShardThreads) shard_stats_kernel(ShardArgs<T> a, F f) {
  __shared__ alignas(16) unsigned char scratch[kScratchBytes];
  const int64_t row = blockIdx.x;
  const int lane = static_cast<int>(threadIdx.x), size = static_cast<int>(blockDim.x);
  float* out = a.stats + row * fusedkd::detail::kShardRecord;
  RowTargets<float> tg;
  const unsigned int bad = row_targets<0>(a.labels, row, a.c, lane, size, false, tg, scratch);
  if (bad != 0u || tg.ignored) {  // uniform over the block
    if (lane < fusedkd::detail::kShardRecord) out[lane] = bad != 0u ? __int_as_float(0x7fc00000) : 0.0f;
    if (bad != 0u && lane == 0) report(a.header, bad);
    return;
  }
  const RowTargets<float> local = fusedkd::detail::slice_targets(tg, a.first, a.w);
  const float inv = f.inv;
  const bool two = inv != 1.0f;
  const T* zr = a.z + row * a.ldz;
  const T* vr = a.v + row * a.ldv;
  StatsPair st;
  for (int64_t i = lane; i < a.w; i += size) {
    fusedkd::detail::accumulate(st.z, local, i, to_float(zr[i]), inv, two);
    fusedkd::detail::accumulate(st.v, local, i, to_float(vr[i]), inv, two);
  }
  st = block_allreduce(st, StatsPairMergeOp{inv, two}, scratch);
  if (lane == 0) {
    const bool owns = local.t1 >= 0;
    if (owns) {
      st.z.x1 = to_float(zr[local.t1]);
      st.v.x1 = to_float(vr[local.t1]);
    }
    fusedkd::detail::store_side(st.z, owns, out);
    fusedkd::detail::store_side(st.v, owns, out + fusedkd::detail::kShardSide);
  }
}

/// One row of phase 2 (every thread of the block).
template <class F, typename T>
__device__ __forceinline__ void shard_finish_row(const ShardArgs<T>& a, const F& f, int64_t row,
                                                 unsigned char* scratch) {
  const int lane = static_cast<int>(threadIdx.x), size = static_cast<int>(blockDim.x);
  T* gr = a.g != nullptr ? a.g + row * a.ldg : nullptr;
  RowTargets<float> tg;
  const unsigned int bad = row_targets<0>(a.labels, row, a.c, lane, size, false, tg, scratch);
  if (bad != 0u || tg.ignored) {
    const float value = bad != 0u ? __int_as_float(0x7fc00000) : 0.0f;
    if (bad != 0u && lane == 0) report(a.header, bad);
    if (gr != nullptr) fill_row<T>(gr, a.w, false, lane, size, value);
    if (lane == 0) write_row_loss(a, row, value);
    return;
  }
  const float inv = f.inv;
  const bool two = inv != 1.0f;
  const int64_t rank_stride = a.n * fusedkd::detail::kShardRecord;
  const float* rec = a.gathered + row * fusedkd::detail::kShardRecord;
  const SplitStats<float> zs = fusedkd::detail::merge_side(rec, a.world, rank_stride, inv, two);
  const SplitStats<float> vs =
      fusedkd::detail::merge_side(rec + fusedkd::detail::kShardSide, a.world, rank_stride, inv, two);
  const auto r = f.make(zs, vs, tg);
  const float factor = gradient_factor(a.reduction, a.grad_scale, a.header->active);
  const T* zr = a.z + row * a.ldz;
  const T* vr = a.v + row * a.ldv;
  float acc = 0.0f;
  for (int64_t i = lane; i < a.w; i += size) {
    const float gi = r.element(static_cast<int32_t>(a.first + i), to_float(zr[i]), to_float(vr[i]), acc);
    if (gr != nullptr) gr[i] = from_float<T>(gi * factor);  // after the reads: in place is safe
  }
  acc = block_allreduce(acc, SumOp{}, scratch);
  if (lane == 0) write_row_loss(a, row, fusedkd::detail::loss_share(r, acc, a.first == 0 && a.w > 0));
}

template <class F, typename T>
__global__ void __launch_bounds__(kShardThreads) shard_finish_kernel(ShardArgs<T> a, F f) {
  __shared__ alignas(16) unsigned char scratch[kScratchBytes];
  const int64_t row = blockIdx.x;
  shard_finish_row(a, f, row, scratch);
  if (a.reduction != Reduction::kNone) {
    finish_batch_loss(a.batch, a.row_loss, a.n, row, 1, a.reduction, a.loss, scratch);
  }
}

/// out[i] = sum over k (in order) of shares[k * count + i].
template <int kUnused = 0>
__global__ void sum_shares_kernel(const float* shares, int world, int64_t count, float* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float s = shares[i];
    for (int k = 1; k < world; ++k) s += shares[static_cast<int64_t>(k) * count + i];
    out[i] = s;
  }
}

}  // namespace cuda_detail
}  // namespace fusedkd
