"""batched_nms: NMS class by class returns mmcv's batched_nms (hard NMS: exactly; soft-NMS:
the same boxes and scores)."""
import pytest
import torch
from mmcv.ops import batched_nms as mmcv_batched_nms

from effdet_plugin.models.utils.nms import batched_nms, runs_class_by_class


def _candidates(num=5000, classes=90, size=320.0, score_levels=None, seed=0):
    """Detector-like candidates: boxes clustered around objects (so NMS suppresses), classes
    of very different frequency, scores in (0, 1), optionally rounded to ``score_levels``
    values so that many tie."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(60, 2, generator=g) * size
    obj = torch.randint(0, 60, (num, ), generator=g)
    # centres inside the image: no box loses all its area to the clamp below (two boxes
    # without area have IoU 0 / 0, which mmcv's one soft-NMS run spreads across classes)
    xy = (centres[obj] + torch.randn(num, 2, generator=g) * 6).clamp(1, size - 1)
    wh = (torch.rand(60, 2, generator=g) * 80 + 8)[obj] * torch.exp(
        torch.randn(num, 2, generator=g) * 0.15)
    boxes = torch.cat([xy - wh / 2, xy + wh / 2], dim=1).clamp(0, size)
    labels = torch.multinomial(torch.rand(classes, generator=g)**4, num, replacement=True,
                               generator=g)
    scores = torch.rand(num, generator=g)
    if score_levels:
        scores = (scores * score_levels).ceil() / score_levels
    return boxes, scores, labels


@pytest.mark.parametrize('iou_threshold', [0.3, 0.5, 0.6, 0.7])
@pytest.mark.parametrize('score_levels', [None, 20])
def test_hard_nms_equals_mmcv(iou_threshold, score_levels):
    """Same kept boxes in the same order, equal scores included (0.6 and 0.7 are not float32
    numbers: the threshold must be rounded as mmcv's kernel rounds it)."""
    boxes, scores, labels = _candidates(score_levels=score_levels, seed=int(10 * iou_threshold))
    cfg = dict(type='nms', iou_threshold=iou_threshold)
    assert runs_class_by_class(boxes, cfg)
    dets, keep = batched_nms(boxes, scores, labels, cfg)
    ref_dets, ref_keep = mmcv_batched_nms(boxes, scores, labels, cfg)
    assert 100 < len(keep) < len(boxes)  # NMS had work to do
    assert torch.equal(keep, ref_keep)
    assert torch.equal(dets, ref_dets)


@pytest.mark.parametrize('classes,max_num', [(90, 1), (90, 100), (1, 100), (1, 1000)])
def test_first_max_num_equal_mmcv(classes, max_num):
    """Only the best boxes are looked at first: with one class the best 400 of 5000 keep
    fewer than 100 (most are duplicates), so it must look further; with 1000 wanted of
    fewer kept, at all of them."""
    boxes, scores, labels = _candidates(classes=classes, seed=classes)
    cfg = dict(type='nms', iou_threshold=0.5)
    ref_dets, ref_keep = mmcv_batched_nms(boxes, scores, labels, cfg)
    dets, keep = batched_nms(boxes, scores, labels, cfg, max_num)
    assert len(keep) == min(max_num, len(ref_keep))
    assert torch.equal(keep, ref_keep[:max_num]) and torch.equal(dets, ref_dets[:max_num])
    if classes == 1:
        assert len(ref_keep) < 1000 and (ref_keep < 400).sum() < 100 <= len(ref_keep)


@pytest.mark.parametrize('iou_threshold', [0.3, 0.5, 0.6])
def test_boxes_on_the_threshold(iou_threshold):
    """IoU equal to the float32 threshold keeps both boxes, as mmcv's strict '>' in float32
    does (torchvision compares with a double: 0.3 and 0.6 as given would suppress)."""
    height = 10 * iou_threshold  # IoU with the first box: 10 * height / 100
    boxes = torch.tensor([[0., 0., 10., 10.], [0., 0., 10., height], [0., 0., 10., 1.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.zeros(3, dtype=torch.long)
    cfg = dict(type='nms', iou_threshold=iou_threshold)
    keep = batched_nms(boxes, scores, labels, cfg)[1]
    assert keep.tolist() == mmcv_batched_nms(boxes, scores, labels, cfg)[1].tolist()
    assert keep.tolist()[:2] == [0, 1]


@pytest.mark.parametrize('method', ['gaussian', 'linear'])
def test_soft_nms_equals_mmcv(method):
    """Without equal scores, the same boxes with the same lowered scores in the same order
    as mmcv's one run over all classes."""
    boxes, scores, labels = _candidates()
    cfg = dict(type='soft_nms', iou_threshold=0.3, sigma=0.5, min_score=1e-3, method=method)
    assert runs_class_by_class(boxes, cfg)
    ref_dets, ref_keep = mmcv_batched_nms(boxes, scores, labels, cfg)
    dets, keep = batched_nms(boxes, scores, labels, cfg)
    assert 100 < len(keep) and (ref_dets[:, -1] < scores[ref_keep]).any()  # scores lowered
    assert torch.equal(keep, ref_keep) and torch.equal(dets, ref_dets)
    top_dets, top_keep = batched_nms(boxes, scores, labels, cfg, 100)
    assert torch.equal(top_dets, dets[:100]) and torch.equal(top_keep, keep[:100])


def test_soft_nms_with_equal_scores_depends_on_the_input_order_in_mmcv_too():
    """With equal scores in a class, which of two overlapping boxes soft-NMS takes first is
    arbitrary: mmcv's one run gives other scores for the same boxes in another order, so the
    class-by-class result is one of the valid ones, not a change."""
    boxes, scores, labels = _candidates(score_levels=20)
    cfg = dict(type='soft_nms', iou_threshold=0.3, sigma=0.5, min_score=1e-3, method='gaussian')
    perm = torch.randperm(len(boxes), generator=torch.Generator().manual_seed(0))

    def kept_scores(result, index):
        return dict(zip(index[result[1]].tolist(), result[0][:, -1].tolist()))

    ref = kept_scores(mmcv_batched_nms(boxes, scores, labels, cfg), torch.arange(len(boxes)))
    permuted = kept_scores(mmcv_batched_nms(boxes[perm], scores[perm], labels[perm], cfg), perm)
    ours = kept_scores(batched_nms(boxes, scores, labels, cfg), torch.arange(len(boxes)))
    assert ref != permuted and ours != ref
    assert sorted(ours.values(), reverse=True)[:10] == sorted(ref.values(), reverse=True)[:10]


@pytest.mark.parametrize('cfg', [
    dict(type='soft_nms', iou_threshold=0.5, sigma=0.5, min_score=1e-3, class_agnostic=True),
    dict(type='nms', iou_threshold=0.5, split_thr=1000),  # more boxes than split_thr
    dict(type='nms', iou_threshold=0.5, class_agnostic=True),
    dict(type='nms', iou_threshold=0.5, score_threshold=0.5),
    None,
])
def test_everything_else_is_mmcv(cfg):
    boxes, scores, labels = _candidates(num=2000)
    assert not runs_class_by_class(boxes, cfg)
    ref = mmcv_batched_nms(boxes, scores, labels, cfg)
    for ours, ref_part in zip(batched_nms(boxes, scores, labels, cfg), ref):
        assert torch.equal(ours, ref_part)
    for ours, ref_part in zip(batched_nms(boxes, scores, labels, cfg, 100), ref):
        assert torch.equal(ours, ref_part[:100])
