#!/usr/bin/env bash
# Cross-compiles the CPU unit tests for aarch64 (Debian's g++-aarch64-linux-gnu: Highway's NEON
# target) and runs them under qemu-user. The CPU backend's vector code has one source for every
# target; this is the check that a non-x86 target builds and passes.
#
#   scripts/test-aarch64.sh            build into $BUILD_DIR (default build/aarch64) and run
#   AARCH64_QUICK=1 scripts/test-aarch64.sh   without the column-shard suites and the thread-count
#                                      determinism test (3 minutes of the 3.5 under emulation;
#                                      both run natively in the other builds): what CI runs
#
# Needs: g++-aarch64-linux-gnu, qemu-user, libgtest-dev (its sources, built here for aarch64),
# libhwy-dev (its headers are architecture-independent). scripts/install-deps.sh installs them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh g++-aarch64-linux-gnu qemu-user libgtest-dev libhwy-dev

build=${BUILD_DIR:-build/aarch64}
cxx=${CXX_AARCH64:-aarch64-linux-gnu-g++}
mkdir -p "$build/include"
# Highway's headers only (not the host's whole /usr/include, which holds x86 glibc headers).
ln -sfn "$(dirname "$(find /usr/include -maxdepth 2 -name highway.h -path '*hwy*' | head -1)")" "$build/include/hwy"
gtest=/usr/src/googletest/googletest
# armv8-a+crypto: Highway's NEON target (plain armv8-a gets its EMU128 target, cpu_simd.hpp).
flags=(-std=c++17 -O2 -march=${AARCH64_MARCH:-armv8-a+crypto} -fopenmp -DFUSEDKD_SOURCE_DIR="\"$PWD\"" -Iinclude -Itests -isystem "$build/include" -isystem "$gtest/include" -I"$gtest")

start=$(date +%s)
# Object by object, two at a time: the unit test sources, GoogleTest and its main.
objs=()
sources=(tests/unit_*_test.cpp "$gtest/src/gtest-all.cc" "$gtest/src/gtest_main.cc")
filter=()
if [[ ${AARCH64_QUICK:-0} == 1 ]]; then
  sources=()
  for src in tests/unit_*_test.cpp "$gtest/src/gtest-all.cc" "$gtest/src/gtest_main.cc"; do
    case $src in *unit_shard_test.cpp|*unit_data_parallel_test.cpp) ;; *) sources+=("$src") ;; esac
  done
  filter=(--gtest_filter=-Behaviour.DeterministicAcrossCallsAndThreadCounts:Losses/Strength.BitwiseEqual*)
fi
pids=()
for src in "${sources[@]}"; do
  obj="$build/$(basename "${src%.*}").o"
  objs+=("$obj")
  if [[ ! -f $obj || $src -nt $obj || -n $(find include -newer "$obj" -name '*.hpp' | head -1) ]]; then
    "$cxx" "${flags[@]}" -c "$src" -o "$obj" &
    pids+=($!)
    if [[ ${#pids[@]} -ge ${JOBS:-2} ]]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
  fi
done
for p in "${pids[@]}"; do wait "$p"; done
"$cxx" -fopenmp "${objs[@]}" -o "$build/fusedkd_unit_tests" -lpthread
echo "test-aarch64: built in $(( $(date +%s) - start )) s"

file "$build/fusedkd_unit_tests" 2>/dev/null | grep -q aarch64 || { echo "test-aarch64: not an aarch64 binary" >&2; exit 1; }
start=$(date +%s)
OMP_NUM_THREADS=2 qemu-aarch64 -L /usr/aarch64-linux-gnu "$build/fusedkd_unit_tests" --gtest_brief=1 "${filter[@]}"
echo "test-aarch64: tests ran in $(( $(date +%s) - start )) s under qemu-aarch64"
