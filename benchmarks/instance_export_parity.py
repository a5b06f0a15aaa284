"""An exported RTMDet-Ins against PyTorch on real images, instance by instance: box IoU, score
difference and mask IoU of every detection (tools/infer.py's two backends, same images).

    python benchmarks/instance_export_parity.py CONFIG CHECKPOINT MODEL.onnx [IMAGES]

IMAGES: a folder or an image; default: the config's test split. The ONNX file must take the
images' padded size (``--shape H W`` at export, or ``--dynamic-hw``).
"""
import argparse
from functools import partial

import numpy as np
import torch
from mmdet.utils import get_test_pipeline_cfg
from mmengine.config import Config
from mmengine.dataset import Compose

import effdet_plugin  # noqa: F401
from effdet_plugin import cli
from effdet_plugin.deploy import OnnxRuntimeDetector
from effdet_plugin.deploy.batching import PytorchPreparer, predict_pytorch
from effdet_plugin.deploy.compare import match_instances
from effdet_plugin.deploy.infer import build_loaders, collect_inputs, load_image, test_split_images


def summary(name: str, stats: dict, keep: np.ndarray) -> str:
    if not keep.any():
        return f'{name}: no detections'
    # mask IoU over the masks that are not empty in either backend (two empty ones agree)
    drawn = keep & ((stats['mask_area'] > 0) | (stats['mask_iou'] < 1))
    mask_iou, area = stats['mask_iou'][drawn], stats['mask_area'][drawn]
    worst = np.argmin(mask_iou) if drawn.any() else None
    masks = (f'mask IoU min {mask_iou.min():.4f} (a {area[worst]} px mask) median '
             f'{np.median(mask_iou):.4f} over {drawn.sum()} masks (median {np.median(area):.0f} '
             f'px), {(mask_iou < 0.99).sum()} below 0.99') if drawn.any() else 'all masks empty'
    return (f'{name}: {keep.sum()} instances: {masks}; box IoU min '
            f'{stats["box_iou"][keep].min():.5f}, score diff max '
            f'{stats["score_diff"][keep].max():.1e}')


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('onnx')
    parser.add_argument('images', nargs='?')
    parser.add_argument('--score-thr', type=float, default=0.5,
                        help='a second summary of the detections at or above it')
    args = parser.parse_args(argv)
    cfg = Config.fromfile(args.config)
    model = cli.init_detector(cfg, args.checkpoint, device='cpu')
    files = collect_inputs(args.images) if args.images else test_split_images(cfg)[0]
    pipeline = Compose([dict(type='mmdet.LoadImageFromNDArray')] + get_test_pipeline_cfg(cfg)[1:])
    prepare = PytorchPreparer(pipeline, model.data_preprocessor.pad_size_divisor)
    load = partial(load_image, loaders=build_loaders(get_test_pipeline_cfg(cfg)))
    detector = OnnxRuntimeDetector(args.onnx)
    merged = {}
    for path in files:
        img = load(path)
        inst = predict_pytorch(model, [dict(prepare(img))])[0].pred_instances.cpu().numpy()
        ref = dict(boxes=inst.bboxes, scores=inst.scores, labels=inst.labels, masks=inst.masks)
        ours = detector(img)
        stats = match_instances(ref, ours)
        stats['score'] = ref['scores'][stats['ref_index']]
        print(f'{path}: {len(ref["scores"])} PyTorch / {len(ours["scores"])} onnxruntime '
              f'detections, unmatched {stats["unmatched_ref"]} / {stats["unmatched_ours"]}')
        for key in ('box_iou', 'score_diff', 'mask_iou', 'mask_area', 'score'):
            merged.setdefault(key, []).append(stats[key])
    merged = {key: np.concatenate(parts) for key, parts in merged.items()}
    print(summary('all detections', merged, np.ones_like(merged['score'], bool)))
    print(summary(f'score >= {args.score_thr}', merged, merged['score'] >= args.score_thr))


if __name__ == '__main__':
    with torch.no_grad():
        main()
