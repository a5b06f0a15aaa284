"""Class-aware NMS class by class: mmcv's ``batched_nms`` result at a fraction of its cost.

mmcv's ``batched_nms`` shifts each class's boxes by ``class * (max coordinate + 1)`` and runs one
NMS over all of them, so every box is compared with every other box of the image, whatever its
class: with 5000 candidates of 90 classes that is most of a CPU prediction's post-processing.
Boxes of different classes never overlap after the shift, so running the NMS on each class's
shifted boxes alone gives the same result. :func:`batched_nms` does that on the CPU:

- hard NMS with torchvision's ``nms``, in mmcv's order of equal scores: mmcv's result, tensor
  for tensor. Whether a box is kept depends only on the boxes before it in score order, so
  when only the ``max_num`` best kept boxes are wanted (``max_per_img``), it runs on the best
  few hundred boxes first and on more only if those keep fewer than ``max_num``;
- soft-NMS in mmcv's own class-by-class mode (``split_thr=0``; mmcv takes it from 10000 boxes
  on): the same boxes with the same scores (a box of another class has IoU 0, a weight of
  exactly 1) unless two boxes of a class have equal scores, where mmcv's result depends on
  the order of its input anyway. It also keeps boxes without area from turning boxes of
  other classes to NaN (IoU 0 / 0) as mmcv's one run does (mmdet's ``min_bbox_size``
  filter keeps them out when set).

On a GPU mmcv's one parallel NMS is left as it is.
"""
from typing import Dict, List, Optional, Tuple

import torch
from mmcv.ops import batched_nms as mmcv_batched_nms
from torch import Tensor
from torchvision.ops import nms as torchvision_nms

# nms_cfg keys the class-by-class paths reproduce, per type; any other type or key (offset,
# score_threshold, max_num, class_agnostic ...) goes to mmcv
CLASS_BY_CLASS_KEYS = {
    'nms': {'type', 'iou_threshold', 'split_thr'},
    'soft_nms': {'type', 'iou_threshold', 'sigma', 'min_score', 'method', 'offset', 'split_thr'},
}
# mmcv's default: from this many boxes on, mmcv itself runs class by class, with its own
# ordering, so it is left to mmcv
MMCV_SPLIT_THR = 10000
# with max_num, the NMS first runs on the FIRST_PREFIX * max_num best boxes, then on
# PREFIX_GROWTH times more until max_num are kept or all boxes are in
FIRST_PREFIX = 4
PREFIX_GROWTH = 4


def batched_nms(boxes: Tensor,
                scores: Tensor,
                idxs: Tensor,
                nms_cfg: Optional[Dict],
                max_num: int = -1) -> Tuple[Tensor, Tensor]:
    """mmcv's ``batched_nms``, run class by class, and its first ``max_num`` results only.

    For ``nms_cfg`` of type ``'nms'`` (only ``iou_threshold`` and ``split_thr``) or
    ``'soft_nms'`` (mmcv's ``soft_nms`` arguments and ``split_thr``) on fewer than
    ``split_thr`` float32 CPU boxes ``(N, 4)``, each class runs alone on the boxes mmcv would
    shift (the same IoUs). Hard NMS gives mmcv's result tensor for tensor: the IoU threshold
    is rounded to float32 as mmcv's kernel takes it, and within each class boxes go in the
    order of mmcv's score sort, equal scores included. Soft-NMS is mmcv's ``batched_nms``
    with ``split_thr=0``. Everything else is mmcv's ``batched_nms``.

    Args:
        boxes (Tensor): Boxes ``(N, 4)`` (x1, y1, x2, y2).
        scores (Tensor): Scores ``(N, )``.
        idxs (Tensor): Class of each box ``(N, )``; boxes of different classes never
            suppress each other.
        nms_cfg (dict, optional): mmcv's NMS config (``type``, ``iou_threshold`` ...); None
            sorts without NMS.
        max_num (int): Results wanted at most; ``-1``: all. Defaults to -1.

    Returns:
        tuple[Tensor, Tensor]: Kept boxes with their (soft-NMS: lowered) scores ``(K, 5)`` and
        their indices ``(K, )``, by descending score.
    """
    class_by_class = runs_class_by_class(boxes, nms_cfg)
    if not class_by_class or nms_cfg.get('type', 'nms') == 'soft_nms':
        if class_by_class:  # mmcv's own class-by-class mode
            nms_cfg = dict(nms_cfg, split_thr=0)
        dets, keep = mmcv_batched_nms(boxes, scores, idxs, nms_cfg)
        return (dets, keep) if max_num < 0 else (dets[:max_num], keep[:max_num])
    order = scores.sort(descending=True).indices  # mmcv's kernel sorts the same way
    shifted = boxes + (idxs.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes)))[:, None]
    # torchvision compares the float32 IoU with a double; mmcv with the float32 threshold
    iou_threshold = float(torch.tensor(float(nms_cfg['iou_threshold']), dtype=torch.float32))
    prefix = len(order) if max_num < 0 else FIRST_PREFIX * max_num
    while True:
        keep = nms_class_by_class(shifted, scores, idxs, order[:prefix], iou_threshold)
        if max_num < 0 or len(keep) >= max_num or prefix >= len(order):
            break
        prefix *= PREFIX_GROWTH  # the boxes so far keep too few: look further
    keep = keep if max_num < 0 else keep[:max_num]
    return torch.cat([boxes[keep], scores[keep, None]], -1), keep


def split_by_class(idxs: Tensor, order: Tensor) -> List[Tensor]:
    """The indices ``order`` grouped by class, each group in the order of ``order``."""
    by_class = order[idxs[order].sort(stable=True).indices]
    counts = torch.unique_consecutive(idxs[by_class], return_counts=True)[1]
    return list(by_class.split(counts.tolist()))


def nms_class_by_class(boxes: Tensor, scores: Tensor, idxs: Tensor, order: Tensor,
                       iou_threshold: float) -> Tensor:
    """Hard NMS of the boxes ``order`` (indices by descending score) within each class: the
    kept ones, in that order."""
    kept = torch.zeros_like(scores, dtype=torch.bool)
    for group in split_by_class(idxs, order):
        # scores already descending: torchvision's stable sort keeps this order
        kept[group[torchvision_nms(boxes[group], scores[group], iou_threshold)]] = True
    return order[kept[order]]


def runs_class_by_class(boxes: Tensor, nms_cfg: Optional[Dict]) -> bool:
    """Whether :func:`batched_nms` runs class by class for these boxes and config."""
    nms_type = None if nms_cfg is None else nms_cfg.get('type', 'nms')
    return (nms_type in CLASS_BY_CLASS_KEYS and not set(nms_cfg) - CLASS_BY_CLASS_KEYS[nms_type]
            and (nms_type != 'nms' or 'iou_threshold' in nms_cfg)
            and 0 < len(boxes) < nms_cfg.get('split_thr', MMCV_SPLIT_THR)
            and boxes.shape[-1] == 4 and boxes.dtype == torch.float32
            and boxes.device.type == 'cpu')
