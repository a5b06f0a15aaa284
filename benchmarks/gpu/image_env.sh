#!/usr/bin/env bash
# Prints the interpreter of a Python 3.12 environment holding only what the GPU image has
# (benchmarks/gpu/image.txt), creating it on first use (downloads torch and its CUDA libraries
# from PyPI, several GB). It stands in for the GPU machine in make_bundle.sh and the rehearsal.
#   PY=$(bash benchmarks/gpu/image_env.sh)     (EFFDET_GPU_IMAGE_ENV: where; PYTHON312: which python)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ENV_DIR="${EFFDET_GPU_IMAGE_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/effdet_plugin/gpu-image-py312}"
STAMP="$ENV_DIR/.image_stamp"
want="$(sha256sum "$HERE/image.txt" | cut -d' ' -f1)"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$want" ]]; then
  PY312="${PYTHON312:-python3.12}"
  if ! "$PY312" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
    echo "error: no Python 3.12 interpreter ($PY312); set PYTHON312=/path/to/python3.12" >&2
    exit 1
  fi
  echo "[image] creating the GPU-image stand-in in $ENV_DIR (torch 2.11 + CUDA libraries from PyPI)" >&2
  rm -rf "$ENV_DIR"
  "$PY312" -m venv "$ENV_DIR"
  "$ENV_DIR/bin/python" -m pip install -q --disable-pip-version-check -r "$HERE/image.txt" >&2
  echo "$want" > "$STAMP"
fi
echo "$ENV_DIR/bin/python"
