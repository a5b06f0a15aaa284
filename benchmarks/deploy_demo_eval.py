"""The trained demo model deployed: AP with soft-NMS (the config) vs hard NMS (what the ONNX
graph runs), and onnxruntime's detections vs PyTorch's hard-NMS predict on the held-out strip.

    python benchmarks/deploy_demo_eval.py [work_dirs/demo/iter_400.pth]
"""
import argparse
import copy
import os.path as osp
import sys
import tempfile

import cv2
import numpy as np
import torch
from mmdet.structures.bbox import bbox_overlaps
from mmdet.utils import register_all_modules
from mmengine.config import Config, ConfigDict

import effdet_plugin  # noqa: F401
from effdet_plugin import cli
from effdet_plugin.deploy import preprocess
from effdet_plugin.deploy.onnx_export import export_onnx, preprocess_metadata
from effdet_plugin.engine import CheckedRunner

CONFIG = 'configs/demo/effdet_lite0_nuclei.py'
HARD_NMS = dict(type='nms', iou_threshold=0.5)


def coco_ap(cfg: Config, checkpoint: str, work_dir: str) -> dict:
    cfg = copy.deepcopy(cfg)
    cfg.work_dir, cfg.load_from = work_dir, checkpoint
    cfg.test_dataloader.num_workers, cfg.test_dataloader.persistent_workers = 0, False
    metrics = CheckedRunner.from_cfg(cfg).test()
    return {k.split('/')[-1]: v for k, v in metrics.items() if k.endswith(('mAP', 'mAP_50'))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoint', nargs='?', default='work_dirs/demo/iter_400.pth')
    args = parser.parse_args(argv)
    if not osp.isfile(args.checkpoint):
        sys.exit(f'error: no checkpoint {args.checkpoint}: train the demo first (make demo)')
    register_all_modules()
    cfg = Config.fromfile(CONFIG)
    hard = copy.deepcopy(cfg)
    hard.model.test_cfg.nms = ConfigDict(HARD_NMS)
    with tempfile.TemporaryDirectory() as tmp:
        soft_ap = coco_ap(cfg, args.checkpoint, osp.join(tmp, 'soft'))
        hard_ap = coco_ap(hard, args.checkpoint, osp.join(tmp, 'hard'))
        print(f'soft-NMS (config): {soft_ap}\nhard NMS 0.5 (ONNX graph): {hard_ap}')

        model = cli.init_detector(hard, args.checkpoint, device='cpu')
        img_dir = osp.join(cfg.val_dataloader.dataset.data_root,
                           cfg.val_dataloader.dataset.data_prefix.img)
        img = cv2.imread(osp.join(img_dir, sorted(__import__('os').listdir(img_dir))[0]))
        pre = cfg.model.data_preprocessor
        batch, _ = preprocess(img, pre.mean, pre.std, to_rgb=pre.bgr_to_rgb,
                              pad_size_divisor=pre.pad_size_divisor)
        onnx_file = osp.join(tmp, 'demo.onnx')
        export_onnx(model, onnx_file, batch.shape[-2:],
                    metadata=preprocess_metadata(cfg, batch.shape[-2:], ('nucleus', )))
        import onnxruntime as ort
        boxes, scores, labels = ort.InferenceSession(onnx_file).run(None, {'input': batch})
    x = torch.from_numpy(batch)
    with torch.no_grad():
        cls, box = model.bbox_head(model.extract_feat(x))
        ref = model.bbox_head.predict_by_feat(
            cls, box, batch_img_metas=[dict(img_shape=x.shape[-2:], scale_factor=(1., 1.))],
            rescale=False)[0]
    keep = labels[0] >= 0
    ours = torch.from_numpy(boxes[0][keep])
    ious = bbox_overlaps(ours, ref.bboxes)
    best, match = ious.max(dim=1)
    diff = np.abs(scores[0][keep] - ref.scores[match].numpy())
    print(f'onnxruntime vs PyTorch hard NMS on {img.shape[1]}x{img.shape[0]}: '
          f'{int(keep.sum())} vs {len(ref.scores)} detections, one-to-one: '
          f'{len(set(match.tolist())) == len(match)}, same labels: '
          f'{bool((labels[0][keep] == ref.labels[match].numpy()).all())}, min IoU '
          f'{best.min():.6f}, max score diff {diff.max():.1e}')


if __name__ == '__main__':
    main()
