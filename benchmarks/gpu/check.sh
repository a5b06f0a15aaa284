#!/usr/bin/env bash
# The GPU check in one command on a bare GPU machine (no network): install the bundle made by
# make_bundle.sh into a scratch target, build mmcv's ops against this machine's torch (CUDA for
# the present GPU's arch with all cores when nvcc is there, else CPU ops + the PyTorch
# fallback), then run benchmarks/gpu/gpu_check.py: one table, $OUT/gpu_report.md and .json.
#   bash benchmarks/gpu/check.sh BUNDLE_DIR              (on the GPU machine; PYTHON: its python)
#   bash benchmarks/gpu/check.sh BUNDLE_DIR --rehearse   (here: a Python 3.12 stand-in of the GPU
#       image, benchmarks/gpu/image_env.sh, and everything after it without network, on the CPU)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BUNDLE="$(cd "${1:?usage: check.sh BUNDLE_DIR [--rehearse]}" && pwd)"
MODE="${2:-gpu}"
OUT="${OUT:-$ROOT/work_dirs/gpu_check}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
start=$SECONDS
say() { echo "[check $(( SECONDS - start ))s] $*"; }

if [[ "$MODE" == --rehearse ]]; then
  PY="$(bash "$HERE/image_env.sh")"
  # everything from here on without network: the GPU machine has none
  if [[ "${EFFDET_CHECK_OFFLINE:-}" != 1 ]] && unshare -n true 2>/dev/null; then
    say "rehearsal: $PY, network cut (unshare -n)"
    # a new network namespace has only a loopback device, down: dist_train.sh's rendezvous needs it
    exec env EFFDET_CHECK_OFFLINE=1 PYTHON="$PY" OUT="$OUT" unshare -n \
      bash -c 'ip link set lo up && exec bash "$0" "$1" --offline-rehearse' "$0" "$BUNDLE"
  fi
  say "rehearsal: $PY (unshare unavailable: network not cut)"
  MODE=--offline-rehearse
fi
PY="${PYTHON:-python3}"
# nproc obeys OMP_NUM_THREADS: the build wants every core
NPROC="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"
export NO_ALBUMENTATIONS_UPDATE=1  # albumentations asks the network for a newer version otherwise
"$PY" -c 'import sys, torch; print("[check] python", sys.version.split()[0], "torch", torch.__version__, "CUDA", torch.version.cuda, "GPU", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")'

TARGET="${EFFDET_CHECK_TARGET:-$(mktemp -d /tmp/effdet_gpu_check.XXXXXX)}"
SITE="$TARGET/site"
say "installing $(ls "$BUNDLE"/wheels/*.whl | wc -l) wheels into $SITE (--no-index)"
"$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --target "$SITE" \
  "$BUNDLE"/wheels/*.whl
export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}" PATH="$SITE/bin:$PATH"

# mmcv: CUDA kernels for this GPU's arch when nvcc is at hand, CPU kernels otherwise
mkdir -p "$TARGET/mmcv"
tar -xzf "$BUNDLE"/mmcv/mmcv-*-patched.tar.gz -C "$TARGET/mmcv"
build_env=(MAX_JOBS="$NPROC" MMCV_WITH_OPS=1)
if "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  if command -v nvcc >/dev/null 2>&1 || [[ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]]; then
    arch="$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability(0))')"
    build_env+=(FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$arch")
    build="CUDA sm_${arch/./}"
  else
    build="CPU ops (no nvcc: CUDA tensors take the PyTorch fallback)"
  fi
else
  build="CPU ops"
fi
# build_mmcv LIMIT_S ENV...: compile the patched source into $TARGET/mmcv/dist (log: $OUT/mmcv_build.log)
build_mmcv() {
  local limit="$1"; shift
  rm -rf "$TARGET/mmcv/dist" "$TARGET"/mmcv/mmcv-*/build
  env "$@" timeout "$limit" "$PY" -m pip wheel -q --disable-pip-version-check --no-index \
    --no-deps --no-build-isolation -w "$TARGET/mmcv/dist" "$TARGET"/mmcv/mmcv-*/ \
    >> "$OUT/mmcv_build.log" 2>&1
}
say "building mmcv ($build, $NPROC jobs; log $OUT/mmcv_build.log)"
: > "$OUT/mmcv_build.log"
build_start=$SECONDS
limit=900  # a CUDA build that is not done in 5 minutes gives way to the CPU build + fallback
[[ "$build" == CUDA* ]] && limit="${EFFDET_MMCV_BUILD_LIMIT_S:-300}"
if ! build_mmcv "$limit" "${build_env[@]}"; then
  tail -n 20 "$OUT/mmcv_build.log"
  [[ "$build" == CUDA* ]] || { say "ERROR: mmcv build failed (log $OUT/mmcv_build.log)"; exit 1; }
  # GPU time is scarce: go on with CPU kernels and the PyTorch fallback rather than stop
  say "the CUDA build failed or ran out of time: building the CPU ops (the fallback covers CUDA tensors)"
  build="CPU ops after a failed CUDA build (fallback)"
  build_mmcv 600 MAX_JOBS="$NPROC" MMCV_WITH_OPS=1 FORCE_CUDA=0 CUDA_VISIBLE_DEVICES= \
    || { tail -n 20 "$OUT/mmcv_build.log"; say "ERROR: mmcv build failed (log $OUT/mmcv_build.log)"; exit 1; }
fi
build="$build, $(( SECONDS - build_start )) s on $NPROC cores"
"$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --target "$SITE" \
  "$TARGET"/mmcv/dist/mmcv-*.whl
say "mmcv built: $build"

# the demo's data and weights where its config looks for them
mkdir -p "$ROOT/data" "$ROOT/checkpoints"
[[ -e "$ROOT/data/nuclei" ]] || cp -r "$BUNDLE/data/nuclei" "$ROOT/data/nuclei"
[[ -e "$ROOT/checkpoints/effnet_lite0_imagenet.pth" ]] || cp "$BUNDLE/checkpoints/effnet_lite0_imagenet.pth" "$ROOT/checkpoints/"

say "running benchmarks/gpu/gpu_check.py"
rc=0
"$PY" "$HERE/gpu_check.py" --out "$OUT" --mmcv-build "$build" ${EFFDET_CHECK_ARGS:-} || rc=$?
say "done (exit $rc): $OUT/gpu_report.md"
exit $rc
