// bench/eager_f32.hpp — the LibTorch eager baseline of the benchmarks, in float32.
//
// tests/reference/ ports the released PyTorch losses in float64 (it is the tests' oracle). The
// benchmarks need what a user runs today: the released code in float32, eager forward plus
// autograd backward. eager_f32.cpp is that port: the released code's operations, in its order
// (log_softmax, gather, scatter masks, boolean-mask reshape, torch.sort + argsort, mean), for
// hard labels and the mean reduction (the benchmarked case; no ignored rows, so the released
// code needs no generalization). This header has no LibTorch in it, so the benchmark driver
// compiles fast; only eager_f32.cpp includes <torch/torch.h>.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "fusedkd/dkd.hpp"
#include "fusedkd/kd.hpp"
#include "fusedkd/nkd.hpp"
#include "fusedkd/uskd.hpp"

namespace bench_eager {

enum class Loss { kNkd, kKd, kDkd, kUskd };

/// The options of every loss; the eager port reads the fields of the loss it runs.
struct Options {
  fusedkd::NkdOptions nkd;
  fusedkd::KdOptions kd;
  fusedkd::DkdOptions dkd;
  fusedkd::UskdOptions uskd;
};

/// One eager problem: float32 [N, C] copies of the two logit matrices (student and teacher, or
/// student and weak logits for USKD) and the int64 labels, made once, outside any timing.
class Problem {
 public:
  virtual ~Problem() = default;
  /// Forward plus autograd backward; returns the loss. The gradients are kept until the next run.
  virtual float run() = 0;
  /// Copies the last run's gradients out ([N, C] each; `grad_b` only for USKD, may be null).
  virtual void gradients(float* grad_a, float* grad_b) const = 0;
  /// Drops the last run's gradients (so a memory measurement starts from the same state).
  virtual void release() = 0;
};

/// True when this build has the LibTorch baseline.
bool available();
/// Sets LibTorch's intra-op thread count (torch::set_num_threads).
void set_threads(int threads);
/// Makes a problem from host data (copied).
std::unique_ptr<Problem> make_problem(Loss loss, const Options& options, const float* a,
                                      const float* b, const int64_t* labels, int64_t n, int64_t c);
/// Runs this port in float32 against the project's float64 reference (tests/reference) on a small
/// random case and returns a line that says how far apart they are ("" when the reference is not
/// linked into this build).
std::string check_against_reference(Loss loss, const Options& options);

}  // namespace bench_eager
