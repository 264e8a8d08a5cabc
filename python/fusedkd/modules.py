"""The fused losses as torch.nn.Modules, with the released modules' arguments and forward
signatures (yzd-v/cls_KD NKDLoss and USKDLoss, mdistiller's DKD), so that one changed line
switches a training script to the fused loss. The mmcls config keys `name` and `use_this` are
accepted (as keywords) and ignored.

Extra keyword arguments, all with the released behaviour as default: reduction ('mean'),
ignore_index (-100), ce_weight (0.0: an added cross-entropy term). Presets: the classmethods
`imagenet()` and `cifar100()` give the released configs.
"""
from torch import nn

from . import functional as F

__all__ = ["NKDLoss", "USKDLoss", "KDLoss", "DKDLoss"]

#: USKD's rank keys (paper Table 9): the released code's, Eq. 10's, and the ablation's three.
RANKS = ("reference", "paper", "weak", "final", "combination")


class _Common(nn.Module):
    def __init__(self, reduction, ignore_index, ce_weight):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.reduction = reduction
        self.ignore_index = ignore_index
        self.ce_weight = ce_weight

    def _common(self):
        return dict(reduction=self.reduction, ignore_index=self.ignore_index,
                    ce_weight=self.ce_weight)


class NKDLoss(_Common):
    """Normalized KD. forward(logit_s, logit_t, gt_label) -> loss; the teacher gets no gradient.
    `temp` is lambda, the temperature of the non-target term; `gamma` its weight."""

    def __init__(self, temp=1.0, gamma=1.5, *, reduction="mean", ignore_index=-100,
                 ce_weight=0.0, name=None, use_this=True):
        super().__init__(reduction, ignore_index, ce_weight)
        self.temp = temp
        self.gamma = gamma

    @classmethod
    def imagenet(cls, **kwargs):
        """The released ImageNet config: temp = 1, gamma = 1.5."""
        return cls(temp=1.0, gamma=1.5, **kwargs)

    @classmethod
    def cifar100(cls, **kwargs):
        """The released CIFAR-100 config: temp = 3, gamma = 3.5."""
        return cls(temp=3.0, gamma=3.5, **kwargs)

    def forward(self, logit_s, logit_t, gt_label):
        return F.nkd_loss(logit_s, logit_t, gt_label, self.temp, self.gamma, **self._common())

    def extra_repr(self):
        return f"temp={self.temp}, gamma={self.gamma}, reduction={self.reduction!r}"


class USKDLoss(_Common):
    """Universal self-KD. forward(fea_mid, logit_s, gt_label) -> loss, as the released module.

    With `channel` given, the module owns the weak head `self.fc = nn.Linear(channel,
    num_classes)` and applies it to `fea_mid` (the intermediate feature, e.g. a CNN's pooled
    stage-2 feature or a ViT's middle class token): train `self.fc` with the model (pass the
    loss's parameters to the optimizer). With `channel=None` there is no head: pass the weak
    logits [N, C] themselves as `fea_mid` (your own head's output). Both the student logits and
    the weak logits get gradients.
    """

    def __init__(self, channel=None, alpha=1.0, beta=0.1, mu=0.005, num_classes=1000, *,
                 smoothing=0.1, rank="reference", reduction="mean", ignore_index=-100,
                 ce_weight=0.0, name=None, use_this=True):
        super().__init__(reduction, ignore_index, ce_weight)
        if rank not in RANKS:
            raise ValueError(f"rank must be one of {', '.join(map(repr, RANKS))}, got {rank!r}")
        self.channel = channel
        self.alpha = alpha
        self.beta = beta
        self.mu = mu
        self.smoothing = smoothing
        self.rank = rank
        self.fc = nn.Linear(channel, num_classes) if channel is not None else None

    @classmethod
    def imagenet(cls, channel=None, num_classes=1000, **kwargs):
        """The released ImageNet config: alpha = 1, beta = 0.1, mu = 0.005."""
        return cls(channel, alpha=1.0, beta=0.1, mu=0.005, num_classes=num_classes, **kwargs)

    @classmethod
    def cifar100(cls, channel=None, num_classes=100, **kwargs):
        """The released CIFAR-100 config: alpha = 0.1, beta = 0.1, mu = 0.1."""
        return cls(channel, alpha=0.1, beta=0.1, mu=0.1, num_classes=num_classes, **kwargs)

    def forward(self, fea_mid, logit_s, gt_label):
        weak = self.fc(fea_mid) if self.fc is not None else fea_mid
        return F.uskd_loss(logit_s, weak, gt_label, self.alpha, self.beta, self.mu,
                           smoothing=self.smoothing, rank=self.rank, **self._common())

    def extra_repr(self):
        return (f"channel={self.channel}, alpha={self.alpha}, beta={self.beta}, mu={self.mu}, "
                f"reduction={self.reduction!r}")


class KDLoss(_Common):
    """Hinton KD: alpha * temp^2 * KL(softmax(logit_t/temp) || softmax(logit_s/temp)).
    forward(logit_s, logit_t, gt_label=None) -> loss. Unlike cls_KD's KDLoss, which returns the
    tuple (1 - alpha, loss) and the cross-entropy form of the loss, this returns the loss only,
    as a KL divergence: the value differs by the teacher's entropy, the gradient is the same."""

    def __init__(self, temp=4.0, alpha=0.5, *, reduction="mean", ignore_index=-100,
                 ce_weight=0.0, name=None, use_this=True):
        super().__init__(reduction, ignore_index, ce_weight)
        self.temp = temp
        self.alpha = alpha

    def forward(self, logit_s, logit_t, gt_label=None):
        return F.kd_loss(logit_s, logit_t, self.temp, weight=self.alpha, labels=gt_label,
                         **self._common())

    def extra_repr(self):
        return f"temp={self.temp}, alpha={self.alpha}, reduction={self.reduction!r}"


class DKDLoss(_Common):
    """Decoupled KD (mdistiller's dkd_loss as a module): alpha * TCKD + beta * NCKD.
    forward(logits_student, logits_teacher, target) -> loss. mdistiller's warm-up factor
    min(epoch / warmup, 1) stays in the training loop: multiply the loss by it."""

    def __init__(self, alpha=1.0, beta=8.0, temperature=4.0, *, reduction="mean",
                 ignore_index=-100, ce_weight=0.0):
        super().__init__(reduction, ignore_index, ce_weight)
        self.alpha = alpha
        self.beta = beta
        self.temperature = temperature

    def forward(self, logits_student, logits_teacher, target):
        return F.dkd_loss(logits_student, logits_teacher, target, self.alpha, self.beta,
                          self.temperature, **self._common())

    def extra_repr(self):
        return (f"alpha={self.alpha}, beta={self.beta}, temperature={self.temperature}, "
                f"reduction={self.reduction!r}")
