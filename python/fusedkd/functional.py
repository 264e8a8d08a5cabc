"""The fused losses as functions. Each returns the loss (a scalar for reduction='mean' or 'sum',
one value per row for 'none') with autograd: the gradient is computed in the forward pass.

Common keyword arguments:
  reduction     'mean' (over the rows that are not ignored; 0 when none is left), 'sum', 'none'
  ignore_index  hard-label value of rows to skip (zero loss, zero gradient, not in the mean)
  ce_weight     weight of an added cross-entropy term -log softmax(student)[target] (default 0)

Labels: int64 / int32 class indices [N], or floating-point soft labels [N, C] (mixup, cutmix):
NKD, KD and DKD then take each row's first maximum as the target, USKD the two largest entries.
Teachers and soft labels are constants (no gradient reaches them). Logits: [N, C], float32,
float64, float16 or bfloat16, rows unit-stride (a contiguous tensor, or a column slice of one).
"""
import torch

__all__ = ["nkd_loss", "uskd_loss", "kd_loss", "dkd_loss"]


def nkd_loss(logit_s, logit_t, gt_label, temp=1.0, gamma=1.5, *, reduction="mean",
             ignore_index=-100, ce_weight=0.0):
    """NKD (paper Eq. 4-5): -T_t log S_t - gamma temp^2 sum_{i != t} That_i log Shat_i, with
    Shat, That the non-target softmaxes at temperature `temp` (the released NKDLoss)."""
    return torch.ops.fusedkd.nkd(logit_s, logit_t, gt_label, float(temp), float(gamma),
                                 reduction, int(ignore_index), float(ce_weight))


def uskd_loss(logit_s, logit_w, gt_label, alpha=1.0, beta=0.1, mu=0.005, *, smoothing=0.1,
              rank="reference", reduction="mean", ignore_index=-100, ce_weight=0.0):
    """USKD (paper Eq. 6-13) of the student logits `logit_s` and the weak logits `logit_w`
    (= fc(fea_mid), the extra linear head; both get gradients). `rank`: 'reference' ranks
    classes as the released code does (log-probabilities), 'paper' as Eq. 10 (probabilities);
    'weak' (W alone), 'final' (S alone) and 'combination' (W + S) are Table 9's ablations."""
    return torch.ops.fusedkd.uskd(logit_s, logit_w, gt_label, float(alpha), float(beta),
                                  float(mu), float(smoothing), rank, reduction,
                                  int(ignore_index), float(ce_weight))


def kd_loss(logits_student, logits_teacher, temperature=4.0, *, weight=1.0, labels=None,
            reduction="mean", ignore_index=-100, ce_weight=0.0):
    """Hinton KD: weight * T^2 * KL(softmax(v/T) || softmax(z/T)) per row (mdistiller's kd_loss
    with weight 1). `labels` are needed only for ce_weight and ignore_index."""
    return torch.ops.fusedkd.kd(logits_student, logits_teacher, labels, float(temperature),
                                float(weight), reduction, int(ignore_index), float(ce_weight))


def dkd_loss(logits_student, logits_teacher, target, alpha=1.0, beta=8.0, temperature=4.0, *,
             reduction="mean", ignore_index=-100, ce_weight=0.0):
    """DKD: alpha * TCKD + beta * NCKD at temperature T (mdistiller's dkd_loss, same argument
    order; the non-target softmax is exact rather than masked with -1000)."""
    return torch.ops.fusedkd.dkd(logits_student, logits_teacher, target, float(alpha),
                                 float(beta), float(temperature), reduction, int(ignore_index),
                                 float(ce_weight))
