// tests/reference/reference.cpp — the float64 LibTorch reference (see reference.hpp).
//
// Port notes, per loss (released code in comments where the generalization departs from it):
// - Rows whose hard label is ignore_index are dropped with index_select before the loss, so
//   autograd gives them an exactly-zero gradient and they never enter a batch statistic.
// - The released code reduces with .mean() over the batch; here each loss builds the vector of
//   per-row losses and `finish` applies the requested reduction and grad_scale.
// - Soft labels: NKD / KD / DKD take the first maximum of the row as the target (released
//   NKD: torch.max(gt_label, dim=1)); USKD takes the first two entries of a stable descending
//   sort (released: torch.sort(gt_label, descending=True)), so ties go to the lower index.
#include "reference.hpp"

#include <cmath>
#include <vector>

namespace ref {
namespace {

using torch::Tensor;
using torch::indexing::Slice;

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);
const auto kI64 = torch::TensorOptions().dtype(torch::kInt64);

/// A float64 leaf copy of `x` that autograd differentiates with respect to.
Tensor leaf(const Tensor& x) {
  return x.detach().to(torch::kFloat64).contiguous().clone().requires_grad_(true);
}

/// The labels of a batch, parsed once.
struct Lab {
  bool none = false;
  bool soft = false;
  Tensor hard;   ///< int64 [N] (hard labels only)
  Tensor y;      ///< float64 [N, C] (soft labels only)
  Tensor valid;  ///< int64 [M]: the rows that are not ignored
};

Lab parse_labels(const Tensor& labels, int64_t n, int64_t c, int64_t ignore_index) {
  Lab l;
  if (!labels.defined()) {
    l.none = true;
    l.valid = torch::arange(n, kI64);
    return l;
  }
  if (labels.is_floating_point()) {
    TORCH_CHECK(labels.dim() == 2 && labels.size(0) == n && labels.size(1) == c,
                "soft labels must be [N, C]");
    l.soft = true;
    l.y = labels.detach().to(torch::kFloat64).contiguous();
    TORCH_CHECK(n == 0 || (l.y > 0).any(1).all().item<bool>(),
                "a soft-label row has no positive entry");
    l.valid = torch::arange(n, kI64);
    return l;
  }
  TORCH_CHECK(labels.numel() == n, "hard labels must be [N]");
  l.hard = labels.detach().to(torch::kInt64).reshape({n});
  l.valid = torch::nonzero(l.hard != ignore_index).reshape({-1});
  const Tensor kept = l.hard.index_select(0, l.valid);
  TORCH_CHECK(kept.numel() == 0 || (kept.ge(0).all().item<bool>() && kept.lt(c).all().item<bool>()),
              "label out of range");
  return l;
}

/// Stable descending sort of the soft labels: (values, indices).
std::tuple<Tensor, Tensor> sort_soft(const Tensor& y) {
  return torch::sort(y, /*stable=*/true, /*dim=*/1, /*descending=*/true);
}

/// The single target [M, 1] of the kept rows: the hard label, or the soft row's first maximum.
Tensor single_target(const Lab& l) {
  if (l.soft) {
    const Tensor idx = std::get<1>(sort_soft(l.y));
    return idx.index({Slice(), Slice(0, 1)}).contiguous();
  }
  return l.hard.index_select(0, l.valid).reshape({-1, 1});
}

/// Applies the reduction to the per-row losses `rows` [M] of the kept rows `valid`, and takes the
/// gradients w.r.t. `leaves` (of the reduced loss; of the sum of the rows for none) * grad_scale.
std::pair<Tensor, std::vector<Tensor>> finish(const Tensor& rows, const Tensor& valid, int64_t n,
                                              const fusedkd::CommonOptions& o,
                                              const std::vector<Tensor>& leaves) {
  const int64_t m = rows.size(0);
  Tensor loss, objective;
  switch (o.reduction) {
    case fusedkd::Reduction::kMean:
      loss = m > 0 ? rows.sum() / static_cast<double>(m) : torch::zeros({}, kF64);
      objective = loss;
      break;
    case fusedkd::Reduction::kSum:
      loss = rows.sum();
      objective = loss;
      break;
    case fusedkd::Reduction::kNone:
      loss = torch::zeros({n}, kF64).index_copy(0, valid, rows.detach());
      objective = rows.sum();
      break;
  }
  std::vector<Tensor> grads(leaves.size());
  if (objective.requires_grad()) {
    grads = torch::autograd::grad({objective}, leaves, /*grad_outputs=*/{}, /*retain_graph=*/false,
                                  /*create_graph=*/false, /*allow_unused=*/true);
  }
  for (size_t i = 0; i < leaves.size(); ++i) {
    if (!grads[i].defined()) grads[i] = torch::zeros_like(leaves[i]).detach();
    grads[i] = grads[i].detach() * o.grad_scale;
  }
  return {loss.detach(), grads};
}

void check_logits(const Tensor& a, const Tensor& b) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.sizes() == b.sizes(), "logits must be [N, C] alike");
}

/// -log S_t at temperature 1, [M]: the added cross-entropy term.
Tensor cross_entropy_rows(const Tensor& z, const Tensor& label) {
  return -torch::log_softmax(z, 1).gather(1, label).squeeze(1);
}

// ---- USKD pieces shared by uskd() and uskd_rank_keys() ------------------------------------
struct UskdTargets {
  Tensor label;  ///< int64 [M, K]: K = 1 (hard) or 2 (soft)
  Tensor value;  ///< float64 [M, K]
};

UskdTargets uskd_targets(const Lab& l) {
  UskdTargets t;
  if (l.soft) {
    // value, label = torch.sort(gt_label, descending=True, dim=-1); value[:, :2]; label[:, :2]
    auto sorted = sort_soft(l.y);
    t.value = std::get<0>(sorted).index({Slice(), Slice(0, 2)}).contiguous();
    t.label = std::get<1>(sorted).index({Slice(), Slice(0, 2)}).contiguous();
  } else {
    // label = gt_label.view(len(gt_label), 1); value = torch.ones_like(label)
    t.label = single_target(l);
    t.value = torch::ones(t.label.sizes(), kF64);
  }
  return t;
}

/// rank = w_i / (1 - w_t.sum(1) + 1e-6) + s_i / (1 - s_t.sum(1) + 1e-6), s_i being log_softmax
/// (what the released code has in s_i at that point) or softmax (paper mode, Eq. 10); the
/// Table 9 variants: w_i alone, softmax alone, or w_i + softmax without the denominators.
Tensor uskd_keys(const Tensor& zs, const Tensor& ws, const Tensor& label, fusedkd::UskdRank mode) {
  torch::NoGradGuard ng;
  const Tensor w_i = torch::softmax(ws.detach(), 1);
  const Tensor w_t = w_i.gather(1, label);
  const Tensor x_i = mode == fusedkd::UskdRank::kReference ? torch::log_softmax(zs.detach(), 1)
                                                          : torch::softmax(zs.detach(), 1);
  const Tensor x_t = x_i.gather(1, label);
  switch (mode) {
    case fusedkd::UskdRank::kWeak: return w_i;
    case fusedkd::UskdRank::kFinal: return x_i;
    case fusedkd::UskdRank::kCombination: return w_i + x_i;
    default: break;
  }
  return w_i / (1 - w_t.sum(1, true) + 1e-6) + x_i / (1 - x_t.sum(1, true) + 1e-6);
}

/// log(1 - sum of S over the columns `label`) [M], from the other columns' log-probabilities
/// (stable when the targets hold nearly all the mass).
Tensor log_rest_mass(const Tensor& log_s, const Tensor& label) {
  const int64_t m = log_s.size(0), c = log_s.size(1), k = label.size(1);
  const Tensor mask = torch::ones_like(log_s).scatter_(1, label, 0).to(torch::kBool);
  return log_s.index({mask}).reshape({m, c - k}).logsumexp(1);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
Result nkd(const Tensor& student, const Tensor& teacher, const Tensor& labels,
           const fusedkd::NkdOptions& o) {
  check_logits(student, teacher);
  const int64_t n = student.size(0), c = student.size(1);
  const double temp = o.temperature, gamma = o.gamma;
  const Tensor z = leaf(student);
  const Tensor v = teacher.detach().to(torch::kFloat64);
  const Lab l = parse_labels(labels, n, c, o.ignore_index);
  TORCH_CHECK(!l.none, "NKD needs labels");

  const Tensor logit_s = z.index_select(0, l.valid);
  const Tensor logit_t = v.index_select(0, l.valid);
  const Tensor label = single_target(l);
  const int64_t m = logit_s.size(0);

  // N*class
  const Tensor s_i = torch::log_softmax(logit_s, 1);
  const Tensor t_i = torch::softmax(logit_t, 1);
  // N*1
  const Tensor s_t = s_i.gather(1, label);
  const Tensor t_t = t_i.gather(1, label).detach();
  const Tensor loss_t = -(t_t * s_t).squeeze(1);  // released: -(t_t * s_t).mean()

  const Tensor mask = torch::ones_like(logit_s).scatter_(1, label, 0).to(torch::kBool);
  Tensor loss_non = torch::zeros({m}, kF64);
  if (o.non_target == fusedkd::NkdNonTarget::kNormalized) {
    const Tensor ns = logit_s.index({mask}).reshape({m, c - 1});
    const Tensor nt = logit_t.index({mask}).reshape({m, c - 1});
    const Tensor S_i = torch::log_softmax(ns / temp, 1);
    const Tensor T_i = torch::softmax(nt / temp, 1);
    // released: loss_non = -gamma * temp**2 * (T_i * S_i).sum(dim=1).mean()
    loss_non = -gamma * (temp * temp) * (T_i * S_i).sum(1);
  } else if (o.non_target == fusedkd::NkdNonTarget::kPlain) {
    // Table 5's "KD's non-target": the full softmaxes at 1/temp, summed over i != t.
    const Tensor S_i = torch::log_softmax(logit_s / temp, 1).index({mask}).reshape({m, c - 1});
    const Tensor T_i = torch::softmax(logit_t / temp, 1).index({mask}).reshape({m, c - 1});
    loss_non = -gamma * (temp * temp) * (T_i * S_i).sum(1);
  }

  Tensor rows = loss_non;
  if (o.target) rows = rows + loss_t;
  if (o.t2) rows = rows - (1 - t_t.squeeze(1)) * log_rest_mass(s_i, label);  // Table 14's T2
  if (o.ce_weight != 0.0) rows = rows + o.ce_weight * (-s_t.squeeze(1));
  auto fin = finish(rows, l.valid, n, o, {z});
  return {fin.first, fin.second[0], Tensor()};
}

// ---------------------------------------------------------------------------------------------
Result kd(const Tensor& student, const Tensor& teacher, const Tensor& labels,
          const fusedkd::KdOptions& o) {
  check_logits(student, teacher);
  const int64_t n = student.size(0), c = student.size(1);
  const double temp = o.temperature;
  const Tensor z = leaf(student);
  const Tensor v = teacher.detach().to(torch::kFloat64);
  const Lab l = parse_labels(labels, n, c, o.ignore_index);
  TORCH_CHECK(!(l.none && o.ce_weight != 0.0), "KD without labels has no cross-entropy");

  const Tensor logit_s = z.index_select(0, l.valid);
  const Tensor logit_t = v.index_select(0, l.valid);
  // released: S_i = softmax(logit_s / T); T_i = softmax(logit_t / T);
  //           kd_loss = -alpha * T^2 * (T_i * log(S_i)).sum(1).mean()
  // The contract's value is the KL divergence (the same gradient): T_i * (log T_i - log S_i).
  const Tensor log_S = torch::log_softmax(logit_s / temp, 1);
  const Tensor log_T = torch::log_softmax(logit_t / temp, 1);
  const Tensor T_i = log_T.exp();
  Tensor rows = o.weight * (temp * temp) * (T_i * (log_T - log_S)).sum(1);
  if (!l.none && o.ce_weight != 0.0) {
    rows = rows + o.ce_weight * cross_entropy_rows(logit_s, single_target(l));
  }
  auto fin = finish(rows, l.valid, n, o, {z});
  return {fin.first, fin.second[0], Tensor()};
}

// ---------------------------------------------------------------------------------------------
Result dkd(const Tensor& student, const Tensor& teacher, const Tensor& labels,
           const fusedkd::DkdOptions& o) {
  check_logits(student, teacher);
  const int64_t n = student.size(0), c = student.size(1);
  const double temp = o.temperature;
  const Tensor z = leaf(student);
  const Tensor v = teacher.detach().to(torch::kFloat64);
  const Lab l = parse_labels(labels, n, c, o.ignore_index);
  TORCH_CHECK(!l.none, "DKD needs labels");

  const Tensor logit_s = z.index_select(0, l.valid);
  const Tensor logit_t = v.index_select(0, l.valid);
  const Tensor gt = single_target(l);
  const int64_t m = logit_s.size(0);
  const Tensor gt_mask = torch::zeros_like(logit_s).scatter_(1, gt, 1).to(torch::kBool);
  const Tensor other_mask = torch::ones_like(logit_s).scatter_(1, gt, 0).to(torch::kBool);

  // released: pred = softmax(logit / T); cat_mask(pred, gt_mask, other_mask) = [p_t, sum_others];
  // log(pred_student). Here the same binary distribution in log space, so that it stays
  // finite for extreme logits: [log p_t, logsumexp over the others of log p_i].
  auto binary_log = [&](const Tensor& logit) {
    const Tensor lp = torch::log_softmax(logit / temp, 1);
    const Tensor lt = lp.index({gt_mask}).reshape({m, 1});
    const Tensor lo = lp.index({other_mask}).reshape({m, c - 1}).logsumexp(1, true);
    return torch::cat({lt, lo}, 1);
  };
  const Tensor log_bs = binary_log(logit_s);
  const Tensor log_bt = binary_log(logit_t);
  // F.kl_div(log_pred_student, pred_teacher, reduction='sum') * T^2, per row
  const Tensor tckd = (log_bt.exp() * (log_bt - log_bs)).sum(1) * (temp * temp);

  // released: softmax(logit / T - 1000 * gt_mask): the non-target softmax; exact here.
  const Tensor ns = (logit_s / temp).index({other_mask}).reshape({m, c - 1});
  const Tensor nt = (logit_t / temp).index({other_mask}).reshape({m, c - 1});
  const Tensor log_S2 = torch::log_softmax(ns, 1);
  const Tensor log_T2 = torch::log_softmax(nt, 1);
  const Tensor nckd = (log_T2.exp() * (log_T2 - log_S2)).sum(1) * (temp * temp);

  Tensor rows = o.alpha * tckd + o.beta * nckd;
  if (o.ce_weight != 0.0) rows = rows + o.ce_weight * cross_entropy_rows(logit_s, gt);
  auto fin = finish(rows, l.valid, n, o, {z});
  return {fin.first, fin.second[0], Tensor()};
}

// ---------------------------------------------------------------------------------------------
Result uskd(const Tensor& student, const Tensor& weak, const Tensor& labels,
            const fusedkd::UskdOptions& o) {
  check_logits(student, weak);
  const int64_t n = student.size(0), c = student.size(1);
  const Tensor z = leaf(student);
  const Tensor w = leaf(weak);
  const Lab l = parse_labels(labels, n, c, o.ignore_index);
  TORCH_CHECK(!l.none, "USKD needs labels");
  TORCH_CHECK(!l.soft || c >= 3, "USKD with soft labels needs C >= 3");

  const Tensor logit_s = z.index_select(0, l.valid);
  const Tensor w_fc = w.index_select(0, l.valid);
  const UskdTargets tg = uskd_targets(l);
  const Tensor& label = tg.label;
  const int64_t m = logit_s.size(0), k = label.size(1);

  // soft target label: p_t = s_t**2; p_t = p_t + value - p_t.mean(0, True); p_t[value==0] = 0
  Tensor p_t;
  {
    torch::NoGradGuard ng;
    const Tensor s_t = torch::softmax(logit_s, 1).gather(1, label);
    const Tensor u = o.square ? s_t.pow(2) : s_t;  // Table 12: without the square
    switch (o.soft_target) {                        // Table 8's smoothing, over the batch
      case fusedkd::UskdSoftTarget::kMeanShift: p_t = u + tg.value - u.mean(0, true); break;
      case fusedkd::UskdSoftTarget::kSoftmax:
        p_t = torch::softmax(u, 0) * tg.value.sum(0, true);
        break;
      case fusedkd::UskdSoftTarget::kSqrtMin:
        p_t = torch::sqrt(u - std::get<0>(u.min(0, true)));
        break;
      case fusedkd::UskdSoftTarget::kMaxNorm: p_t = u / std::get<0>(u.max(0, true)); break;
      case fusedkd::UskdSoftTarget::kMeanNorm: p_t = u / u.mean(0, true); break;
    }
    p_t.masked_fill_(tg.value == 0, 0.0);
    p_t = p_t.detach();
  }
  const Tensor s_i = torch::log_softmax(logit_s, 1);
  const Tensor s_t = s_i.gather(1, label);
  const Tensor loss_t = -(p_t * s_t).sum(1);

  // weak supervision: target = (1 - eps) * y + eps / C (released: eps = 0.1)
  const double eps = o.smoothing;
  Tensor target;
  if (l.soft) {
    target = l.y * (1 - eps) + eps * torch::ones_like(l.y) / static_cast<double>(c);
  } else {
    target = torch::zeros_like(logit_s).scatter_(1, label, 1 - eps) +
             eps * torch::ones_like(logit_s).detach() / static_cast<double>(c);
  }
  target = target.detach();
  const Tensor w_log = torch::log_softmax(w_fc, 1);
  const Tensor loss_weak = -(o.mu * target * w_log).sum(1);

  // rank and soft non-target labels (constants)
  Tensor nz_i;
  const Tensor mask = torch::ones_like(logit_s).scatter_(1, label, 0).to(torch::kBool);
  {
    torch::NoGradGuard ng;
    const Tensor rank = uskd_keys(logit_s, w_fc, label, o.rank);
    const Tensor order = std::get<1>(torch::sort(rank, /*stable=*/true, 1, /*descending=*/true));
    const Tensor zipf = 1.0 / torch::arange(1, c + 1, kF64);
    const Tensor ids_sort = torch::argsort(order, /*dim=*/int64_t{1}, /*descending=*/false);
    const Tensor z_i = zipf.repeat({m, 1}).gather(1, ids_sort);
    nz_i = z_i.index({mask}).reshape({m, c - k});
    nz_i = (nz_i / nz_i.sum(1, true)).detach();
  }
  const Tensor ns_i = torch::log_softmax(logit_s.index({mask}).reshape({m, c - k}), 1);
  const Tensor loss_non = -(nz_i * ns_i).sum(1);

  // (the default's terms in the released order, so that its float64 sums stay bit for bit)
  Tensor rows = o.target ? o.alpha * loss_t : torch::zeros_like(loss_weak);
  if (o.non_target) rows = rows + o.beta * loss_non;
  rows = rows + loss_weak;
  if (o.t2) {
    // Table 15's T2 with USKD's soft labels: -(1 - sum_k P_k) log(1 - sum_k S_tk)
    rows = rows - o.alpha * (1 - p_t.sum(1)) * log_rest_mass(s_i, label);
  }
  if (o.ce_weight != 0.0) rows = rows + o.ce_weight * (-s_t.select(1, 0));
  auto fin = finish(rows, l.valid, n, o, {z, w});
  return {fin.first, fin.second[0], fin.second[1]};
}

Tensor uskd_rank_keys(const Tensor& student, const Tensor& weak, const Tensor& labels,
                      const fusedkd::UskdOptions& o) {
  check_logits(student, weak);
  const int64_t n = student.size(0), c = student.size(1);
  const Tensor z = student.detach().to(torch::kFloat64);
  const Tensor w = weak.detach().to(torch::kFloat64);
  const Lab l = parse_labels(labels, n, c, o.ignore_index);
  TORCH_CHECK(!l.none, "USKD needs labels");
  const UskdTargets tg = uskd_targets(l);
  const Tensor keys =
      uskd_keys(z.index_select(0, l.valid), w.index_select(0, l.valid), tg.label, o.rank);
  return torch::zeros({n, c}, kF64).index_copy(0, l.valid, keys);
}

}  // namespace ref
