#!/usr/bin/env bash
# Build (or reuse) one Python 3.12 environment per supported 3D Slicer release, with the numpy / SciPy /
# SimpleITK versions that release bundles (Testing/slicer-pins/slicer-<release>.txt) and the modules'
# requirement files installed from wheels only (`pip install --only-binary :all:`, as a user's Slicer without
# a C compiler must). Testing/test_slicer_contract.py runs the core test subset in them.
#
#   bash Resources/Scripts/slicer_python_envs.sh          # run by Resources/Scripts/test.sh before pytest
#
# Environments: <repo>/.venv-slicer-<release> (git-ignored), rebuilt only when the pins, the requirement files
# or ENV_FORMAT below change (stamp file). Beside the wheels, <venv>/extension-packages receives what the
# extension's SuperBuild ships (pyradiomics and its dependencies, built with the SuperBuild's own pip command
# and package list; a C compiler is needed, as on the extension build machines), rebuilt only when
# SuperBuild/External_python-pyradiomics.cmake changes. A failed install leaves <venv>/install-failed.log
# (or extension-packages-failed.log), which the contract test reports as a failure.
#
# Python 3.12 (Slicer 5.10 and 5.12 embed 3.12.10) is looked for as: $PYTHON312; pyenv's newest installed
# 3.12.x; `python3.12` on PATH; /usr/bin/python3.12; else, as root with apt-get, the Debian/Ubuntu packages
# python3.12, python3.12-venv and python3.12-dev (headers to build pyradiomics) are installed. Without any
# 3.12 the script says so and the contract test skips with that reason. The releases build in parallel.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RELEASES="${RADTYPER_SLICER_RELEASES:-5.10 5.12}"
#: Bump when the way an environment is built changes (the stamps then no longer match).
ENV_FORMAT=1
log() { printf 'slicer-envs: %s\n' "$*" >&2; }

is312() { "$@" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1; }

find_python312() {
  if [ -n "${PYTHON312:-}" ] && is312 "$PYTHON312"; then echo "$PYTHON312"; return 0; fi
  if command -v pyenv >/dev/null 2>&1; then
    local v
    v="$(pyenv versions --bare 2>/dev/null | grep -E '^3\.12\.[0-9]+$' | sort -V | tail -1)"
    if [ -n "$v" ]; then
      local p
      p="$(pyenv root)/versions/$v/bin/python3.12"
      if is312 "$p"; then echo "$p"; return 0; fi
    fi
  fi
  for p in "$(command -v python3.12 2>/dev/null)" /usr/bin/python3.12 /usr/local/bin/python3.12; do
    if [ -n "$p" ] && is312 "$p"; then
      "$p" -c 'import sys; print(sys.executable)'
      return 0
    fi
  done
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    log "installing python3.12 and python3.12-venv (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3.12 python3.12-venv python3.12-dev \
      >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends python3.12 python3.12-venv python3.12-dev >/dev/null 2>&1; }
    if is312 /usr/bin/python3.12; then echo /usr/bin/python3.12; return 0; fi
  fi
  return 1
}

PY312="$(find_python312)" || {
  log "no Python 3.12 found (set PYTHON312=/path/to/python3.12): the Slicer environment contract is skipped"
  exit 0
}
log "Python 3.12: $PY312"

build_env() {  # build_env <release>: one environment (the releases are built in parallel)
  local rel="$1"
  local pins="$ROOT/Testing/slicer-pins/slicer-$rel.txt"
  local venv="$ROOT/.venv-slicer-$rel"
  local reqs=("$ROOT"/RadTyper/Resources/*Requirements.txt "$ROOT"/RadTyperLesions/Resources/*Requirements.txt)
  local want
  want="$( (cat "$pins" "${reqs[@]}"; echo "env-format $ENV_FORMAT") | sha256sum | cut -d' ' -f1)"
  if [ -f "$venv/.stamp" ] && [ "$(cat "$venv/.stamp")" = "$want" ] && "$venv/bin/python" -c 'import numpy' 2>/dev/null; then
    log "$venv up to date"
    return 0
  fi
  log "building $venv (Slicer $rel pins, wheels only; a few minutes)"
  rm -rf "$venv"
  "$PY312" -m venv "$venv" || { log "cannot create $venv"; return 0; }
  local args=(--disable-pip-version-check -q install --only-binary :all: -c "$pins" -r "$pins")
  local r
  for r in "${reqs[@]}"; do args+=(-r "$r"); done
  args+=(pytest)
  if "$venv/bin/python" -m pip "${args[@]}" >"$venv/install.log" 2>&1; then
    echo "$want" > "$venv/.stamp"
    log "$venv ready: $("$venv/bin/python" -c 'import numpy, scipy, SimpleITK; print("numpy", numpy.__version__, "scipy", scipy.__version__, "SimpleITK", SimpleITK.Version_VersionString())')"
  else
    cp "$venv/install.log" "$venv/install-failed.log"
    log "FAILED to install the requirements from wheels under Slicer $rel pins: $venv/install-failed.log"
  fi
}

build_extension_packages() {  # build_extension_packages <release>: what the SuperBuild puts in the package
  # The same pip command as SuperBuild/External_python-pyradiomics.cmake (package list read from it):
  # pyradiomics and its dependencies built for this Python (a C compiler is needed, as on the extension build
  # machines), --no-deps so Slicer's numpy / SimpleITK stay, into <venv>/extension-packages.
  local rel="$1"
  local venv="$ROOT/.venv-slicer-$rel"
  local cmake="$ROOT/SuperBuild/External_python-pyradiomics.cmake"
  local prefix="$venv/extension-packages"
  [ -f "$venv/.stamp" ] || return 0
  local want
  want="$(cat "$cmake" "$venv/.stamp" | sha256sum | cut -d' ' -f1)"
  if [ -f "$prefix/.stamp" ] && [ "$(cat "$prefix/.stamp")" = "$want" ]; then
    log "$prefix up to date"
    return 0
  fi
  rm -rf "$prefix" "$venv/extension-packages-failed.log"
  local packages=()
  mapfile -t packages < <(sed -n '/^set(_packages/,/^  )/p' "$cmake" | grep -oE '"[^"]+"' | tr -d '"')
  log "building the extension's pyradiomics for Slicer $rel (${packages[*]})"
  if "$venv/bin/python" -m pip --disable-pip-version-check -q install --no-deps --prefix "$prefix" \
      "${packages[@]}" >"$venv/extension-packages.log" 2>&1; then
    echo "$want" > "$prefix/.stamp"
    log "$prefix ready"
  else
    cp "$venv/extension-packages.log" "$venv/extension-packages-failed.log"
    log "FAILED to build the SuperBuild's packages for Slicer $rel: $venv/extension-packages-failed.log"
  fi
}

for rel in $RELEASES; do
  (build_env "$rel"; build_extension_packages "$rel") &
done
wait
exit 0
