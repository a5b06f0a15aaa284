"""EffDetMultiTask: loss / predict / tensor modes with a detection head, a seg head, or both.

Real EffNet-B0 + a one-cell EffBiFPN + a one-conv EffDetHead, 64x64 inputs.
"""
import copy
import json
from typing import Optional

import cv2
import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.config import ConfigDict
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmengine.structures import InstanceData, PixelData

import effdet_plugin  # noqa: F401  (registers every component)
from tests.models.head_settings import official_settings

NUM_CLASSES, SEG_CLASSES, WIDTH = 2, 3, 16

BBOX_HEAD = dict(type='EffDetHead', num_classes=NUM_CLASSES, in_channels=WIDTH,
                 stacked_convs=1)
SEG_HEAD = dict(type='EffDetSegHead', num_classes=SEG_CLASSES, in_channels=WIDTH,
                feat_channels=WIDTH, num_convs=1, out_stride=4)


def model_cfg(bbox_head: Optional[dict] = BBOX_HEAD,
              seg_head: Optional[dict] = SEG_HEAD,
              pad_seg: bool = True) -> dict:
    return dict(
        type='EffDetMultiTask',
        data_preprocessor=dict(
            type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=32,
            pad_seg=pad_seg, seg_pad_value=255),
        backbone=dict(type='EffNet', arch='b0', drop_path_rate=0.),
        neck=dict(type='EffBiFPN', in_channels=[40, 112, 320], out_channels=WIDTH,
                  num_repeats=1),
        bbox_head=copy.deepcopy(bbox_head),
        seg_head=copy.deepcopy(seg_head),
        train_cfg=official_settings()['train_cfg'],
        # Plain NMS, every score kept: untrained models still return boxes.
        test_cfg=dict(nms_pre=100, min_bbox_size=0, score_thr=0.0,
                      nms=dict(type='nms', iou_threshold=0.5), max_per_img=10))


MODES = {
    'det': dict(seg_head=None),
    'seg': dict(bbox_head=None),
    'joint': dict(),
}
LOSS_KEYS = {
    'det': {'loss_cls', 'loss_bbox'},
    'seg': {'loss_seg'},
    'joint': {'loss_cls', 'loss_bbox', 'loss_seg'},
}


def build(**kwargs):
    init_default_scope('mmdet')  # the detector builds 'DetDataPreprocessor' in scope
    torch.manual_seed(0)
    # A ConfigDict, as from a config file: mmdet heads read test_cfg by attribute.
    return MODELS.build(ConfigDict(model_cfg(**kwargs)))


def batch():
    """Two images of different sizes (padded to one 64x64 batch), each resized by 0.5 from
    its original."""
    gen = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for h, w in [(48, 64), (64, 40)]:
        inputs.append(torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8))
        sample = DetDataSample(metainfo=dict(
            img_shape=(h, w), ori_shape=(2 * h, 2 * w), scale_factor=(0.5, 0.5)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[4., 4., 24., 20.], [15., 10., 35., 45.]]),
            labels=torch.tensor([0, 1]))
        seg = torch.zeros(1, h, w, dtype=torch.uint8)
        seg[:, 4:20, 4:24], seg[:, 10:45, 15:35] = 1, 2
        sample.gt_sem_seg = PixelData(sem_seg=seg)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def run(model, mode: str, training: bool):
    data = model.data_preprocessor(batch(), training=training)
    return model(**data, mode=mode)


@pytest.mark.parametrize('mode', MODES)
def test_loss(mode):
    model = build(**MODES[mode]).train()
    losses = run(model, 'loss', training=True)
    assert set(losses) == LOSS_KEYS[mode]
    total = sum(v.sum() if torch.is_tensor(v) else sum(v) for v in losses.values())
    assert torch.isfinite(total)
    total.backward()
    # Gradients reach the shared trunk whichever heads are present.
    grad = model.backbone.layers[0].conv.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert model.with_bbox == (mode != 'seg') and model.with_seg == (mode != 'det')


@pytest.mark.parametrize('mode', MODES)
def test_predict(mode):
    model = build(**MODES[mode]).eval()
    with torch.no_grad():
        results = run(model, 'predict', training=False)
    for result in results:
        assert ('pred_instances' in result) == (mode != 'seg')
        assert ('pred_sem_seg' in result) == (mode != 'det')
        if mode != 'seg':
            bboxes = result.pred_instances.bboxes
            assert bboxes.shape[1] == 4 and len(bboxes) > 0
        if mode != 'det':
            seg = result.pred_sem_seg
            assert tuple(seg.sem_seg.shape) == (1, ) + tuple(result.ori_shape)
            assert seg.sem_seg.min() >= 0 and seg.sem_seg.max() < SEG_CLASSES
            assert seg.ignore_index == 255


def test_predict_without_rescale_stays_at_img_shape():
    model = build(bbox_head=None).eval()
    data = model.data_preprocessor(batch(), training=False)
    with torch.no_grad():
        results = model.predict(data['inputs'], data['data_samples'], rescale=False)
    assert [tuple(r.pred_sem_seg.sem_seg.shape[-2:]) for r in results] == [(48, 64), (64, 40)]


@pytest.mark.parametrize('mode', MODES)
def test_tensor_mode(mode):
    model = build(**MODES[mode]).eval()
    with torch.no_grad():
        bbox_outs, seg_logits = run(model, 'tensor', training=False)
    assert (bbox_outs is None) == (mode == 'seg')
    assert (seg_logits is None) == (mode == 'det')
    if seg_logits is not None:
        assert seg_logits.shape == (2, SEG_CLASSES, 64 // 4, 64 // 4)


def test_seg_loss_same_with_or_without_preprocessor_padding():
    """pad_seg=True (DetDataPreprocessor pads gt with 255) or False (the head pads)."""
    losses = [run(build(bbox_head=None, pad_seg=pad).train(), 'loss', training=True)
              for pad in (True, False)]
    torch.testing.assert_close(losses[0]['loss_seg'], losses[1]['loss_seg'])


def test_loss_weights_come_from_the_heads():
    """Joint weighting is the heads' own loss_weight; the detector adds no factor."""
    seg_head = dict(SEG_HEAD, loss_seg=dict(type='CrossEntropyLoss', ignore_index=255,
                                            avg_non_ignore=True, loss_weight=0.5))
    base = run(build().train(), 'loss', training=True)
    weighted = run(build(seg_head=seg_head).train(), 'loss', training=True)
    torch.testing.assert_close(weighted['loss_seg'], 0.5 * base['loss_seg'])
    torch.testing.assert_close(weighted['loss_cls'], base['loss_cls'])


def test_bad_configs_raise():
    with pytest.raises(ValueError, match='bbox_head, a seg_head or both'):
        build(bbox_head=None, seg_head=None)
    with pytest.raises(ValueError, match='in_channels'):
        build(seg_head=dict(SEG_HEAD, in_channels=WIDTH * 2))
    with pytest.raises(ValueError, match='featmap_strides'):
        build(seg_head=dict(SEG_HEAD, featmap_strides=(4, 8, 16, 32, 64)))


def _write_seg_maps(tiny_coco, seg_dir) -> None:
    """Semantic maps for the tiny COCO set: the category id inside each box, 0 elsewhere."""
    with open(f'{tiny_coco.data_root}/{tiny_coco.ann_file}') as f:
        coco = json.load(f)
    seg_dir.mkdir()
    for image in coco['images']:
        seg = np.zeros((image['height'], image['width']), np.uint8)
        for ann in coco['annotations']:
            if ann['image_id'] == image['id']:
                x, y, w, h = ann['bbox']
                seg[y:y + h, x:x + w] = ann['category_id']
        cv2.imwrite(str(seg_dir / image['file_name'].replace('.jpg', '.png')), seg)


def test_joint_model_trains_and_evaluates_with_coco_and_miou(tiny_coco, tiny_det_cfg, tmp_path):
    """A Runner trains the joint model on boxes + seg maps and tests it with CocoMetric and
    EffDetSemSegMetric in one evaluator; images are resized 64 -> 96, so predictions must
    come back to the 64x64 ground truth loaded after Resize in the test pipeline."""
    _write_seg_maps(tiny_coco, tmp_path / 'seg')
    cfg = tiny_det_cfg(max_epochs=1)
    seg_classes = ('background', ) + tuple(tiny_coco.classes)
    model = model_cfg(seg_head=dict(SEG_HEAD, num_classes=len(seg_classes)))
    cfg.model = model
    train_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_seg=True),
        dict(type='Resize', scale=(96, 96), keep_ratio=True),
        dict(type='PackDetInputs'),
    ]
    test_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(96, 96), keep_ratio=True),
        dict(type='LoadAnnotations', with_bbox=True, with_seg=True),
        dict(type='PackDetInputs',
             meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
    ]
    seg_prefix = dict(img=tiny_coco.img_prefix, seg=str(tmp_path / 'seg') + '/')
    for loader, pipeline in ((cfg.train_dataloader, train_pipeline),
                             (cfg.test_dataloader, test_pipeline)):
        loader.dataset.update(pipeline=pipeline, data_prefix=seg_prefix)
    cfg.test_evaluator = [
        cfg.test_evaluator,
        dict(type='EffDetSemSegMetric', classes=seg_classes),
    ]
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    assert 0 <= metrics['coco/bbox_mAP'] <= 1
    assert 0 <= metrics['semseg/mIoU'] <= 100
    assert {f'semseg/IoU.{name}' for name in seg_classes} <= set(metrics)
