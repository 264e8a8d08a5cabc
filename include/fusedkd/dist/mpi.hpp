// fusedkd/dist/mpi.hpp — the column-sharded losses (shard.hpp) and USKD's global batch mean
// (data_parallel.hpp) over MPI, on the CPU. Optional and header-only: include it only where
// <mpi.h> is available; the rest of fusedkd knows nothing of MPI.
//
//   fusedkd::mpi::shard_loss(comm, student, teacher, labels, shard, options, loss, grad)
//     every rank of `comm` passes its column slice; one MPI_Allgather of the 8-value-per-row
//     records between the two phases, and (sum_loss, the default) one more of the loss shares,
//     which every rank adds in rank order: every rank gets the whole loss, the same bits.
//   fusedkd::mpi::uskd(comm, student, weak, labels, options, loss, grad_student, grad_weak)
//     data parallelism: each rank its own rows; USKD with the batch mean of S_t^2 over the
//     rows of all ranks (one MPI_Allgather of 3 doubles).
//
// Collective calls: every rank of `comm` must make the same calls in the same order, with the
// same N, reduction and loss. Ranks may hold their columns in any order (rank order only fixes
// the merge order, so results are deterministic for a given world size and placement). A rank
// whose own arguments are refused still joins the collectives (with NaN records) so that no rank
// waits forever: it returns its error, and the others get NaN results (shard_loss) or
// kInvalidOption (uskd: the global stats are not finite). An MPI call that fails
// returns Status::kCommError (with the communicator's default handler, MPI aborts first).
#pragma once

#include <mpi.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "fusedkd/data_parallel.hpp"
#include "fusedkd/shard.hpp"

namespace fusedkd {
namespace mpi {

/// The MPI datatype of float and double.
template <typename A>
inline MPI_Datatype datatype() {
  static_assert(std::is_same<A, float>::value || std::is_same<A, double>::value, "float or double");
  return std::is_same<A, float>::value ? MPI_FLOAT : MPI_DOUBLE;
}

/// gathered[k * count + i] = rank k's local[i]: one MPI_Allgather.
template <typename A>
inline Status allgather(MPI_Comm comm, const A* local, int64_t count, A* gathered) {
  if (count > std::numeric_limits<int>::max()) return Status::kNotSupported;
  const int rc = MPI_Allgather(local, static_cast<int>(count), datatype<A>(), gathered,
                               static_cast<int>(count), datatype<A>(), comm);
  return rc == MPI_SUCCESS ? Status::kSuccess : Status::kCommError;
}

/// out[i] = sum over ranks (in rank order) of their local[i]: an all-gather, then the sums, so
/// the result does not depend on the MPI library's reduction order. `out` may alias `local`.
template <typename A>
inline Status sum_over_ranks(MPI_Comm comm, const A* local, int64_t count, A* out) {
  int world = 0;
  if (MPI_Comm_size(comm, &world) != MPI_SUCCESS) return Status::kCommError;
  auto all = detail::scratch<A>(static_cast<int64_t>(world) * count);
  if (!all) return Status::kOutOfMemory;
  const Status s = allgather(comm, local, count, all.get());
  if (s == Status::kSuccess) cpu::sum_shares(all.get(), world, count, out);
  return s;
}

/// The column-sharded NKD, KD or DKD (by the options' type) over the ranks of `comm`.
/// `student`, `teacher`: this rank's [N, width] slices (float or double, const or not);
/// `shard`: where they lie in the rows of C classes; `loss`: with `sum_loss`, the whole loss (1
/// value, or N for Reduction::kNone) on every rank, else this rank's share; `grad_student`: this
/// rank's [N, width] gradient slice, or empty. Host scratch: (world + 1) * N * 8 values.
template <typename T, class Options>
Status shard_loss(MPI_Comm comm, Matrix<T> student, Matrix<T> teacher, Labels labels, Shard shard,
                  const Options& options, acc_t<std::remove_const_t<T>>* loss,
                  Matrix<std::remove_const_t<T>> grad_student = {}, bool sum_loss = true) {
  using U = std::remove_const_t<T>;
  using A = acc_t<U>;
  const Matrix<const U> z = student, v = teacher;
  int world = 0;
  if (MPI_Comm_size(comm, &world) != MPI_SUCCESS) return Status::kCommError;
  const int64_t n = z.rows > 0 ? z.rows : 0;
  const int64_t rec = n * kShardStatsPerRow;
  const int64_t nloss = options.reduction == Reduction::kNone ? n : 1;
  auto local = detail::scratch<A>(rec);
  auto gathered = detail::scratch<A>(static_cast<int64_t>(world) * rec);
  auto share = detail::scratch<A>(nloss);
  if (!local || !gathered || !share) return Status::kOutOfMemory;

  // Phase 1; a refused call still joins the collectives, with NaN (see above).
  const A nan = std::numeric_limits<A>::quiet_NaN();
  Status own = cpu::shard_stats(z, v, labels, shard, options, local.get());
  if (own != Status::kSuccess) {
    for (int64_t i = 0; i < rec; ++i) local[i] = nan;
  }
  Status s = allgather(comm, local.get(), rec, gathered.get());
  if (s != Status::kSuccess) return s;

  // Phase 2: the gradient slice and this rank's share, written to scratch first so that a
  // refused call leaves `loss` alone.
  if (own == Status::kSuccess) {
    own = cpu::shard_finish(z, v, labels, shard, options, gathered.get(), world, share.get(),
                            grad_student);
  }
  if (own != Status::kSuccess) {
    for (int64_t i = 0; i < nloss; ++i) share[i] = nan;
  }
  if (sum_loss) {
    s = sum_over_ranks(comm, share.get(), nloss, share.get());
    if (s != Status::kSuccess) return s;
  }
  if (own != Status::kSuccess) return own;
  for (int64_t i = 0; i < nloss; ++i) loss[i] = share[i];
  return Status::kSuccess;
}

/// The sum of all ranks' UskdBatchStats (one all-gather of 3 doubles, added in rank order).
inline Status global_batch_stats(MPI_Comm comm, const UskdBatchStats& local,
                                 UskdBatchStats* global) {
  if (global == nullptr) return Status::kNullPointer;
  const double mine[3] = {local.sum1, local.sum2, local.rows};
  double all[3];
  const Status s = sum_over_ranks(comm, mine, 3, all);
  if (s != Status::kSuccess) return s;
  global->sum1 = all[0];
  global->sum2 = all[1];
  global->rows = all[2];
  return Status::kSuccess;
}

/// USKD on this rank's rows with the batch mean of S_tk^2 over the rows of every rank of
/// `comm` (data parallelism). Arguments and outputs as cpu::uskd; the reduction stays per rank.
template <typename T>
Status uskd(MPI_Comm comm, Matrix<T> student, Matrix<T> weak, Labels labels,
            const UskdOptions& options, acc_t<std::remove_const_t<T>>* loss,
            Matrix<std::remove_const_t<T>> grad_student = {},
            Matrix<std::remove_const_t<T>> grad_weak = {}) {
  using U = std::remove_const_t<T>;
  const Matrix<const U> z = student, w = weak;
  UskdBatchStats local, global;
  Status own = cpu::uskd_batch_stats(z, labels, options, &local);
  if (own != Status::kSuccess) local.sum1 = std::numeric_limits<double>::quiet_NaN();
  const Status s = global_batch_stats(comm, local, &global);
  if (s != Status::kSuccess) return s;
  if (own != Status::kSuccess) return own;
  return cpu::uskd(z, w, labels, options, global, loss, grad_student, grad_weak);
}

}  // namespace mpi
}  // namespace fusedkd
