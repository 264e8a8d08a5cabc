#!/usr/bin/env bash
# scripts/gpu-check.sh — the GPU check, for a machine with an NVIDIA GPU and no network.
#
#   scripts/gpu-check.sh [CASE_FOLDER...]
#
# 1. builds for the GPU present (CMAKE_CUDA_ARCHITECTURES=native): the CUDA tests, the sanitizer
#    sweep, the timing table and fusedkd-check; GoogleTest and nlohmann_json come from
#    third_party/ (scripts/prepare-gpu-carry.sh fills it on a machine that has them);
# 2. runs the host-logic tests and the GPU tests (fusedkd_cuda_tests: CUDA against the CPU
#    backend on every loss, dtype, kernel path, option, stride, aliasing; determinism, graphs,
#    bad labels);
# 3. runs `fusedkd-check --device cuda` over the case folders given (default: those of
#    ../shared/conformance/cases, third_party/shared-cases and tests/conformance/cases that exist);
# 4. runs compute-sanitizer memcheck, racecheck, initcheck and synccheck on fusedkd_cuda_sweep, a
#    small shape sweep that reaches every kernel;
# 5. prints a short timing table (ms, GB/s, fraction of the copy bandwidth);
# 6. runs the GPU benchmark set, `scripts/bench.sh --gpu-only` (fused against the unfused CUDA
#    path, the issue's shapes, fp32 and bf16), with its JSON, table and plot written under
#    $OUT/benchmarks (copy them into docs/benchmarks/). Needs Google Benchmark: the machine's, or
#    third_party/benchmark from prepare-gpu-carry.sh;
# 7. builds fusedkd-train with its CUDA path and runs `--device cuda` (a short run of every method:
#    2 epochs, 1 seed, the teacher 1 epoch) and prints its time per epoch. Needs OpenBLAS, zlib and
#    Fashion-MNIST (the Debian folder, or third_party/fashion-mnist from prepare-gpu-carry.sh
#    FUSEDKD_CARRY_DATA=1); without them the step says SKIP and does not fail the check.
#
# Logs go to $OUT when it is set (the device tool's output folder), else build-gpu/logs; the
# last lines of stdout are a summary, one PASS/FAIL line per step. Exit status 0 when every step
# passed. Meant to finish in under 8 minutes without step 6, and 12 with it (each step has a time
# limit; GPU_CHECK_SKIP=bench leaves it out).
#
# Environment: BUILD_DIR (default build-gpu), JOBS (default nproc), CUDA_ARCH (default native),
# GPU_CHECK_SKIP (space-separated steps to skip: build tests conformance sanitizers timing bench
# trainer),
# GPU_CHECK_BENCH_ARGS (arguments of the benchmark step, default --quick: 2 repetitions),
# GPU_CHECK_TORCH=1 (also build and run fusedkd_cuda_reference_tests against the LibTorch of the
# machine's python3 torch; off by default: a CUDA LibTorch makes the configure slow and fragile).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build-gpu}
logs=${OUT:-$build/logs}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 8)}
arch=${CUDA_ARCH:-native}
skip=" ${GPU_CHECK_SKIP:-} "
mkdir -p "$build" "$logs"
summary=$logs/summary.txt
: > "$summary"
t0=$(date +%s)
failed=0

note() { echo "[gpu-check +$(( $(date +%s) - t0 ))s] $*"; }
result() {  # result NAME STATUS DETAIL
  local line
  if [[ $2 == 0 ]]; then line="PASS $1 $3"; else line="FAIL $1 $3 (exit $2)"; failed=1; fi
  echo "$line" >> "$summary"
  note "$line"
}
skipped() { [[ $skip == *" $1 "* ]]; }

cases=("$@")
if [[ ${#cases[@]} -eq 0 ]]; then
  for d in "$root/../shared/conformance/cases" "$root/third_party/shared-cases" "$root/tests/conformance/cases"; do
    [[ -d $d ]] && cases+=("$(cd "$d" && pwd)")
  done
fi

# ---- the device ---------------------------------------------------------------------------------
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || true
  command -v nvcc >/dev/null && nvcc --version | tail -2
  cmake --version | head -1
} | tee "$logs/device.txt"
nvcc_bin=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || echo "")

# ---- 1. build -------------------------------------------------------------------------------------
targets=(fusedkd_cuda_tests fusedkd_cuda_host_logic_tests fusedkd_cuda_shard_tests fusedkd_cuda_sweep fusedkd_cuda_timing fusedkd-check)
if ! skipped build; then
  prefix=""
  if [[ -f $root/third_party/googletest/CMakeLists.txt ]]; then
    note "building GoogleTest from third_party/googletest"
    (timeout 300 cmake -S "$root/third_party/googletest" -B "$build/googletest" -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_GMOCK=OFF -DINSTALL_GTEST=ON -DCMAKE_INSTALL_PREFIX="$build/deps" &&
     timeout 300 cmake --build "$build/googletest" -j "$jobs" &&
     cmake --install "$build/googletest") > "$logs/googletest.log" 2>&1
    result googletest $? "(third_party/googletest -> $build/deps)"
    prefix="$build/deps"
  fi
  [[ -d $root/third_party/nlohmann_json ]] && prefix="${prefix:+$prefix;}$root/third_party/nlohmann_json"
  torch_args=(-DCMAKE_DISABLE_FIND_PACKAGE_Torch=ON)
  if [[ ${GPU_CHECK_TORCH:-0} == 1 ]]; then
    torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)
    if [[ -n $torch_prefix ]]; then
      prefix="${prefix:+$prefix;}$torch_prefix"
      torch_args=(-DCMAKE_DISABLE_FIND_PACKAGE_Torch=OFF)
      targets+=(fusedkd_cuda_reference_tests)
    fi
  fi
  note "configuring (CUDA architectures: $arch)"
  timeout 300 cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_CUDA_COMPILER="$nvcc_bin" -DCMAKE_CUDA_ARCHITECTURES="$arch" \
      ${prefix:+-DCMAKE_PREFIX_PATH="$prefix"} "${torch_args[@]}" \
      -DFUSEDKD_BUILD_BENCHMARKS=OFF -DFUSEDKD_BUILD_EXAMPLES=OFF > "$logs/configure.log" 2>&1
  st=$?
  if [[ $st == 0 ]] && ! grep -q "fusedkd: CUDA ON" "$logs/configure.log"; then
    st=1
    echo "gpu-check: fusedkd did not enable CUDA" >> "$logs/configure.log"
  fi
  result configure $st "(log configure.log)"
  note "building ${targets[*]}"
  start=$(date +%s)
  timeout 360 cmake --build "$build" -j "$jobs" --target "${targets[@]}" > "$logs/build.log" 2>&1
  result build $? "($(( $(date +%s) - start ))s, log build.log)"
fi

bin=$build
tests_dir=$bin/tests/cuda
check=$bin/tools/fusedkd-check

# ---- 2. tests ---------------------------------------------------------------------------------------
if ! skipped tests; then
  timeout 60 "$tests_dir/fusedkd_cuda_host_logic_tests" > "$logs/host_logic_tests.log" 2>&1
  result host-logic-tests $? "(log host_logic_tests.log)"
  start=$(date +%s)
  timeout 240 "$tests_dir/fusedkd_cuda_tests" --gtest_output="xml:$logs/cuda_tests.xml" > "$logs/cuda_tests.log" 2>&1
  st=$?
  if [[ $st == 0 ]] && grep -q '^\[  SKIPPED \]' "$logs/cuda_tests.log"; then
    st=3  # a skipped GPU test on a GPU machine means the device was not usable
  fi
  counts=$(grep -oE '^\[ +(PASSED|FAILED|SKIPPED) +\] [0-9]+ tests?' "$logs/cuda_tests.log" | tr -s ' []' ' ' | paste -sd, -)
  result cuda-tests $st "(${counts# }; $(( $(date +%s) - start ))s, log cuda_tests.log)"
  if [[ -x $tests_dir/fusedkd_cuda_reference_tests ]]; then
    timeout 180 "$tests_dir/fusedkd_cuda_reference_tests" > "$logs/cuda_reference_tests.log" 2>&1
    result cuda-reference-tests $? "(log cuda_reference_tests.log)"
  fi
  # The column-sharded losses on CUDA and the NCCL adapter (one-rank communicator, graph capture).
  timeout 120 "$tests_dir/fusedkd_cuda_shard_tests" > "$logs/cuda_shard_tests.log" 2>&1
  st=$?
  [[ $st == 0 ]] && grep -q '^\[  SKIPPED \]' "$logs/cuda_shard_tests.log" && st=3
  result cuda-shard-tests $st "(log cuda_shard_tests.log)"
fi

# ---- 3. conformance on the GPU ------------------------------------------------------------------------
if ! skipped conformance; then
  if [[ ${#cases[@]} -eq 0 ]]; then
    result conformance 1 "(no case folder found)"
  else
    timeout 120 "$check" --device cuda "${cases[@]}" > "$logs/conformance_cuda.log" 2>&1
    result conformance $? "($(tail -1 "$logs/conformance_cuda.log"), log conformance_cuda.log)"
  fi
fi

# ---- 4. compute-sanitizer -------------------------------------------------------------------------------
if ! skipped sanitizers; then
  if [[ -z $sanitizer ]]; then
    result sanitizers 1 "(compute-sanitizer not found)"
  else
    for tool in memcheck racecheck initcheck synccheck; do
      start=$(date +%s)
      extra=()
      [[ $tool == memcheck ]] && extra=(--leak-check full)
      timeout 100 "$sanitizer" --tool "$tool" "${extra[@]}" --error-exitcode 86 \
          "$tests_dir/fusedkd_cuda_sweep" --quick > "$logs/sanitizer_$tool.log" 2>&1
      st=$?
      result "sanitizer-$tool" $st "($(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$logs/sanitizer_$tool.log" | tail -1) $(( $(date +%s) - start ))s)"
    done
  fi
fi

# ---- 5. timing ------------------------------------------------------------------------------------------
if ! skipped timing; then
  timeout 120 "$tests_dir/fusedkd_cuda_timing" > "$logs/timing.txt" 2>&1
  st=$?
  cat "$logs/timing.txt"
  result timing $st "(log timing.txt)"
fi

# ---- 6. the GPU benchmark set ----------------------------------------------------------------------
if ! skipped bench; then
  start=$(date +%s)
  # shellcheck disable=SC2086
  FUSEDKD_BENCH_BUILD="$build-bench" FUSEDKD_BENCH_OUT="$logs/benchmarks" FUSEDKD_BENCH_TORCH=0 \
    JOBS="$jobs" CMAKE_ARGS="-DCMAKE_CUDA_COMPILER=$nvcc_bin -DCMAKE_CUDA_ARCHITECTURES=$arch" \
    timeout 420 "$root/scripts/bench.sh" --gpu-only ${GPU_CHECK_BENCH_ARGS:---quick} \
    > "$logs/bench.log" 2>&1
  st=$?
  result bench $st "($(( $(date +%s) - start ))s, log bench.log, tables in benchmarks/)"
fi

# ---- 7. the trainer on the GPU -----------------------------------------------------------------------
if ! skipped trainer; then
  data=""
  for d in /usr/share/datasets/fashion-mnist "$root/third_party/fashion-mnist"; do
    [[ -f $d/train-images-idx3-ubyte.gz ]] && data=$d
  done
  if [[ -z $data ]]; then
    echo "SKIP trainer (no Fashion-MNIST: prepare-gpu-carry.sh with FUSEDKD_CARRY_DATA=1)" >> "$summary"
    note "SKIP trainer (no Fashion-MNIST)"
  else
    start=$(date +%s)
    (timeout 300 cmake -S "$root" -B "$build-trainer" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_CUDA_COMPILER="$nvcc_bin" -DCMAKE_CUDA_ARCHITECTURES="$arch" \
        -DFUSEDKD_BUILD_TESTS=OFF -DFUSEDKD_BUILD_BENCHMARKS=OFF -DFUSEDKD_BUILD_TOOLS=OFF \
        -DFUSEDKD_BUILD_EXAMPLES=ON &&
     timeout 300 cmake --build "$build-trainer" -j "$jobs" --target fusedkd-train) > "$logs/trainer_build.log" 2>&1
    st=$?
    if [[ $st != 0 ]] && grep -q "skipping the example trainer" "$logs/trainer_build.log"; then
      echo "SKIP trainer ($(grep -o 'skipping the example trainer.*' "$logs/trainer_build.log" | head -1))" >> "$summary"
      note "SKIP trainer (OpenBLAS or zlib missing)"
    elif [[ $st != 0 ]]; then
      result trainer-build $st "(log trainer_build.log)"
    else
      timeout 300 "$build-trainer/examples/fusedkd-train" --device cuda --data-dir "$data" \
          --epochs 2 --seeds 1 --teacher-epochs 1 --out "$logs/trainer-cuda" > "$logs/trainer_cuda.log" 2>&1
      st=$?
      grep -E "done:|^(CE|KD|DKD|NKD|USKD|teacher) " "$logs/trainer_cuda.log" | tail -12
      result trainer-cuda $st "($(( $(date +%s) - start ))s, log trainer_cuda.log; epoch times in trainer-cuda/results.csv)"
    fi
  fi
fi

echo
echo "==== gpu-check summary ($(( $(date +%s) - t0 ))s) ===="
cat "$summary"
exit $failed
