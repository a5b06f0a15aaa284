"""Detections of an exported model against PyTorch's, instance by instance (parity checks)."""
from typing import Dict

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``(n, m)`` of x1, y1, x2, y2 boxes ``a`` ``(n, 4)`` and ``b`` ``(m, 4)``."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=-1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=-1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-9)


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of paired bool masks ``(n, h, w)``; two empty masks agree (IoU 1)."""
    inter = (a & b).reshape(len(a), -1).sum(axis=1)
    union = (a | b).reshape(len(a), -1).sum(axis=1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def match_instances(ref: Dict[str, np.ndarray], ours: Dict[str, np.ndarray]) -> Dict:
    """Pair every detection of ``ours`` with the one of ``ref`` of the same label and the
    highest box IoU (each used once, ``ours`` taken in score order).

    Args:
        ref (dict): The reference (PyTorch): ``boxes`` ``(n, 4)``, ``scores``, ``labels`` and
            optionally ``masks`` ``(n, h, w)`` bool, numpy.
        ours (dict): The same keys for the model under test.

    Returns:
        dict: Per matched pair ``box_iou``, ``score_diff`` (absolute) and, with masks,
        ``mask_iou``, ``mask_diff`` (pixels in one mask only), ``mask_area`` (the
        reference's pixels); ``ref_index`` of each pair;
        ``unmatched_ours`` and ``unmatched_ref`` (counts; a detection whose best free partner
        has box IoU 0 is unmatched).
    """
    ious = box_iou(ours['boxes'].astype(np.float64), ref['boxes'].astype(np.float64))
    ious[ours['labels'][:, None] != ref['labels'][None, :]] = 0
    pairs, used = [], set()
    for i in np.argsort(-ours['scores'], kind='stable'):
        free = [j for j in np.argsort(-ious[i], kind='stable') if j not in used]
        if free and ious[i, free[0]] > 0:
            pairs.append((i, free[0]))
            used.add(free[0])
    ours_idx = np.array([i for i, _ in pairs], dtype=int)
    ref_idx = np.array([j for _, j in pairs], dtype=int)
    result = dict(box_iou=ious[ours_idx, ref_idx],
                  score_diff=np.abs(ours['scores'][ours_idx] - ref['scores'][ref_idx]),
                  ref_index=ref_idx, unmatched_ours=len(ours['scores']) - len(pairs),
                  unmatched_ref=len(ref['scores']) - len(pairs))
    if 'masks' in ref and 'masks' in ours:
        a, b = ours['masks'][ours_idx], ref['masks'][ref_idx]
        result['mask_iou'] = mask_iou(a, b)
        result['mask_diff'] = (a != b).reshape(len(a), -1).sum(axis=1)
        result['mask_area'] = ref['masks'][ref_idx].reshape(len(ref_idx), -1).sum(axis=1)
    return result
