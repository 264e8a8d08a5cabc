// train.hpp — the training loop and the five ways to train a student (every loss is a fusedkd
// call).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data.hpp"
#include "fusedkd/nkd.hpp"
#include "fusedkd/uskd.hpp"
#include "mlp.hpp"
#include "rng.hpp"

namespace trainer {

enum class Method { kCE, kKD, kDKD, kNKD, kUSKD };

/// "CE", "KD", "DKD", "NKD", "USKD".
const char* method_name(Method m);
/// The fusedkd call and options a method uses, for the report.
const char* method_setting(Method m);
/// Parses a method name (case-insensitive). Returns false when it is none of the five.
bool parse_method(const std::string& s, Method* m);

struct TrainConfig {
  int epochs = 20;
  int64_t batch_size = 128;
  SgdConfig sgd;  ///< lr is the peak learning rate; it follows a cosine decay to 0 over the run
  /// The options of NKD and USKD (ce_weight is set to 1 by the run): the released CIFAR-100
  /// presets, or a paper variant of them (--ablation).
  fusedkd::NkdOptions nkd = fusedkd::NkdOptions::cifar100();
  fusedkd::UskdOptions uskd = fusedkd::UskdOptions::cifar100();
};

struct EpochStats {
  double train_loss = 0;  ///< mean fusedkd loss over the epoch's batches
  double train_acc = 0;   ///< accuracy of the student's head on the batches, while training
  double test_acc = 0;    ///< accuracy on the test set after the epoch
  double seconds = 0;     ///< wall time since the start of the run
};

struct RunResult {
  std::string method;
  uint64_t seed = 0;
  std::vector<EpochStats> epochs;
  double final_test_acc() const { return epochs.empty() ? 0.0 : epochs.back().test_acc; }
};

/// Everything a run reads.
struct RunInputs {
  const Dataset* train = nullptr;
  const Dataset* test = nullptr;
  /// Teacher logits for `train` ([n, 10]); needed by KD, DKD and NKD.
  const std::vector<float>* teacher_logits = nullptr;
};

/// Whether `method` reads the teacher's logits (KD, DKD, NKD). Throws std::runtime_error when it
/// does and `in` lacks them for some training row. Shared by train_run and train_run_cuda.
bool uses_teacher(Method method, const RunInputs& in);

/// A run's independent random streams: the initial weights, the batch order and USKD's weak
/// head. train_run and train_run_cuda both draw from them, so the two devices start alike.
struct RunStreams {
  Rng init, order, weak;
  RunStreams(uint64_t seed, uint64_t stream)
      : init(seed, stream * 16 + 1), order(seed, stream * 16 + 2), weak(seed, stream * 16 + 3) {}
};

/// Trains a fresh MLP of `sizes` with `method` and returns its per-epoch history. The initial
/// weights and the batch order depend only on `seed` (and `stream`), so every method sees the
/// same start and the same batches for the same seed. If `net_out` is not null the trained
/// network is moved there. Throws std::runtime_error when a fusedkd call fails.
RunResult train_run(Method method, const std::vector<int64_t>& sizes, const TrainConfig& cfg,
                    const RunInputs& in, uint64_t seed, uint64_t stream, const std::string& label,
                    bool tty, Mlp* net_out = nullptr);

/// Whether this build has the --device cuda path (nvcc and cuBLAS were found).
bool cuda_available();

/// train_run on the GPU: the same network, initial weights, batches and schedule, with cuBLAS
/// layers and fusedkd::cuda losses (cuda_train.cu). `net_out` gets the trained weights back on
/// the host. Throws std::runtime_error on a CUDA, cuBLAS or fusedkd error, or when the build has
/// no CUDA path.
RunResult train_run_cuda(Method method, const std::vector<int64_t>& sizes, const TrainConfig& cfg,
                         const RunInputs& in, uint64_t seed, uint64_t stream,
                         const std::string& label, bool tty, Mlp* net_out = nullptr);

}  // namespace trainer
