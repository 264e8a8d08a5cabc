#!/usr/bin/env bash
# Installs the fusedkd Python package (python/) on Debian: the Debian packages it needs, a
# virtual environment that sees the system's torch (--system-site-packages), and the package
# built in it with torch.utils.cpp_extension against that torch.
# Usage: scripts/install-python.sh [VENV]      (default: .venv; PYTHON=... picks the interpreter)
# Then:  VENV/bin/python -c 'import fusedkd'   (or `. VENV/bin/activate`)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"

scripts/install-deps.sh python3-torch libtorch-dev python3-dev python3-venv python3-pip \
  python3-setuptools python3-wheel python3-pytest g++ ninja-build

# The extension compiles against the headers of the torch that Python imports; on Debian those
# come from libtorch-dev, so the two packages must be the same version.
if command -v dpkg-query >/dev/null 2>&1; then
  py_torch=$(dpkg-query -W -f='${Version}' python3-torch 2>/dev/null || true)
  dev_torch=$(dpkg-query -W -f='${Version}' libtorch-dev 2>/dev/null || true)
  if [ -n "$py_torch" ] && [ -n "$dev_torch" ] && [ "$py_torch" != "$dev_torch" ]; then
    echo "install-python: python3-torch $py_torch and libtorch-dev $dev_torch differ;" \
         "install the same version of both" >&2
    exit 1
  fi
fi

# Debian's interpreter, which has python3-torch (a pyenv or conda python3 earlier on PATH may not).
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x /usr/bin/python3 ]; then python=/usr/bin/python3; else python=python3; fi
fi
if ! "$python" -c 'import torch' 2>/dev/null; then
  echo "install-python: $python cannot import torch; set PYTHON to an interpreter that can" >&2
  exit 1
fi

[ -x "$venv/bin/python" ] || "$python" -m venv --system-site-packages "$venv"
# --no-build-isolation: build against the torch already installed (never fetch another one);
# --no-index --no-deps: nothing is downloaded.
"$venv/bin/python" -m pip install --disable-pip-version-check --no-build-isolation --no-index \
  --no-deps -q ./python
"$venv/bin/python" -c 'import fusedkd, torch; print("fusedkd", fusedkd.__version__, "with torch", torch.__version__)'
