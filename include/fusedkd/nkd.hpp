// fusedkd/nkd.hpp — Normalized Knowledge Distillation (paper Eq. 4-5, released `NKDLoss`).
//
// Per row, with S = softmax(z), T = softmax(v) and Shat, That the softmaxes of z/lambda, v/lambda
// over the non-target classes (renormalized to sum to one on both sides):
//   loss = -T_t log S_t - gamma * lambda^2 * sum_{i != t} That_i log Shat_i + ce_weight * (-log S_t)
// The teacher is a constant. Soft labels use their row's argmax (first maximum) as the target.
// The paper's ablation variants (Tables 5 and 14) are options; the defaults are NKD itself:
//   target = false        drops -T_t log S_t (T1)
//   non_target = kPlain   KD's non-target form: -gamma * lambda^2 * sum_{i != t} T_i log S_i with
//                         the full softmaxes S, T of z / lambda, v / lambda (not renormalized)
//   non_target = kNone    drops the non-target term
//   t2 = true             adds DKD's coefficient term -(1 - T_t) log(1 - S_t) (T2, scale 1)
#pragma once

#include "fusedkd/status.hpp"
#include "fusedkd/types.hpp"

namespace fusedkd {

/// The form of NKD's non-target term (paper Table 5).
enum class NkdNonTarget {
  kNormalized,  ///< NKD: non-target softmaxes renormalized on both sides (the default)
  kPlain,       ///< KD's form: the full softmaxes' non-target entries
  kNone,        ///< no non-target term
};

struct NkdOptions : CommonOptions {
  double temperature = 1.0;  ///< lambda: temperature of the non-target term
  double gamma = 1.5;        ///< weight of the non-target term
  bool target = true;        ///< the target term -T_t log S_t (T1; Tables 5, 14)
  NkdNonTarget non_target = NkdNonTarget::kNormalized;  ///< Table 5
  bool t2 = false;           ///< DKD's term -(1 - T_t) log(1 - S_t) (T2; Table 14)

  /// The released ImageNet config: lambda = 1, gamma = 1.5 (the defaults).
  static NkdOptions imagenet() { return NkdOptions{}; }
  /// The released CIFAR-100 config: lambda = 3, gamma = 3.5.
  static NkdOptions cifar100() {
    NkdOptions o;
    o.temperature = 3.0;
    o.gamma = 3.5;
    return o;
  }
};

namespace cpu {
/// NKD loss of a batch and its gradient w.r.t. the student logits, on the CPU.
/// `student`, `teacher`: [N, C]. `loss`: 1 value (mean/sum) or N (none).
/// `grad_student`: [N, C] or an empty Matrix to skip the gradient; it may alias `student`.
inline Status nkd(Matrix<const float> student, Matrix<const float> teacher, Labels labels,
                  const NkdOptions& options, float* loss, Matrix<float> grad_student = {});
inline Status nkd(Matrix<const double> student, Matrix<const double> teacher, Labels labels,
                  const NkdOptions& options, double* loss, Matrix<double> grad_student = {});
}  // namespace cpu

}  // namespace fusedkd

#include "fusedkd/detail/cpu_nkd.hpp"
