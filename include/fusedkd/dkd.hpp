// fusedkd/dkd.hpp — Decoupled Knowledge Distillation (Zhao et al., mdistiller semantics).
//
// At temperature T, with b = [p_t, 1 - p_t] the binary target/non-target probabilities and
// Shat, That the non-target softmaxes of z/T, v/T:
//   TCKD = T^2 * KL(b_teacher || b_student),  NCKD = T^2 * KL(That || Shat)
//   loss = alpha * TCKD + beta * NCKD + ce_weight * (-log S_t)
// The non-target softmax is exact (no -1000 masking). Soft labels use their row's argmax.
#pragma once

#include "fusedkd/status.hpp"
#include "fusedkd/types.hpp"

namespace fusedkd {

struct DkdOptions : CommonOptions {
  double temperature = 4.0;  ///< T
  double alpha = 1.0;        ///< weight of TCKD
  double beta = 8.0;         ///< weight of NCKD
};

namespace cpu {
/// DKD loss of a batch and its gradient w.r.t. the student logits, on the CPU.
/// Shapes and outputs as in cpu::nkd.
inline Status dkd(Matrix<const float> student, Matrix<const float> teacher, Labels labels,
                  const DkdOptions& options, float* loss, Matrix<float> grad_student = {});
inline Status dkd(Matrix<const double> student, Matrix<const double> teacher, Labels labels,
                  const DkdOptions& options, double* loss, Matrix<double> grad_student = {});
}  // namespace cpu

}  // namespace fusedkd

#include "fusedkd/detail/cpu_dkd.hpp"
