// tests/cuda/runner/runner.hpp — runs one loss problem through fusedkd::cuda from host data.
//
// Plain C++ (no CUDA types): the GPU tests, the sanitizer sweep, the timing table and
// fusedkd-check's CUDA backend are ordinary C++ files that link the one CUDA translation unit
// (runner.cu) which instantiates the kernels. That keeps the nvcc work to one file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fusedkd/fusedkd.hpp"

namespace fkcuda {

enum class Loss { kNkd, kKd, kDkd, kUskd };
enum class DType { kFloat32, kFloat16, kBFloat16 };
enum class LabelKind { kNone, kHard32, kHard64, kSoft };

const char* loss_name(Loss l);
const char* dtype_name(DType d);
const char* label_name(LabelKind k);

/// `x` rounded to the nearest value of `d` (round to nearest even).
float round_to(DType d, float x);

/// One call's inputs. Logits are [n, ld] row-major floats (ld = 0: C), exactly representable in
/// `dtype` (see round_inputs); the padding columns c..ld-1 are never read by a correct kernel.
struct Problem {
  Loss loss = Loss::kNkd;
  DType dtype = DType::kFloat32;
  fusedkd::NkdOptions nkd;  // the options of `loss` (only that one is used)
  fusedkd::KdOptions kd;
  fusedkd::DkdOptions dkd;
  fusedkd::UskdOptions uskd;

  int64_t n = 0, c = 0, ld = 0;
  std::vector<float> student;  // [n, ld]
  std::vector<float> other;    // teacher (nkd, kd, dkd) or weak (uskd) logits, [n, ld]
  int64_t other_n = -1, other_c = -1;  ///< >= 0: `other` is a dense [other_n, other_c] instead

  LabelKind label_kind = LabelKind::kHard64;
  std::vector<int32_t> labels32;  // [n]
  std::vector<int64_t> labels64;  // [n]
  std::vector<float> soft;        // [n, soft_ld]
  int64_t soft_ld = 0;            // 0: C

  bool want_grad = true;   ///< pass gradient matrices (else empty ones)
  bool in_place = false;   ///< the gradients overwrite the logits
  bool misalign = false;   ///< device buffers start one element past a 16-byte boundary
  bool sync_validation = false;  ///< fusedkd::cuda::Validation::kSync
  bool graph = false;      ///< capture the call in a CUDA graph and launch the graph twice
  int64_t workspace_shrink = 0;  ///< pass this many bytes less than the size query returned
  bool misalign_labels = false;  ///< the labels start 4 bytes (int64) / 2 bytes (int32, soft) late
  bool pending_error = false;  ///< leave a CUDA error pending (a failed cudaMalloc) before the call

  int64_t stride() const { return ld > 0 ? ld : c; }
  const fusedkd::CommonOptions& common() const;
  fusedkd::CommonOptions& common();
  int64_t loss_count() const { return common().reduction == fusedkd::Reduction::kNone ? n : 1; }
  fusedkd::Labels labels() const;  ///< host pointers (for the CPU backend)
};

/// Rounds the logits (and nothing else) to the problem's dtype.
void round_inputs(Problem& p);

struct Result {
  fusedkd::Status status = fusedkd::Status::kSuccess;  ///< what the call returned
  fusedkd::Status check = fusedkd::Status::kSuccess;   ///< fusedkd::cuda::check afterwards
  std::string error;                                   ///< a failed CUDA call of the runner itself
  bool pending_error_kept = false;  ///< pending_error: the error was still pending after the call
  std::vector<float> loss;          ///< loss_count() values
  std::vector<float> grad_student;  ///< [n, ld] (padding: as before the call)
  std::vector<float> grad_weak;     ///< [n, ld], uskd only
};

/// The bit pattern the outputs hold before the call (a quiet NaN with a payload).
constexpr uint32_t kSentinelBits = 0x7fc0deadu;
/// Whether `x` is the sentinel as it comes back from a buffer of type `d` (the loss buffer is
/// always float: use kFloat32 for it).
bool is_sentinel(DType d, float x);

/// Whether a CUDA device can run the kernels; `why` says why not.
bool device_available(std::string* why = nullptr);
/// The device's name ("" when none).
std::string device_name();
/// cudaDeviceReset: frees everything, so that compute-sanitizer's leak check reports (true: ok).
bool device_reset();

/// Runs the problem on the GPU. Output buffers are prefilled with the sentinel.
Result run(const Problem& p);

/// Mean milliseconds per call over `iters` calls (after warm-up), inputs already on the device;
/// negative on failure.
double time_ms(const Problem& p, int iters);

/// Device-to-device copy bandwidth in GB/s (bytes read + written per second), for `bytes` bytes
/// copied; negative on failure.
double copy_gbps(size_t bytes);

}  // namespace fkcuda
