// bench/released.hpp — the released PyTorch losses, in LibTorch (header-only, any dtype, any
// device): cls_KD NKDLoss / KDLoss / USKDLoss and mdistiller's dkd_loss, op for op, for hard
// labels and the mean reduction. The Python of the released code is in the comments. Used by
// eager_f32.cpp (CPU baseline) and eager_cuda.cpp (LibTorch-CUDA baseline).
#pragma once

#include <torch/torch.h>

namespace released {

using torch::Tensor;

/// cls_KD NKDLoss.forward(logit_s, logit_t, gt_label), hard labels.
inline Tensor nkd_loss(const Tensor& logit_s_in, const Tensor& logit_t_in, const Tensor& gt_label,
                double temp, double gamma) {
  const int64_t n = logit_s_in.size(0);
  // label = gt_label.view(len(gt_label), 1)
  const Tensor label = gt_label.view({n, 1});
  // s_i = self.log_softmax(logit_s); t_i = F.softmax(logit_t, dim=1)
  const Tensor s_i = torch::log_softmax(logit_s_in, 1);
  const Tensor t_i = torch::softmax(logit_t_in, 1);
  // s_t = torch.gather(s_i, 1, label); t_t = torch.gather(t_i, 1, label).detach()
  const Tensor s_t = s_i.gather(1, label);
  const Tensor t_t = t_i.gather(1, label).detach();
  // loss_t = - (t_t * s_t).mean()
  const Tensor loss_t = -(t_t * s_t).mean();
  // mask = torch.ones_like(logit_s).scatter_(1, label, 0).bool()
  const Tensor mask = torch::ones_like(logit_s_in).scatter_(1, label, 0).to(torch::kBool);
  // logit_s = logit_s[mask].reshape(N, -1); logit_t = logit_t[mask].reshape(N, -1)
  const Tensor logit_s = logit_s_in.index({mask}).reshape({n, -1});
  const Tensor logit_t = logit_t_in.index({mask}).reshape({n, -1});
  // S_i = self.log_softmax(logit_s/self.temp); T_i = F.softmax(logit_t/self.temp, dim=1)
  const Tensor S_i = torch::log_softmax(logit_s / temp, 1);
  const Tensor T_i = torch::softmax(logit_t / temp, 1);
  // loss_non = (T_i * S_i).sum(dim=1).mean(); loss_non = - self.gamma * (self.temp**2) * loss_non
  Tensor loss_non = (T_i * S_i).sum(1).mean();
  loss_non = -gamma * (temp * temp) * loss_non;
  return loss_t + loss_non;
}

/// cls_KD KDLoss.forward(logit_s, logit_t).
inline Tensor kd_loss(const Tensor& logit_s, const Tensor& logit_t, double temp, double alpha) {
  // S_i = F.softmax(logit_s/self.temp, dim=1); T_i = F.softmax(logit_t/self.temp, dim=1)
  const Tensor S_i = torch::softmax(logit_s / temp, 1);
  const Tensor T_i = torch::softmax(logit_t / temp, 1);
  // kd_loss = - self.alpha * self.temp**2 * (T_i * torch.log(S_i)).sum(dim=1).mean()
  return -alpha * (temp * temp) * (T_i * torch::log(S_i)).sum(1).mean();
}

/// mdistiller dkd_loss(logits_student, logits_teacher, target, alpha, beta, temperature).
inline Tensor dkd_loss(const Tensor& logits_student, const Tensor& logits_teacher, const Tensor& target,
                double alpha, double beta, double temperature) {
  auto cat_mask = [](const Tensor& t, const Tensor& mask1, const Tensor& mask2) {
    const Tensor t1 = (t * mask1).sum(1, true);
    const Tensor t2 = (t * mask2).sum(1, true);
    return torch::cat({t1, t2}, 1);
  };
  const Tensor tgt = target.reshape({-1}).unsqueeze(1);
  // _get_gt_mask / _get_other_mask
  const Tensor gt_mask = torch::zeros_like(logits_student).scatter_(1, tgt, 1).to(torch::kBool);
  const Tensor other_mask = torch::ones_like(logits_student).scatter_(1, tgt, 0).to(torch::kBool);
  Tensor pred_student = torch::softmax(logits_student / temperature, 1);
  Tensor pred_teacher = torch::softmax(logits_teacher / temperature, 1);
  pred_student = cat_mask(pred_student, gt_mask, other_mask);
  pred_teacher = cat_mask(pred_teacher, gt_mask, other_mask);
  const Tensor log_pred_student = torch::log(pred_student);
  const double batch = static_cast<double>(target.size(0));
  // F.kl_div(log_pred_student, pred_teacher, size_average=False) * (temperature**2) / N
  const Tensor tckd_loss =
      torch::kl_div(log_pred_student, pred_teacher, at::Reduction::Sum) * (temperature * temperature) /
      batch;
  const Tensor gt = gt_mask.to(logits_student.scalar_type());
  const Tensor pred_teacher_part2 = torch::softmax(logits_teacher / temperature - 1000.0 * gt, 1);
  const Tensor log_pred_student_part2 =
      torch::log_softmax(logits_student / temperature - 1000.0 * gt, 1);
  const Tensor nckd_loss =
      torch::kl_div(log_pred_student_part2, pred_teacher_part2, at::Reduction::Sum) *
      (temperature * temperature) / batch;
  return alpha * tckd_loss + beta * nckd_loss;
}

/// cls_KD USKDLoss.forward(fea_mid, logit_s, gt_label) with w_fc = self.fc(fea_mid) given,
/// hard labels. `zipf` = 1 / torch.arange(1, num_classes + 1), built in __init__.
inline Tensor uskd_loss(const Tensor& logit_s_in, const Tensor& w_fc, const Tensor& gt_label,
                 const Tensor& zipf, double alpha, double beta, double mu, double eps) {
  const int64_t n = logit_s_in.size(0), c = logit_s_in.size(1);
  // label = gt_label.view(len(gt_label), 1); value = torch.ones_like(label)
  const Tensor label = gt_label.view({n, 1});
  const Tensor value = torch::ones_like(label);
  // s_i = F.softmax(logit_s, dim=1); s_t = torch.gather(s_i, 1, label)
  Tensor s_i = torch::softmax(logit_s_in, 1);
  Tensor s_t = s_i.gather(1, label);
  // p_t = s_t**2; p_t = p_t + value - p_t.mean(0, True); p_t[value==0] = 0; p_t = p_t.detach()
  Tensor p_t = s_t.pow(2);
  p_t = p_t + value - p_t.mean(0, true);
  p_t = p_t.masked_fill(value == 0, 0);
  p_t = p_t.detach();
  // s_i = self.log_softmax(logit_s); s_t = torch.gather(s_i, 1, label)
  s_i = torch::log_softmax(logit_s_in, 1);
  s_t = s_i.gather(1, label);
  // loss_t = - (p_t * s_t).sum(dim=1).mean()
  const Tensor loss_t = -(p_t * s_t).sum(1).mean();
  // target = torch.zeros_like(logit_s).scatter_(1, label, 0.9) + 0.1 * torch.ones_like(logit_s) / c
  const Tensor target = torch::zeros_like(logit_s_in).scatter_(1, label, 1.0 - eps) +
                        eps * torch::ones_like(logit_s_in) / static_cast<double>(c);
  // w_i = self.log_softmax(w_fc); loss_weak = - (self.mu * target * w_i).sum(dim=1).mean()
  Tensor w_i = torch::log_softmax(w_fc, 1);
  const Tensor loss_weak = -(mu * target * w_i).sum(1).mean();
  // w_i = F.softmax(w_fc, dim=1); w_t = torch.gather(w_i, 1, label)
  w_i = torch::softmax(w_fc, 1);
  const Tensor w_t = w_i.gather(1, label);
  // rank = w_i / (1 - w_t.sum(1, True) + 1e-6) + s_i / (1 - s_t.sum(1, True) + 1e-6)
  Tensor rank = w_i / (1 - w_t.sum(1, true) + 1e-6) + s_i / (1 - s_t.sum(1, true) + 1e-6);
  // _, rank = torch.sort(rank, descending=True, dim=-1)
  rank = std::get<1>(torch::sort(rank, /*dim=*/-1, /*descending=*/true));
  // z_i = self.zipf.repeat(N, 1); ids_sort = torch.argsort(rank); z_i = torch.gather(z_i, 1, ids_sort)
  Tensor z_i = zipf.repeat({n, 1});
  const Tensor ids_sort = torch::argsort(rank);
  z_i = z_i.gather(1, ids_sort);
  // mask = torch.ones_like(logit_s).scatter_(1, label, 0).bool()
  const Tensor mask = torch::ones_like(logit_s_in).scatter_(1, label, 0).to(torch::kBool);
  // logit_s = logit_s[mask].reshape(N, -1); ns_i = self.log_softmax(logit_s)
  const Tensor logit_s = logit_s_in.index({mask}).reshape({n, -1});
  const Tensor ns_i = torch::log_softmax(logit_s, 1);
  // nz_i = z_i[mask].reshape(N, -1); nz_i = nz_i/nz_i.sum(dim=1, keepdim=True); nz_i = nz_i.detach()
  Tensor nz_i = z_i.index({mask}).reshape({n, -1});
  nz_i = (nz_i / nz_i.sum(1, true)).detach();
  // loss_non = - (nz_i * ns_i).sum(dim=1).mean()
  const Tensor loss_non = -(nz_i * ns_i).sum(1).mean();
  // loss_uskd = self.alpha * loss_t + self.beta * loss_non + loss_weak
  return alpha * loss_t + beta * loss_non + loss_weak;
}

}  // namespace released
