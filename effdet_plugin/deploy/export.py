"""Export an EfficientDet config + checkpoint to ONNX, anchor decoding and hard NMS included.

Outputs (see docs/deploy.md): ``boxes`` (B, K, 4) x1, y1, x2, y2 in network-input pixels,
``scores`` (B, K), ``labels`` (B, K) int64 with K = ``test_cfg.max_per_img``; rows beyond the
detections have score 0 and label -1. ``--no-nms`` exports the raw ``cls_score_<i>`` /
``bbox_pred_<i>`` maps of every level instead; a segmentation head adds ``seg_logits``. An
RTMDet-Ins config (``RTMDetInsHead``) adds ``mask_logits`` (B, K, H/4, W/4) of each detection
(masks: ``effdet_plugin.deploy.postprocess_masks``; raw maps: ``kernel_pred_<i>``, ``mask_feat``).
The file's metadata holds the preprocessing arguments and the class names.

Examples:
    python tools/deploy/export_onnx.py configs/effdet_b0_coco.py d0.pth --out d0.onnx
    python tools/deploy/export_onnx.py configs/demo/effdet_lite0_nuclei.py \
        work_dirs/demo/iter_400.pth --out demo.onnx --shape 256 1024
    python tools/deploy/export_onnx.py configs/medical/rtmdet-ins_effnet-lite0_bifpn-p2_nuclei.py \
        ins.pth --out ins.onnx --shape 1024 256 --dynamic
    # any batch, height and width (multiples of the config's pad_size_divisor)
    python tools/deploy/export_onnx.py configs/effdet_b0_coco.py d0.pth --out d0_any.onnx \
        --dynamic --dynamic-hw
"""
import argparse
import json
import os
import os.path as osp
import sys
import time
from typing import Optional, Tuple

import torch


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Export an effdet_plugin detector (or RTMDet-Ins) to ONNX')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint',
                        help="checkpoint file, or 'none' for random weights (speed checks)")
    parser.add_argument('--out', required=True, help='the .onnx file to write')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help="input height and width; defaults to the test pipeline's Resize "
                        'scale rounded up to pad_size_divisor')
    parser.add_argument('--dynamic', action='store_true', help='dynamic batch size')
    parser.add_argument('--dynamic-hw', action='store_true',
                        help='dynamic height and width: any multiple of pad_size_divisor (--shape '
                        'is then only the traced size); needs a positive test_cfg.nms_pre')
    parser.add_argument('--batch', type=int, default=1, help='batch size of a fixed-shape file')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset (>= 11)')
    parser.add_argument('--no-nms', action='store_true',
                        help='export the raw class / box maps, without decoding and NMS')
    parser.add_argument('--device', default='cpu', help='device to trace on')
    return parser.parse_args(argv)


def default_shape(cfg, divisor: int) -> Optional[Tuple[int, int]]:
    """``(H, W)`` of the test pipeline's Resize scale rounded up to ``divisor``; None when
    the pipeline resizes by a factor."""
    from effdet_plugin.deploy.onnx_export import preprocess_metadata
    scale = json.loads(preprocess_metadata(cfg, None)['effdet_preprocess'])['resize_scale']
    if scale is None:
        return None
    w, h = scale  # mmdet scales are (w, h)
    return tuple(-(-size // divisor) * divisor for size in (h, w))


def main(argv=None) -> None:
    """Export as the command line says (no autograd: tracing needs none)."""
    args = parse_args(argv)
    with torch.no_grad():
        _export(args)


def _export(args: argparse.Namespace) -> None:
    from mmengine.config import Config

    from .. import cli
    from .onnx_export import export_onnx, preprocess_metadata

    cfg = Config.fromfile(args.config)
    divisor = int(cfg.model.data_preprocessor.get('pad_size_divisor', 1))
    shape = tuple(args.shape) if args.shape else default_shape(cfg, divisor)
    if shape is None:
        sys.exit(f'error: {args.config} resizes test images by a factor, not to a size: '
                 f'pass --shape H W (multiples of {divisor}), e.g. the padded size of your '
                 'images')
    if any(size % divisor for size in shape):
        sys.exit(f'error: --shape {shape[0]} {shape[1]} must be multiples of the config\'s '
                 f'pad_size_divisor {divisor} (the largest feature stride)')
    checkpoint = None if args.checkpoint.lower() == 'none' else args.checkpoint
    if checkpoint is None:
        print('no checkpoint: exporting random weights (for speed checks only)')
    with cli.exit_on_weights_error():  # unreadable, unfit or NaN: one error line
        model = cli.init_detector(cfg, checkpoint, device=args.device)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    start = time.perf_counter()
    names = export_onnx(
        model, args.out, shape, batch_size=args.batch, dynamic=args.dynamic,
        with_nms=not args.no_nms, opset=args.opset, dynamic_hw=args.dynamic_hw,
        metadata=preprocess_metadata(cfg, None if args.dynamic_hw else shape,
                                     model.dataset_meta.get('classes')))
    batch = 'N' if args.dynamic else str(args.batch)
    size = f'HxW (multiples of {divisor})' if args.dynamic_hw else f'{shape[0]}x{shape[1]}'
    print(f'{args.out}: input {batch}x3x{size}, outputs {", ".join(names)} '
          f'(checked, {time.perf_counter() - start:.1f} s)')

