#!/usr/bin/env bash
# Create (or reuse) the local virtual environment .venv and install neurofit into it.
# Sourced by scripts/main.sh and scripts/test.sh; safe to run repeatedly (a stamp skips reinstalls).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NEUROFIT_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "neurofit: creating $VENV with $($PY --version 2>&1)"
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.neurofit-installed"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
  echo "neurofit: installing dependencies into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
  "$VENV/bin/python" -m pip install -q "torch==${NEUROFIT_TORCH:-2.13.0}"
  "$VENV/bin/python" -m pip install -q -e "$ROOT[dev]"
  touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
