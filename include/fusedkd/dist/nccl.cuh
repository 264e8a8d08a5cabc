// fusedkd/dist/nccl.cuh — the column-sharded losses (cuda_shard.cuh) over NCCL. Optional and
// header-only (needs nvcc and <nccl.h>, which the CUDA toolkit or the NCCL package brings; link
// -lnccl). The rest of fusedkd knows nothing of NCCL.
//
//   size_t fusedkd::nccl::shard_loss_workspace_size(N, world, reduction);
//   Status fusedkd::nccl::shard_loss(comm, stream, student, teacher, labels, shard, options,
//                                    loss, grad_student, workspace, workspace_bytes [, sum_loss]);
//
// On `stream`: phase 1, one ncclAllGather of N * 8 floats per rank, phase 2, and (sum_loss, the
// default) one ncclAllGather of the loss shares (1 or N floats) added in rank order by a small
// kernel, so every rank gets the whole loss with the same bits. Nothing is allocated, nothing
// synchronizes: the sequence can be captured in a CUDA graph (NCCL supports capture). Device
// pointers everywhere; `workspace` is device memory of shard_loss_workspace_size bytes.
//
// Every rank of `comm` must make the same calls in the same order with the same N and
// reduction. A rank whose arguments the host refuses still takes part in both collectives, with
// NaN (all bits set) records and shares, so no rank waits forever: it returns its error, the
// others get NaN results. A failed NCCL call returns Status::kCommError. Untested here (no GPU):
// the kernels' math is the CPU's (shard_core.hpp, core.hpp), which tests/mpi checks.
#pragma once

#include <nccl.h>

#include <type_traits>

#include "fusedkd/cuda_shard.cuh"

namespace fusedkd {
namespace nccl {

namespace detail {
/// The parts of the workspace: the shard calls' own, this rank's records, everyone's records,
/// this rank's share, everyone's shares.
struct Layout {
  void* shard_ws;
  size_t shard_bytes;
  float* local;
  float* gathered;
  float* share;
  float* shares;
  size_t bytes;
};

inline Layout layout(void* workspace, int64_t n, int world, Reduction reduction) {
  cuda_detail::Carver cv(workspace);
  Layout l;
  const size_t rec = static_cast<size_t>(n > 0 ? n : 0) * kShardStatsPerRow;
  const size_t count = reduction == Reduction::kNone ? static_cast<size_t>(n > 0 ? n : 0) : 1;
  const size_t w = static_cast<size_t>(world > 0 ? world : 0);
  l.shard_bytes = cuda::shard_workspace_size(n);
  l.shard_ws = cv.take<unsigned char>(l.shard_bytes);
  l.local = cv.take<float>(rec);
  l.gathered = cv.take<float>(w * rec);
  l.share = cv.take<float>(count);
  l.shares = cv.take<float>(w * count);
  l.bytes = cv.bytes();
  return l;
}

inline Status check(ncclResult_t r) { return r == ncclSuccess ? Status::kSuccess : Status::kCommError; }
}  // namespace detail

/// Workspace bytes of shard_loss for N rows over `world` ranks.
inline size_t shard_loss_workspace_size(int64_t n, int world, Reduction reduction = Reduction::kMean) {
  return detail::layout(nullptr, n, world, reduction).bytes;
}

/// The column-sharded NKD, KD or DKD (by the options' type) over the ranks of `comm`, on
/// `stream`. `student`, `teacher`: this rank's [N, width] device slices (float, __half,
/// __nv_bfloat16); `loss`: device float, the whole loss on every rank (1, or N for
/// Reduction::kNone), or this rank's share without `sum_loss`; `grad_student`: the rank's
/// gradient slice or empty.
template <typename T, class O>
Status shard_loss(ncclComm_t comm, cudaStream_t stream, Matrix<T> student, Matrix<T> teacher,
                  Labels labels, Shard shard, const O& options, float* loss,
                  Matrix<std::remove_const_t<T>> grad_student, void* workspace,
                  size_t workspace_bytes, bool sum_loss = true) {
  int world = 0;
  if (ncclCommCount(comm, &world) != ncclSuccess) return Status::kCommError;
  const int64_t n = student.rows > 0 ? student.rows : 0;
  const detail::Layout l = detail::layout(workspace, n, world, options.reduction);
  if (workspace_bytes < l.bytes) return Status::kWorkspaceTooSmall;  // same sizes on every rank
  if (workspace == nullptr || loss == nullptr) return Status::kNullPointer;
  const size_t rec = static_cast<size_t>(n) * kShardStatsPerRow;
  const size_t count = options.reduction == Reduction::kNone ? static_cast<size_t>(n) : 1;

  Status own = cuda::shard_stats(student, teacher, labels, shard, options, l.local, l.shard_ws,
                                 l.shard_bytes, stream);
  if (own != Status::kSuccess && cudaMemsetAsync(l.local, 0xff, rec * sizeof(float), stream) != cudaSuccess) {
    return Status::kCudaError;
  }
  Status s = detail::check(ncclAllGather(l.local, l.gathered, rec, ncclFloat, comm, stream));
  if (s != Status::kSuccess) return s;
  if (own == Status::kSuccess) {
    own = cuda::shard_finish(student, teacher, labels, shard, options, l.gathered, world, l.share,
                             grad_student, l.shard_ws, l.shard_bytes, stream);
  }
  if (own != Status::kSuccess && cudaMemsetAsync(l.share, 0xff, count * sizeof(float), stream) != cudaSuccess) {
    return Status::kCudaError;
  }
  if (sum_loss) {
    s = detail::check(ncclAllGather(l.share, l.shares, count, ncclFloat, comm, stream));
    if (s != Status::kSuccess) return s;
  }
  if (own != Status::kSuccess) return own;
  if (sum_loss) return cuda::sum_shares(l.shares, world, static_cast<int64_t>(count), loss, stream);
  return cudaMemcpyAsync(loss, l.share, count * sizeof(float), cudaMemcpyDeviceToDevice, stream) == cudaSuccess
             ? Status::kSuccess
             : Status::kCudaError;
}

}  // namespace nccl
}  // namespace fusedkd
