// fusedkd/cuda_shard.cuh — the column-sharded NKD, KD and DKD (shard.hpp) on CUDA (needs nvcc).
//
// The same two phases and record layout as the CPU's shard.hpp, on device memory, in float
// records (acc type float for float, __half and __nv_bfloat16 logits):
//
//   Status fusedkd::cuda::shard_stats(student, teacher, labels, shard, options, stats,
//                                     workspace, workspace_bytes, stream);
//   (all-gather `stats`, N * kShardStatsPerRow floats per rank, e.g. ncclAllGather)
//   Status fusedkd::cuda::shard_finish(student, teacher, labels, shard, options, gathered, world,
//                                      loss_share, grad_student, workspace, workspace_bytes, stream);
//   Status fusedkd::cuda::sum_shares(shares, world, count, out, stream);   (optional)
//
// Every pointer is a device pointer (labels too); `workspace`: shard_workspace_size(N) bytes
// (status word, batch-sum state, row shares; `fusedkd::cuda::check(workspace, stream)` reads
// the status word after a call, as for the unsharded losses). The calls are stream-ordered,
// allocate nothing and never synchronize: they can be captured in a CUDA graph, with the
// collective between them (fusedkd/dist/nccl.cuh does that). `student` and `teacher` may be
// Matrix<const T> or Matrix<T>; the options' type picks the loss.
#pragma once

#if !defined(__CUDACC__)
#error "fusedkd/cuda_shard.cuh is CUDA C++: include it from a .cu file compiled by nvcc"
#endif

#include <type_traits>

#include "fusedkd/cuda.cuh"
#include "fusedkd/kernels/shard.cuh"
#include "fusedkd/shard.hpp"

namespace fusedkd {
namespace cuda {

/// Workspace bytes of a shard_stats or shard_finish call on N rows.
inline size_t shard_workspace_size(int64_t n) { return impl::pair_workspace_size(n); }

namespace impl {
inline cuda_detail::NkdFamily shard_family(const NkdOptions& o) {
  return {static_cast<float>(1.0 / o.temperature), static_cast<float>(o.gamma), static_cast<float>(o.ce_weight),
          fusedkd::detail::nkd_terms(o)};
}
inline cuda_detail::KdFamily shard_family(const KdOptions& o) {
  return {static_cast<float>(1.0 / o.temperature), static_cast<float>(o.weight), static_cast<float>(o.ce_weight)};
}
inline cuda_detail::DkdFamily shard_family(const DkdOptions& o) {
  return {static_cast<float>(1.0 / o.temperature), static_cast<float>(o.alpha), static_cast<float>(o.beta),
          static_cast<float>(o.ce_weight)};
}

/// Checks on the host, carves the workspace, runs the label pre-pass; fills `a` for a kernel.
template <typename T, class O>
Status shard_prepare(Matrix<const T> z, Matrix<const T> v, const Labels& labels, const Shard& sh,
                     const O& o, const void* out, void* workspace, size_t workspace_bytes,
                     cudaStream_t stream, float* loss, cuda_detail::ShardArgs<T>& a) {
  Status s = fusedkd::detail::shard_check(z, v, labels, sh, o, out);
  if (s != Status::kSuccess) return s;
  const int64_t n = z.rows;
  if (n > INT32_MAX) return Status::kNotSupported;
  if (workspace_bytes < shard_workspace_size(n)) return Status::kWorkspaceTooSmall;
  if (workspace == nullptr) return Status::kNullPointer;
  a = cuda_detail::ShardArgs<T>{};
  a.labels = label_args(labels, sh.classes, o.ignore_index);
  if (!pointers_aligned(z.data, v.data, static_cast<const T*>(nullptr), nullptr, loss, a.labels)) {
    return Status::kNotSupported;
  }
  Carver cv(workspace);
  const cuda_detail::BatchParts batch = cuda_detail::carve_batch(cv, n);
  a.header = batch.header;
  a.row_loss = batch.row_loss;
  a.batch = cuda_detail::batch_refs(batch);
  a.z = z.data;
  a.ldz = z.stride;
  a.v = v.data;
  a.ldv = v.stride;
  a.n = n;
  a.w = z.cols;
  a.first = sh.first;
  a.c = sh.classes;
  a.reduction = o.reduction;
  a.grad_scale = o.grad_scale;
  if (n == 0 && loss == nullptr) return Status::kSuccess;  // phase 1 of nothing
  return prepass(a.labels, n, sh.classes, batch, false, nullptr, 0, o, loss, Validation::kAsync, stream);
}
}  // namespace impl

/// Phase 1: this rank's records, `stats`: N * kShardStatsPerRow device floats.
template <typename T, class O>
Status shard_stats(Matrix<T> student, Matrix<T> teacher, Labels labels, Shard shard, const O& options,
                   float* stats, void* workspace, size_t workspace_bytes, cudaStream_t stream = nullptr) {
  using U = std::remove_const_t<T>;
  cuda_detail::ShardArgs<U> a;
  Status s = impl::shard_prepare<U>(student, teacher, labels, shard, options, stats, workspace,
                                    workspace_bytes, stream, nullptr, a);
  if (s != Status::kSuccess || a.n == 0) return s;
  if (!cuda_detail::element_aligned(stats, sizeof(float))) return Status::kNotSupported;
  a.stats = stats;
  return cuda_detail::launch(cuda_detail::shard_stats_kernel<decltype(impl::shard_family(options)), U>,
                             static_cast<unsigned int>(a.n), cuda_detail::kShardThreads, stream, a,
                             impl::shard_family(options));
}

/// Phase 2: this rank's gradient slice and loss share (`loss_share`: 1 float, or N for
/// Reduction::kNone) from `gathered`, world * N * kShardStatsPerRow device floats.
template <typename T, class O>
Status shard_finish(Matrix<T> student, Matrix<T> teacher, Labels labels, Shard shard, const O& options,
                    const float* gathered, int world, float* loss_share,
                    Matrix<std::remove_const_t<T>> grad_student, void* workspace, size_t workspace_bytes,
                    cudaStream_t stream = nullptr) {
  using U = std::remove_const_t<T>;
  if (grad_student.data != nullptr || grad_student.rows != 0) {
    const Status g = fusedkd::detail::check_slice(grad_student, student.rows, student.cols);
    if (g != Status::kSuccess) return g;
  }
  if (world < 1) return Status::kInvalidOption;
  if (gathered == nullptr && student.rows > 0) return Status::kNullPointer;
  cuda_detail::ShardArgs<U> a;
  Status s = impl::shard_prepare<U>(student, teacher, labels, shard, options, loss_share, workspace,
                                    workspace_bytes, stream, loss_share, a);
  if (s != Status::kSuccess || a.n == 0) return s;
  a.gathered = gathered;
  a.world = world;
  a.g = grad_student.data;
  a.ldg = grad_student.data != nullptr ? grad_student.stride : 0;
  a.loss = loss_share;
  if (!cuda_detail::element_aligned(a.g, sizeof(U)) || !cuda_detail::element_aligned(gathered, sizeof(float))) {
    return Status::kNotSupported;
  }
  return cuda_detail::launch(cuda_detail::shard_finish_kernel<decltype(impl::shard_family(options)), U>,
                             static_cast<unsigned int>(a.n), cuda_detail::kShardThreads, stream, a,
                             impl::shard_family(options));
}

/// The optional last step: out[i] = sum over ranks k (rank order) of shares[k * count + i], on
/// the all-gather of the ranks' loss shares (device floats; `out` may alias rank 0's part).
inline Status sum_shares(const float* shares, int world, int64_t count, float* out,
                         cudaStream_t stream = nullptr) {
  if (count == 0) return Status::kSuccess;
  if (shares == nullptr || out == nullptr) return Status::kNullPointer;
  if (world < 1 || count < 0) return Status::kInvalidOption;
  const int64_t blocks = (count + 255) / 256 < 1024 ? (count + 255) / 256 : 1024;
  return cuda_detail::launch(cuda_detail::sum_shares_kernel<0>, static_cast<unsigned int>(blocks), 256, stream,
                             shares, world, count, out);
}

}  // namespace cuda
}  // namespace fusedkd
