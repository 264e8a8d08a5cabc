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
// The paper's ablation variants (Tables 6, 8, 9, 12, 15) are options; the defaults are USKD:
//   target / non_target = false   drop alpha * L_target / beta * L_non (Table 6)
//   square = false                u_k = S_tk instead of S_tk^2 in the soft target (Table 12)
//   soft_target                   how u becomes P over the batch (Table 8), see UskdSoftTarget
//   rank                          the rank key (Table 9), see UskdRank
//   t2 = true                     adds -alpha * (1 - sum_k P_k) log(1 - sum_k S_tk) (Table 15)
#pragma once

#include "fusedkd/status.hpp"
#include "fusedkd/types.hpp"

namespace fusedkd {

/// The rank key R_i of the soft non-target labels (paper Table 9).
enum class UskdRank {
  kReference,    ///< W_i / (1 - W_t + 1e-6) + log S_i / (1 - log S_t + 1e-6): the released code
                 ///< (the default)
  kPaper,        ///< W_i / (1 - W_t + 1e-6) + S_i / (1 - S_t + 1e-6): Eq. 10, "normalization"
  kWeak,         ///< W_i: the weak logit's rank alone
  kFinal,        ///< S_i: the final logit's rank alone
  kCombination,  ///< W_i + S_i: both, without the normalization
};

/// How the soft target P_k is made from u_k = S_tk^2 (or S_tk without `square`) over the
/// batch's non-ignored rows, per target column (paper Table 8). P_k = 0 where V_k = 0.
enum class UskdSoftTarget {
  kMeanShift,     ///< u + V - mean(u): USKD's (the default)
  kSoftmax,       ///< softmax over the batch of u, times sum over the batch of V
  kSqrtMin,       ///< sqrt(u - min(u))
  kMaxNorm,       ///< u / max(u)
  kMeanNorm,      ///< u / mean(u)
};

struct UskdOptions : CommonOptions {
  double alpha = 1.0;      ///< weight of the target term
  double beta = 0.1;       ///< weight of the non-target term
  double mu = 0.005;       ///< weight of the weak head's cross-entropy
  double smoothing = 0.1;  ///< eps: label smoothing of the weak head's target
  UskdRank rank = UskdRank::kReference;
  bool target = true;      ///< alpha * L_target (T1; Tables 6, 15)
  bool non_target = true;  ///< beta * L_non (Table 6)
  bool square = true;      ///< u_k = S_tk^2 (true) or S_tk (Table 12)
  UskdSoftTarget soft_target = UskdSoftTarget::kMeanShift;  ///< Table 8
  bool t2 = false;         ///< -alpha * (1 - sum P) log(1 - sum S_t) (T2; Table 15)

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
