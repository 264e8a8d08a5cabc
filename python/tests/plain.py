"""The four losses as plain PyTorch expressions, the yardstick of the tests.

Written from DESIGN.md §1 (not from the library, nor op for op from the released code): each
loss is a per-row expression over the whole row, with the target entries removed from the
non-target softmaxes by masking (-inf before the softmax, 0 after). Autograd differentiates
them; teachers, soft targets, the USKD P_k and Zipf labels are detached constants.
"""
import torch

NEG_INF = float("-inf")


def targets(labels, n, c, ignore_index, two=False):
    """(t [N, K] long, values [N, K], keep [N] bool, soft y [N, C] or None). Hard labels: K = 1,
    value 1, ignored rows get target 0 and keep = False. Soft labels: the first maximum of each
    row (K = 1) or the two largest entries, lower index first on ties (K = 2)."""
    if labels is None:
        return None, None, torch.ones(n, dtype=torch.bool), None
    if labels.is_floating_point():
        y = labels.detach().double()
        order = torch.sort(y, dim=1, descending=True, stable=True).indices
        t = order[:, :2] if two else order[:, :1]
        return t, y.gather(1, t), torch.ones(n, dtype=torch.bool), y
    keep = labels != ignore_index
    t = torch.where(keep, labels.long(), torch.zeros_like(labels.long()))[:, None]
    return t, torch.ones(n, 1, dtype=torch.float64), keep, None


def target_mask(t, c):
    return torch.zeros(t.shape[0], c, dtype=torch.bool).scatter_(1, t, True)


def non_target_log_softmax(x, mask):
    """log of the softmax over the entries outside `mask`; 0 at the masked entries."""
    return x.masked_fill(mask, NEG_INF).log_softmax(1).masked_fill(mask, 0.0)


def reduce(rows, keep, reduction):
    rows = torch.where(keep, rows, torch.zeros_like(rows))
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    return rows.sum() / keep.sum().clamp(min=1)


def nkd(z, v, labels, temp=1.0, gamma=1.5, reduction="mean", ignore_index=-100, ce_weight=0.0):
    n, c = z.shape
    t, _, keep, _ = targets(labels, n, c, ignore_index)
    v = v.detach()
    mask = target_mask(t, c)
    log_s_t = z.log_softmax(1).gather(1, t)[:, 0]
    teacher_t = v.softmax(1).gather(1, t)[:, 0]
    log_shat = non_target_log_softmax(z / temp, mask)
    that = non_target_log_softmax(v / temp, mask).exp().masked_fill(mask, 0.0)
    rows = -teacher_t * log_s_t - gamma * temp ** 2 * (that * log_shat).sum(1)
    return reduce(rows - ce_weight * log_s_t, keep, reduction)


def kd(z, v, labels=None, temp=4.0, weight=1.0, reduction="mean", ignore_index=-100,
       ce_weight=0.0):
    n, c = z.shape
    t, _, keep, _ = targets(labels, n, c, ignore_index)
    log_p = (z / temp).log_softmax(1)
    log_q = (v.detach() / temp).log_softmax(1)
    rows = weight * temp ** 2 * (log_q.exp() * (log_q - log_p)).sum(1)
    if ce_weight != 0.0:
        rows = rows - ce_weight * z.log_softmax(1).gather(1, t)[:, 0]
    return reduce(rows, keep, reduction)


def dkd(z, v, labels, alpha=1.0, beta=8.0, temp=4.0, reduction="mean", ignore_index=-100,
        ce_weight=0.0):
    n, c = z.shape
    t, _, keep, _ = targets(labels, n, c, ignore_index)
    mask = target_mask(t, c)
    v = v.detach()

    def binary(x):  # log [p_t, 1 - p_t] at temperature T
        lp = (x / temp).log_softmax(1)
        return torch.stack([lp.gather(1, t)[:, 0], lp.masked_fill(mask, NEG_INF).logsumexp(1)], 1)

    bs, bt = binary(z), binary(v)
    tckd = (bt.exp() * (bt - bs)).sum(1)
    ls, lt = non_target_log_softmax(z / temp, mask), non_target_log_softmax(v / temp, mask)
    nckd = (lt.exp().masked_fill(mask, 0.0) * (lt - ls)).sum(1)
    rows = temp ** 2 * (alpha * tckd + beta * nckd)
    rows = rows - ce_weight * z.log_softmax(1).gather(1, t)[:, 0]
    return reduce(rows, keep, reduction)


def uskd(z, w, labels, alpha=1.0, beta=0.1, mu=0.005, smoothing=0.1, rank="reference",
         reduction="mean", ignore_index=-100, ce_weight=0.0):
    n, c = z.shape
    soft = labels.is_floating_point()
    t, value, keep, y = targets(labels, n, c, ignore_index, two=True)
    value = value.to(z.dtype)
    mask = target_mask(t, c)
    log_s = z.log_softmax(1)
    log_s_t = log_s.gather(1, t)

    # P_k = S_tk^2 + V_k - mean over the kept rows of S_tk^2; 0 where V_k = 0
    sq = log_s_t.detach().exp() ** 2
    mean_sq = (sq * keep[:, None]).sum(0, keepdim=True) / keep.sum().clamp(min=1)
    p = torch.where(value == 0, torch.zeros_like(sq), sq + value - mean_sq)
    target_term = -(p * log_s_t).sum(1)

    # weak head: smoothed one-hot (or the soft labels) against log softmax(w)
    q = (y.to(z.dtype) if soft else target_mask(t, c).to(z.dtype)) * (1 - smoothing) + smoothing / c
    weak_term = -mu * (q * w.log_softmax(1)).sum(1)

    # Zipf labels from the rank of R = W / (1 - W_t) + X / (1 - X_t), stable, descending
    with torch.no_grad():
        wp = w.softmax(1)
        x = log_s if rank == "reference" else log_s.exp()
        key = (wp / (1 - wp.gather(1, t).sum(1, keepdim=True) + 1e-6)
               + x / (1 - x.gather(1, t).sum(1, keepdim=True) + 1e-6))
        key = {"weak": wp, "final": log_s.exp(), "combination": wp + log_s.exp()}.get(rank, key)
        order = torch.sort(key, dim=1, descending=True, stable=True).indices
        position = torch.empty_like(order).scatter_(1, order, torch.arange(c).expand(n, c))
        zipf = (1.0 / (position + 1).to(z.dtype)).masked_fill(mask, 0.0)
        zhat = zipf / zipf.sum(1, keepdim=True)
    non_term = -(zhat * non_target_log_softmax(z, mask)).sum(1)

    rows = alpha * target_term + beta * non_term + weak_term - ce_weight * log_s_t[:, 0]
    return reduce(rows, keep, reduction)
