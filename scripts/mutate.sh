#!/usr/bin/env bash
# scripts/mutate.sh — plants the mutations of tests/mutations/*.patch one at a time and reports
# which the tests catch. Not part of CI (minutes per mutation on two cores).
#
#   scripts/mutate.sh                 every mutation, against the CI's LibTorch-free tests
#   scripts/mutate.sh --reference     and, for what they let through, the LibTorch reference tests
#   scripts/mutate.sh 02 kd-          only the mutations whose file name contains one of the words
#
# For each patch: `git apply --check` (a patch that no longer applies is reported "stale", not
# caught: the code it mutates has changed, so update or drop it), then the patch is applied, the
# test targets are rebuilt incrementally in their own build folder ($MUTATE_BUILD_DIR, default
# build/mutate) and run in stages, cheapest first (the strength tests and the conformance
# cases, then the whole unit suite, then the reference tests with --reference), stopping at the
# first stage that fails a test; then the source is restored from a copy, always: on
# success, failure, Ctrl-C or kill (trap). A mutation of the CUDA kernels only
# (kernels/**/*.cuh) is compiled to PTX (fusedkd_cuda_runner, in $MUTATE_BUILD_DIR-cuda, when
# nvcc is found) but not run: no test here runs a kernel without a GPU.
#
# A patch's first lines start with "# ": the first says what it plants; a line
# "# equivalent: ..." or "# within tolerance: ..." explains why it may survive. The table
# (stdout, and $MUTATE_BUILD_DIR/table.md) gives per mutation the failing tests (of the stage
# that caught it) and one of:
#   caught (stage) | survived (explained) | SURVIVED (unexplained) | stale | does not compile |
#   compiled, not run: needs GPU
# Exit status: 0 when nothing is unexplained, stale or broken; 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

reference=0
words=()
for a in "$@"; do
  case "$a" in
    --reference) reference=1 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) words+=("$a") ;;
  esac
done

build="${MUTATE_BUILD_DIR:-build/mutate}"
build_cuda="${build}-cuda"
jobs="${JOBS:-2}"
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi

patches=()
for p in tests/mutations/*.patch; do
  name=$(basename "$p" .patch)
  if [ ${#words[@]} -gt 0 ]; then
    keep=0
    for w in "${words[@]}"; do [[ "$name" == *"$w"* ]] && keep=1; done
    [ $keep -eq 1 ] || continue
  fi
  patches+=("$p")
done
[ ${#patches[@]} -gt 0 ] || { echo "mutate: no patch matches ${words[*]}" >&2; exit 2; }

# ---- restore: a copy of every file a patch touches, put back whatever happens ---------------
saved=$(mktemp -d)
restore() {
  if [ -f "$saved/list" ]; then
    # plain cp: a new mtime, so that the next build recompiles what the mutation changed
    while IFS= read -r f; do cp "$saved/files/$f" "$root/$f"; done < "$saved/list"
    rm -f "$saved/list"
  fi
}
cleanup() { restore; rm -rf "$saved"; }
trap cleanup EXIT
trap 'echo "mutate: interrupted, source restored" >&2; exit 130' INT TERM

touched() {  # the files a patch changes
  sed -n 's|^+++ b/||p' "$1"
}

# ---- build folders and the stages ------------------------------------------------------------
# A mutation is tried in stages, cheapest first, and the first stage with a failing test
# catches it: 1. the strength tests and the conformance cases (two files to rebuild), 2. the
# whole unit suite, 3. (--reference) the LibTorch reference tests.
stage_targets=("fusedkd_strength_tests" "fusedkd_unit_tests fusedkd_shard_tests" "fusedkd_reference_tests")
stage_labels=("strength|conformance" "unit" "reference")
stage_names=("strength+conformance" "unit" "reference")
skip='conformance\.shared|_NOT_BUILT|install_deps'  # another checkout's cases; unbuilt binaries; apt
# -O1 and no per-CPU clones: every mutation recompiles every test file it reaches (the library
# is header-only), and this halves that; the tests check values, not speed. MUTATE_CXX_FLAGS
# overrides (e.g. "-O3 -DNDEBUG" for the CI's own flags).
cxx_flags="${MUTATE_CXX_FLAGS:--O1 -DNDEBUG -DFUSEDKD_NO_CPU_DISPATCH}"
echo "== configuring $build (CXXFLAGS $cxx_flags)"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="$cxx_flags" \
  -DFUSEDKD_ENABLE_CUDA=OFF -DFUSEDKD_BUILD_EXAMPLES=OFF -DFUSEDKD_BUILD_BENCHMARKS=OFF \
  "${launcher[@]}" >/dev/null
if grep -q '^nlohmann_json_DIR:PATH=/' "$build/CMakeCache.txt" 2>/dev/null; then
  stage_targets[0]="fusedkd_strength_tests fusedkd-check"
else
  stage_labels[0]="strength"
fi
stages=2
if [ $reference -eq 1 ]; then
  if grep -q '^Torch_DIR:PATH=/' "$build/CMakeCache.txt"; then
    stages=3
  else
    echo "mutate: LibTorch not found, --reference ignored" >&2
  fi
fi
have_cuda=0
if command -v nvcc >/dev/null; then have_cuda=1; fi

build_stage() {  # build_stage K: the targets of stage K
  # shellcheck disable=SC2086
  nice cmake --build "$build" -j "$jobs" --target ${stage_targets[$1]} >"$build/last-build.log" 2>&1
}
# The tests of stage K that failed, one name per line (empty when all passed).
run_stage() {
  local out="$build/last-ctest.log"
  ctest --test-dir "$build" -L "${stage_labels[$1]}" -E "$skip" -j "$jobs" --timeout 300 >"$out" 2>&1 || true
  sed -n '/The following tests FAILED/,$p' "$out" | sed -n 's/^[[:space:]]*[0-9]\+ - \([^ ]*\).*/\1/p'
}

echo "== baseline: build and run the unmutated tests"
for ((k = 0; k < stages; ++k)); do
  build_stage $k || { echo "mutate: the unmutated tests do not build: see $build/last-build.log" >&2; exit 2; }
  failed=$(run_stage $k)
  if [ -n "$failed" ]; then
    echo "mutate: the unmutated tests fail (stage ${stage_names[$k]}); fix that first:" >&2
    echo "$failed" >&2
    exit 2
  fi
  echo "   ${stage_names[$k]}: $(grep -c 'Test *#' "$build/last-ctest.log" || true) tests pass"
done

# ---- one mutation at a time -------------------------------------------------------------------
table="$build/table.md"
{
  echo "| mutation | what it plants | tests failed | result |"
  echo "| --- | --- | --- | --- |"
} >"$table"
bad=0
for p in "${patches[@]}"; do
  name=$(basename "$p" .patch)
  what=$(sed -n '1s/^# //p' "$p")
  why=$(sed -n 's/^# \(equivalent: .*\|within tolerance: .*\)$/\1/p' "$p" | head -1)
  printf '== %s: %s\n' "$name" "$what"
  files=$(touched "$p")
  result="" ; list="-"
  if ! git apply --check "$p" 2>/dev/null; then
    result="stale: the patch no longer applies (update or drop it)"
    bad=1
  else
    kernel_only=1
    while IFS= read -r f; do [[ "$f" == kernels/*.cuh ]] || kernel_only=0; done <<<"$files"
    mkdir -p "$saved/files"
    : >"$saved/list.tmp"
    while IFS= read -r f; do
      mkdir -p "$saved/files/$(dirname "$f")"
      cp -p "$f" "$saved/files/$f"
      echo "$f" >>"$saved/list.tmp"
    done <<<"$files"
    mv "$saved/list.tmp" "$saved/list"
    git apply "$p"
    if [ $kernel_only -eq 1 ]; then
      if [ $have_cuda -eq 0 ]; then
        result="not compiled: no nvcc"
      else
        if [ ! -f "$build_cuda/CMakeCache.txt" ]; then
          # PTX only (no ptxas, the slow part): the kernels are compiled, never run here
          cmake -S . -B "$build_cuda" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=80-virtual \
            -DFUSEDKD_BUILD_EXAMPLES=OFF -DFUSEDKD_BUILD_BENCHMARKS=OFF "${launcher[@]}" >/dev/null
        fi
        if nice cmake --build "$build_cuda" -j "$jobs" --target fusedkd_cuda_runner >"$build_cuda/last-build.log" 2>&1; then
          result="compiled, not run: needs GPU"
        else
          result="does not compile (see $build_cuda/last-build.log)"
          bad=1
        fi
      fi
    else
      result=""
      for ((k = 0; k < stages; ++k)); do
        if ! build_stage $k; then
          result="does not compile (see $build/last-build.log)"
          bad=1
          break
        fi
        failed=$(run_stage $k)
        if [ -n "$failed" ]; then
          n=$(echo "$failed" | wc -l)
          list=$(echo "$failed" | head -3 | paste -sd ' ' | sed 's/ /, /g')
          [ "$n" -gt 3 ] && list="$list (+$((n - 3)) more)"
          list="$n: $list"
          result="caught (${stage_names[$k]})"
          break
        fi
      done
      if [ -z "$result" ]; then
        if [ -n "$why" ]; then
          result="survived ($why)"
        else
          result="SURVIVED (unexplained)"
          bad=1
        fi
      fi
    fi
    restore
  fi
  echo "   $result"
  echo "| $name | $what | $list | $result |" >>"$table"
done

# put the tests back to the unmutated source (so the build folder matches the tree)
echo "== rebuilding the unmutated tests"
for ((k = 0; k < stages; ++k)); do build_stage $k || true; done
echo
cat "$table"
echo
echo "(table saved in $table)"
exit $bad
