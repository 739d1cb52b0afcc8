#!/usr/bin/env bash
# Create (or reuse) the virtual environment of a RadTyper checkout and install everything it needs.
#
#   bash Resources/Scripts/bootstrap.sh                # default set-up (demo.sh): no torch
#   bash Resources/Scripts/bootstrap.sh --with-torch   # + torch for discovery and the U-Net (test.sh)
#
# Environment: PYTHON (interpreter, default python3, >= 3.10), RADTYPER_VENV (default <repo>/.venv),
# RADTYPER_TORCH=1 (same as --with-torch).
# Installs, in this order: the Debian EGL/Mesa libraries for offscreen VTK rendering and cmake, ninja-build
# and make for the Slicer CMake contract test, the Debian package chromium for the browser tests of
# `radtyper view` (when run as root on Debian/Ubuntu and they are missing), with
# --with-torch torch==2.13.0 (CPU build; installed first so nothing pulls a CUDA build), then RadTyper itself in
# editable mode with every extra but torch (the `web` extra brings trame-slicer and playwright)
# (".[standard]", or ".[all]" with torch). torch (~750 MB) is only needed by subtype discovery and the U-Net;
# the demo and prediction run without it. A stamp file skips the pip step when pyproject.toml and this
# script have not changed since the last run (a venv set up with torch also serves the default set-up).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${RADTYPER_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
WITH_TORCH="${RADTYPER_TORCH:-0}"
for arg in "$@"; do
  case "$arg" in
    --with-torch) WITH_TORCH=1 ;;
    *) printf 'bootstrap: unknown option %s (use --with-torch)\n' "$arg" >&2; exit 2 ;;
  esac
done
log() { printf 'bootstrap: %s\n' "$*" >&2; }

ensure_system_libs() {
  # vtk's offscreen rendering loads libEGL + Mesa's EGL/DRI drivers at run time.
  if ldconfig -p 2>/dev/null | grep -q 'libEGL_mesa.so.0' && ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1' \
     && ls /usr/lib/x86_64-linux-gnu/dri/swrast_dri.so >/dev/null 2>&1; then
    return 0
  fi
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    log "installing EGL/Mesa libraries for offscreen rendering (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends \
      libegl1 libegl-mesa0 libgl1 libglx-mesa0 libgl1-mesa-dri libgles2 >/dev/null
  else
    log "warning: EGL/Mesa libraries missing and cannot install them (need root + apt-get);"
    log "         offscreen rendering tests will be skipped"
  fi
}

ensure_build_tools() {
  # The Slicer contract test builds the modules with Slicer's own CMake macro (Ninja and Unix Makefiles).
  local missing=()
  command -v cmake >/dev/null 2>&1 || missing+=(cmake)
  command -v ninja >/dev/null 2>&1 || missing+=(ninja-build)
  command -v make >/dev/null 2>&1 || missing+=(make)
  [ ${#missing[@]} -eq 0 ] && return 0
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    log "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    log "warning: ${missing[*]} missing and cannot install them (need root + apt-get); the CMake contract tests skip"
  fi
}

ensure_chromium() {
  # The browser end-to-end tests of `radtyper view` drive Debian's Chromium through Playwright (PyPI); the
  # browser is never downloaded by Playwright (`playwright install` is not used).
  if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
    return 0
  fi
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    log "installing chromium for the browser tests of radtyper view (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    log "warning: chromium missing and cannot install it (need root + apt-get); browser tests will be skipped"
  fi
}

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment $VENV with $("$PY" --version 2>&1)"
    "$PY" -m venv "$VENV"
  fi
  "$VENV/bin/python" - <<'PYEOF'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"bootstrap: Python >= 3.10 needed, this venv has {sys.version.split()[0]}")
PYEOF
}

install_packages() {
  local stamp="$VENV/.radtyper-install-stamp"
  local want
  local hash
  hash="$(cat "$ROOT/pyproject.toml" "$ROOT/Resources/Scripts/bootstrap.sh" | sha256sum | cut -d' ' -f1)"
  if [ -f "$stamp" ] && "$VENV/bin/python" -c "import RadTyperLib" 2>/dev/null; then
    local have
    have="$(cat "$stamp")"
    # a venv set up with torch serves both set-ups; one without torch only the default one
    if [ "$have" = "$hash torch" ] || { [ "$WITH_TORCH" = "0" ] && [ "$have" = "$hash" ]; }; then
      log "virtual environment up to date ($VENV)"
      return 0
    fi
  fi
  log "installing packages into $VENV (first run takes a few minutes)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip setuptools wheel
  if [ "$WITH_TORCH" = "1" ]; then
    # torch first, pinned to the CPU build: a plain 'torch' or a newer pin would pull GBs of CUDA packages.
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "torch==2.13.0"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[all]"
    echo "$hash torch" > "$stamp"
  else
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[standard]"
    echo "$hash" > "$stamp"
  fi
}

ensure_system_libs
ensure_build_tools
ensure_chromium
ensure_venv
install_packages
