"""The nn.Module layer: released signatures, presets, a few training steps, bad input."""
import pytest
import torch
from torch import nn

import fusedkd
import plain

torch.set_num_threads(1)


def batch(n=16, c=10, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=g, dtype=dtype)
    y = torch.randint(0, c, (n,), generator=g)
    return x, y


def test_module_arguments_follow_the_released_ones():
    nkd = fusedkd.NKDLoss()
    assert (nkd.temp, nkd.gamma) == (1.0, 1.5)
    uskd = fusedkd.USKDLoss(channel=8)
    assert (uskd.alpha, uskd.beta, uskd.mu) == (1.0, 0.1, 0.005)
    assert tuple(uskd.fc.weight.shape) == (1000, 8)
    dkd = fusedkd.DKDLoss()
    assert (dkd.alpha, dkd.beta, dkd.temperature) == (1.0, 8.0, 4.0)
    kd = fusedkd.KDLoss()
    assert (kd.temp, kd.alpha) == (4.0, 0.5)
    # mmcls config keys are accepted
    fusedkd.NKDLoss(name="loss_nkd", use_this=True, temp=1.0, gamma=1.5)
    assert (fusedkd.NKDLoss.cifar100().temp, fusedkd.NKDLoss.cifar100().gamma) == (3.0, 3.5)
    u = fusedkd.USKDLoss.cifar100(channel=4)
    assert (u.alpha, u.beta, u.mu, u.fc.out_features) == (0.1, 0.1, 0.1, 100)


def test_module_values_match_functional_and_plain():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(6, 12, generator=g, dtype=torch.float64)
    v = torch.randn(6, 12, generator=g, dtype=torch.float64)
    y = torch.randint(0, 12, (6,), generator=g)
    torch.testing.assert_close(fusedkd.NKDLoss.cifar100()(z, v, y), plain.nkd(z, v, y, 3.0, 3.5))
    torch.testing.assert_close(fusedkd.DKDLoss(reduction="sum")(z, v, y),
                               plain.dkd(z, v, y, reduction="sum"))
    torch.testing.assert_close(fusedkd.KDLoss(temp=2.0, alpha=0.9)(z, v),
                               plain.kd(z, v, None, 2.0, 0.9))
    feat = torch.randn(6, 5, generator=g, dtype=torch.float64)
    crit = fusedkd.USKDLoss(channel=5, num_classes=12).double()
    torch.testing.assert_close(crit(feat, z, y), plain.uskd(z, crit.fc(feat), y))
    # channel=None: the first argument is the weak logits themselves
    torch.testing.assert_close(fusedkd.USKDLoss()(v, z, y), plain.uskd(z, v, y))


class Net(nn.Module):
    """A two-layer MLP that also returns its hidden feature (USKD's fea_mid)."""

    def __init__(self, c=10):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(20, 32), nn.ReLU())
        self.head = nn.Linear(32, c)

    def forward(self, x):
        f = self.body(x)
        return f, self.head(f)


@pytest.mark.parametrize("loss", ["nkd", "uskd", "dkd", "kd"])
def test_training_steps_give_the_same_parameters(loss):
    torch.manual_seed(0)
    teacher = Net().double()
    student = Net().double()
    extra_fused = fusedkd.USKDLoss(channel=32, num_classes=10).double() if loss == "uskd" else None
    twin = Net().double()
    twin.load_state_dict(student.state_dict())
    extra_plain = nn.Linear(32, 10).double()
    if extra_fused is not None:
        extra_plain.load_state_dict(extra_fused.fc.state_dict())

    fused_crit = {"nkd": fusedkd.NKDLoss(), "dkd": fusedkd.DKDLoss(), "kd": fusedkd.KDLoss(),
                  "uskd": extra_fused}[loss]

    def plain_crit(feat, logits, t_logits, y):
        if loss == "nkd":
            return plain.nkd(logits, t_logits, y)
        if loss == "dkd":
            return plain.dkd(logits, t_logits, y)
        if loss == "kd":
            return plain.kd(logits, t_logits, None, 4.0, 0.5)
        return plain.uskd(logits, extra_plain(feat), y)

    params_f = list(student.parameters()) + (list(extra_fused.parameters()) if extra_fused else [])
    params_p = list(twin.parameters()) + (list(extra_plain.parameters()) if extra_fused else [])
    opt_f = torch.optim.SGD(params_f, lr=0.5, momentum=0.9)
    opt_p = torch.optim.SGD(params_p, lr=0.5, momentum=0.9)
    for step in range(5):
        x, y = batch(seed=step)
        with torch.no_grad():
            t_logits = teacher(x)[1]
        feat, logits = student(x)
        if loss == "uskd":
            lf = fused_crit(feat, logits, y)
        else:
            lf = fused_crit(logits, t_logits, y)
        lf = lf + nn.functional.cross_entropy(logits, y)
        opt_f.zero_grad()
        lf.backward()
        opt_f.step()

        feat, logits = twin(x)
        lp = plain_crit(feat, logits, t_logits, y) + nn.functional.cross_entropy(logits, y)
        opt_p.zero_grad()
        lp.backward()
        opt_p.step()
        torch.testing.assert_close(lf, lp, rtol=1e-9, atol=1e-12)
    for a, b in zip(params_f, params_p):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert any((a - b0).abs().max() > 1e-3 for a, b0 in zip(student.parameters(),
                                                           Net().double().parameters()))


# ---- bad input: a Python exception that says what is wrong, never a crash -------------------
Z = torch.randn(4, 6)
Y = torch.tensor([0, 1, 2, 3])


@pytest.mark.parametrize("call,message", [
    (lambda: fusedkd.nkd_loss(Z.long(), Z.long(), Y), "float32, float64, float16 or bfloat16"),
    (lambda: fusedkd.nkd_loss(Z, Z.double(), Y), "same dtype"),
    (lambda: fusedkd.nkd_loss(Z, Z[:3], Y), "same shape"),
    (lambda: fusedkd.nkd_loss(Z[0], Z[0], Y), "2-D"),
    (lambda: fusedkd.nkd_loss(Z.t(), Z.t(), torch.arange(6)), "contiguous"),
    (lambda: fusedkd.nkd_loss(Z, Z, Y.float()), "soft labels must be 2-D"),
    (lambda: fusedkd.nkd_loss(Z, Z, Y.bool()), "int64 or int32"),
    (lambda: fusedkd.nkd_loss(Z, Z, Y[:3]), r"\[N\]"),
    (lambda: fusedkd.nkd_loss(Z, Z, torch.tensor([0, 1, 2, 6])), "label_out_of_range"),
    (lambda: fusedkd.nkd_loss(Z, Z, torch.tensor([0, 1, 2, -5])), "label_out_of_range"),
    (lambda: fusedkd.nkd_loss(Z, Z, Y, temp=0.0), "invalid_option"),
    (lambda: fusedkd.dkd_loss(Z, Z, Y, temperature=float("nan")), "invalid_option"),
    (lambda: fusedkd.nkd_loss(Z, Z, Y, reduction="avg"), "reduction must be"),
    (lambda: fusedkd.uskd_loss(Z, Z, Y, rank="zipf"), "rank must be"),
    (lambda: fusedkd.dkd_loss(Z, Z, None), "labels"),
    (lambda: fusedkd.kd_loss(Z, Z, ce_weight=1.0), "ce_weight needs labels"),
    (lambda: fusedkd.nkd_loss(Z, Z, torch.zeros(4, 6)), "no positive entry"),
    (lambda: fusedkd.nkd_loss(Z[:, :1], Z[:, :1], torch.zeros(4, dtype=torch.long)), "too_few_classes"),
    (lambda: fusedkd.nkd_loss(Z.to("meta"), Z.to("meta"), Y.to("meta")), "CPU or a CUDA"),
    (lambda: fusedkd.nkd_loss(Z, Z, Y.to("meta")), "labels are on"),
])
def test_bad_input_raises(call, message):
    with pytest.raises(RuntimeError, match=message):
        call()


def test_ops_work_in_torchscript():
    @torch.jit.script
    def scripted(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.ops.fusedkd.nkd(s, t, y, 2.0, 1.0, "sum", -100, 0.0)

    s = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    t = torch.randn(4, 6, dtype=torch.float64)
    out = scripted(s, t, Y)
    torch.testing.assert_close(out, plain.nkd(s.detach(), t, Y, 2.0, 1.0, reduction="sum"))
    out.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()


def test_bad_module_arguments():
    with pytest.raises(ValueError, match="reduction"):
        fusedkd.NKDLoss(reduction="avg")
    with pytest.raises(ValueError, match="rank"):
        fusedkd.USKDLoss(rank="zipf")
