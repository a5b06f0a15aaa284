"""EfficientDet learns: a from-scratch EffDet overfits a few synthetic images.

A handful of images with bright rectangles of two colours (the classes) on dark noise. After a
bounded number of CPU steps, every box must be found in eval mode (running BN statistics,
box decoding, NMS) at IoU >= 0.5 with the right class and a high score, with hardly any
confident false positive. Wrong anchors (positions or sizes), a box coder that does not invert
its encoding, or a head that mixes levels or anchors cannot pass: the network would learn
targets that decode to the wrong boxes.
"""
import logging
from typing import List, Tuple

import numpy as np
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox_overlaps
from mmdet.utils import register_all_modules
from mmengine.config import ConfigDict
from mmengine.logging import MMLogger
from mmengine.structures import InstanceData

import effdet_plugin  # noqa: F401  (registers the components)
from tests.models.head_settings import official_settings

register_all_modules()

COLOURS = ((255, 255, 255), (255, 60, 60))  # class 0 white, class 1 red (RGB)
SCORE_THR = 0.3


def synthetic_images(num_images: int, size: int, num_objects: int, min_side: int,
                     seed: int = 0) -> Tuple[List[torch.Tensor], List[InstanceData]]:
    """``num_images`` uint8 (3, size, size) images with barely overlapping rectangles."""
    rng = np.random.RandomState(seed)
    images, gts = [], []
    for _ in range(num_images):
        img = rng.randint(0, 50, (size, size, 3)).astype(np.uint8)
        boxes, labels = [], []
        for _ in range(num_objects):
            for _ in range(100):
                w, h = rng.randint(min_side, size // 2, 2)
                x, y = rng.randint(0, size - w), rng.randint(0, size - h)
                box = torch.tensor([[x, y, x + w, y + h]], dtype=torch.float32)
                if not boxes or bbox_overlaps(box, torch.cat(boxes)).max() < 0.1:
                    break
            label = int(rng.randint(len(COLOURS)))
            img[y:y + h, x:x + w] = COLOURS[label]
            boxes.append(box)
            labels.append(label)
        images.append(torch.from_numpy(img).permute(2, 0, 1).contiguous())
        gts.append(InstanceData(bboxes=torch.cat(boxes), labels=torch.tensor(labels)))
    return images, gts


def small_effdet(size: int) -> torch.nn.Module:
    """EfficientDet-D0 (EffNet-B0 + BiFPN + EffDetHead) for 2 classes and ``size`` inputs.

    BN momentum 0.1 (instead of the official 0.01) lets the running statistics used in eval
    mode follow a training run of a hundred steps.
    """
    norm = dict(type='BN', momentum=0.1, eps=1e-3)
    cfg = ConfigDict(
        type='SingleStageDetector',
        data_preprocessor=dict(
            type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375], pad_size_divisor=size),
        backbone=dict(type='EffNet', arch='b0', drop_path_rate=0., padding='tf_same',
                      norm_cfg=norm),
        neck=dict(type='EffBiFPN', in_channels=[40, 112, 320], arch='d0', norm_cfg=norm),
        bbox_head=dict(type='EffDetHead', num_classes=len(COLOURS), arch='d0', norm_cfg=norm),
        train_cfg=official_settings()['train_cfg'],
        test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                      nms=dict(type='nms', iou_threshold=0.5), max_per_img=20))
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights reports every tensor at INFO
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return model


def recall_and_false_positives(model, inputs, samples, gts) -> Tuple[float, int]:
    """Fraction of boxes found (IoU >= 0.5, right class, score >= SCORE_THR) and the number of
    confident predictions that match no box."""
    model.eval()
    with torch.no_grad():
        preds = model.predict(inputs, samples)
    model.train()
    found = total = false_pos = 0
    for pred, gt in zip(preds, gts):
        inst = pred.pred_instances[pred.pred_instances.scores >= SCORE_THR]
        iou = bbox_overlaps(gt.bboxes, inst.bboxes)
        used = set()
        for g in range(len(gt)):
            hits = [k for k in range(len(inst)) if k not in used and iou[g, k] >= 0.5
                    and inst.labels[k] == gt.labels[g]]
            if hits:
                used.add(hits[0])
                found += 1
        total += len(gt)
        false_pos += len(inst) - len(used)
    return found / total, false_pos


def overfit(size: int, num_images: int, num_objects: int, min_side: int, max_steps: int,
            lr: float = 3e-3, seed: int = 0) -> Tuple[float, int, int]:
    """Train until every box is found (checked every 20 steps); (recall, false pos, steps)."""
    # One thread: on a shared CPU, two OpenMP threads contending for a busy core can be 10x
    # slower than one (conftest restores the thread count after the test).
    torch.set_num_threads(1)
    images, gts = synthetic_images(num_images, size, num_objects, min_side, seed)
    model = small_effdet(size)
    samples = []
    for gt in gts:
        sample = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                             scale_factor=(1.0, 1.0)))
        sample.gt_instances = gt
        samples.append(sample)
    data = model.data_preprocessor(dict(inputs=images, data_samples=samples), training=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max_steps,
                                                    pct_start=0.1)
    model.train()
    recall, false_pos = 0.0, -1
    for step in range(1, max_steps + 1):
        loss, _ = model.parse_losses(model.loss(data['inputs'], data['data_samples']))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        scheduler.step()
        if step % 20 == 0 or step == max_steps:
            recall, false_pos = recall_and_false_positives(model, data['inputs'],
                                                           data['data_samples'], gts)
            if recall >= 0.9 and false_pos <= 1:
                break
    return recall, false_pos, step


def test_d0_overfits_four_images():
    """EfficientDet-D0 as configured (64 ch x 3 cells, 3 convs per subnet) at 128x128, from
    scratch: 80-100 steps suffice (seeds 0-2), ~30 s of one CPU core."""
    recall, false_pos, steps = overfit(size=128, num_images=4, num_objects=3, min_side=21,
                                       max_steps=150)
    assert recall >= 0.9 and false_pos <= 1, (recall, false_pos, steps)
