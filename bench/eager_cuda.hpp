// bench/eager_cuda.hpp — the LibTorch-CUDA baseline of fusedkd_bench_cuda: the released losses
// (released.hpp) on device tensors, eager forward plus autograd backward. Built only when a
// LibTorch with CUDA is found. The interface has plain C types only, so that a LibTorch built
// with another C++ ABI (pip wheels) links with the benchmark program.
#pragma once

#include <cstdint>

namespace bench_torch_cuda {

/// loss: 0 NKD, 1 KD, 2 DKD, 3 USKD. dtype: 0 float32, 1 bfloat16. `z`, `v`: device [n, c]
/// (copied into leaf tensors); `labels`: device int64 [n]. `options`: NKD {temperature, gamma},
/// KD {temperature, weight}, DKD {temperature, alpha, beta}, USKD {alpha, beta, mu, smoothing}.
/// Returns null on failure (the message goes to stderr).
void* make(int loss, int dtype, const void* z, const void* v, const int64_t* labels, int64_t n, int64_t c,
           const double* options);
/// Forward plus backward on the current stream (no host synchronization). false on failure.
bool run(void* problem);
/// The peak bytes the caching allocator handed out during one run beyond those in use before it,
/// less the gradients the run returns.
long long peak_extra(void* problem);
/// Copies the last gradients (dtype as made) to device buffers; `grad_b` only for USKD.
bool gradients(void* problem, void* grad_a, void* grad_b);
void destroy(void* problem);

}  // namespace bench_torch_cuda
