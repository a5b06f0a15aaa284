"""Hard NMS in an ONNX graph: the ONNX ``NonMaxSuppression`` operator per class, then the
``max_per_img`` best, for any batch size. Shared by the detection and instance exports."""
import logging
from typing import NamedTuple, Optional, Tuple

import torch
from mmcv.ops import batched_nms
from mmengine.logging import print_log
from torch import Tensor


class _NonMaxSuppression(torch.autograd.Function):
    """Per-class hard NMS that exports as one ONNX ``NonMaxSuppression`` node.

    Takes ``boxes`` ``(B, N, 4)`` (x1, y1, x2, y2) and ``scores`` ``(B, C, N)`` and returns
    the kept ``(batch, class, box)`` index triples ``(S, 3)``, as the ONNX operator does.
    The eager forward (mmcv) only serves the trace.
    """

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, max_per_class: int, iou_thr: float,
                score_thr: float) -> Tensor:
        triples = []
        for b in range(boxes.shape[0]):
            cls, idx = (scores[b] > score_thr).nonzero(as_tuple=True)
            if not len(idx):
                continue
            keep = batched_nms(boxes[b, idx], scores[b, cls, idx], cls,
                               dict(type='nms', iou_threshold=iou_thr))[1]
            for c in cls[keep].unique():
                kept = idx[keep][cls[keep] == c][:max_per_class]
                triples.append(torch.stack(
                    [torch.full_like(kept, b), torch.full_like(kept, c), kept], dim=1))
        if not triples:
            return boxes.new_zeros((0, 3), dtype=torch.long)
        return torch.cat(triples)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class: int, iou_thr: float, score_thr: float):
        return g.op(
            'NonMaxSuppression', boxes, scores,
            g.op('Constant', value_t=torch.tensor([max_per_class], dtype=torch.long)),
            g.op('Constant', value_t=torch.tensor([iou_thr], dtype=torch.float)),
            g.op('Constant', value_t=torch.tensor([score_thr], dtype=torch.float)))


def hard_nms_iou(nms_cfg: dict) -> float:
    """IoU threshold of the in-graph hard NMS from the head's ``test_cfg.nms``; soft-NMS
    cannot be expressed in ONNX and becomes hard NMS at its ``iou_threshold``, with a log
    line."""
    nms_type = nms_cfg.get('type', 'nms')
    if nms_type not in ('nms', 'soft_nms'):
        raise ValueError(f"test_cfg.nms type {nms_type!r} cannot be exported: use 'nms' "
                         "(or 'soft_nms', exported as hard NMS)")
    iou = float(nms_cfg.get('iou_threshold', 0.5))
    if nms_type == 'soft_nms':
        print_log(f'soft-NMS has no ONNX operator: the graph runs hard NMS at IoU {iou} '
                  '(test_cfg.nms.iou_threshold); see docs/deploy.md for the AP difference',
                  logger='current', level=logging.WARNING)
    return iou


class GraphPostProcess(NamedTuple):
    """The head's ``test_cfg`` as the graph uses it (:meth:`from_test_cfg`)."""
    nms_pre: int
    score_thr: float
    min_bbox_size: float
    max_per_img: int
    iou_thr: Optional[float]  # None without NMS

    @classmethod
    def from_test_cfg(cls, cfg: dict, with_nms: bool = True) -> 'GraphPostProcess':
        return cls(int(cfg.get('nms_pre', -1)), float(cfg.get('score_thr', 0.0)),
                   cfg.get('min_bbox_size', -1), int(cfg.get('max_per_img', 100)),
                   hard_nms_iou(cfg.get('nms', dict(type='nms'))) if with_nms else None)


def nms_top_k(boxes: Tensor, scores: Tensor, labels: Tensor, num_classes: int,
              cfg: GraphPostProcess) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """mmdet's ``_bbox_post_process`` on candidates, traceable: boxes not larger than
    ``cfg.min_bbox_size`` (if >= 0) dropped, per-class hard NMS at ``cfg.iou_thr``, the
    ``cfg.max_per_img`` best.

    Args:
        boxes (Tensor): Candidate boxes ``(B, N, 4)``.
        scores (Tensor): Their scores ``(B, N)``; dropped candidates have score 0.
        labels (Tensor): Their classes ``(B, N)``.
        num_classes (int): Number of classes.
        cfg (GraphPostProcess): Thresholds and sizes.

    Returns:
        tuple[Tensor, Tensor, Tensor, Tensor]: ``boxes`` ``(B, K, 4)``, ``scores``
        ``(B, K)`` (descending), ``labels`` ``(B, K)`` and the candidate ``index`` ``(B, K)``
        of each row; rows beyond the detections have score 0, a zero box and label -1.
    """
    batch, num = scores.shape
    if cfg.min_bbox_size >= 0:  # mmdet's _bbox_post_process drops these before NMS
        wh = boxes[..., 2:] - boxes[..., :2]
        valid = (wh > cfg.min_bbox_size).all(dim=-1)
        scores = torch.where(valid, scores, torch.zeros_like(scores))
    classes = torch.arange(num_classes, device=labels.device)
    class_scores = torch.where(labels[:, None] == classes[None, :, None], scores[:, None],
                               torch.zeros_like(scores[:, None]))
    # a constant of the graph: k is fixed unless nms_pre <= 0 (then shapes are static)
    max_per_class = int(num)
    kept = _NonMaxSuppression.apply(boxes, class_scores, max_per_class, cfg.iou_thr,
                                    cfg.score_thr)
    keep = torch.zeros_like(scores).reshape(-1).scatter(
        0, kept[:, 0] * num + kept[:, 2], torch.ones_like(kept[:, 0], dtype=scores.dtype))
    scores = scores * keep.reshape(batch, num)
    scores, index = scores.topk(min(cfg.max_per_img, num), dim=1)
    found = scores > 0
    boxes = boxes.gather(1, index[..., None].expand(-1, -1, 4)) * found[..., None]
    labels = torch.where(found, labels.gather(1, index), torch.full_like(index, -1))
    return boxes, scores, labels, index
