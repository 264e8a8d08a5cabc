#!/usr/bin/env bash
# scripts/prepare-gpu-carry.sh — builds every GPU program HERE (nvcc, sm_90) and packs it, with
# what it needs, into gpu-carry/ (ignored by git), so that the GPU machine only runs
# scripts/gpu-check.sh. Prints the carry's size and the exact device `run` call to make.
#
#   scripts/prepare-gpu-carry.sh            build + pack + probe (each program must start)
#
# gpu-carry/
#   bin/           fusedkd_cuda_tests, fusedkd_cuda_host_logic_tests, fusedkd_cuda_shard_tests
#                  (without the NCCL adapter's test: libnccl is too big to carry),
#                  fusedkd_cuda_sweep, fusedkd_cuda_timing, fusedkd-check, fusedkd_bench_cuda
#                  (static CUDA runtime)
#   lib/           libfusedkd_cuda_runner.so (the kernels, once), Google Benchmark, libgomp
#   lib/compat/    this machine's libstdc++ / libgcc_s, used only if a program does not start
#                  with the GPU machine's own
#   cases/shared/  a copy of ../shared/conformance/cases (the folder beside the checkout does not
#                  travel; the project's own tests/conformance/cases travel with the tree)
#   third_party/   GoogleTest sources, nlohmann_json, Google Benchmark, Highway's headers: for gpu-check's
#                  fallback build on the GPU machine when a carried program does not start
#   MANIFEST.txt   commit, compiler, architectures, sizes, the newest glibc symbol versions used
#
# Environment: BUILD_DIR (default build/gpu-carry), CUDA_ARCH (default 90), JOBS (default 2),
# SHARED_CASES (default ../shared/conformance/cases beside the checkout, else
# /work/shared/conformance/cases), GTEST_SRC (default /usr/src/googletest), JSON_INCLUDE
# (default /usr/include).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build/gpu-carry}
arch=${CUDA_ARCH:-90}
jobs=${JOBS:-2}
carry=$root/gpu-carry
gtest_src=${GTEST_SRC:-/usr/src/googletest}
json_include=${JSON_INCLUDE:-/usr/include}
programs=(fusedkd_cuda_tests fusedkd_cuda_host_logic_tests fusedkd_cuda_shard_tests fusedkd_cuda_sweep
          fusedkd_cuda_timing fusedkd-check fusedkd_bench_cuda)
t0=$(date +%s)

if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
command -v nvcc >/dev/null || { echo "prepare-gpu-carry: nvcc not found" >&2; exit 1; }
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

# The host code is built for a portable x86-64 level, not -march=native: this machine's CPU
# (AVX-512 with FP16) may have instructions the GPU machine's host CPU lacks. x86-64-v3 plus
# AES/PCLMUL is what Highway's AVX2 target needs. Override with HOST_MARCH.
host_march=${HOST_MARCH:--march=x86-64-v3 -maes -mpclmul}

# ---- build ----------------------------------------------------------------------------------------
mkdir -p "$build"
echo "== configure $build (sm_$arch, static CUDA runtime, shared runner)"
cmake -S "$root" -B "$build" "${generator[@]}" "${launcher[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_ARCHITECTURES="$arch" -DFUSEDKD_CUDA_STATIC_RUNTIME=ON -DFUSEDKD_CUDA_RUNNER_SHARED=ON \
  -DCMAKE_DISABLE_FIND_PACKAGE_Torch=ON -DFUSEDKD_BUILD_EXAMPLES=OFF -DFUSEDKD_BUILD_BENCHMARKS=ON \
  -DFUSEDKD_NCCL_LIBRARY=OFF \
  -DFUSEDKD_NATIVE=OFF -DCMAKE_CXX_FLAGS="$host_march" \
  > "$build/configure.log" 2>&1 || { tail -30 "$build/configure.log"; exit 1; }
grep -q "fusedkd: CUDA ON" "$build/configure.log" || { echo "prepare-gpu-carry: CUDA is off" >&2; exit 1; }
echo "== build fusedkd_gpu_programs (-j$jobs)"
start=$(date +%s)
nice cmake --build "$build" -j "$jobs" --target fusedkd_gpu_programs
echo "   built in $(( $(date +%s) - start ))s"

# ---- pack -----------------------------------------------------------------------------------------
rm -rf "$carry"
mkdir -p "$carry/bin" "$carry/lib/compat" "$carry/cases"
for p in "${programs[@]}"; do
  f=$(find "$build" -type f -name "$p" -perm -u+x | head -1)
  [[ -n $f ]] || { echo "prepare-gpu-carry: $p was not built" >&2; exit 1; }
  cp "$f" "$carry/bin/"
done
cp -L "$(find "$build" -name 'libfusedkd_cuda_runner.so' | head -1)" "$carry/lib/"
strip --strip-unneeded "$carry"/bin/* "$carry"/lib/*.so 2>/dev/null || true

# Shared libraries the programs load, except glibc's and the driver's (the GPU machine has its
# own, matching its kernel module). libstdc++ / libgcc_s go to lib/compat.
declare -A seen=()
for f in "$carry"/bin/* "$carry"/lib/*.so; do
  while read -r name path; do
    [[ -z $path || ! -f $path ]] && continue
    case $name in
      libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libcuda.so*|libfusedkd_cuda_runner.so) continue ;;
      libnccl*|libcublas*|libcudnn*) continue ;;  # far too big; the GPU machine's toolkit has its own
      libstdc++.so*|libgcc_s.so*) dest=$carry/lib/compat ;;
      *) dest=$carry/lib ;;
    esac
    [[ -n ${seen[$name]:-} ]] && continue
    seen[$name]=1
    cp -L "$path" "$dest/$name"
  done < <(LD_LIBRARY_PATH="$carry/lib" ldd "$f" 2>/dev/null | awk '/=>/ {print $1, $3}')
done

shared_cases=${SHARED_CASES:-$root/../shared/conformance/cases}
[[ -d $shared_cases || -n ${SHARED_CASES:-} ]] || shared_cases=/work/shared/conformance/cases
if [[ -d $shared_cases ]]; then
  cp -r "$shared_cases" "$carry/cases/shared"
else
  echo "prepare-gpu-carry: no $shared_cases: only the project's cases will run" >&2
fi

# Sources and packages for the fallback build on the GPU machine.
tp=$carry/third_party
mkdir -p "$tp"
if [[ -f $gtest_src/CMakeLists.txt ]]; then
  cp -r "$gtest_src" "$tp/googletest"
  rm -rf "$tp/googletest/googlemock/docs" "$tp/googletest/docs" 2>/dev/null || true
fi
hwy_include=${HWY_INCLUDE:-/usr/include}
if [[ -f $hwy_include/hwy/highway.h ]]; then  # the CPU backend's SIMD headers (header-only)
  mkdir -p "$tp/hwy/include"
  cp -r "$hwy_include/hwy" "$tp/hwy/include/"
fi
if [[ -f $json_include/nlohmann/json.hpp ]]; then
  mkdir -p "$tp/nlohmann_json/include" "$tp/nlohmann_json/share/cmake/nlohmann_json"
  cp -r "$json_include/nlohmann" "$tp/nlohmann_json/include/"
  cat > "$tp/nlohmann_json/share/cmake/nlohmann_json/nlohmann_jsonConfig.cmake" <<'EOF'
# Minimal package config written by scripts/prepare-gpu-carry.sh (header-only library).
get_filename_component(_nlohmann_json_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET nlohmann_json::nlohmann_json)
  add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED)
  set_target_properties(nlohmann_json::nlohmann_json PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${_nlohmann_json_prefix}/include")
endif()
set(nlohmann_json_FOUND TRUE)
EOF
  cat > "$tp/nlohmann_json/share/cmake/nlohmann_json/nlohmann_jsonConfigVersion.cmake" <<'EOF'
set(PACKAGE_VERSION "3.11.0")
set(PACKAGE_VERSION_COMPATIBLE TRUE)
EOF
fi
# Google Benchmark, as bench.sh --prepare-carry copies it (skipped where it is not installed)
FUSEDKD_BENCHMARK_CARRY_DIR=$tp/benchmark "$root/scripts/bench.sh" --prepare-carry >/dev/null || true

# ---- manifest ---------------------------------------------------------------------------------------
newest() {  # the newest symbol version of a family (GLIBC, GLIBCXX) the carried binaries need
  for f in "$carry"/bin/* "$carry"/lib/*.so*; do objdump -T "$f" 2>/dev/null; done |
    grep -o "$1_[0-9.]*" | sort -uV | tail -1
}
{
  echo "fusedkd GPU carry"
  echo "commit:    $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')"
  echo "built:     $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m), $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")"
  echo "nvcc:      $(nvcc --version | tail -2 | head -1)"
  echo "arch:      sm_$arch (+ compute_$arch PTX)"
  echo "needs:     $(newest GLIBC), $(newest GLIBCXX), a driver for CUDA $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
  echo "files:"
  (cd "$carry" && find . -type f -not -path './third_party/*' -not -path './cases/*' -printf '  %8s  %p\n' | sort -k2)
} > "$carry/MANIFEST.txt"

# ---- probe: every carried program starts here and reports the missing device cleanly -------------------
echo "== probe (no GPU here: each program must start and say so)"
probe_failed=0
for p in "${programs[@]}"; do
  set +e
  case $p in
    fusedkd_cuda_tests|fusedkd_cuda_host_logic_tests|fusedkd_cuda_shard_tests)
      out=$(LD_LIBRARY_PATH="$carry/lib" "$carry/bin/$p" --gtest_brief=1 2>&1); st=$? ;;
    fusedkd-check)
      out=$(LD_LIBRARY_PATH="$carry/lib" "$carry/bin/$p" --device cuda "$root/tests/conformance/cases" 2>&1); st=$? ;;
    fusedkd_bench_cuda)
      out=$(LD_LIBRARY_PATH="$carry/lib" "$carry/bin/$p" --benchmark_list_tests=true 2>&1); st=$? ;;
    *)
      out=$(LD_LIBRARY_PATH="$carry/lib" "$carry/bin/$p" --quick 2>&1); st=$? ;;
  esac
  set -e
  line=$(grep -m1 -iE "no CUDA device|PASSED|error while loading" <<<"$out" || true)
  if grep -qiE "error while loading|not found \(required" <<<"$out"; then
    probe_failed=1
    printf '  %-32s exit %-3s FAILED TO START: %s\n' "$p" "$st" "$line"
  else
    printf '  %-32s exit %-3s %s\n' "$p" "$st" "${line:-$(tail -1 <<<"$out")}"
  fi
done
[[ $probe_failed == 0 ]] || { echo "prepare-gpu-carry: a carried program does not start here" >&2; exit 1; }

size=$(du -sb "$carry" | cut -f1)
if (( size > 48 * 1024 * 1024 )); then
  du -sh "$carry"/*/* | sort -h | tail -5 >&2
  echo "prepare-gpu-carry: the carry is $(( size / 1024 / 1024 )) MiB, over the 48 MiB this script allows" >&2
  exit 1
fi
tree=$(git -C "$root" ls-files -z | (cd "$root" && xargs -0 du -cb 2>/dev/null) | tail -1 | cut -f1)
echo
echo "gpu-carry: $(( size / 1024 / 1024 )) MiB ($size bytes); tracked tree: $(( tree / 1024 / 1024 )) MiB;" \
     "together $(( (size + tree) / 1024 / 1024 )) MiB of the 64 MiB a run may carry"
du -sh "$carry"/bin "$carry"/lib "$carry"/cases "$carry"/third_party 2>/dev/null | sed 's/^/  /'
echo "prepared in $(( $(date +%s) - t0 ))s"
echo
echo "The device call (device time: machine start ~1-2 min + this command, under 6 min):"
echo "  run(command=\"bash scripts/gpu-check.sh\", carry=[\"gpu-carry\"], timeout_s=420)"
echo "Then: copy its summary into docs/cuda.md, its bench JSON into docs/benchmarks/."
