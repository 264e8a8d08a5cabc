#!/usr/bin/env bash
# The Python package's tests: install it into VENV (scripts/install-python.sh) and run pytest.
# Usage: scripts/test-python.sh [VENV]   (default: build/python-venv). ctest runs it (python_package).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-build/python-venv}"
start=$(date +%s)
scripts/install-python.sh "$venv"
echo "test-python: installed in $(( $(date +%s) - start )) s"
# From the repository root, so that `import fusedkd` finds the installed package, not python/fusedkd.
"$venv/bin/python" -m pytest -q -p no:cacheprovider python/tests
