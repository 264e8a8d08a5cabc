"""Python-level forward + backward time of the fusedkd modules against the released PyTorch
expressions (cls_KD NKDLoss / USKDLoss, mdistiller dkd_loss), on one CPU thread, float32, hard
int64 labels, mean reduction, the released defaults.

    OMP_NUM_THREADS=1 VENV/bin/python bench/python_bench.py [--reps 7] [--json FILE] [--md FILE]

Each sample is one iteration: loss = criterion(...); loss.backward() (gradients w.r.t. the
student, and for USKD the weak logits; the weak head's matmul is left out on both sides). It
reports the median over the samples of the wall time and of the calling thread's CPU time (the
figure to trust on a machine shared with other work: one thread, so CPU time = busy time).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

import fusedkd

# ---- the released expressions, op for op (see bench/released.hpp for the same in LibTorch) ----


def released_nkd(logit_s, logit_t, gt_label, temp=1.0, gamma=1.5):
    label = gt_label.view(len(gt_label), 1)
    n, c = logit_s.shape
    s_i = F.log_softmax(logit_s, dim=1)
    t_i = F.softmax(logit_t, dim=1)
    s_t = torch.gather(s_i, 1, label)
    t_t = torch.gather(t_i, 1, label).detach()
    loss_t = -(t_t * s_t).mean()
    mask = torch.ones_like(logit_s).scatter_(1, label, 0).bool()
    logit_s = logit_s[mask].reshape(n, -1)
    logit_t = logit_t[mask].reshape(n, -1)
    S_i = F.log_softmax(logit_s / temp, dim=1)
    T_i = F.softmax(logit_t / temp, dim=1)
    loss_non = (T_i * S_i).sum(dim=1).mean()
    return loss_t - gamma * temp ** 2 * loss_non


def released_uskd(w_fc, logit_s, gt_label, zipf, alpha=1.0, beta=0.1, mu=0.005):
    label = gt_label.view(len(gt_label), 1)
    value = torch.ones_like(label)
    n, c = logit_s.shape
    s_i = F.softmax(logit_s, dim=1)
    s_t = torch.gather(s_i, 1, label)
    p_t = s_t ** 2
    p_t = p_t + value - p_t.mean(0, True)
    p_t[value == 0] = 0
    p_t = p_t.detach()
    s_i = F.log_softmax(logit_s, dim=1)
    s_t = torch.gather(s_i, 1, label)
    loss_t = -(p_t * s_t).sum(dim=1).mean()
    target = torch.zeros_like(logit_s).scatter_(1, label, 0.9) + 0.1 * torch.ones_like(logit_s) / c
    w_i = F.log_softmax(w_fc, dim=1)
    loss_weak = -(mu * target * w_i).sum(dim=1).mean()
    w_i = F.softmax(w_fc, dim=1)
    w_t = torch.gather(w_i, 1, label)
    rank = w_i / (1 - w_t.sum(1, True) + 1e-6) + s_i / (1 - s_t.sum(1, True) + 1e-6)
    _, rank = torch.sort(rank, descending=True, dim=-1)
    z_i = zipf.repeat(n, 1)
    ids_sort = torch.argsort(rank)
    z_i = torch.gather(z_i, dim=1, index=ids_sort)
    mask = torch.ones_like(logit_s).scatter_(1, label, 0).bool()
    logit_s = logit_s[mask].reshape(n, -1)
    ns_i = F.log_softmax(logit_s, dim=1)
    nz_i = z_i[mask].reshape(n, -1)
    nz_i = (nz_i / nz_i.sum(dim=1, keepdim=True)).detach()
    loss_non = -(nz_i * ns_i).sum(dim=1).mean()
    return alpha * loss_t + beta * loss_non + loss_weak


def released_dkd(logits_student, logits_teacher, target, alpha=1.0, beta=8.0, temperature=4.0):
    gt_mask = torch.zeros_like(logits_student).scatter_(1, target.unsqueeze(1), 1).bool()
    other_mask = torch.ones_like(logits_student).scatter_(1, target.unsqueeze(1), 0).bool()
    pred_student = F.softmax(logits_student / temperature, dim=1)
    pred_teacher = F.softmax(logits_teacher / temperature, dim=1)

    def cat_mask(t):
        return torch.cat([(t * gt_mask).sum(1, keepdims=True),
                          (t * other_mask).sum(1, keepdims=True)], dim=1)

    pred_student, pred_teacher = cat_mask(pred_student), cat_mask(pred_teacher)
    log_pred_student = torch.log(pred_student)
    n = target.shape[0]
    tckd = F.kl_div(log_pred_student, pred_teacher, reduction="sum") * temperature ** 2 / n
    pred_teacher_part2 = F.softmax(logits_teacher / temperature - 1000.0 * gt_mask, dim=1)
    log_pred_student_part2 = F.log_softmax(logits_student / temperature - 1000.0 * gt_mask, dim=1)
    nckd = F.kl_div(log_pred_student_part2, pred_teacher_part2, reduction="sum") * temperature ** 2 / n
    return alpha * tckd + beta * nckd


# ---- timing ------------------------------------------------------------------------------------


def measure(step, reps, min_time=0.2):
    """Median wall and thread-CPU milliseconds of one step, after a warm-up."""
    for _ in range(3):
        step()
    wall, cpu = [], []
    for _ in range(reps):
        k, w0, c0 = 0, time.perf_counter(), time.thread_time()
        while True:  # each sample runs the step for at least min_time
            step()
            k += 1
            if time.perf_counter() - w0 >= min_time:
                break
        wall.append((time.perf_counter() - w0) / k * 1e3)
        cpu.append((time.thread_time() - c0) / k * 1e3)
    return statistics.median(wall), statistics.median(cpu)


def case(loss, n, c, reps):
    g = torch.Generator().manual_seed(n + c)
    z = torch.randn(n, c, generator=g).requires_grad_()
    v = torch.randn(n, c, generator=g)
    y = torch.randint(0, c, (n,), generator=g)
    if loss == "uskd":
        v.requires_grad_()
        zipf = 1 / torch.arange(1, c + 1)
        fused_mod = fusedkd.USKDLoss()  # channel=None: takes the weak logits

        def fused():
            return fused_mod(v, z, y)

        def released():
            return released_uskd(v, z, y, zipf)
    elif loss == "nkd":
        fused_mod = fusedkd.NKDLoss()

        def fused():
            return fused_mod(z, v, y)

        def released():
            return released_nkd(z, v, y)
    else:
        fused_mod = fusedkd.DKDLoss()

        def fused():
            return fused_mod(z, v, y)

        def released():
            return released_dkd(z, v, y)

    a, b = fused(), released()
    # same loss (float32 rounding; USKD: near-tied rank keys may order differently)
    assert abs(a.item() - b.item()) <= 1e-3 * max(1.0, abs(b.item())), (loss, a.item(), b.item())

    def run(f):
        def step():
            z.grad = None
            v.grad = None
            f().backward()
        return step

    fw, fc = measure(run(fused), reps)
    rw, rc = measure(run(released), reps)
    return dict(loss=loss, n=n, c=c, fused_wall_ms=fw, fused_cpu_ms=fc, released_wall_ms=rw,
                released_cpu_ms=rc, speedup_cpu=rc / fc, speedup_wall=rw / fw)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--json")
    ap.add_argument("--md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = [case(loss, n, c, args.reps)
            for n, c in [(256, 1000), (64, 32000)] for loss in ("nkd", "uskd", "dkd")]
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except OSError:
        commit = ""
    meta = dict(cpu=cpu, cpus=os.cpu_count(), torch=torch.__version__, python=platform.python_version(),
                threads=torch.get_num_threads(), reps=args.reps, commit=commit or "unknown",
                load_average=os.getloadavg()[0],
                date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    lines = ["| loss | N | C | fused (ms) | released (ms) | speed-up | fused wall (ms) | released wall (ms) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['loss'].upper()} | {r['n']} | {r['c']} | {r['fused_cpu_ms']:.3f} | "
                     f"{r['released_cpu_ms']:.3f} | {r['speedup_cpu']:.1f}x | {r['fused_wall_ms']:.3f} | "
                     f"{r['released_wall_ms']:.3f} |")
    table = "\n".join(lines)
    print(f"{meta['cpu']}, {meta['cpus']} CPUs, torch {meta['torch']}, commit {meta['commit']}, "
          f"1 thread, median of {args.reps}, load average {meta['load_average']:.1f} at the end")
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(meta=meta, rows=rows), f, indent=1)
    if args.md:
        with open(args.md, "w") as f:
            f.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
