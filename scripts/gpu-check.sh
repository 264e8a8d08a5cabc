#!/usr/bin/env bash
# scripts/gpu-check.sh — the GPU check: runs the programs that scripts/prepare-gpu-carry.sh built
# (gpu-carry/), on a machine with an NVIDIA GPU, in under 6 minutes, and brings everything back.
#
#   bash scripts/gpu-check.sh            (on the GPU machine; see docs/cuda.md for the `run` call)
#   OUT=/tmp/out bash scripts/gpu-check.sh   (anywhere: without a GPU every step says SKIP)
#
# Steps, each with its own time cap (seconds), inside one overall deadline (GPU_CHECK_BUDGET,
# default 330 s; a step gets min(its cap, what is left) and is skipped when nothing is left):
#   facts        nvidia-smi, driver, nvcc, compute-sanitizer, OS                          15
#   start        every carried program starts (else lib/compat, else the fallback build)  30
#   [build]      only when a carried program does not start: cmake + Ninja on this machine,
#                one umbrella target, no -Werror, deps from gpu-carry/third_party         200
#   host-logic   fusedkd_cuda_host_logic_tests                                           20
#   cuda-tests   fusedkd_cuda_tests except the determinism / graph tests                 110
#   shard-tests  fusedkd_cuda_shard_tests (the column-sharded losses; no NCCL in the carry) 40
#   conformance  fusedkd-check --device cuda on the project's and the shared cases        40
#   memcheck, racecheck, initcheck, synccheck: compute-sanitizer on fusedkd_cuda_sweep
#                --quick (leak check on; SKIP when the sanitizer refuses the device)   40 each
#   determinism  fusedkd_cuda_tests --gtest_filter=CudaDeterminism.*                     40
#   graph        the same tests' CUDA-graph half: capture, replay twice, compare bits    (in determinism)
#   timing       fusedkd_cuda_timing: ms, GB/s, fraction of the copy bandwidth            25
#   bench        fusedkd_bench_cuda on a short set (GPU_CHECK_BENCH_SHAPES), JSON         90
# Results go to $OUT (default build/gpu-check-out): summary.txt, bench.json and ONE archive of
# every log, gpu-check-logs.tar.gz, all rewritten after every step (partial results survive a
# kill). The last lines of stdout are the PASS/FAIL/SKIP table with each step's wall time.
# A failing step does not stop the others. Exit status: 0 when nothing FAILed.
#
# Environment: CARRY (default gpu-carry), OUT, GPU_CHECK_BUDGET, GPU_CHECK_SKIP (steps to skip,
# space-separated), GPU_CHECK_BUILD=1 (build here even if the carried programs start),
# GPU_CHECK_BENCH_SHAPES (NxC,...), JOBS (fallback build, default nproc).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
carry=$(cd "${CARRY:-$root/gpu-carry}" 2>/dev/null && pwd || echo "${CARRY:-$root/gpu-carry}")
out=${OUT:-$root/build/gpu-check-out}
budget=${GPU_CHECK_BUDGET:-330}
skip_list=" ${GPU_CHECK_SKIP:-} "
jobs=${JOBS:-$(nproc 2>/dev/null || echo 4)}
bench_shapes=${GPU_CHECK_BENCH_SHAPES:-256x1000,4096x32000,1000000x10,1000000x100,1000000x1000}
bin=${GPU_CHECK_BIN:-$carry/bin}
cases=()
[[ -d $root/tests/conformance/cases ]] && cases+=("$root/tests/conformance/cases")
for d in "$carry/cases/shared" "$root/../shared/conformance/cases"; do
  if [[ -d $d ]]; then cases+=("$(cd "$d" && pwd)"); break; fi
done
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || echo "")

# ---- the steps that are shell functions (run_step runs them as `bash $0 --fn NAME` under timeout) ----
facts() {
  echo "gpu:        $(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null | head -1 || true)"
  echo "nvcc:       $(nvcc --version 2>/dev/null | tail -2 | head -1 || echo none)"
  echo "sanitizer:  ${sanitizer:-none} $([[ -n $sanitizer ]] && "$sanitizer" --version 2>/dev/null | tail -1)"
  echo "os:         $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"), kernel $(uname -r), $(nproc) cores, glibc $(ldd --version 2>/dev/null | head -1 | grep -oE '[0-9.]+$')"
  echo "carry:      $(head -3 "$carry/MANIFEST.txt" 2>/dev/null | tail -2 | tr -s ' ' | paste -sd';' -)"
  echo
  nvidia-smi 2>&1 | head -25
}

programs=(fusedkd_cuda_host_logic_tests fusedkd_cuda_tests fusedkd_cuda_shard_tests fusedkd_cuda_sweep fusedkd_cuda_timing
          fusedkd-check fusedkd_bench_cuda)
probe() {  # each program once, with an argument that needs no GPU
  local p bad=0
  for p in "${programs[@]}"; do
    local o
    case $p in
      fusedkd_cuda_tests|fusedkd_cuda_host_logic_tests|fusedkd_cuda_shard_tests) o=$("$bin/$p" --gtest_list_tests 2>&1 | tail -2) ;;
      fusedkd_bench_cuda) o=$("$bin/$p" --benchmark_list_tests=true --fusedkd_shapes=1x10 2>&1 | tail -1) ;;
      *) o=$("$bin/$p" --help 2>&1 | head -1) ;;
    esac
    o="$o $(ldd "$bin/$p" 2>&1 | grep -iE "not found|not a dynamic" | head -2)"
    if [[ ! -x $bin/$p ]] || grep -qiE "error while loading|not found|No such file|cannot execute" <<<"$o"; then
      echo "$p: DOES NOT START: $o"
      bad=1
    else
      echo "$p: starts ($(tr '\n' ' ' <<<"$o" | cut -c1-80))"
    fi
  done
  return $bad
}

build_here() {
  local b=$root/build/gpu-check-build tp=$carry/third_party prefix=""
  command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"
  if [[ -f $tp/googletest/CMakeLists.txt ]] && ! [[ -d $b/deps ]]; then
    cmake -S "$tp/googletest" -B "$b/googletest" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_GMOCK=OFF \
      -DINSTALL_GTEST=ON -DCMAKE_INSTALL_PREFIX="$b/deps" && cmake --build "$b/googletest" -j "$jobs" &&
      cmake --install "$b/googletest" || return 1
  fi
  [[ -d $b/deps ]] && prefix="$b/deps"
  [[ -d $tp/nlohmann_json ]] && prefix="${prefix:+$prefix;}$tp/nlohmann_json"
  [[ -d $tp/benchmark ]] && prefix="${prefix:+$prefix;}$tp/benchmark"
  local hwy=()
  [[ -f $tp/hwy/include/hwy/highway.h ]] && hwy=(-DFUSEDKD_HWY_INCLUDE_DIR="$tp/hwy/include")
  cmake -S "$root" -B "$b" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DFUSEDKD_CUDA_WERROR=OFF -DFUSEDKD_CUDA_STATIC_RUNTIME=ON -DFUSEDKD_CUDA_RUNNER_SHARED=ON \
    -DCMAKE_DISABLE_FIND_PACKAGE_Torch=ON -DFUSEDKD_BUILD_EXAMPLES=OFF "${hwy[@]}" ${prefix:+-DCMAKE_PREFIX_PATH="$prefix"} &&
    cmake --build "$b" -j "$jobs" --target fusedkd_gpu_programs || return 1
  mkdir -p "$b/carry/bin" "$b/carry/lib"
  local p
  for p in "${programs[@]}"; do cp "$(find "$b" -type f -name "$p" -perm -u+x | grep -v /carry/ | head -1)" "$b/carry/bin/" 2>/dev/null; done
  cp "$(find "$b" -name libfusedkd_cuda_runner.so | grep -v /carry/ | head -1)" "$b/carry/lib/" 2>/dev/null
  [[ -d $tp/benchmark/lib ]] && cp "$tp"/benchmark/lib/* "$b/carry/lib/"
  return 0
}

if [[ ${1:-} == --fn ]]; then
  shift
  "$@"
  exit $?
fi

mkdir -p "$out"
logs=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-logs.XXXXXX")
summary=$out/summary.txt
t0=$(date +%s)
failed=0
rows=()
export LD_LIBRARY_PATH="$carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

now() { date +%s; }
left() { echo $(( budget - ($(now) - t0) )); }
pack() {  # summary + archive, after every step
  {
    echo "fusedkd gpu-check — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(( $(now) - t0 ))s so far, budget ${budget}s"
    echo "commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown); carry: $(sed -n 's/^commit: *//p' "$carry/MANIFEST.txt" 2>/dev/null || echo none)"
    [[ -f $logs/facts.txt ]] && sed -n '1,6p' "$logs/facts.txt" | sed 's/^/  /'
    printf '%-12s %-5s %6s  %s\n' STEP RESULT WALL DETAIL
    for r in "${rows[@]}"; do echo "$r"; done
  } > "$summary"
  cp "$summary" "$logs/summary.txt"
  tar -czf "$out/gpu-check-logs.tar.gz.tmp" -C "$logs" . 2>/dev/null && mv "$out/gpu-check-logs.tar.gz.tmp" "$out/gpu-check-logs.tar.gz"
}
row() {  # row STEP RESULT SECONDS DETAIL
  rows+=("$(printf '%-12s %-5s %5ss  %s' "$1" "$2" "$3" "$4")")
  [[ $2 == FAIL ]] && failed=1
  echo "[gpu-check +$(( $(now) - t0 ))s] $2 $1 ($3s) $4"
  pack
}
skipped() { [[ $skip_list == *" $1 "* ]]; }
# run_step NAME CAP LOG CMD... : runs CMD under min(CAP, time left); sets st (exit status, 124 on
# timeout) and dt (seconds); returns 1 (and records SKIP) when no time is left.
run_step() {
  local name=$1 cap=$2 log=$3
  shift 3
  local l
  l=$(left)
  if skipped "$name"; then row "$name" SKIP 0 "(GPU_CHECK_SKIP)"; return 1; fi
  if (( l < 8 )); then row "$name" SKIP 0 "(no time left in the ${budget}s budget)"; return 1; fi
  (( cap > l - 3 )) && cap=$(( l - 3 ))
  local s
  s=$(now)
  if declare -F "$1" >/dev/null; then
    timeout -k 5 "$cap" bash "$0" --fn "$@" > "$logs/$log" 2>&1
  else
    timeout -k 5 "$cap" "$@" > "$logs/$log" 2>&1
  fi
  st=$?
  dt=$(( $(now) - s ))
  [[ $st == 124 || $st == 137 ]] && echo "gpu-check: stopped at its ${cap}s cap" >> "$logs/$log"
  return 0
}
have_gpu=0
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then have_gpu=1; fi
nodevice() { grep -qiE "no CUDA device|no CUDA-capable|insufficient for CUDA runtime" "$logs/$1"; }
# verdict NAME LOG DETAIL: PASS on exit 0; SKIP when the program said there is no device and
# nvidia-smi agrees; else FAIL (a program that sees no device on a GPU machine is a failure).
verdict() {
  if [[ $st == 0 ]]; then row "$1" PASS "$dt" "$3"
  elif nodevice "$2" && [[ $have_gpu == 0 ]]; then row "$1" SKIP "$dt" "($(grep -m1 -oiE "no CUDA device.*|no CUDA-capable.*" "$logs/$2" | cut -c1-80))"
  elif [[ $st == 124 || $st == 137 ]]; then row "$1" FAIL "$dt" "(time cap reached) $3"
  else row "$1" FAIL "$dt" "(exit $st) $3"
  fi
}
gtest_counts() { grep -oE '^\[ +(PASSED|FAILED|SKIPPED) +\] [0-9]+ tests?' "$logs/$1" | tr -s ' []' ' ' | sed 's/^ //' | paste -sd, -; }

echo "gpu-check: carry $carry, out $out, budget ${budget}s"
pack

# ---- facts ------------------------------------------------------------------------------------------
if run_step facts 15 facts.txt facts; then
  if [[ $have_gpu == 0 ]]; then
    row facts SKIP "$dt" "(no working nvidia-smi: no GPU here; facts.txt has the rest)"
  else
    row facts PASS "$dt" "$(head -1 "$logs/facts.txt" | cut -c13-90)"
  fi
fi

# ---- start: every carried program loads (else lib/compat, else build here) -------------------------------
need_build=0
if [[ ${GPU_CHECK_BUILD:-0} == 1 ]]; then
  need_build=1
  row start SKIP 0 "(GPU_CHECK_BUILD=1: building here)"
elif run_step start 30 start.txt probe; then
  if [[ $st == 0 && $have_gpu == 1 ]]; then
    # They load; can they use the GPU (a driver too old for the carried CUDA runtime cannot)?
    "$bin/fusedkd_cuda_sweep" --device >> "$logs/start.txt" 2>&1
    if [[ $? == 0 ]]; then
      row start PASS "$dt" "(${#programs[@]} carried programs start; $(tail -1 "$logs/start.txt" | cut -c1-60))"
    else
      row start FAIL "$dt" "(the carried programs see no device: $(tail -1 "$logs/start.txt" | cut -c1-60); building here)"
      need_build=1
    fi
  elif [[ $st == 0 ]]; then
    row start PASS "$dt" "(${#programs[@]} carried programs start)"
  else
    export LD_LIBRARY_PATH="$carry/lib:$carry/lib/compat${LD_LIBRARY_PATH#"$carry/lib"}"
    run_step start 30 start-compat.txt probe
    if [[ $st == 0 ]]; then
      row start PASS "$dt" "(with gpu-carry/lib/compat: this machine's libstdc++ is older)"
    else
      row start FAIL "$dt" "(carried programs do not start: building here; see start.txt)"
      need_build=1
    fi
  fi
fi

# ---- fallback build ----------------------------------------------------------------------------------
if [[ $need_build == 1 ]]; then
  if run_step build 200 build.log build_here; then
    if [[ $st == 0 ]]; then
      bin=$root/build/gpu-check-build/carry/bin
      export GPU_CHECK_BIN=$bin
      export LD_LIBRARY_PATH="$root/build/gpu-check-build/carry/lib:$LD_LIBRARY_PATH"
    fi
    verdict build build.log "(Ninja, fusedkd_gpu_programs, no -Werror; log build.log)"
  fi
fi

# ---- host logic + CUDA tests ---------------------------------------------------------------------------
if run_step host-logic 20 host_logic_tests.log "$bin/fusedkd_cuda_host_logic_tests"; then
  verdict host-logic host_logic_tests.log "($(gtest_counts host_logic_tests.log))"
fi
gtest_verdict() {  # NAME LOG: every test skipped for want of a device is a SKIP, not a PASS; a test
  local c                 # skipped on a machine that has a device is a FAIL
  c=$(gtest_counts "$2")
  if [[ $st == 0 ]] && grep -q "SKIPPED" <<<"$c"; then
    if nodevice "$2" && [[ $have_gpu == 0 ]]; then
      row "$1" SKIP "$dt" "($c; $(grep -m1 -oiE "no CUDA device.*" "$logs/$2" | cut -c1-60))"
    else
      row "$1" FAIL "$dt" "($c: a test skipped on a GPU machine)"
    fi
  else
    verdict "$1" "$2" "($c)"
  fi
}
if run_step cuda-tests 110 cuda_tests.log "$bin/fusedkd_cuda_tests" --gtest_filter=-CudaDeterminism.* \
    --gtest_output="xml:$logs/cuda_tests.xml"; then
  gtest_verdict cuda-tests cuda_tests.log
fi

if run_step shard-tests 40 cuda_shard_tests.log "$bin/fusedkd_cuda_shard_tests"; then
  gtest_verdict shard-tests cuda_shard_tests.log
fi

# ---- conformance ---------------------------------------------------------------------------------------
if [[ ${#cases[@]} -eq 0 ]]; then
  row conformance FAIL 0 "(no case folder found)"
elif run_step conformance 40 conformance_cuda.log "$bin/fusedkd-check" --device cuda "${cases[@]}"; then
  verdict conformance conformance_cuda.log "($(tail -1 "$logs/conformance_cuda.log" | cut -c1-70))"
fi

# ---- compute-sanitizer -------------------------------------------------------------------------------------
sanitizer_refused=""
for tool in memcheck racecheck initcheck synccheck; do
  if [[ -z $sanitizer ]]; then row "$tool" SKIP 0 "(compute-sanitizer not found)"; continue; fi
  if [[ -n $sanitizer_refused ]]; then row "$tool" SKIP 0 "(refused: $sanitizer_refused)"; continue; fi
  extra=()
  [[ $tool == memcheck ]] && extra=(--leak-check full)
  if run_step "$tool" 40 "sanitizer_$tool.log" "$sanitizer" --tool "$tool" "${extra[@]}" --error-exitcode 86 \
      "$bin/fusedkd_cuda_sweep" --quick; then
    sum=$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|LEAK SUMMARY' "$logs/sanitizer_$tool.log" | tail -1 | sed 's/=* *//' | cut -c1-60)
    if grep -qiE "Device not supported|not supported on this|Unable to find injection|error 999" "$logs/sanitizer_$tool.log"; then
      sanitizer_refused=$(grep -m1 -oiE "Device not supported.*|not supported on this.*|Unable to find injection.*|error 999.*" "$logs/sanitizer_$tool.log" | cut -c1-60)
      row "$tool" SKIP "$dt" "(the sanitizer refused the device: $sanitizer_refused)"
    else
      verdict "$tool" "sanitizer_$tool.log" "($sum; $(tail -1 "$logs/sanitizer_$tool.log" | grep -o '[0-9]* runs.*' | head -1))"
    fi
  fi
done

# ---- determinism and graphs ------------------------------------------------------------------------------------
if run_step determinism 40 determinism.log "$bin/fusedkd_cuda_tests" --gtest_filter=CudaDeterminism.*; then
  gtest_verdict determinism determinism.log
  # The same test compares a graph (captured, replayed twice) bit for bit with the direct calls.
  if grep -q "^\[  PASSED  \] 1 test" "$logs/determinism.log"; then
    row graph PASS 0 "(capture + 2 replays bitwise equal to direct calls; in determinism.log)"
  elif grep -qiE "no CUDA device" "$logs/determinism.log"; then
    row graph SKIP 0 "(no CUDA device)"
  else
    row graph FAIL 0 "(see determinism.log)"
  fi
fi

# ---- timing table -------------------------------------------------------------------------------------------
if run_step timing 25 timing.txt "$bin/fusedkd_cuda_timing"; then
  verdict timing timing.txt "(timing.txt)"
fi

# ---- benchmarks ------------------------------------------------------------------------------------------------
if run_step bench 90 bench.log "$bin/fusedkd_bench_cuda" --fusedkd_shapes="$bench_shapes" --fusedkd_reps=2 \
    --fusedkd_min_time=0.02 --fusedkd_methods=fused,unfused --benchmark_out="$logs/bench.json" \
    --benchmark_out_format=json; then
  [[ -s $logs/bench.json ]] && cp "$logs/bench.json" "$out/bench.json"
  verdict bench bench.log "($(grep -c '_median' "$logs/bench.log" 2>/dev/null) medians; bench.json)"
fi

# ---- the example trainer on the GPU: not in the carry -------------------------------------------------
# fusedkd-train --device cuda needs OpenBLAS, cuBLAS and Fashion-MNIST (30 MB), which would take
# the carry past its 64 MiB; it stays a separate run (docs/trainer.md).
row trainer SKIP 0 "(not carried: needs OpenBLAS + Fashion-MNIST; see docs/trainer.md)"

total=PASS
[[ $failed == 1 ]] && total=FAIL
row total "$total" "$(( $(now) - t0 ))" "($(printf '%s\n' "${rows[@]}" | awk '{print $2}' | sort | uniq -c | awk '{printf "%s %s ", $1, $2}'))"
echo
echo "==== gpu-check: $(( $(now) - t0 ))s, out $out ($(ls "$out" | paste -sd' ' -)) ===="
cat "$summary"
exit $failed
