// fusedkd/shard.hpp — NKD, KD and DKD on column shards (vocabulary parallelism), on the CPU.
//
// Each of `world` ranks holds the same rows but only a slice of the classes: columns
// [first, first + width) of the student and teacher logits, with the full labels (hard indices
// into [0, C), or dense soft rows of all C classes). A loss is computed in two phases around one
// collective that the caller runs with the communication library of its choice:
//
//   1. shard_stats     reads the rank's slices and writes its record: kShardStatsPerRow values
//                      per row (acc type: float, or double for double logits), laid out
//                        [N][ zm, zs1, zst, zx1,  vm, vs1, vst, vx1 ]
//                      m: max of the slice's non-target logits; s1, st: sums of exp(x - m) at
//                      scale 1 and at 1/temperature; x1: the target logit if the slice holds the
//                      target, else 0; z: student, v: teacher.
//   (collective)       all-gather the records: gathered = [world][N][kShardStatsPerRow], rank
//                      order (MPI_Allgather / ncclAllGather of N * 8 values do exactly that).
//   2. shard_finish    merges the `world` records of each row in rank order (max, rescaled sums,
//                      x1 added: see detail/shard_core.hpp) — the whole row's statistics, the
//                      same bits on every rank — and writes the rank's gradient slice and its
//                      share of the loss.
//   (optional)         sum the shares over the ranks: sum_shares on an all-gather of them (rank
//                      order, deterministic) or any all-reduce. The sum is the loss the
//                      unsharded call returns; the gradient slices side by side are its gradient.
//
// The loss share: 1 value (mean, sum) or N (none). The rank that holds column 0 carries each row's
// constant part, the others only their columns' terms (every row loss is affine in the sum over
// its columns). Mean divides by the non-ignored rows of the whole batch, known to every rank
// from the labels. The shards may have any widths (0 included) as long as they tile [0, C).
//
// Adapters that run the collective: fusedkd/dist/mpi.hpp (MPI), fusedkd/dist/nccl.cuh (NCCL);
// on CUDA: fusedkd/cuda_shard.cuh. USKD is not offered on shards: its Zipf ranks order all C
// classes of a row (docs/distributed.md says why that does not split).
#pragma once

#include <cstdint>

#include "fusedkd/dkd.hpp"
#include "fusedkd/kd.hpp"
#include "fusedkd/nkd.hpp"
#include "fusedkd/status.hpp"
#include "fusedkd/types.hpp"

namespace fusedkd {

/// Where a rank's columns lie in the full rows.
struct Shard {
  int64_t first = 0;    ///< class index of the slice's first column
  int64_t classes = 0;  ///< C, the width of the full rows
};

/// Values per row in one rank's record (see the layout above).
constexpr int64_t kShardStatsPerRow = 8;

namespace cpu {
// Phase 1. `student`, `teacher`: [N, width] slices; `stats`: N * kShardStatsPerRow values.
inline Status shard_stats(Matrix<const float> student, Matrix<const float> teacher, Labels labels,
                          Shard shard, const NkdOptions& options, float* stats);
inline Status shard_stats(Matrix<const double> student, Matrix<const double> teacher,
                          Labels labels, Shard shard, const NkdOptions& options, double* stats);
inline Status shard_stats(Matrix<const float> student, Matrix<const float> teacher, Labels labels,
                          Shard shard, const KdOptions& options, float* stats);
inline Status shard_stats(Matrix<const double> student, Matrix<const double> teacher,
                          Labels labels, Shard shard, const KdOptions& options, double* stats);
inline Status shard_stats(Matrix<const float> student, Matrix<const float> teacher, Labels labels,
                          Shard shard, const DkdOptions& options, float* stats);
inline Status shard_stats(Matrix<const double> student, Matrix<const double> teacher,
                          Labels labels, Shard shard, const DkdOptions& options, double* stats);

// Phase 2. `gathered`: world * N * kShardStatsPerRow values (all ranks' records, rank order);
// `loss_share`: 1 value (mean, sum) or N (none); `grad_student`: [N, width] or empty.
inline Status shard_finish(Matrix<const float> student, Matrix<const float> teacher,
                           Labels labels, Shard shard, const NkdOptions& options,
                           const float* gathered, int world, float* loss_share,
                           Matrix<float> grad_student = {});
inline Status shard_finish(Matrix<const double> student, Matrix<const double> teacher,
                           Labels labels, Shard shard, const NkdOptions& options,
                           const double* gathered, int world, double* loss_share,
                           Matrix<double> grad_student = {});
inline Status shard_finish(Matrix<const float> student, Matrix<const float> teacher,
                           Labels labels, Shard shard, const KdOptions& options,
                           const float* gathered, int world, float* loss_share,
                           Matrix<float> grad_student = {});
inline Status shard_finish(Matrix<const double> student, Matrix<const double> teacher,
                           Labels labels, Shard shard, const KdOptions& options,
                           const double* gathered, int world, double* loss_share,
                           Matrix<double> grad_student = {});
inline Status shard_finish(Matrix<const float> student, Matrix<const float> teacher,
                           Labels labels, Shard shard, const DkdOptions& options,
                           const float* gathered, int world, float* loss_share,
                           Matrix<float> grad_student = {});
inline Status shard_finish(Matrix<const double> student, Matrix<const double> teacher,
                           Labels labels, Shard shard, const DkdOptions& options,
                           const double* gathered, int world, double* loss_share,
                           Matrix<double> grad_student = {});

/// The last step: out[i] = sum over ranks k (in rank order) of shares[k * count + i], where
/// `shares` is the all-gather of the ranks' loss shares (count = 1, or N for Reduction::kNone).
/// `out` may alias `shares` (rank 0's part).
template <typename A>
inline void sum_shares(const A* shares, int world, int64_t count, A* out) {
  for (int64_t i = 0; i < count; ++i) {
    A s = shares[i];
    for (int k = 1; k < world; ++k) s += shares[static_cast<int64_t>(k) * count + i];
    out[i] = s;
  }
}
}  // namespace cpu

}  // namespace fusedkd

#include "fusedkd/detail/cpu_shard.hpp"
