"""Trains the same small student twice, once with fusedkd.NKDLoss and once with NKD written as
plain PyTorch, from the same initial weights on the same batches, and prints both losses side
by side plus the time each run took. The two columns agree to float32 rounding.

    VENV/bin/python examples/python/train_nkd.py [--steps 200] [--classes 1000]

The data: Gaussian clusters in 64 dimensions, one per class; the teacher: a wider MLP trained
with cross-entropy first. The student loss is the paper's recipe: cross-entropy + NKD.
"""
import argparse
import copy
import time

import torch
import torch.nn.functional as F
from torch import nn

import fusedkd


def plain_nkd(logit_s, logit_t, labels, temp=1.0, gamma=1.5):
    """NKD in plain PyTorch: the target term, and the non-target softmaxes (target masked out)."""
    t = labels[:, None]
    mask = torch.zeros_like(logit_s, dtype=torch.bool).scatter_(1, t, True)
    target = -(logit_t.softmax(1).gather(1, t) * logit_s.log_softmax(1).gather(1, t)).squeeze(1)
    log_shat = (logit_s / temp).masked_fill(mask, float("-inf")).log_softmax(1).masked_fill(mask, 0)
    that = (logit_t / temp).masked_fill(mask, float("-inf")).softmax(1)
    non_target = -gamma * temp ** 2 * (that * log_shat).sum(1)
    return (target + non_target).mean()


def mlp(width, classes):
    return nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, classes))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    centers = torch.randn(args.classes, 64) * 2

    def batch():
        y = torch.randint(0, args.classes, (args.batch,))
        return centers[y] + torch.randn(args.batch, 64), y

    teacher = mlp(512, args.classes)
    opt = torch.optim.Adam(teacher.parameters(), lr=1e-3)
    for _ in range(args.steps):
        x, y = batch()
        loss = F.cross_entropy(teacher(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    teacher.eval()

    batches = [batch() for _ in range(args.steps)]
    with torch.no_grad():
        teacher_logits = [teacher(x) for x, _ in batches]
    student0 = mlp(128, args.classes)

    def train(criterion):
        student = copy.deepcopy(student0)
        opt = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9)
        losses = []
        start = time.perf_counter()
        for (x, y), logit_t in zip(batches, teacher_logits):
            logit_s = student(x)
            kd = criterion(logit_s, logit_t, y)
            loss = F.cross_entropy(logit_s, y) + kd
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(kd.item())
        return losses, time.perf_counter() - start

    fused_losses, fused_time = train(fusedkd.NKDLoss(temp=1.0, gamma=1.5))
    plain_losses, plain_time = train(plain_nkd)

    print(f"{'step':>6} {'fused NKD':>12} {'plain NKD':>12}")
    every = max(1, args.steps // 10)
    for i in range(0, args.steps, every):
        print(f"{i:>6} {fused_losses[i]:>12.6f} {plain_losses[i]:>12.6f}")
    print(f"{args.steps - 1:>6} {fused_losses[-1]:>12.6f} {plain_losses[-1]:>12.6f}")
    print(f"training time: fused {fused_time:.2f} s, plain {plain_time:.2f} s "
          f"({args.steps} steps, batch {args.batch}, {args.classes} classes, "
          f"{args.threads} thread(s))")
    worst = max(abs(a - b) / max(1.0, abs(b)) for a, b in zip(fused_losses, plain_losses))
    print(f"largest relative difference between the two loss columns: {worst:.2e}")


if __name__ == "__main__":
    main()
