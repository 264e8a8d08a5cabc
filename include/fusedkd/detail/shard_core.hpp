// fusedkd/detail/shard_core.hpp — the per-row primitives of the column-sharded losses.
//
// A row of C classes is split into column slices, one per rank. Each rank reduces its slice to
// a small record (the SplitStats of its student and teacher slices: max, sums of exponentials,
// the target logits where it holds them); the records of all ranks, merged in rank order, are
// the stats of the whole row, from which core.hpp's Row (NkdRow, KdRow, DkdRow) is built
// unchanged; then each rank runs Row::element over its own columns. Host+device, like core.hpp;
// nothing here knows how the records travel between ranks.
#pragma once

#include "fusedkd/detail/core.hpp"

namespace fusedkd {
namespace detail {

/// Values per row and side (student, teacher) in a shard's record: m, s1, st, x1.
constexpr int kShardSide = 4;
/// Values per row in a shard's record: the student's side, then the teacher's.
constexpr int kShardRecord = 2 * kShardSide;

/// The row's targets as seen from the column slice [first, first + width): indices local to the
/// slice, -1 where the slice does not hold the target (so the slice's stats skip no column of
/// its own and keep the target logits it holds in x1, x2).
template <typename A>
FUSEDKD_HD RowTargets<A> slice_targets(const RowTargets<A>& tg, int64_t first, int64_t width) {
  RowTargets<A> local = tg;
  local.t1 = tg.t1 >= first && tg.t1 < first + width ? static_cast<int32_t>(tg.t1 - first) : -1;
  local.t2 = tg.t2 >= first && tg.t2 < first + width ? static_cast<int32_t>(tg.t2 - first) : -1;
  return local;
}

/// Writes one side of a slice's record: the non-target stats, and the target logit where the
/// slice holds the target (0 elsewhere: the merge adds the x1 of all slices, exactly one of
/// which is not 0 by ownership).
template <typename A>
FUSEDKD_HD void store_side(const SplitStats<A>& st, bool owns_target, A* out) {
  out[0] = st.m;
  out[1] = st.s1;
  out[2] = st.st;
  out[3] = owns_target ? st.x1 : A(0);
}

/// The stats of a whole row from the records of its `world` slices, merged in rank order (so
/// every rank gets the same bits). `rec` points at rank 0's values of this row and side;
/// `rank_stride` is the distance between two ranks' records of the same row.
template <typename A>
FUSEDKD_HD SplitStats<A> merge_side(const A* rec, int world, int64_t rank_stride, A inv, bool two) {
  SplitStats<A> all;
  A x1 = A(0);
  for (int k = 0; k < world; ++k) {
    const A* r = rec + k * rank_stride;
    SplitStats<A> part;
    part.m = r[0];
    part.s1 = r[1];
    part.st = r[2];
    all.merge(part, inv, two);
    x1 += r[3];
  }
  all.x1 = x1;
  return all;
}

/// A slice's share of a row loss. Every Row's loss is affine in the sum its elements add up,
/// loss(acc) = c + k * acc, so the shares of the slices add up to the row loss when one slice
/// (the one that carries the constant) reports loss(acc) and the others loss(acc) - loss(0).
template <typename A, class Row>
FUSEDKD_HD A loss_share(const Row& row, A acc, bool carries_constant) {
  return carries_constant ? row.loss(acc) : row.loss(acc) - row.loss(A(0));
}

}  // namespace detail
}  // namespace fusedkd
