#!/usr/bin/env bash
# Installs the Debian packages fusedkd's build, tests, examples and benchmarks need.
# Idempotent: apt-get runs only when something is missing; sudo only when not root.
# Usage: scripts/install-deps.sh [PKG...]   (default: everything; run-trainer.sh passes its own)
set -euo pipefail

say() { printf 'install-deps: %s\n' "$*" >&2; }

packages=("$@")
if [ ${#packages[@]} -eq 0 ]; then
  packages=(cmake g++ make pkg-config libgtest-dev libbenchmark-dev libtorch-dev
            nlohmann-json3-dev libopenblas-dev zlib1g-dev dataset-fashion-mnist)
fi

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  say "not a Debian/Ubuntu system: install the equivalents of ${packages[*]} yourself"
  exit 0
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    say "missing packages: ${missing[*]}; run as root or install sudo"
    exit 1
  fi
  sudo=(sudo)
fi
say "installing ${missing[*]}"
# `env` inside sudo: sudo resets the environment, and apt would then ask questions.
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "${missing[@]}" >/dev/null
