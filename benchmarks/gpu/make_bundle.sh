#!/usr/bin/env bash
# Gather, offline-installable, everything the GPU check (benchmarks/gpu/check.sh) needs that the
# bare GPU machine lacks: cp312 wheels of the packages missing from its image, mmcv's patched
# source (C++20, only the ops our configs reach: it is compiled there against that machine's
# torch), the demo's nuclei data and its ImageNet Lite0 weights. Prints the sizes.
#   bash benchmarks/gpu/make_bundle.sh OUT_DIR
# Runs here, with network (PyPI) and the project's .venv (make setup).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${1:?usage: make_bundle.sh OUT_DIR}"
LIMIT_MIB=60
VPY="$ROOT/.venv/bin/python"
[[ -x "$VPY" ]] || { echo "error: $VPY missing: run make setup first" >&2; exit 1; }
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
rm -rf "$OUT/wheels" "$OUT/mmcv" "$OUT/data" "$OUT/checkpoints"
mkdir -p "$OUT/wheels" "$OUT/mmcv" "$OUT/data" "$OUT/checkpoints"

echo "== wheels: what benchmarks/gpu/requirements.txt adds to the GPU image"
IMAGE_PY="$(bash "$HERE/image_env.sh")"
# The resolver, run in the image stand-in, names exactly what the image lacks.
"$IMAGE_PY" -m pip install -q --disable-pip-version-check --dry-run --report "$OUT/resolve.json" \
  -r "$HERE/requirements.txt" >/dev/null
"$IMAGE_PY" - "$OUT/resolve.json" > "$OUT/wheels.txt" <<'PY'
import json, sys
# mmengine/mmcv ask for opencv-python; the image has an OpenCV build already (any variant works)
skip = {'opencv-python', 'opencv-python-headless'}
for item in json.load(open(sys.argv[1]))['install']:
    meta = item['metadata']
    if meta['name'].lower() not in skip:
        print(f"{meta['name']}=={meta['version']}")
PY
"$IMAGE_PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary :all: \
  -d "$OUT/wheels" -r "$OUT/wheels.txt"
rm "$OUT/resolve.json"

echo "== mmcv source (patched; compiled on the GPU machine)"
EFFDET_MMCV_OPS="${EFFDET_MMCV_OPS:-}" VENV="$ROOT/.venv" \
  bash "$ROOT/scripts/setup_env.sh" --prepare-mmcv-source "$OUT/mmcv" 2>&1 | grep -E 'patched|ERROR' || true
[[ -f "$OUT/mmcv/mmcv-2.1.0/setup.py" ]] || { echo "error: mmcv source not prepared" >&2; exit 1; }
rm -f "$OUT"/mmcv/*.tar.gz
tar -czf "$OUT/mmcv/mmcv-2.1.0-patched.tar.gz" -C "$OUT/mmcv" mmcv-2.1.0
rm -rf "$OUT/mmcv/mmcv-2.1.0"

echo "== demo data and weights"
( cd "$ROOT" && "$VPY" tools/dataset_converters/nuclei_to_coco.py --out-dir "$OUT/data/nuclei" >/dev/null )
if [[ -f "$ROOT/checkpoints/effnet_lite0_imagenet.pth" ]]; then
  cp "$ROOT/checkpoints/effnet_lite0_imagenet.pth" "$OUT/checkpoints/"
else
  ( cd "$ROOT" && "$VPY" tools/convert_weights.py --lite0-package "$OUT/checkpoints/effnet_lite0_imagenet.pth" >/dev/null )
fi

tree_bytes=$(cd "$ROOT" && git ls-files -z | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s}')
bundle_bytes=$(du -sb "$OUT" | cut -f1)
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
echo "wheels $(du -sh "$OUT/wheels" | cut -f1) ($(ls "$OUT/wheels" | wc -l) files), mmcv $(du -sh "$OUT/mmcv" | cut -f1), data $(du -sh "$OUT/data" | cut -f1), checkpoints $(du -sh "$OUT/checkpoints" | cut -f1)"
echo "bundle $(mib "$bundle_bytes") MiB + tree $(mib "$tree_bytes") MiB = $(mib $((bundle_bytes + tree_bytes))) MiB (limit $LIMIT_MIB MiB)"
if (( bundle_bytes + tree_bytes > LIMIT_MIB * 1048576 )); then
  echo "error: tree + bundle exceed $LIMIT_MIB MiB" >&2; exit 1
fi
