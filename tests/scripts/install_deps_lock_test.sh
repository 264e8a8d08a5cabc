#!/usr/bin/env bash
# tests/scripts/install_deps_lock_test.sh — scripts/install-deps.sh waits for a held apt lock,
# says so, and fails with a clear message when it stays held. apt-get, dpkg-query and id are
# stubs (nothing is installed): the stub apt-get reports a held lock for the first $LOCKED calls.
set -euo pipefail
script="$(cd "$(dirname "$0")/../.." && pwd)/scripts/install-deps.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/bin"
cat > "$work/bin/apt-get" <<'STUB'
#!/usr/bin/env bash
n=$(cat "$STUB_DIR/calls" 2>/dev/null || echo 0)
echo $((n + 1)) > "$STUB_DIR/calls"
if [ "$n" -lt "$LOCKED" ]; then
  echo "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)" >&2
  exit 100
fi
if [ -n "${OTHER_ERROR:-}" ]; then echo "E: Unable to locate package $*" >&2; exit 100; fi
exit 0
STUB
printf '#!/bin/sh\nexit 1\n' > "$work/bin/dpkg-query"   # every package is missing
printf '#!/bin/sh\necho 0\n' > "$work/bin/id"           # root: no sudo
chmod +x "$work/bin/"*
export PATH="$work/bin:$PATH" STUB_DIR="$work" FUSEDKD_APT_LOCK_POLL=1
fail() { echo "FAIL: $*"; echo "--- output:"; cat "$work/out"; exit 1; }

# 1. The lock is released after two tries: the script says it waits, then succeeds.
rm -f "$work/calls"
LOCKED=2 FUSEDKD_APT_LOCK_TIMEOUT=30 "$script" some-package > "$work/out" 2>&1 || fail "did not wait for the lock"
grep -q "waiting for it" "$work/out" || fail "did not say that it waits for the lock"

# 2. The lock stays held: a clear failure after the timeout, not at once.
rm -f "$work/calls"
start=$(date +%s)
if LOCKED=1000 FUSEDKD_APT_LOCK_TIMEOUT=2 "$script" some-package > "$work/out" 2>&1; then
  fail "succeeded with the lock held"
fi
[ $(( $(date +%s) - start )) -ge 2 ] || fail "gave up before the timeout"
grep -q "still held after" "$work/out" || fail "no clear message when the lock stays held"

# 3. Another apt failure is reported at once, with apt's message.
rm -f "$work/calls"
if LOCKED=0 OTHER_ERROR=1 FUSEDKD_APT_LOCK_TIMEOUT=30 "$script" some-package > "$work/out" 2>&1; then
  fail "succeeded although apt-get failed"
fi
grep -q "Unable to locate package" "$work/out" || fail "apt's own message was not shown"
echo "install-deps waits for the apt lock: OK"
