#!/usr/bin/env bash
# Set up (or reuse) the environment and run the demo on the embedded synthetic patient.
#   bash Resources/Scripts/demo.sh [--out DIR]        (default DIR: demo-out)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${RADTYPER_VENV:-$ROOT/.venv}"
bash "$ROOT/Resources/Scripts/bootstrap.sh"
if [ "$#" -eq 0 ]; then set -- --out demo-out; fi
exec "$VENV/bin/radtyper" demo "$@"
