"""mIoU of ``pred_sem_seg`` with mmdet's SemSegMetric and our EffDetSemSegMetric, and both
next to CocoMetric in one evaluator (the joint detection + segmentation model)."""
import json
from typing import Callable, Optional

import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.evaluator import Evaluator
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData, PixelData

import effdet_plugin  # noqa: F401  (registers EffDetSemSegMetric)


@pytest.fixture(autouse=True)
def _mmdet_scope():
    init_default_scope('mmdet')


def seg_sample(gt: torch.Tensor, pred: torch.Tensor, ignore_index: int = 255,
               **metainfo) -> DetDataSample:
    """What EffDetMultiTask.predict leaves in a data sample (gt from PackDetInputs)."""
    sample = DetDataSample(metainfo=metainfo)
    sample.gt_sem_seg = PixelData(sem_seg=gt[None].to(torch.uint8))
    sample.pred_sem_seg = PixelData(sem_seg=pred[None].long(),
                                    metainfo=dict(ignore_index=ignore_index))
    return sample


def evaluate(metric: dict, samples, classes=('background', 'thing')) -> dict:
    evaluator = Evaluator([metric])
    evaluator.dataset_meta = dict(classes=classes)
    evaluator.process(samples)
    return evaluator.evaluate(len(samples))


def squares(shift: int = 0, size: int = 8) -> torch.Tensor:
    """8x8 map, class 1 on a 4x4 square (shifted right by ``shift``), class 0 elsewhere."""
    label = torch.zeros(size, size, dtype=torch.long)
    label[2:6, 2 + shift:6 + shift] = 1
    return label


@pytest.mark.parametrize('metric_type', ['SemSegMetric', 'EffDetSemSegMetric'])
def test_perfect_prediction_scores_100(metric_type):
    gt = squares()
    results = evaluate(dict(type=metric_type), [seg_sample(gt, gt), seg_sample(gt, gt)])
    prefix = 'semseg/' if metric_type == 'EffDetSemSegMetric' else ''
    assert results[f'{prefix}mIoU'] == pytest.approx(100.)
    assert results[f'{prefix}aAcc'] == pytest.approx(100.)


def test_known_partial_overlap():
    """Square shifted by 2 px: class 1 I=8, U=16+16-8=24 -> 33.33; background
    I=64-16-16+8=40, U=48+48-40=56 -> 71.43; mIoU 52.38; pixel accuracy (8+40)/64 = 75."""
    results = evaluate(dict(type='EffDetSemSegMetric'), [seg_sample(squares(), squares(2))])
    assert results['semseg/IoU.thing'] == pytest.approx(100 * 8 / 24, abs=0.01)
    assert results['semseg/IoU.background'] == pytest.approx(100 * 40 / 56, abs=0.01)
    assert results['semseg/mIoU'] == pytest.approx(100 * (8 / 24 + 40 / 56) / 2, abs=0.01)
    assert results['semseg/aAcc'] == pytest.approx(75.)
    # mmdet's own metric agrees on the IoUs (it only logs the per-class ones).
    plain = evaluate(dict(type='SemSegMetric'), [seg_sample(squares(), squares(2))])
    assert plain['mIoU'] == pytest.approx(results['semseg/mIoU'], abs=0.01)


def test_iou_is_accumulated_over_the_dataset():
    """Intersections and unions are summed over images before dividing, not averaged."""
    perfect, shifted = seg_sample(squares(), squares()), seg_sample(squares(), squares(2))
    results = evaluate(dict(type='EffDetSemSegMetric'), [perfect, shifted])
    assert results['semseg/IoU.thing'] == pytest.approx(100 * (16 + 8) / (16 + 24), abs=0.01)


def test_ignore_index_pixels_are_skipped():
    gt, pred = squares(), squares(2)
    gt[:, 6:] = 255  # the only wrong predictions fall where there is no ground truth
    gt[2:6, 2:4] = 255
    results = evaluate(dict(type='EffDetSemSegMetric'), [seg_sample(gt, pred)])
    assert results['semseg/mIoU'] == pytest.approx(100.)


def test_own_class_list_counts_labels_beyond_the_detection_classes():
    """A seg head with background + 2 classes on a dataset whose (detection) classes are 2."""
    gt = squares()
    gt[0, :] = 2
    pred = gt.clone()
    pred[0, :4] = 0
    det_classes = ('white_box', 'red_box')
    seg_classes = ('background', ) + det_classes
    ours = evaluate(dict(type='EffDetSemSegMetric', classes=seg_classes),
                    [seg_sample(gt, pred)], classes=det_classes)
    assert ours['semseg/IoU.red_box'] == pytest.approx(50.)
    assert ours['semseg/IoU.white_box'] == pytest.approx(100.)
    # mmdet's metric bins only len(dataset classes) labels: class 2 is silently dropped.
    plain = evaluate(dict(type='SemSegMetric'), [seg_sample(gt, pred)], classes=det_classes)
    assert plain['mIoU'] != pytest.approx(ours['semseg/mIoU'], abs=0.01)


def test_aacc_is_pixel_accuracy():
    """mmdet 3.3's SemSegMetric reports mean class accuracy as aAcc; ours is overall."""
    gt, pred = squares(), squares()
    pred[2, 2] = 0  # one of the 16 class-1 pixels wrong: acc 15/16 vs mean(1, 15/16)
    ours = evaluate(dict(type='EffDetSemSegMetric'), [seg_sample(gt, pred)])
    assert ours['semseg/aAcc'] == pytest.approx(100 * 63 / 64, abs=0.01)
    assert ours['semseg/mAcc'] == pytest.approx(100 * (1 + 15 / 16) / 2, abs=0.01)


def _coco_and_seg_samples(tiny_coco, seg_pred: Optional[Callable] = None):
    """Perfect detections (the gt boxes) and seg maps painted from the same boxes."""
    with open(f'{tiny_coco.data_root}/{tiny_coco.ann_file}') as f:
        coco = json.load(f)
    samples = []
    for image in coco['images']:
        anns = [a for a in coco['annotations'] if a['image_id'] == image['id']]
        h, w = image['height'], image['width']
        gt = torch.zeros(h, w, dtype=torch.long)
        for a in anns:
            x, y, bw, bh = a['bbox']
            gt[y:y + bh, x:x + bw] = a['category_id']
        sample = seg_sample(gt, gt if seg_pred is None else seg_pred(gt), img_id=image['id'],
                            ori_shape=(h, w))
        boxes = torch.tensor([a['bbox'] for a in anns], dtype=torch.float32)
        boxes[:, 2:] += boxes[:, :2]
        sample.pred_instances = InstanceData(
            bboxes=boxes, scores=torch.ones(len(anns)),
            labels=torch.tensor([a['category_id'] - 1 for a in anns]))
        samples.append(sample)
    return samples


def test_coco_and_miou_metrics_in_one_evaluator(tiny_coco):
    evaluator = Evaluator([
        dict(type='CocoMetric', ann_file=f'{tiny_coco.data_root}/{tiny_coco.ann_file}',
             metric='bbox'),
        dict(type='EffDetSemSegMetric', classes=('background', ) + tiny_coco.classes),
    ])
    evaluator.dataset_meta = dict(classes=tiny_coco.classes)
    samples = _coco_and_seg_samples(tiny_coco, seg_pred=lambda gt: torch.zeros_like(gt))
    evaluator.process(samples)
    results = evaluator.evaluate(len(samples))
    assert results['coco/bbox_mAP'] == pytest.approx(1.0)
    # Everything predicted as background: background IoU = bg pixels / all, others 0.
    assert results['semseg/IoU.white_box'] == 0 and results['semseg/IoU.red_box'] == 0
    assert 0 < results['semseg/IoU.background'] < 100
