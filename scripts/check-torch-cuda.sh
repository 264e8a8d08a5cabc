#!/usr/bin/env bash
# Compiles (does not link or run) the CUDA path of fusedkd/torch.hpp: python/csrc/fusedkd_ops.cu
# with nvcc against the torch headers Python sees, here Debian's CPU-only torch. Those headers lack
# the generated c10/cuda/impl/cuda_cmake_macros.h, so a one-line stand-in is made in the build
# folder. Catches API drift between torch.hpp and cuda.cuh on machines without a CUDA PyTorch.
# Usage: scripts/check-torch-cuda.sh [ARCH]   (default sm_80; about 1.5 min of CPU time)
set -euo pipefail
cd "$(dirname "$0")/.."
arch="${1:-sm_80}"
out=build/torch-cuda-check
python="${PYTHON:-/usr/bin/python3}"
[ -x "$python" ] || python=python3
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
torch_inc=$("$python" -c 'from torch.utils import cpp_extension as c; print(" ".join(c.include_paths()))' 2>/dev/null)
abi=$("$python" -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))' 2>/dev/null)
mkdir -p "$out/include/c10/cuda/impl"
if [ ! -f "${torch_inc%% *}/c10/cuda/impl/cuda_cmake_macros.h" ]; then
  echo '#define C10_CUDA_BUILD_SHARED_LIBS' > "$out/include/c10/cuda/impl/cuda_cmake_macros.h"
fi
includes=(-I include -I kernels -I "$out/include")
for d in $torch_inc; do includes+=(-isystem "$d"); done
nvcc -c -std=c++17 -O1 -arch="$arch" -Xcompiler -fopenmp "${includes[@]}" \
  -D_GLIBCXX_USE_CXX11_ABI="$abi" python/csrc/fusedkd_ops.cu -o "$out/fusedkd_ops.o"
echo "check-torch-cuda: python/csrc/fusedkd_ops.cu compiles for $arch ($out/fusedkd_ops.o)"
