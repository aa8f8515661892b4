#!/usr/bin/env bash
# Run the test suite (extra pytest arguments pass through, e.g. -m slow for the long checks).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/env.sh"
cd "$ROOT"
ruff check neurofit tests scripts
python -m pytest "$@"
