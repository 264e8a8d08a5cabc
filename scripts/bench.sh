#!/usr/bin/env bash
# scripts/bench.sh — builds and runs the benchmarks, writes docs/benchmarks/ (JSON, Markdown
# tables, PNG plots).
#
#   scripts/bench.sh                 the CPU set here, and the GPU set when a GPU is present
#   scripts/bench.sh --cpu-only      only the CPU set
#   scripts/bench.sh --gpu-only      only the GPU set (the GPU machine, alone or from gpu-check)
#   scripts/bench.sh --quick         2 repetitions, shorter runs (a smoke test; numbers are noisy)
#   scripts/bench.sh --large         the CPU set with the issue's full large-vocabulary shapes
#                                    (N = 4096 / 8192 x C = 32000 / 128256: hours on a small CPU)
#   scripts/bench.sh --cpu-time      one-thread CPU rows reported by the calling thread's CPU time
#                                    rather than wall time (for a machine shared with other work)
#   scripts/bench.sh --no-jax        the CPU set without its JAX peer (bench/jax_peer.py; by
#                                    default it runs after the CPU set, in a virtual environment
#                                    $build/jax-venv with PyPI's jax, made on the first run)
#   scripts/bench.sh --prepare-carry copy this machine's Google Benchmark (headers, shared library,
#                                    a package config) into third_party/benchmark, for a GPU
#                                    machine without it or a network: carry third_party with the
#                                    tree (bench/CMakeLists.txt looks there first); then exit
#                                    (FUSEDKD_BENCHMARK_CARRY_DIR: another destination)
#   scripts/bench.sh -- ARGS         ARGS go to the benchmark programs (e.g. --benchmark_filter=nkd)
#
# Environment: FUSEDKD_BENCH_BUILD (build directory, default build-bench), JOBS (default 2),
# FUSEDKD_BENCH_OUT (output directory, default docs/benchmarks), CMAKE_ARGS (extra -D...),
# FUSEDKD_BENCH_NICE (run the benchmarks under `nice -n VALUE`, e.g. -20 as root on a machine
# shared with other work, so that they get their cores), FUSEDKD_BENCH_TORCH=0 (GPU set: do not
# look for python3's LibTorch).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${FUSEDKD_BENCH_BUILD:-$root/build-bench}
out=${FUSEDKD_BENCH_OUT:-$root/docs/benchmarks}
jobs=${JOBS:-2}
run_cpu=1
run_gpu=auto
run_jax=1
jax_flags=()
cpu_flags=()
gpu_flags=()
extra=()
plot_extra=()
prepare_carry=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --cpu-only) run_gpu=0 ;;
    --gpu-only) run_cpu=0; run_gpu=1 ;;
    --quick)
      cpu_flags+=(--fusedkd_reps=2 --fusedkd_min_time=0.05)
      jax_flags+=(--reps 2 --min-time 0.05)
      gpu_flags+=(--fusedkd_reps=2) ;;
    --large) cpu_flags+=(--fusedkd_large) ;;
    --cpu-time) plot_extra+=(--cpu-time); jax_flags+=(--cpu-time) ;;
    --no-jax) run_jax=0 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    --prepare-carry) prepare_carry=1 ;;
    *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if [[ $prepare_carry == 1 ]]; then
  inc=${BENCHMARK_INCLUDE:-/usr/include}
  lib=$(ls "${BENCHMARK_LIB_DIR:-/usr/lib/x86_64-linux-gnu}"/libbenchmark.so.[0-9]* 2>/dev/null | head -1 || true)
  if [[ ! -f $inc/benchmark/benchmark.h || -z $lib ]]; then
    echo "bench.sh: no Google Benchmark here (Debian: libbenchmark-dev)" >&2
    exit 1
  fi
  tp=${FUSEDKD_BENCHMARK_CARRY_DIR:-$root/third_party/benchmark}
  rm -rf "$tp"
  mkdir -p "$tp/include" "$tp/lib"
  cp -r "$inc/benchmark" "$tp/include/"
  soname=$(objdump -p "$lib" 2>/dev/null | awk '/SONAME/ {print $2}')
  soname=${soname:-$(basename "$lib")}
  cp -L "$lib" "$tp/lib/$soname"  # under its SONAME: what the loader looks for (via the RPATH)
  cat > "$tp/benchmarkConfig.cmake" <<CONFIG
# Minimal package config written by scripts/bench.sh --prepare-carry (a copied shared library).
if(NOT TARGET benchmark::benchmark)
  add_library(benchmark::benchmark SHARED IMPORTED)
  set_target_properties(benchmark::benchmark PROPERTIES
    IMPORTED_LOCATION "\${CMAKE_CURRENT_LIST_DIR}/lib/$soname"
    IMPORTED_SONAME "$soname"
    INTERFACE_INCLUDE_DIRECTORIES "\${CMAKE_CURRENT_LIST_DIR}/include")
endif()
set(benchmark_FOUND TRUE)
CONFIG
  echo "$tp <- $inc/benchmark, $lib"
  exit 0
fi

if [[ $run_gpu == auto ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then run_gpu=1; else run_gpu=0; fi
fi

cmake_args=(-DCMAKE_BUILD_TYPE=Release -DFUSEDKD_BUILD_BENCHMARKS=ON)
if [[ $run_cpu == 0 ]]; then
  # the GPU set needs nothing but bench/ (a GPU machine may lack GoogleTest)
  cmake_args+=(-DFUSEDKD_BUILD_TESTS=OFF -DFUSEDKD_BUILD_TOOLS=OFF -DFUSEDKD_BUILD_EXAMPLES=OFF)
fi
# shellcheck disable=SC2206
cmake_args+=(${CMAKE_ARGS:-})
# A LibTorch with CUDA for the GPU baseline: the GPU machine's PyTorch ships one. Its configure
# can fail (CUDA toolkit mismatch, ...): then the GPU set runs without that baseline.
torch_args=()
if [[ $run_gpu == 1 && ${FUSEDKD_BENCH_TORCH:-1} == 1 ]]; then
  torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)
  if [[ -n $torch_prefix ]]; then
    torch_args=("-DCMAKE_PREFIX_PATH=$torch_prefix")
  fi
fi

echo "== configure $build"
mkdir -p "$build"
if [[ ${#torch_args[@]} -gt 0 ]]; then
  if ! cmake -S "$root" -B "$build" "${cmake_args[@]}" "${torch_args[@]}" > "$build/configure-torch.log" 2>&1; then
    echo "bench.sh: configure with the LibTorch of python3 failed (see $build/configure-torch.log); going on without it" >&2
    rm -f "$build/CMakeCache.txt"
    cmake -S "$root" -B "$build" "${cmake_args[@]}" -DCMAKE_DISABLE_FIND_PACKAGE_Torch=ON >/dev/null
  fi
else
  cmake -S "$root" -B "$build" "${cmake_args[@]}" >/dev/null
fi
targets=()
target_list=$(cmake --build "$build" --target help 2>/dev/null || true)  # (no pipe: pipefail + grep -q)
have_target() { grep -qw -- "$1" <<<"$target_list"; }
if [[ $run_cpu == 1 ]]; then
  targets+=(fusedkd_bench_cpu)
fi
if [[ $run_gpu == 1 ]]; then
  if have_target fusedkd_bench_cuda; then
    targets+=(fusedkd_bench_cuda)
  else
    echo "bench.sh: no fusedkd_bench_cuda in this build (no nvcc, or no include/fusedkd/cuda.cuh): no GPU set" >&2
    run_gpu=0
  fi
fi
if [[ ${#targets[@]} -eq 0 ]]; then echo "bench.sh: nothing to run" >&2; exit 1; fi
echo "== build ${targets[*]}"
cmake --build "$build" -j"$jobs" --target "${targets[@]}"

# The PNG needs matplotlib: use a Python that has it; install Debian's where that is possible
# (as root), else the tables come without the PNG.
pick_python() {
  local p
  for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import matplotlib' 2>/dev/null; then echo "$p"; return; fi
  done
  echo ""
}
py=$(pick_python)
if [[ -z $py && $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  apt-get install -y --no-install-recommends python3-matplotlib >/dev/null 2>&1 || true
  py=$(pick_python)
fi
[[ -n $py ]] || py=python3

mkdir -p "$out"
plot_args=(--out "$out" "${plot_extra[@]}")
runner=()
if [[ -n ${FUSEDKD_BENCH_NICE:-} ]]; then runner=(nice -n "$FUSEDKD_BENCH_NICE"); fi
# OpenMP threads spin between parallel regions instead of sleeping (fused and LibTorch alike:
# both use libgomp here), so that a benchmark measures the work, not the wake-up latency of a
# sleeping thread (milliseconds on some virtual machines). Set OMP_WAIT_POLICY to override.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-active}
commit=$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)
context=(--benchmark_context=fusedkd_commit="$commit")
if [[ $run_cpu == 1 ]]; then
  echo "== CPU: fused vs LibTorch eager"
  # Random interleaving: the repetitions of every row are run in a shuffled order over the whole
  # run, so a minute in which the machine is slow (a shared virtual machine) hits the fused loss,
  # its baselines and its bounds alike instead of one row's five repetitions.
  "${runner[@]}" "$build/bench/fusedkd_bench_cpu" "${context[@]}" --benchmark_enable_random_interleaving=true \
    "${cpu_flags[@]}" "${extra[@]}" \
    --benchmark_out="$out/cpu.json" --benchmark_out_format=json
  plot_args+=(--cpu "$out/cpu.json")
  if [[ $run_jax == 1 ]]; then
    # The JAX peer: PyPI's jax (CPU) in a virtual environment made here once; one thread (XLA's
    # Eigen pool off, pinned to one core), the shapes of the CPU set; its expressions are first
    # checked against the conformance cases (a mismatch stops the JAX peer, not the run).
    venv=$build/jax-venv
    if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import jax' 2>/dev/null; then
      echo "== JAX: making $venv (pip install jax[cpu])"
      python3 -m venv "$venv" && "$venv/bin/pip" install -q "jax[cpu]" numpy || echo "bench.sh: no JAX (pip failed)" >&2
    fi
    if "$venv/bin/python" -c 'import jax' 2>/dev/null; then
      pin=()
      command -v taskset >/dev/null 2>&1 && pin=(taskset -c 0)
      export XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
      # the shapes and losses of the CPU set just run
      read -r shapes losses < <(python3 - "$out/cpu.json" <<'PY'
import json, re, sys
names = [b["name"] for b in json.load(open(sys.argv[1]))["benchmarks"] if "/fused/" in b["name"]]
shapes = sorted({"%sx%s" % re.search(r"/N:(\d+)/C:(\d+)", n).groups() for n in names})
print(",".join(shapes), ",".join(sorted({n.split("/")[0] for n in names})))
PY
)
      echo "== JAX peer: check against the conformance cases, then $losses at $shapes"
      if "${runner[@]}" "${pin[@]}" "$venv/bin/python" "$root/bench/jax_peer.py" --check "$root/tests/conformance/cases"; then
        "${runner[@]}" "${pin[@]}" "$venv/bin/python" "$root/bench/jax_peer.py" --shapes "$shapes" \
          --losses "$losses" "${jax_flags[@]}" --out "$out/jax.json"
        plot_args+=(--jax "$out/jax.json")
      else
        echo "bench.sh: the JAX expressions disagree with the conformance cases: no JAX column" >&2
      fi
    fi
  fi
fi
if [[ $run_gpu == 1 ]]; then
  echo "== GPU: fused vs unfused CUDA (and LibTorch-CUDA when built)"
  "${runner[@]}" "$build/bench/fusedkd_bench_cuda" "${context[@]}" "${gpu_flags[@]}" "${extra[@]}" \
    --benchmark_out="$out/cuda.json" --benchmark_out_format=json
  plot_args+=(--cuda "$out/cuda.json")
fi
echo "== tables and plots into $out"
"$py" "$root/scripts/plot_bench.py" "${plot_args[@]}"
