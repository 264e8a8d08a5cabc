#!/usr/bin/env python3
"""The JAX peer of the CPU benchmark: the four losses as plain JAX expressions of the contract
(/work/shared/DESIGN.md section 1, written here from the formulas, not from the released code),
compiled by XLA as jax.jit(jax.value_and_grad(loss)), forward + backward, on one CPU thread.

    jax_peer.py --shapes 256x1000,64x32000 --losses nkd,kd,dkd,uskd --reps 5 --out jax.json

Same inputs as bench/cpu_bench.cpp draws (the same recipe: student ~ 2 N(0,1), teacher = 0.7 z +
1.5 N(0,1), labels mostly the teacher's argmax; not the same random stream, which does not
matter for the time), the same options (NKD lambda = 1 and the CIFAR preset lambda = 3, gamma =
3.5; KD T = 4 without labels; DKD T = 4, alpha = 1, beta = 8; USKD's ImageNet defaults, rank
key in the reference mode). Gradients: w.r.t. the student (NKD, KD, DKD), the student and the
weak logits (USKD). Writes one JSON record per (loss, shape): the median over --reps timings of
--iters calls each, in microseconds per call.

One thread: run it with XLA_FLAGS="--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1" under `taskset -c 0` (scripts/bench.sh does both).
"""
import argparse
import json
import statistics
import sys
import time

import numpy as np

import jax
import jax.numpy as jnp

jax.config.update("jax_platform_name", "cpu")


def pick(x, idx):
    """x[r, idx[r]] for every row r."""
    return jnp.take_along_axis(x, idx[:, None], axis=1)[:, 0]


def nkd(z, v, labels, lam=1.0, gamma=1.5):
    # L = -T_t log S_t - gamma lam^2 sum_{i != t} That_i log Shat_i, teacher constant.
    v = jax.lax.stop_gradient(v)
    c = z.shape[1]
    target = jax.nn.one_hot(labels, c, dtype=bool)
    log_s = jax.nn.log_softmax(z, axis=1)
    t_t = pick(jax.nn.softmax(v, axis=1), labels)
    hidden = jnp.where(target, -jnp.inf, 0.0)
    log_s_hat = jax.nn.log_softmax(z / lam + hidden, axis=1)
    t_hat = jax.nn.softmax(v / lam + hidden, axis=1)
    non = jnp.sum(jnp.where(target, 0.0, t_hat * log_s_hat), axis=1)
    return jnp.mean(-t_t * pick(log_s, labels) - gamma * lam * lam * non)


def kd(z, v, temp=4.0, weight=1.0):
    # L = weight T^2 KL(softmax(v/T) || softmax(z/T)), no labels.
    v = jax.lax.stop_gradient(v)
    log_p = jax.nn.log_softmax(z / temp, axis=1)
    log_q = jax.nn.log_softmax(v / temp, axis=1)
    kl = jnp.sum(jnp.exp(log_q) * (log_q - log_p), axis=1)
    return jnp.mean(weight * temp * temp * kl)


def dkd(z, v, labels, temp=4.0, alpha=1.0, beta=8.0):
    # TCKD on the binary [p_t, 1 - p_t] pair, NCKD on the non-target softmaxes, both at T.
    v = jax.lax.stop_gradient(v)
    c = z.shape[1]
    target = jax.nn.one_hot(labels, c, dtype=bool)
    log_p = jax.nn.log_softmax(z / temp, axis=1)
    log_q = jax.nn.log_softmax(v / temp, axis=1)
    log_pt, log_qt = pick(log_p, labels), pick(log_q, labels)
    log_pn, log_qn = jnp.log1p(-jnp.exp(log_pt)), jnp.log1p(-jnp.exp(log_qt))
    tckd = jnp.exp(log_qt) * (log_qt - log_pt) + jnp.exp(log_qn) * (log_qn - log_pn)
    hidden = jnp.where(target, -jnp.inf, 0.0)
    log_p_hat = jax.nn.log_softmax(z / temp + hidden, axis=1)
    log_q_hat = jax.nn.log_softmax(v / temp + hidden, axis=1)
    nckd = jnp.sum(jnp.where(target, 0.0, jnp.exp(log_q_hat) * (log_q_hat - log_p_hat)), axis=1)
    return jnp.mean(temp * temp * (alpha * tckd + beta * nckd))


def uskd(z, w, labels, alpha=1.0, beta=0.1, mu=0.005, eps=0.1):
    # Hard labels: one target t with value 1.
    c = z.shape[1]
    target = jax.nn.one_hot(labels, c, dtype=bool)
    log_s = jax.nn.log_softmax(z, axis=1)
    log_w = jax.nn.log_softmax(w, axis=1)
    s_t = pick(jnp.exp(log_s), labels)
    sq = jax.lax.stop_gradient(s_t * s_t)
    p = sq + 1.0 - jnp.mean(sq)  # soft target, a constant
    l_target = -p * pick(log_s, labels)
    q = (1.0 - eps) * target + eps / c
    l_weak = -mu * jnp.sum(q * log_w, axis=1)
    # Rank key R (reference mode: X = log S), sorted descending, ties by the lower index; the
    # Zipf labels 1/rank over the non-targets, renormalized. All constants.
    ws, xs = jax.lax.stop_gradient(jnp.exp(log_w)), jax.lax.stop_gradient(log_s)
    r = ws / (1.0 - pick(ws, labels) + 1e-6)[:, None] + xs / (1.0 - pick(xs, labels) + 1e-6)[:, None]
    order = jnp.argsort(-r, axis=1, stable=True)
    rows = jnp.arange(z.shape[0])[:, None]
    rank = jnp.zeros_like(order).at[rows, order].set(jnp.arange(1, c + 1)[None, :])
    zipf = jnp.where(target, 0.0, 1.0 / rank)
    zipf = zipf / jnp.sum(zipf, axis=1, keepdims=True)
    log_s_hat = jax.nn.log_softmax(z + jnp.where(target, -jnp.inf, 0.0), axis=1)
    l_non = -jnp.sum(jnp.where(target, 0.0, zipf * log_s_hat), axis=1)
    return jnp.mean(alpha * l_target + beta * l_non + l_weak)


CASES = {
    "nkd": (lambda z, v, y: nkd(z, v, y), 0),
    "nkd_l3": (lambda z, v, y: nkd(z, v, y, lam=3.0, gamma=3.5), 0),
    "kd": (lambda z, v, y: kd(z, v), 0),
    "dkd": (lambda z, v, y: dkd(z, v, y), 0),
    "uskd": (lambda z, w, y: uskd(z, w, y), (0, 1)),
}


def inputs(n, c, seed):
    rng = np.random.default_rng(seed)
    z = (2.0 * rng.standard_normal((n, c))).astype(np.float32)
    v = (0.7 * z + 1.5 * rng.standard_normal((n, c))).astype(np.float32)
    best = np.argmax(v, axis=1)
    labels = np.where(rng.random(n) < 0.7, best, rng.integers(0, c, n)).astype(np.int32)
    return jnp.asarray(z), jnp.asarray(v), jnp.asarray(labels)


def time_case(name, n, c, reps, iters, clock=time.perf_counter):
    fn, argnums = CASES[name]
    step = jax.jit(jax.value_and_grad(fn, argnums=argnums))
    z, v, y = inputs(n, c, 12345 + n * 7 + c)
    jax.block_until_ready(step(z, v, y))  # compile + warm-up
    times = []
    for _ in range(reps):
        t0 = clock()
        for _ in range(iters):
            out = step(z, v, y)
        jax.block_until_ready(out)
        times.append((clock() - t0) / iters * 1e6)
    return statistics.median(times)


# The conformance cases these expressions are checked against (expected values from the float64
# reference of the tests), with the expression each needs.
CHECKS = {
    "nkd_f32_basic": lambda o: ((lambda z, v, y: nkd(z, v, y, o["temperature"], o["gamma"])), 0),
    "nkd_f32_cifar_preset": lambda o: ((lambda z, v, y: nkd(z, v, y, o["temperature"], o["gamma"])), 0),
    "kd_f32_no_labels": lambda o: ((lambda z, v, y: kd(z, v, o["temperature"], o["weight"])), 0),
    "dkd_f32_basic": lambda o: ((lambda z, v, y: dkd(z, v, y, o["temperature"], o["alpha"], o["beta"])), 0),
    "uskd_f32_basic": lambda o: ((lambda z, w, y: uskd(z, w, y, o["alpha"], o["beta"], o["mu"], o["smoothing"])), (0, 1)),
}


def check(cases):
    """Each expression against its conformance case: loss and gradients within 1e-4 relative."""
    import os

    ok = True
    for name, make in CHECKS.items():
        d = os.path.join(cases, name)
        with open(os.path.join(d, "case.json")) as f:
            case = json.load(f)
        fn, argnums = make(case["options"])
        ins = case["inputs"]
        z = jnp.asarray(np.load(os.path.join(d, ins["student"])))
        v = jnp.asarray(np.load(os.path.join(d, ins.get("teacher", ins.get("weak")))))
        y = jnp.asarray(np.load(os.path.join(d, ins["labels"])).astype(np.int32)) if "labels" in ins else None
        loss, grads = jax.value_and_grad(fn, argnums=argnums)(z, v, y)
        grads = grads if isinstance(grads, tuple) else (grads,)
        exp = case["expected"]
        want = [np.load(os.path.join(d, exp["grad_student"]))]
        if "grad_weak" in exp:
            want.append(np.load(os.path.join(d, exp["grad_weak"])))
        want_loss = float(np.load(os.path.join(d, exp["loss"])).reshape(-1)[0])
        err = abs(float(loss) - want_loss) / max(1.0, abs(want_loss))
        for g, w in zip(grads, want):
            err = max(err, float(np.max(np.abs(np.asarray(g) - w))) / max(1e-30, float(np.max(np.abs(w)))))
        good = err < 1e-4
        ok = ok and good
        print(f"jax check {name}: loss {float(loss):.6g} vs {want_loss:.6g}, worst relative error {err:.2e} "
              f"{'ok' if good else 'MISMATCH'}", flush=True)
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="256x1000,64x32000")
    ap.add_argument("--losses", default="nkd,kd,dkd,uskd")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.2, help="seconds per repetition, about")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time by the process's CPU time (all its threads) instead of wall time, "
                    "like the one-thread rows of fusedkd_bench_cpu under scripts/bench.sh --cpu-time")
    ap.add_argument("--out")
    ap.add_argument("--check", metavar="CASES", help="check the expressions against the conformance "
                    "cases in CASES (tests/conformance/cases) and exit: status 1 on a mismatch")
    args = ap.parse_args()
    if args.check:
        return 0 if check(args.check) else 1
    records = []
    for shape in args.shapes.split(","):
        n, c = (int(x) for x in shape.split("x"))
        for name in args.losses.split(","):
            if name == "nkd_l3" and c > 1000:
                continue  # like cpu_bench: the CIFAR preset only at image-classification shapes
            clock = time.process_time if args.cpu_time else time.perf_counter
            once = time_case(name, n, c, 1, 1)
            iters = max(1, int(args.min_time * 1e6 / max(once, 1.0)))
            us = time_case(name, n, c, args.reps, iters, clock)
            records.append({"loss": name, "N": n, "C": c, "T": 1, "time_us": us, "iters": iters})
            print(f"jax {name} N={n} C={c}: {us:.1f} us", flush=True)
    doc = {"context": {"jax_version": jax.__version__, "backend": jax.default_backend(),
                       "clock": "process CPU time" if args.cpu_time else "wall time",
                       "devices": str(jax.devices())}, "runs": records}
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
