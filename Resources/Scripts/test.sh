#!/usr/bin/env bash
# Set up (or reuse) the environment, lint, and run the whole test suite (slow tests included).
#   bash Resources/Scripts/test.sh [extra pytest arguments]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${RADTYPER_VENV:-$ROOT/.venv}"
bash "$ROOT/Resources/Scripts/bootstrap.sh" --with-torch  # the tests cover discovery and the U-Net
cd "$ROOT"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
exec "$VENV/bin/python" -m pytest -n 2 "$@"
