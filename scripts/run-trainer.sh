#!/usr/bin/env bash
# Builds and runs the example trainer fusedkd-train (examples/trainer, docs/trainer.md).
#
#   scripts/run-trainer.sh [fusedkd-train options]     e.g.  scripts/run-trainer.sh --quick
#
# 1. Installs what is missing with apt-get (Debian/Ubuntu): cmake, g++, libopenblas-dev,
#    zlib1g-dev, dataset-fashion-mnist, python3-matplotlib. Nothing is installed when all are
#    present; sudo is used only when not root. Set FUSEDKD_NO_INSTALL=1 to skip this step.
# 2. Configures and builds only the trainer (no tests, benchmarks, tools or CUDA) in
#    build-trainer/, or in $FUSEDKD_TRAINER_BUILD_DIR.
# 3. Runs fusedkd-train with the arguments given to this script (default output: ./trainer-out).
# 4. Draws the charts (accuracy.png, ablation-table<T>.png) from its CSV with scripts/plot_trainer.py
#    and Debian's /usr/bin/python3 (a python3 earlier on PATH, e.g. a pyenv or venv, may lack
#    python3-matplotlib); without matplotlib it says so and leaves the CSV.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
build="${FUSEDKD_TRAINER_BUILD_DIR:-$root/build-trainer}"
packages=(cmake g++ libopenblas-dev zlib1g-dev dataset-fashion-mnist python3-matplotlib)

say() { printf 'run-trainer: %s\n' "$*" >&2; }

if [[ "${FUSEDKD_NO_INSTALL:-0}" != 1 ]]; then
  # Not on Debian/Ubuntu it says so and goes on: then pass --data-dir DIR to the trainer.
  "$here/install-deps.sh" "${packages[@]}"
fi

jobs="$(nproc 2>/dev/null || echo 2)"
# Configure every time (a second run takes a second): a package installed since the last run is
# then found.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release \
    -DFUSEDKD_BUILD_TESTS=OFF -DFUSEDKD_BUILD_BENCHMARKS=OFF -DFUSEDKD_BUILD_TOOLS=OFF \
    -DFUSEDKD_BUILD_EXAMPLES=ON -DFUSEDKD_ENABLE_CUDA=OFF >"$log" 2>&1; then
  cat "$log" >&2
  say "cmake could not configure the project in $build"
  exit 1
fi
if grep -q 'skipping the example trainer' "$log"; then
  grep 'skipping the example trainer' "$log" >&2
  exit 1
fi
cmake --build "$build" --target fusedkd-train -j "$jobs" >"$log" 2>&1 || {
  cat "$log" >&2
  say "building fusedkd-train failed"
  exit 1
}
rm -f "$log"
trap - EXIT
"$build/examples/fusedkd-train" "$@"

# The output folder the trainer wrote to (its --out, else ./trainer-out); nothing to draw for --help.
out=./trainer-out
args=("$@")
for ((i = 0; i < ${#args[@]}; ++i)); do
  case "${args[i]}" in
    --help|-h) exit 0 ;;
    --out) out="${args[i + 1]:-$out}" ;;
  esac
done
py=/usr/bin/python3
if [[ ! -x $py ]] || ! "$py" -c 'import matplotlib' 2>/dev/null; then
  py=python3
  if ! "$py" -c 'import matplotlib' 2>/dev/null; then
    say "no matplotlib (python3-matplotlib): the results are in $out as CSV, without the charts"
    exit 0
  fi
fi
"$py" "$here/plot_trainer.py" "$out"
