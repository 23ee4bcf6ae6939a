#!/usr/bin/env bash
# Idempotent bootstrap shared by ./scripts/devnet and ./scripts/test:
#   .venv with torch==2.13.0 installed first (the CPU build; an unpinned torch pulls CUDA wheels),
#   then `pip install -e '.[dev]'` whenever pyproject.toml changed, then the pinned solc (npm).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$REPO/.venv"
PY="$VENV/bin/python"

say() { printf '[bootstrap] %s\n' "$*" >&2; }

find_python() {
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      command -v "$candidate"; return 0
    fi
  done
  say "Python >= 3.11 is required"; return 1
}

if [ ! -x "$PY" ]; then
  say "creating $VENV"
  "$(find_python)" -m venv "$VENV"
  "$PY" -m pip install --quiet --upgrade pip
fi

if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.13.0") else 1)' 2>/dev/null; then
  say "installing torch==2.13.0 (CPU build)"
  "$PY" -m pip install --quiet "torch==2.13.0"
fi

stamp="$VENV/.lorachain-installed"
want="$(sha256sum "$REPO/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! "$PY" -c 'import lorachain' 2>/dev/null; then
  say "installing lorachain and its dependencies (pip install -e '.[dev]')"
  "$PY" -m pip install --quiet -e "$REPO[dev]"
  echo "$want" > "$stamp"
fi

# The pinned solc (npm package `solc`) and the contract artifacts.
"$PY" -m lorachain.toolchain.solc >/dev/null
