#!/usr/bin/env bash
# scripts/bench-targets.sh — issue 13's CPU targets, measured in K rounds (default 5) instead of
# once, for a machine whose speed drifts (a shared virtual machine: the same loop can take 30 %
# longer a minute later).
#
#   scripts/bench-targets.sh [K]
#
# Each round, on one thread: fusedkd_bench_cpu at 256 x 1000 and 64 x 32000 (fused, the released
# code's LibTorch port, the exp bound; Google Benchmark's random interleaving, so that the
# repetitions of every row are spread over the same minutes and a slow minute hits them all),
# then the JAX peer at the same shapes, then NKD alone at 4096 x 32000 (fused and exp bound).
# Every ratio is taken within one round; the table gives, per target, the median ratio over the
# rounds and the smallest and largest. Writes round<i>.json, jax<i>.json, large<i>.json and
# targets.md to $FUSEDKD_BENCH_OUT/targets (default docs/benchmarks/targets); the programs'
# console output goes to $FUSEDKD_BENCH_BUILD/bench-targets-logs.
#
# Needs the benchmark build and the JAX environment of scripts/bench.sh (run it once first):
# $FUSEDKD_BENCH_BUILD (default build-bench) and its jax-venv.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${FUSEDKD_BENCH_BUILD:-$root/build-bench}
out=${FUSEDKD_BENCH_OUT:-$root/docs/benchmarks}/targets
rounds=${1:-5}
bench=$build/bench/fusedkd_bench_cpu
venv=$build/jax-venv
if [[ ! -x $bench || ! -x $venv/bin/python ]]; then
  echo "bench-targets.sh: run scripts/bench.sh --cpu-only first (needs $bench and $venv)" >&2
  exit 1
fi
logs=$build/bench-targets-logs  # the programs' console output
mkdir -p "$out" "$logs"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-active}
export XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
pin=()
command -v taskset >/dev/null 2>&1 && pin=(taskset -c 0)
commit=$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)

for ((i = 1; i <= rounds; ++i)); do
  echo "== round $i of $rounds"
  "$bench" --fusedkd_shapes=256x1000,64x32000 --fusedkd_threads=1 \
    --benchmark_enable_random_interleaving=true --benchmark_context=fusedkd_commit="$commit" \
    --benchmark_out="$out/round$i.json" --benchmark_out_format=json >"$logs/round$i.log" 2>&1
  "${pin[@]}" "$venv/bin/python" "$root/bench/jax_peer.py" --shapes 256x1000,64x32000 \
    --losses nkd,kd,dkd,uskd --out "$out/jax$i.json" >"$logs/jax$i.log" 2>&1
  "$bench" --fusedkd_shapes=4096x32000 --fusedkd_losses=nkd --fusedkd_threads=1 --fusedkd_no_eager \
    --fusedkd_reps=3 --benchmark_filter='^nkd/' --benchmark_out="$out/large$i.json" \
    --benchmark_out_format=json >"$logs/large$i.log" 2>&1
done

python3 - "$out" "$rounds" "$commit" <<'PY'
import json, os, re, statistics, sys

out, rounds, commit = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def medians(path):
    t = {}
    for b in json.load(open(path))["benchmarks"]:
        if b.get("run_type") != "aggregate" or b.get("aggregate_name") != "median":
            continue
        name = re.sub(r"/(min_time|repeats|real_time)(:[^/]*)?", "", b["run_name"])
        t[name] = b["real_time"] * {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[b["time_unit"]]
    return t


def jax(path):
    return {(r["loss"], r["N"], r["C"]): r["time_us"] for r in json.load(open(path))["runs"]}


# (what, target, function of one round -> ratio)
def vs_jax(loss):
    return lambda c, j, l: j[(loss, 256, 1000)] / c[f"{loss}/fused/N:256/C:1000/T:1"]


def vs_released(loss):
    return lambda c, j, l: c[f"{loss}/eager/N:256/C:1000/T:1"] / c[f"{loss}/fused/N:256/C:1000/T:1"]


def of_bound(n, c_, src):
    key = f"nkd/%s/N:{n}/C:{c_}/T:1"
    return lambda c, j, l: (l if src == "large" else c)[key % "expbound"] / (l if src == "large" else c)[key % "fused"]


rows = []
for loss, name in (("nkd", "NKD"), ("kd", "KD"), ("dkd", "DKD")):
    rows.append((f"{name} 256 x 1000 vs JAX", 3.0, "x", vs_jax(loss)))
    rows.append((f"{name} 256 x 1000 vs released", 20.0, "x", vs_released(loss)))
rows.append(("USKD 256 x 1000 vs released", 25.0, "x", vs_released("uskd")))
rows.append(("NKD 64 x 32000, of the exp bound", 0.5, "%", of_bound(64, 32000, "round")))
rows.append(("NKD 4096 x 32000, of the exp bound", 0.5, "%", of_bound(4096, 32000, "large")))

data = [(medians(f"{out}/round{i}.json"), jax(f"{out}/jax{i}.json"), medians(f"{out}/large{i}.json"))
        for i in range(1, rounds + 1)]
fmt = lambda v, u: f"{v:.1f}x" if u == "x" else f"{100 * v:.0f} %"
lines = [f"Issue 13's CPU targets, {rounds} rounds (scripts/bench-targets.sh), commit {commit}; "
         "one thread; each ratio within one round; median over the rounds [smallest, largest].", "",
         "| target | wanted | median | range | met in | met? |", "|---|---|---|---|---|---|"]
for what, want, unit, f in rows:
    vals = sorted(f(*d) for d in data)
    med = statistics.median(vals)
    hits = sum(v >= want for v in vals)
    lines.append(f"| {what} | {fmt(want, unit)} | **{fmt(med, unit)}** | {fmt(vals[0], unit)} - "
                 f"{fmt(vals[-1], unit)} | {hits} of {rounds} | {'yes' if med >= want else 'no'} |")
times = ["", "Times per round (fused / released / JAX, 256 x 1000):", ""]
for i, (c, j, l) in enumerate(data, 1):
    parts = [f"{loss} {c[f'{loss}/fused/N:256/C:1000/T:1']:.0f} / {c[f'{loss}/eager/N:256/C:1000/T:1']:.0f} / "
             f"{j[(loss, 256, 1000)]:.0f} us" for loss in ("nkd", "kd", "dkd", "uskd")]
    times.append(f"- round {i}: " + "; ".join(parts))
text = "\n".join(lines + times) + "\n"
open(os.path.join(out, "targets.md"), "w").write(text)
print(text)
PY
