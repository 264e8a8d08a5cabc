#!/usr/bin/env python3
"""Turns the JSON of fusedkd_bench_cpu / fusedkd_bench_cuda into Markdown tables and PNG plots.

    plot_bench.py --cpu cpu.json [--jax jax.json] [--cuda cuda.json] --out docs/benchmarks

Writes <out>/cpu_table.md, <out>/cpu.png (and cuda_table.md, cuda.png), and refreshes the tables
between the <!-- BEGIN name --> / <!-- END name --> markers of <out>/README.md when they exist.

Benchmark names (see bench/cpu_bench.cpp and bench/cuda_bench.cu):
    CPU:  <loss>/<fused|eager|expbound>/N:<n>/C:<c>/T:<threads>, copy3|copy4/memcpy/N/C/T,
          dram/memcpy/T
    JAX:  bench/jax_peer.py's records {loss, N, C, T, time_us}
    CUDA: <loss>/<fused|unfused|torch>/<f32|bf16>/N:<n>/C:<c>, copy/d2d/<bytes>
Every time is the median aggregate over the repetitions (real time; CUDA: event time).
"""
import argparse
import json
import math
import os
import re
import sys

LOSS_ORDER = ["nkd", "nkd_l3", "kd", "dkd", "uskd"]
LOSS_TITLE = {
    "nkd": "NKD (lambda=1)",
    "nkd_l3": "NKD (lambda=3)",
    "kd": "KD (T=4)",
    "dkd": "DKD (T=4)",
    "uskd": "USKD",
}


def load_medians(path, cpu_time_single_thread=False):
    """{run_name: {time_us, counters...}} from the median aggregates of a Google Benchmark JSON.

    cpu_time_single_thread: for the one-thread CPU rows (T:1) take the CPU time of the calling
    thread instead of the wall time (on a machine shared with other work; the one-thread calls,
    fused and LibTorch alike, run entirely on the calling thread)."""
    with open(path) as f:
        doc = json.load(f)
    out = {}
    for b in doc.get("benchmarks", []):
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        if "error_occurred" in b and b["error_occurred"]:
            continue
        name = b.get("run_name", b["name"])
        # strip the decorations Google Benchmark appends
        name = re.sub(r"/(min_time|repeats|real_time|manual_time|iterations)(:[^/]*)?", "", name)
        unit = b.get("time_unit", "ns")
        scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[unit]
        rec = dict(b)
        t = b["real_time"]
        if cpu_time_single_thread and re.search(r"/T:1(/|$)", name):
            t = b["cpu_time"]
        rec["time_us"] = t * scale
        if "bytes_per_second" in rec and rec.get("ideal_bytes"):
            rec["bytes_per_second"] = rec["ideal_bytes"] / (rec["time_us"] * 1e-6)
        out[name] = rec
    return doc.get("context", {}), out


def parse_name(name):
    parts = name.split("/")
    key = {"loss": parts[0], "method": parts[1] if len(parts) > 1 else ""}
    for p in parts[2:]:
        if ":" in p:
            k, v = p.split(":", 1)
            key[k] = v
        else:
            key.setdefault("dtype", p)
    return key


def fmt_time(us):
    if us is None:
        return "–"
    if us >= 1e5:
        return f"{us / 1e3:.0f} ms"
    if us >= 1e3:
        return f"{us / 1e3:.2f} ms"
    if us >= 100:
        return f"{us:.0f} µs"
    return f"{us:.1f} µs"


def fmt_bytes(b):
    if b is None:
        return "–"
    b = float(b)
    if b < 0:
        b = 0.0
    for unit, s in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= s:
            return f"{b / s:.1f} {unit}"
    return f"{b:.0f} B"


def fmt_ratio(a, b):
    if a is None or b is None or b <= 0:
        return "–"
    return f"{a / b:.1f}x"


def grid(plt, count):
    """A figure with `count` panels, at most 3 per row; returns (figure, flat list of axes)."""
    cols = min(3, max(1, count))
    rows = (count + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.0 * cols, 4.2 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[count:]:
        ax.axis("off")
    return fig, flat[:count]


# ---- CPU ------------------------------------------------------------------------------------
def load_jax(path):
    """{(loss, N, C, T): time_us} from bench/jax_peer.py's JSON."""
    with open(path) as f:
        doc = json.load(f)
    return doc.get("context", {}), {(r["loss"], r["N"], r["C"], r["T"]): r["time_us"] for r in doc.get("runs", [])}


def cpu_rows(runs, jax_runs):
    """Rows of the CPU table, one per (loss, N, C, threads)."""
    fused = {}
    for name, r in runs.items():
        k = parse_name(name)
        if k["method"] in ("fused", "eager"):
            fused.setdefault((k["loss"], int(k["N"]), int(k["C"]), int(k["T"])), {})[k["method"]] = r
    copies, bounds = {}, {}
    for name, r in runs.items():
        k = parse_name(name)
        if k["method"] == "memcpy" and k["loss"].startswith("copy"):
            copies[(int(k["loss"][4:]), int(k["N"]), int(k["C"]), int(k["T"]))] = r
        if k["method"] == "expbound":
            bounds[(k["loss"], int(k["N"]), int(k["C"]))] = r
    rows = []
    for (loss, n, c, t), m in fused.items():
        moved = 4 if loss == "uskd" else 3
        copy = copies.get((moved, n, c, t))
        bound = bounds.get((loss, n, c)) if t == 1 else None
        f, e = m.get("fused"), m.get("eager")
        any_run = f or e
        ideal = any_run.get("ideal_bytes") if any_run else None
        rows.append(
            {
                "loss": loss,
                "N": n,
                "C": c,
                "T": t,
                "fused_us": f["time_us"] if f else None,
                "jax_us": (jax_runs or {}).get((loss, n, c, t)),
                "eager_us": e["time_us"] if e else None,
                "copy_us": copy["time_us"] if copy else None,
                "exp_us": bound["time_us"] if bound else None,
                "ideal": ideal,
                "fused_peak": f.get("peak_extra_bytes") if f else None,
                "eager_peak": e.get("peak_extra_bytes") if e else None,
            }
        )
    rows.sort(key=lambda r: (LOSS_ORDER.index(r["loss"]) if r["loss"] in LOSS_ORDER else 99, r["T"], r["C"], r["N"]))
    return rows


def cpu_table(rows, have_jax):
    head = ["loss", "N", "C", "threads", "fused", "of exp bound", "of memcpy"]
    if have_jax:
        head += ["JAX (XLA)", "vs JAX"]
    head += ["released (LibTorch eager)", "vs released", "fused GB/s", "peak extra fused", "peak extra eager"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r in rows:
        best = r["fused_us"]
        gbs = r["ideal"] / (best * 1e-6) / 1e9 if (best and r["ideal"]) else None
        frac = r["copy_us"] / best if (best and r["copy_us"]) else None
        efrac = r["exp_us"] / best if (best and r["exp_us"]) else None
        cells = [LOSS_TITLE.get(r["loss"], r["loss"]), str(r["N"]), str(r["C"]), str(r["T"]), fmt_time(r["fused_us"]),
                 f"{100 * efrac:.0f}%" if efrac is not None else "–",
                 f"{100 * frac:.0f}%" if frac is not None else "–"]
        if have_jax:
            cells += [fmt_time(r["jax_us"]), fmt_ratio(r["jax_us"], r["fused_us"])]
        cells += [
            fmt_time(r["eager_us"]),
            fmt_ratio(r["eager_us"], r["fused_us"]),
            f"{gbs:.2f}" if gbs is not None else "–",
            fmt_bytes(r["fused_peak"]),
            fmt_bytes(r["eager_peak"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def cpu_copy_table(runs):
    lines = ["| copy | threads | time | GB/s (read + write) |", "|---|---|---|---|"]
    for name, r in sorted(runs.items()):
        k = parse_name(name)
        if k["loss"] == "dram" and k["method"] == "memcpy":
            gbs = r["ideal_bytes"] / (r["time_us"] * 1e-6) / 1e9
            lines.append(f"| memcpy 2 x {fmt_bytes(r['ideal_bytes'] / 2)} | {k['T']} | {fmt_time(r['time_us'])} | {gbs:.1f} |")
    return "\n".join(lines) + "\n"


def plot_cpu(rows, have_jax, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_bench.py: matplotlib is missing, no PNG (apt-get install python3-matplotlib)", file=sys.stderr)
        return False
    losses = [l for l in LOSS_ORDER if any(r["loss"] == l for r in rows)]
    threads = sorted({r["T"] for r in rows})
    fig, axes = grid(plt, len(losses))
    methods = [("eager_us", "released (LibTorch eager)", "tab:red"), ("fused_us", "fused", "tab:blue"),
               ("exp_us", "exp bound", "tab:gray")]
    if have_jax:
        methods.append(("jax_us", "JAX (XLA)", "tab:green"))
    for ax, loss in zip(axes, losses):
        for t in threads:
            style = "-" if t == 1 else "--"
            for field, label, color in methods:
                pts = {}
                for r in rows:
                    if r["loss"] == loss and r["T"] == t and r[field]:
                        pts.setdefault(r["C"], []).append(r[field] / r["N"])
                if not pts:
                    continue
                cs = sorted(pts)
                ys = [min(pts[c]) for c in cs]  # the largest N of a C is the least overhead-bound
                ax.plot(cs, ys, style, marker="o", color=color, label=f"{label}, {t} thread{'s' if t > 1 else ''}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("classes C")
        ax.set_ylabel("time per row (µs), forward + backward")
        ax.set_title(LOSS_TITLE.get(loss, loss))
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


# ---- CUDA -----------------------------------------------------------------------------------
def cuda_rows(runs):
    by = {}
    copy_gbs = None
    for name, r in runs.items():
        k = parse_name(name)
        if k["loss"] == "copy":
            copy_gbs = r["bytes_per_second"] / 1e9
            continue
        by.setdefault((k["loss"], k.get("dtype", "f32"), int(k["N"]), int(k["C"])), {})[k["method"]] = r
    rows = []
    for (loss, dtype, n, c), m in by.items():
        f, u, t = m.get("fused"), m.get("unfused"), m.get("torch")
        any_run = f or u or t
        rows.append(
            {
                "loss": loss,
                "dtype": dtype,
                "N": n,
                "C": c,
                "fused_us": f["time_us"] if f else None,
                "unfused_us": u["time_us"] if u else None,
                "torch_us": t["time_us"] if t else None,
                "ideal": any_run.get("ideal_bytes"),
                "fused_peak": f.get("peak_extra_bytes") if f else None,
                "unfused_peak": u.get("peak_extra_bytes") if u else None,
                "torch_peak": t.get("peak_extra_bytes") if t else None,
                "launches": u.get("launches") if u else None,
                "rel_diff": f.get("max_rel_diff") if f else None,
            }
        )
    dtype_order = {"f32": 0, "bf16": 1}
    rows.sort(key=lambda r: (LOSS_ORDER.index(r["loss"]) if r["loss"] in LOSS_ORDER else 99,
                             dtype_order.get(r["dtype"], 9), r["C"], r["N"]))
    return rows, copy_gbs


def cuda_table(rows, copy_gbs):
    have_torch = any(r["torch_us"] for r in rows)
    head = ["loss", "dtype", "N", "C", "fused", "unfused", "unfused kernels", "speed-up vs unfused"]
    if have_torch:
        head += ["LibTorch", "speed-up vs LibTorch"]
    head += ["fused GB/s", "of D2D copy", "peak extra fused", "peak extra unfused"]
    if have_torch:
        head.append("peak extra LibTorch")
    head.append("max rel. grad diff vs unfused")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r in rows:
        gbs = r["ideal"] / (r["fused_us"] * 1e-6) / 1e9 if (r["fused_us"] and r["ideal"]) else None
        cells = [LOSS_TITLE.get(r["loss"], r["loss"]), r["dtype"], str(r["N"]), str(r["C"]), fmt_time(r["fused_us"]),
                 fmt_time(r["unfused_us"]), f"{r['launches']:.0f}" if r["launches"] else "–",
                 fmt_ratio(r["unfused_us"], r["fused_us"])]
        if have_torch:
            cells += [fmt_time(r["torch_us"]), fmt_ratio(r["torch_us"], r["fused_us"])]
        cells += [
            f"{gbs:.0f}" if gbs is not None else "–",
            f"{100 * gbs / copy_gbs:.0f}%" if (gbs is not None and copy_gbs) else "–",
            fmt_bytes(r["fused_peak"]),
            fmt_bytes(r["unfused_peak"]),
        ]
        if have_torch:
            cells.append(fmt_bytes(r["torch_peak"]))
        cells.append(f"{r['rel_diff']:.1e}" if r["rel_diff"] is not None else "–")
        lines.append("| " + " | ".join(cells) + " |")
    if copy_gbs:
        lines.append("")
        lines.append(f"Device-to-device copy bandwidth measured in the same run: {copy_gbs:.0f} GB/s (read + write).")
    return "\n".join(lines) + "\n"


def plot_cuda(rows, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_bench.py: matplotlib is missing, no PNG", file=sys.stderr)
        return False
    losses = [l for l in LOSS_ORDER if any(r["loss"] == l for r in rows)]
    fig, axes = grid(plt, len(losses))
    colors = {"fused_us": "tab:blue", "unfused_us": "tab:orange", "torch_us": "tab:red"}
    labels = {"fused_us": "fused", "unfused_us": "unfused CUDA", "torch_us": "LibTorch"}
    for ax, loss in zip(axes, losses):
        for dtype, style in (("f32", "-"), ("bf16", "--")):
            for field in ("fused_us", "unfused_us", "torch_us"):
                pts = {}
                for r in rows:
                    if r["loss"] == loss and r["dtype"] == dtype and r[field]:
                        pts.setdefault(r["C"], []).append(r[field] / r["N"])
                if not pts:
                    continue
                cs = sorted(pts)
                ax.plot(cs, [min(pts[c]) for c in cs], style, marker="o", color=colors[field],
                        label=f"{labels[field]} {dtype}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("classes C")
        ax.set_ylabel("time per row (µs)")
        ax.set_title(LOSS_TITLE.get(loss, loss))
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def replace_section(readme, name, body):
    """Replaces the text between <!-- BEGIN name --> and <!-- END name --> in readme."""
    if not os.path.exists(readme):
        return False
    with open(readme) as f:
        text = f.read()
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        return False
    text = text[: i + len(begin)] + "\n" + body + text[j:]
    with open(readme, "w") as f:
        f.write(text)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", help="JSON of fusedkd_bench_cpu")
    ap.add_argument("--jax", help="JSON of bench/jax_peer.py (one thread)")
    ap.add_argument("--cuda", help="JSON of fusedkd_bench_cuda")
    ap.add_argument("--out", default="docs/benchmarks")
    ap.add_argument("--cpu-time", action="store_true",
                    help="one-thread CPU rows: CPU time of the calling thread instead of wall time")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    readme = os.path.join(args.out, "README.md")

    if args.cpu:
        ctx, runs = load_medians(args.cpu, args.cpu_time)
        jax_ctx, jax_runs = load_jax(args.jax) if args.jax and os.path.exists(args.jax) else ({}, None)
        rows = cpu_rows(runs, jax_runs)
        table = cpu_table(rows, jax_runs is not None)
        copy = cpu_copy_table(runs)
        with open(os.path.join(args.out, "cpu_table.md"), "w") as f:
            f.write(table + "\n" + copy)
        replace_section(readme, "CPU TABLE", table)
        replace_section(readme, "CPU COPY", copy)
        machine = (
            f"{ctx.get('fusedkd_cpu_model', '?')}, {ctx.get('num_cpus', '?')} CPUs at "
            f"{ctx.get('mhz_per_cpu', '?')} MHz, "
            f"{int(ctx.get('fusedkd_physical_memory_bytes', 0)) / 2**30:.0f} GiB; compiler {ctx.get('fusedkd_compiler', '?')}; "
            f"commit {ctx.get('fusedkd_commit', '?')}; run {ctx.get('date', '?')}; {ctx.get('fusedkd_repetitions', '?')} repetitions, median; "
            + ("one-thread rows: CPU time of the calling thread, more threads: wall time"
               if args.cpu_time else "wall time")
            + f"; SIMD target {ctx.get('fusedkd_simd_target', '?')}"
            + (f"; JAX {jax_ctx.get('jax_version', '?')} on one thread" if jax_runs is not None else "")
        )
        replace_section(readme, "CPU MACHINE", machine + "\n")
        plot_cpu(rows, jax_runs is not None, os.path.join(args.out, "cpu.png"))
        print(table)
        print(copy)
    if args.cuda:
        ctx, runs = load_medians(args.cuda)
        rows, copy_gbs = cuda_rows(runs)
        table = cuda_table(rows, copy_gbs)
        with open(os.path.join(args.out, "cuda_table.md"), "w") as f:
            f.write(table)
        replace_section(readme, "CUDA TABLE", table)
        png = plot_cuda(rows, os.path.join(args.out, "cuda.png"))
        body = f"{ctx.get('fusedkd_device', '?')}; run {ctx.get('date', '?')}; {ctx.get('fusedkd_repetitions', '?')} repetitions, median\n"
        if png:
            body += "\n![GPU: time per row against C](cuda.png)\n"
        replace_section(readme, "CUDA MACHINE", body)
        print(table)


if __name__ == "__main__":
    main()
