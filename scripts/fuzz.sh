#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang under ASan + UBSan and runs each for
# SECONDS (default 300), starting from the checked-in seeds. New inputs go to
# $BUILD_DIR/corpus-<target> (kept between runs), crashes to $BUILD_DIR/crash-*.
#   scripts/fuzz.sh [SECONDS] [api|case_reader ...]
# CI runs `scripts/fuzz.sh 30`. Reproduce a crash: $BUILD_DIR/tests/fuzz/fusedkd_fuzz_<t> FILE
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-300}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(api case_reader)
build="${BUILD_DIR:-build/fuzz}"

cxx="${FUZZ_CXX:-}"
if [ -z "$cxx" ]; then
  for c in clang++-14 clang++; do command -v "$c" >/dev/null && { cxx="$c"; break; }; done
fi
if [ -z "$cxx" ]; then
  echo "fuzz.sh: no clang++ found (Debian: apt-get install clang-14 libclang-rt-14-dev)" >&2
  exit 1
fi

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER="$cxx" \
  -DFUSEDKD_BUILD_FUZZERS=ON -DFUSEDKD_BUILD_TESTS=OFF -DFUSEDKD_BUILD_TOOLS=OFF \
  -DFUSEDKD_BUILD_EXAMPLES=OFF -DFUSEDKD_BUILD_BENCHMARKS=OFF -DFUSEDKD_ENABLE_CUDA=OFF \
  -DFUSEDKD_ENABLE_OPENMP=OFF -DCMAKE_DISABLE_FIND_PACKAGE_Torch=ON >/dev/null
for t in "${targets[@]}"; do
  cmake --build "$build" -j "${JOBS:-$(nproc)}" --target "fusedkd_fuzz_$t"
done

# allocator_may_return_null: a refused huge allocation must reach the library as nullptr
# (kOutOfMemory), as it does without ASan.
export ASAN_OPTIONS="allocator_may_return_null=1:detect_leaks=1:abort_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
for t in "${targets[@]}"; do
  corpus="$build/corpus-$t"
  mkdir -p "$corpus"
  echo "== fuzz $t for ${seconds} s"
  "$build/tests/fuzz/fusedkd_fuzz_$t" -max_total_time="$seconds" -max_len=8192 -timeout=20 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$build/" \
    "$corpus" "tests/fuzz/corpus/$t" 2>&1 | grep -v "^#[0-9]*	\(NEW\|REDUCE\|pulse\)" || {
    echo "fuzz.sh: fusedkd_fuzz_$t found a problem; the input is in $build/ (crash-*, oom-*, leak-*, timeout-*)" >&2
    exit 1
  }
done
