"""fusedkd's Python package against plain PyTorch expressions of the losses (plain.py)."""
import itertools

import pytest
import torch

import fusedkd
import plain

torch.set_num_threads(1)

LOSSES = ["nkd", "kd", "dkd", "uskd"]
LABELS = ["hard", "hard32", "ignore", "soft", "none"]
REDUCTIONS = ["mean", "sum", "none"]


def make(n, c, label_kind, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(n, c, generator=g, dtype=torch.float64) * 2).to(dtype)
    v = (torch.randn(n, c, generator=g, dtype=torch.float64) * 2).to(dtype)
    if label_kind in ("hard", "hard32", "ignore"):
        y = torch.randint(0, c, (n,), generator=g)
        if label_kind == "ignore":
            y[::3] = -1
        if label_kind == "hard32":
            y = y.int()
    elif label_kind == "soft":  # mixup of two one-hots with a random weight per row
        a = torch.randint(0, c, (n,), generator=g)
        b = torch.randint(0, c, (n,), generator=g)
        # weights k / 8: exact in float32, which is what the library reads soft labels in
        lam = torch.randint(2, 7, (n, 1), generator=g).double() / 8
        y = (lam * torch.nn.functional.one_hot(a, c) + (1 - lam) * torch.nn.functional.one_hot(b, c))
        y = y.to(dtype)
    else:
        y = None
    return z, v, y


def fused(loss, z, b, y, opts):
    if loss == "nkd":
        return fusedkd.nkd_loss(z, b, y, opts["temp"], opts["gamma"], **opts["common"])
    if loss == "kd":
        return fusedkd.kd_loss(z, b, opts["temp"], weight=opts["weight"], labels=y, **opts["common"])
    if loss == "dkd":
        return fusedkd.dkd_loss(z, b, y, opts["alpha"], opts["beta"], opts["temp"], **opts["common"])
    return fusedkd.uskd_loss(z, b, y, opts["alpha"], opts["beta"], opts["mu"], rank=opts["rank"],
                             **opts["common"])


def reference(loss, z, b, y, opts):
    c = opts["common"]
    if loss == "nkd":
        return plain.nkd(z, b, y, opts["temp"], opts["gamma"], **c)
    if loss == "kd":
        return plain.kd(z, b, y, opts["temp"], opts["weight"], **c)
    if loss == "dkd":
        return plain.dkd(z, b, y, opts["alpha"], opts["beta"], opts["temp"], **c)
    return plain.uskd(z, b, y, opts["alpha"], opts["beta"], opts["mu"], rank=opts["rank"], **c)


def options(loss, reduction, ignore_index, ce_weight, variant):
    """Two option sets per loss: the defaults and a non-default one."""
    o = {"common": dict(reduction=reduction, ignore_index=ignore_index, ce_weight=ce_weight)}
    if loss == "nkd":
        o.update(temp=[1.0, 3.0][variant], gamma=[1.5, 3.5][variant])
    elif loss == "kd":
        o.update(temp=[4.0, 2.0][variant], weight=[1.0, 0.5][variant])
    elif loss == "dkd":
        o.update(alpha=[1.0, 0.5][variant], beta=[8.0, 2.0][variant], temp=[4.0, 1.5][variant])
    else:
        o.update(alpha=[1.0, 0.1][variant], beta=[0.1, 0.1][variant], mu=[0.005, 0.1][variant],
                 rank=["reference", "paper"][variant])
    return o


def valid(loss, label_kind, ce_weight):
    if label_kind == "none":
        return loss == "kd" and ce_weight == 0.0
    return True


CASES = [c for c in itertools.product(LOSSES, LABELS, REDUCTIONS, [0.0, 0.7], [0, 1])
         if valid(c[0], c[1], c[3])]


def compare(loss, n, c, label_kind, reduction, ce_weight, variant, dtype, rtol, atol):
    ignore_index = -1 if label_kind == "ignore" else -100
    z, v, y = make(n, c, label_kind, dtype, seed=n * 131 + c)
    opts = options(loss, reduction, ignore_index, ce_weight, variant)
    zf = z.clone().requires_grad_()
    vf = v.clone().requires_grad_(loss == "uskd")
    out = fused(loss, zf, vf, y, opts)
    zr = z.double().requires_grad_()
    vr = v.double().requires_grad_(loss == "uskd")
    yr = y.double() if y is not None and y.is_floating_point() else y
    ref = reference(loss, zr, vr, yr, opts)
    assert out.dtype == dtype and out.shape == ref.shape
    torch.testing.assert_close(out.double(), ref.detach(), rtol=rtol, atol=atol)
    # the gradient of a weighted sum tests the per-row scaling of backward (reduction none)
    weights = torch.linspace(0.5, 1.5, n, dtype=torch.float64) if reduction == "none" else torch.tensor(1.3, dtype=torch.float64)
    (out * weights.to(dtype)).sum().backward()
    (ref * weights).sum().backward()
    torch.testing.assert_close(zf.grad.double(), zr.grad, rtol=rtol, atol=atol)
    if loss == "uskd":
        torch.testing.assert_close(vf.grad.double(), vr.grad, rtol=rtol, atol=atol)
    else:
        assert vf.grad is None  # the teacher is a constant


@pytest.mark.parametrize("loss,label_kind,reduction,ce_weight,variant", CASES)
def test_matches_plain_float64(loss, label_kind, reduction, ce_weight, variant):
    compare(loss, 13, 37, label_kind, reduction, ce_weight, variant, torch.float64, 1e-9, 1e-11)


@pytest.mark.parametrize("rank", ["reference", "paper", "weak", "final", "combination"])
@pytest.mark.parametrize("label_kind", ["ignore", "soft"])
def test_uskd_rank_keys(rank, label_kind):
    z, w, y = make(11, 29, label_kind, seed=5)
    ignore_index = -1 if label_kind == "ignore" else -100
    zf, wf = z.clone().requires_grad_(), w.clone().requires_grad_()
    out = fusedkd.uskd_loss(zf, wf, y, beta=1.0, rank=rank, reduction="sum",
                            ignore_index=ignore_index)
    zr, wr = z.clone().requires_grad_(), w.clone().requires_grad_()
    ref = plain.uskd(zr, wr, y, beta=1.0, rank=rank, reduction="sum", ignore_index=ignore_index)
    torch.testing.assert_close(out, ref.detach(), rtol=1e-9, atol=1e-11)
    out.backward()
    ref.backward()
    torch.testing.assert_close(zf.grad, zr.grad, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(wf.grad, wr.grad, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("n,c", [(1, 3), (7, 1000), (4, 5003)])
def test_shapes_float32(loss, n, c):
    compare(loss, n, c, "hard", "mean", 0.0, 0, torch.float32, 2e-4, 2e-6)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types_on_cpu(loss, dtype):
    # computed in float32 from the rounded inputs, results rounded back
    compare(loss, 8, 50, "hard", "mean", 0.0, 0, dtype, 2e-2, 2e-3)


def test_strided_rows_no_copy_needed():
    z, v, y = make(6, 40, "hard")
    wide = torch.randn(6, 64, dtype=torch.float64)
    wide[:, 3:43] = z
    zs = wide[:, 3:43].requires_grad_()
    out = fusedkd.nkd_loss(zs, v, y)
    ref_z = z.clone().requires_grad_()
    ref = plain.nkd(ref_z, v, y)
    torch.testing.assert_close(out, ref.detach())
    out.backward()
    ref.backward()
    torch.testing.assert_close(zs.grad, ref_z.grad)


def test_no_grad_and_empty_batch():
    z, v, y = make(5, 10, "hard")
    with torch.no_grad():
        out = fusedkd.nkd_loss(z.requires_grad_(), v, y)
    assert out.grad_fn is None
    torch.testing.assert_close(out, plain.nkd(z.detach(), v, y))
    empty = torch.zeros(0, 10, dtype=torch.float64)
    assert fusedkd.nkd_loss(empty, empty, torch.zeros(0, dtype=torch.long)).item() == 0.0
    assert fusedkd.uskd_loss(empty, empty, torch.zeros(0, dtype=torch.long),
                             reduction="none").shape == (0,)


@pytest.mark.parametrize("loss", LOSSES)
def test_gradcheck_float64(loss):
    z, v, y = make(4, 9, "ignore" if loss != "kd" else "hard")
    y = torch.where(y == -1, torch.full_like(y, -100), y)
    for reduction in ("mean", "none"):
        if loss == "uskd":
            # dL/dw is a true derivative; dL/dz is not (P_k uses the batch's S_t, detached, as
            # the released code does), so z is compared with plain.py above instead.
            def f(w, reduction=reduction):
                return fusedkd.uskd_loss(z, w, y, reduction=reduction, mu=0.3)
            args = (v.clone().requires_grad_(),)
        else:
            def f(s, reduction=reduction):
                return fused(loss, s, v, y, options(loss, reduction, -100, 0.5, 1))
            args = (z.clone().requires_grad_(),)
        assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_ops_are_registered():
    z, v, y = make(3, 6, "hard")
    a = torch.ops.fusedkd.nkd(z, v, y, temperature=2.0, gamma=1.0)
    b = fusedkd.NKDLoss(temp=2.0, gamma=1.0)(z, v, y)
    assert torch.equal(a, b)
    for name in ("nkd", "kd", "dkd", "uskd"):
        assert hasattr(torch.ops.fusedkd, name)
