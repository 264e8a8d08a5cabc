#!/usr/bin/env python3
"""Draws the example trainer's charts (examples/trainer, docs/trainer.md) from its CSV output.

    plot_trainer.py OUT_DIR

In the trainer's output folder OUT_DIR it writes
  accuracy.png               from results.csv (and results.json for the subtitle): the mean test
                             accuracy over the seeds per epoch, one line per method, the teacher's
                             final accuracy dashed;
  ablation-table<T>.png      from ablation-table<T>-epochs.csv (and ablation-table<T>.md for the
                             table's title): the mean test accuracy per epoch of each row, the
                             first row (the baseline) dashed.
Exits 1 when OUT_DIR holds none of these CSV files. Needs matplotlib (Debian: python3-matplotlib).
"""
import csv
import glob
import json
import os
import re
import sys
from collections import OrderedDict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def mean_curves(rows, key):
    """OrderedDict name -> [mean test_acc after epoch 1, 2, ...], in first-seen order."""
    acc = OrderedDict()
    for r in rows:
        per_epoch = acc.setdefault(r[key], {})
        per_epoch.setdefault(int(r["epoch"]), []).append(float(r["test_acc"]))
    return OrderedDict(
        (name, [sum(v) / len(v) for _, v in sorted(eps.items())]) for name, eps in acc.items())


def draw(curves, dashed, title, subtitle, path, hline=None):
    """curves: OrderedDict label -> y values (x = 1, 2, ...); dashed: labels drawn dashed;
    hline: (label, y) drawn as a dashed grey line across the chart."""
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    for label, y in curves.items():
        x = list(range(1, len(y) + 1))
        ax.plot(x, y, linestyle="--" if label in dashed else "-",
                marker="o" if len(y) == 1 else None, label=label)
    if hline:
        ax.axhline(hline[1], color="0.35", linestyle="--", label=hline[0])
    n = max(len(y) for y in curves.values())
    ax.set_xlim(0.5 if n == 1 else 1, n + 0.5 if n == 1 else n)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title + ("\n" + subtitle if subtitle else ""), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print("wrote " + path)


def plot_default(out):
    with open(os.path.join(out, "results.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    teacher = [r for r in rows if r["method"] == "teacher"]
    curves = mean_curves([r for r in rows if r["method"] != "teacher"], "method")
    labels = OrderedDict(("%s %.2f" % (m, y[-1]), y) for m, y in curves.items())
    hline = None
    if teacher:
        last = max(teacher, key=lambda r: int(r["epoch"]))
        hline = ("teacher %.2f" % float(last["test_acc"]), float(last["test_acc"]))
    subtitle = ""
    try:
        with open(os.path.join(out, "results.json")) as f:
            doc = json.load(f)
        s, d = doc["settings"], doc["dataset"]
        subtitle = ("student %s, %d train images, mean of %d seed(s); teacher %s (dashed, final)"
                    % (s["student"], d["train_size"], s["seeds"], s["teacher"]))
    except (OSError, KeyError, ValueError):
        pass
    draw(labels, set(), "Fashion-MNIST: student test accuracy", subtitle,
         os.path.join(out, "accuracy.png"), hline)


def plot_ablation(path):
    stem = path[: -len("-epochs.csv")]
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(path + " has no rows")
    curves = mean_curves(rows, "row")
    labels = OrderedDict(("%s %.2f" % (name, y[-1]), y) for name, y in curves.items())
    table = rows[0]["table"]
    title = "Table " + table
    try:  # the .md's first line: "Table <T>: <title>. Paper: ..."
        with open(stem + ".md") as f:
            m = re.match(r"Table \S+: (.*?)\. Paper:", f.readline())
        if m:
            title += ": " + m.group(1)
    except OSError:
        pass
    seeds = len({r["seed"] for r in rows})
    subtitle = "mean of %d seed(s); the baseline (first row) dashed" % seeds
    draw(labels, {next(iter(labels))}, title, subtitle, stem + ".png")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    done = 0
    if os.path.exists(os.path.join(out, "results.csv")):
        plot_default(out)
        done += 1
    for path in sorted(glob.glob(os.path.join(out, "ablation-table*-epochs.csv"))):
        plot_ablation(path)
        done += 1
    if not done:
        sys.exit("plot_trainer.py: no results.csv or ablation-table*-epochs.csv in " + out)


if __name__ == "__main__":
    main()
