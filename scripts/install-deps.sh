#!/usr/bin/env bash
# Installs the Debian packages fusedkd's build, tests, examples and benchmarks need.
# Idempotent: apt-get runs only when something is missing; sudo only when not root.
# Usage: scripts/install-deps.sh [PKG...]   (default: everything; run-trainer.sh passes its own)
# When another apt or dpkg (an unattended upgrade, a second terminal) holds the apt lock, it says
# so and waits for it, up to FUSEDKD_APT_LOCK_TIMEOUT seconds (default 600), then fails with a
# clear message.
set -euo pipefail

say() { printf 'install-deps: %s\n' "$*" >&2; }

lock_timeout="${FUSEDKD_APT_LOCK_TIMEOUT:-600}"
lock_poll="${FUSEDKD_APT_LOCK_POLL:-10}"

# apt-get "$@" as root, waiting for the apt lock: apt waits up to lock_poll seconds itself
# (DPkg::Lock::Timeout), and while it reports a held lock we say so and try again, until
# lock_timeout seconds have passed. Another failure is reported at once, with apt's message.
apt_get() {
  local start out rc waited said=0
  start=$(date +%s)
  while :; do
    rc=0
    # `env` inside sudo: sudo resets the environment, and apt would then ask questions.
    out=$("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$lock_poll" \
          "$@" 2>&1) || rc=$?
    [ "$rc" -eq 0 ] && return 0
    if ! grep -qiE 'could not get lock|unable to lock|unable to acquire' <<<"$out"; then
      printf '%s\n' "$out" >&2
      say "apt-get $1 failed (exit $rc)"
      return "$rc"
    fi
    waited=$(( $(date +%s) - start ))
    if [ "$waited" -ge "$lock_timeout" ]; then
      printf '%s\n' "$out" >&2
      say "the apt lock is still held after ${waited} s (another apt or dpkg is running, e.g. an"
      say "unattended upgrade): let it finish and run this again, or raise FUSEDKD_APT_LOCK_TIMEOUT"
      exit 1
    fi
    if [ "$said" -eq 0 ]; then
      say "another apt or dpkg process holds the apt lock: waiting for it (up to ${lock_timeout} s)"
      said=1
    fi
    sleep "$lock_poll"
  done
}

packages=("$@")
if [ ${#packages[@]} -eq 0 ]; then
  packages=(cmake g++ make pkg-config libhwy-dev libgtest-dev libbenchmark-dev libtorch-dev
            nlohmann-json3-dev libopenblas-dev zlib1g-dev dataset-fashion-mnist
            libopenmpi-dev openmpi-bin
            python3-torch python3-dev python3-venv python3-pip python3-setuptools python3-wheel
            python3-pytest python3-matplotlib ninja-build)
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
apt_get update -qq
apt_get install -y -qq --no-install-recommends "${missing[@]}"
