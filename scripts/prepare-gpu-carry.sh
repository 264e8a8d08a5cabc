#!/usr/bin/env bash
# scripts/prepare-gpu-carry.sh — fills third_party/ (ignored by git) with what scripts/gpu-check.sh
# needs on a GPU machine that has no network and no GoogleTest / nlohmann_json:
#
#   third_party/googletest/       a copy of the GoogleTest sources (default /usr/src/googletest)
#   third_party/nlohmann_json/    a CMake prefix: include/nlohmann/ and a minimal package config
#   third_party/shared-cases/     a copy of ../shared/conformance/cases, when it exists (the
#                                 folder beside the checkout does not travel with the tree)
#   third_party/benchmark/        Google Benchmark (headers, shared library, package config), for
#                                 gpu-check's benchmark step (scripts/bench.sh --prepare-carry)
#   third_party/fashion-mnist/    with FUSEDKD_CARRY_DATA=1: the Fashion-MNIST files (30 MB), for
#                                 gpu-check's trainer step on a machine without the Debian package
#   third_party/hwy/include/hwy/  Highway's headers (the CPU backend's SIMD, header-only), which
#                                 the CUDA programs' host code includes too
#
# Run it here, then carry `third_party` with the working tree (about 7 MB; 37 MB with the data).
# Environment: GTEST_SRC (default /usr/src/googletest), JSON_INCLUDE and HWY_INCLUDE (default
# /usr/include).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tp=$root/third_party
gtest_src=${GTEST_SRC:-/usr/src/googletest}
json_include=${JSON_INCLUDE:-/usr/include}

mkdir -p "$tp"

if [[ ! -f $gtest_src/CMakeLists.txt ]]; then
  echo "prepare-gpu-carry: no GoogleTest sources at $gtest_src (Debian: libgtest-dev / googletest)" >&2
  exit 1
fi
hwy_include=${HWY_INCLUDE:-/usr/include}
if [[ ! -f $hwy_include/hwy/highway.h ]]; then
  echo "prepare-gpu-carry: no hwy/highway.h under $hwy_include (Debian: libhwy-dev)" >&2
  exit 1
fi
rm -rf "$tp/hwy"
mkdir -p "$tp/hwy/include"
cp -r "$hwy_include/hwy" "$tp/hwy/include/"
echo "third_party/hwy             <- $hwy_include/hwy"

rm -rf "$tp/googletest"
cp -r "$gtest_src" "$tp/googletest"
echo "third_party/googletest      <- $gtest_src"

if [[ ! -f $json_include/nlohmann/json.hpp ]]; then
  echo "prepare-gpu-carry: no nlohmann/json.hpp under $json_include (Debian: nlohmann-json3-dev)" >&2
  exit 1
fi
rm -rf "$tp/nlohmann_json"
mkdir -p "$tp/nlohmann_json/include" "$tp/nlohmann_json/share/cmake/nlohmann_json"
cp -r "$json_include/nlohmann" "$tp/nlohmann_json/include/"
version=$(cat "$json_include/nlohmann/detail/abi_macros.hpp" "$json_include/nlohmann/json.hpp" 2>/dev/null |
  sed -n 's/^#define NLOHMANN_JSON_VERSION_\(MAJOR\|MINOR\|PATCH\) *\([0-9]*\).*/\2/p' | head -3 | paste -sd. -)
version=${version:-3.11.0}
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
cat > "$tp/nlohmann_json/share/cmake/nlohmann_json/nlohmann_jsonConfigVersion.cmake" <<EOF
set(PACKAGE_VERSION "$version")
if(PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
  if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
EOF
echo "third_party/nlohmann_json   <- $json_include/nlohmann (version $version)"

shared_cases=$root/../shared/conformance/cases
rm -rf "$tp/shared-cases"
if [[ -d $shared_cases ]]; then
  cp -r "$shared_cases" "$tp/shared-cases"
  echo "third_party/shared-cases    <- $(cd "$shared_cases" && pwd)"
fi
if ! "$root/scripts/bench.sh" --prepare-carry; then
  echo "prepare-gpu-carry: no Google Benchmark here: gpu-check will skip its benchmark step" >&2
fi
if [[ ${FUSEDKD_CARRY_DATA:-0} == 1 ]]; then
  src=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
  if [[ -f $src/train-images-idx3-ubyte.gz ]]; then
    rm -rf "$tp/fashion-mnist"
    mkdir -p "$tp/fashion-mnist"
    cp "$src"/*-ubyte.gz "$tp/fashion-mnist/"
    echo "third_party/fashion-mnist   <- $src"
  else
    echo "prepare-gpu-carry: no Fashion-MNIST at $src (Debian: dataset-fashion-mnist)" >&2
  fi
fi
du -sh "$tp" | sed 's/^/third_party: /'
