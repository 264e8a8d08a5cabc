// fusedkd/uskd.hpp — Universal Self-Knowledge Distillation (paper Eq. 6-13, released `USKDLoss`).
//
// No teacher. Inputs: the student logits z and the weak logits w = FC(feature) of an extra
// linear head on an intermediate feature (the head is the caller's; the loss returns dL/dw).
// Targets: the hard label (value 1), or the two largest entries t1, t2 of a soft row.
//   P_k     = S_tk^2 + V_k - mean_batch(S_tk^2)   (0 where V_k = 0; the mean couples the rows)
//   L_target = -sum_k P_k log S_tk
//   L_weak   = -mu * sum_i q_i log W_i,  q = (1 - eps) * y + eps / C,  W = softmax(w)
//   R_i      = W_i / (1 - sum_k W_tk + 1e-6) + X_i / (1 - sum_k X_tk + 1e-6),  X = log S or S
//   Zhat_i   = (1 / r_i) / sum_{j not a target} (1 / r_j),  r_i = rank of R_i (descending,
//              ties by lower class index)
//   L_non    = -sum_{i not a target} Zhat_i log Shat_i   (Shat: non-target softmax of z)
//   loss     = alpha * L_target + beta * L_non + L_weak + ce_weight * (-log S_t1)
// P, the ranks and Zhat are constants: no gradient flows through them.
#pragma once

#include "fusedkd/status.hpp"
#include "fusedkd/types.hpp"

namespace fusedkd {

/// Which X enters the rank key R.
enum class UskdRank {
  kReference,  ///< X = log S: what the released code does (the default)
  kPaper,      ///< X = S: the paper's Eq. 10
};

struct UskdOptions : CommonOptions {
  double alpha = 1.0;      ///< weight of the target term
  double beta = 0.1;       ///< weight of the non-target term
  double mu = 0.005;       ///< weight of the weak head's cross-entropy
  double smoothing = 0.1;  ///< eps: label smoothing of the weak head's target
  UskdRank rank = UskdRank::kReference;

  /// The released ImageNet config: alpha = 1, beta = 0.1, mu = 0.005 (the defaults).
  static UskdOptions imagenet() { return UskdOptions{}; }
  /// The released CIFAR-100 config: alpha = 0.1, beta = 0.1, mu = 0.1.
  static UskdOptions cifar100() {
    UskdOptions o;
    o.alpha = 0.1;
    o.mu = 0.1;
    return o;
  }
};

namespace cpu {
/// USKD loss of a batch and its gradients w.r.t. the student and the weak logits, on the CPU.
/// `student`, `weak`: [N, C]. `loss`: 1 value (mean/sum) or N (none). `grad_student`,
/// `grad_weak`: [N, C] each, or both empty to skip the gradients; they may alias their inputs.
inline Status uskd(Matrix<const float> student, Matrix<const float> weak, Labels labels,
                   const UskdOptions& options, float* loss, Matrix<float> grad_student = {},
                   Matrix<float> grad_weak = {});
inline Status uskd(Matrix<const double> student, Matrix<const double> weak, Labels labels,
                   const UskdOptions& options, double* loss, Matrix<double> grad_student = {},
                   Matrix<double> grad_weak = {});
}  // namespace cpu

}  // namespace fusedkd

#include "fusedkd/detail/cpu_uskd.hpp"
