#!/usr/bin/env bash
# Set up (or reuse) the environments, lint, and run the whole test suite (slow tests and the Slicer contract).
#   bash Resources/Scripts/test.sh [extra pytest arguments]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${RADTYPER_VENV:-$ROOT/.venv}"
bash "$ROOT/Resources/Scripts/bootstrap.sh" --with-torch  # the tests cover discovery and the U-Net
# Python 3.12 environments with Slicer 5.10's and 5.12's bundled numpy/SciPy/SimpleITK (reused when unchanged)
bash "$ROOT/Resources/Scripts/slicer_python_envs.sh"
cd "$ROOT"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
exec "$VENV/bin/python" -m pytest -n 2 "$@"
