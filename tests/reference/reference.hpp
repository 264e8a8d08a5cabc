// tests/reference/reference.hpp — the float64 LibTorch reference of the four losses.
//
// Each function is a C++ port of the loss AS THE RELEASED PYTORCH CODE COMPUTES IT
// (yzd-v/cls_KD NKDLoss, USKDLoss, KDLoss, DKDLoss / mdistiller), written the released code's
// way (log_softmax, gather, scatter masks, boolean-mask reshape, stable torch::sort) and
// generalized with the library's ignore_index, reductions, grad_scale, ce_weight and soft
// labels. Gradients come from autograd. It shares no code with the library: it is the
// independent check the library's tests compare against.
#pragma once

#include <torch/torch.h>

#include "fusedkd/dkd.hpp"
#include "fusedkd/kd.hpp"
#include "fusedkd/nkd.hpp"
#include "fusedkd/uskd.hpp"

namespace ref {

/// float64 results. `loss`: a scalar (mean / sum) or [N] (none, 0 for ignored rows).
/// `grad_student` (and `grad_weak`, USKD only; undefined otherwise): [N, C], the gradient of the
/// reduced loss (of the sum of the rows for none) times grad_scale.
struct Result {
  torch::Tensor loss;
  torch::Tensor grad_student;
  torch::Tensor grad_weak;
};

/// `labels`: integer [N] class indices (ignore_index rows are skipped) or float [N, C] soft labels.
/// Logits may be any float dtype and any strides; everything is computed in float64.
Result nkd(const torch::Tensor& student, const torch::Tensor& teacher, const torch::Tensor& labels,
           const fusedkd::NkdOptions& o);
/// `labels` may be an undefined tensor: no labels (then ce_weight must be 0).
Result kd(const torch::Tensor& student, const torch::Tensor& teacher, const torch::Tensor& labels,
          const fusedkd::KdOptions& o);
Result dkd(const torch::Tensor& student, const torch::Tensor& teacher, const torch::Tensor& labels,
           const fusedkd::DkdOptions& o);
Result uskd(const torch::Tensor& student, const torch::Tensor& weak, const torch::Tensor& labels,
            const fusedkd::UskdOptions& o);

/// The USKD rank keys R [N, C] (float64) the reference sorts, for the tests that need to know how
/// far apart the keys are (near-ties that float rounding could swap). Ignored rows hold 0.
torch::Tensor uskd_rank_keys(const torch::Tensor& student, const torch::Tensor& weak,
                             const torch::Tensor& labels, const fusedkd::UskdOptions& o);

}  // namespace ref
