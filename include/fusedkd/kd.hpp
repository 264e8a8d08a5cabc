// fusedkd/kd.hpp — classic knowledge distillation (Hinton et al.).
//
// Per row: loss = weight * T^2 * KL(softmax(v/T) || softmax(z/T)) + ce_weight * (-log S_t).
// The teacher is a constant. Labels are needed only for ce_weight and ignore_index: pass
// Labels::none() for pure distillation. Soft labels use their row's argmax as the target.
#pragma once

#include "fusedkd/status.hpp"
#include "fusedkd/types.hpp"

namespace fusedkd {

struct KdOptions : CommonOptions {
  double temperature = 4.0;  ///< T
  double weight = 1.0;       ///< weight of the KL term
};

namespace cpu {
/// KD loss of a batch and its gradient w.r.t. the student logits, on the CPU.
/// Shapes and outputs as in cpu::nkd.
inline Status kd(Matrix<const float> student, Matrix<const float> teacher, Labels labels,
                 const KdOptions& options, float* loss, Matrix<float> grad_student = {});
inline Status kd(Matrix<const double> student, Matrix<const double> teacher, Labels labels,
                 const KdOptions& options, double* loss, Matrix<double> grad_student = {});
}  // namespace cpu

}  // namespace fusedkd

#include "fusedkd/detail/cpu_kd.hpp"
