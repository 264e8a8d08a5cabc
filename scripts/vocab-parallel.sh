#!/usr/bin/env bash
# Runs examples/vocab_parallel over NP local MPI processes (default 4), building it first:
#   scripts/vocab-parallel.sh [NP] [--bench [N] [REPS]]
# Open MPI flags for one machine: more ranks than cores, root allowed (containers), and only
# shared memory between the processes (no network needed). Build folder: $BUILD_DIR (build/).
set -euo pipefail
cd "$(dirname "$0")/.."
np="${1:-4}"
shift || true
build="${BUILD_DIR:-build}"
[ -f "$build/CMakeCache.txt" ] || cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target fusedkd-vocab-parallel -j "${JOBS:-$(nproc)}" >/dev/null
# One thread per rank unless told otherwise: the ranks share this machine's cores.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
flags=()
if mpiexec --version 2>&1 | grep -q "Open MPI\|OpenRTE"; then
  flags=(--oversubscribe)
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader \
         OMPI_MCA_oob_tcp_if_include=lo OMPI_MCA_btl_vader_single_copy_mechanism=none \
         OMPI_MCA_pml=ob1 OMPI_MCA_osc=^ucx OMPI_MCA_mtl=^ofi
fi
exec mpiexec -n "$np" "${flags[@]}" "$build/examples/fusedkd-vocab-parallel" "$@"
