"""Do the training objects fit the model's anchors? Shares unmatched and the upscale that helps.

An anchor-based head learns an object only from the anchors whose IoU with it reaches the
assigner's positive threshold. Objects much smaller than the smallest level's anchors (17 px
nuclei under EfficientDet-Lite's 24-38 px stride-8 anchors) reach it with none: training
converges on a last-resort match per object and AP stays low without any error. Smaller
anchors did not help there: the stride-8 grid is too coarse to place them (AP 0.025 with
anchor scale 2 vs 0.068 with 4 on crowded nuclei of median 17-20 px, 300 iterations), while
upscaling the images 2x raised AP 2.7x. So this module measures, on the
boxes the training pipeline produces, the share that no anchor matches, per class, and the
smallest upscale factor after which few are left.

The anchors come from the caller as an :class:`AnchorSpec` (effdet_plugin/cli reads them from
the config's model), so this module depends on no model code.
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

#: Share of unmatched training objects above which the objects are too small for the model.
MAX_UNMATCHED = 0.2
#: Share of unmatched objects a suggested upscale factor brings the training objects under.
TARGET_UNMATCHED = 0.1
#: Upscale factors tried, smallest first.
CANDIDATE_FACTORS = (1.25, 1.5, 2.0, 2.5, 3.0, 4.0)
#: Fewest objects of a class for its share to be reported in a warning.
MIN_CLASS_OBJECTS = 5


@dataclass(frozen=True)
class AnchorLevel:
    """The anchors at one pyramid level.

    Attributes:
        stride (float): Distance between anchor centres (px).
        center (float): Centre of the first anchor, in px from the image corner (both axes).
        sizes (tuple[tuple[float, float]]): ``(width, height)`` of each anchor at a location.
    """
    stride: float
    center: float
    sizes: Tuple[Tuple[float, float], ...]


@dataclass(frozen=True)
class AnchorSpec:
    """What the assigner matches training objects against.

    Attributes:
        levels (tuple[AnchorLevel]): Pyramid levels, finest first.
        pos_iou_thr (float): IoU an anchor needs with an object to be a positive for it.
        source (str): Where the anchors come from, for the report (e.g. ``'bbox_head'``).
    """
    levels: Tuple[AnchorLevel, ...]
    pos_iou_thr: float
    source: str = 'bbox_head'

    def describe(self) -> str:
        """E.g. ``bbox_head smallest level: stride 8, anchors 24-38 px``."""
        first = self.levels[0]
        sizes = sorted(math.sqrt(w * h) for w, h in first.sizes)
        return (f'{self.source} smallest level: stride {first.stride:g}, anchors '
                f'{sizes[0]:.0f}-{sizes[-1]:.0f} px')


def best_anchor_iou(boxes: np.ndarray, spec: AnchorSpec) -> np.ndarray:
    """The highest IoU each box reaches with any anchor of ``spec``.

    For a given anchor shape, IoU grows as the anchor centre approaches the box centre along
    each axis independently, so only the grid centre nearest the box centre of each level
    needs to be checked.

    Args:
        boxes (np.ndarray): ``(N, 4)`` boxes ``x1, y1, x2, y2`` in pixels.
        spec (AnchorSpec): The anchors.

    Returns:
        np.ndarray: ``(N,)`` IoUs.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    best = np.zeros(len(boxes))
    if not len(boxes):
        return best
    centers = (boxes[:, :2] + boxes[:, 2:]) / 2
    areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    for level in spec.levels:
        cells = np.maximum(np.round((centers - level.center) / level.stride), 0)
        anchor_centers = level.center + cells * level.stride  # (N, 2)
        for width, height in level.sizes:
            half = np.array([width, height]) / 2
            low = np.maximum(boxes[:, :2], anchor_centers - half)
            high = np.minimum(boxes[:, 2:], anchor_centers + half)
            inter = np.prod(np.clip(high - low, 0, None), axis=1)
            iou = inter / (areas + width * height - inter)
            best = np.maximum(best, iou)
    return best


@dataclass
class AnchorFit:
    """How the training objects after the pipeline fit the anchors.

    Attributes:
        spec (AnchorSpec): The anchors.
        objects (int): Training objects measured.
        unmatched (float): Share of them that no anchor matches.
        per_class (dict[str, tuple[int, float]]): ``(objects, unmatched share)`` per class.
        median_size (float): Median object size sqrt(w*h) (px).
        factor (float | None): Smallest of :data:`CANDIDATE_FACTORS` that brings the
            unmatched share under :data:`TARGET_UNMATCHED` (the best one if none does);
            None when the objects already fit.
        unmatched_after (float | None): The share after upscaling by ``factor``.
    """
    spec: AnchorSpec
    objects: int
    unmatched: float
    per_class: Dict[str, Tuple[int, float]]
    median_size: float
    factor: Optional[float] = None
    unmatched_after: Optional[float] = None

    @property
    def too_small(self) -> bool:
        return self.objects > 0 and self.unmatched > MAX_UNMATCHED


def _unmatched(boxes: np.ndarray, spec: AnchorSpec) -> np.ndarray:
    return best_anchor_iou(boxes, spec) < spec.pos_iou_thr


def anchor_fit(boxes: np.ndarray, labels: Sequence[int], classes: Sequence[str],
               spec: AnchorSpec) -> AnchorFit:
    """Measure which training objects no anchor matches and the upscale factor that helps.

    Args:
        boxes (np.ndarray): ``(N, 4)`` training boxes after the pipeline (``x1, y1, x2, y2``).
        labels (Sequence[int]): ``(N,)`` class indices.
        classes (Sequence[str]): Class names.
        spec (AnchorSpec): The model's anchors and the assigner's threshold.

    Returns:
        AnchorFit: The shares and, when the objects are too small, the factor.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    unmatched = _unmatched(boxes, spec)
    per_class = {}
    for index, name in enumerate(classes):
        mine = labels == index
        if mine.any():
            per_class[name] = (int(mine.sum()), float(unmatched[mine].mean()))
    sizes = np.sqrt(np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1))
    fit = AnchorFit(spec, len(boxes), float(unmatched.mean()) if len(boxes) else 0.0,
                    per_class, float(np.median(sizes)) if len(sizes) else 0.0)
    if fit.too_small:
        shares = [(float(_unmatched(boxes * f, spec).mean()), f) for f in CANDIDATE_FACTORS]
        fit.unmatched_after, fit.factor = next(
            ((share, f) for share, f in shares if share <= TARGET_UNMATCHED), min(shares))
    return fit


def _percent(share: float) -> str:
    return f'{100 * share:.0f}%'


def format_anchor_fit(fit: AnchorFit) -> str:
    """Two report lines: the anchors, and the share of training objects they match."""
    classes = ', '.join(f'{name} {_percent(share)} of {n}'
                        for name, (n, share) in fit.per_class.items())
    return (f'  model: {fit.spec.describe()} (sqrt(w*h)); assigner positive at IoU >= '
            f'{fit.spec.pos_iou_thr:g}\n'
            f'  training objects no anchor matches: {_percent(fit.unmatched)} of '
            f'{fit.objects} (median size {fit.median_size:.0f} px; {classes})')


def anchor_warnings(fit: AnchorFit, current_factor: float = 1.0) -> List[str]:
    """A warning naming the measured shares and the flag that fixes them, if objects are too
    small for the model.

    Args:
        fit (AnchorFit): From :func:`anchor_fit`.
        current_factor (float): The ``--img-scale-factor`` already applied to the measured
            boxes; the suggested flag is the total. Defaults to 1.0.
    """
    if not fit.too_small:
        return []
    classes = ', '.join(f'{name} {_percent(share)}'
                        for name, (n, share) in fit.per_class.items()
                        if n >= MIN_CLASS_OBJECTS)
    total = round(current_factor * fit.factor, 2)
    return [
        f'objects are small for the model: {_percent(fit.unmatched)} of {fit.objects} training '
        f'objects (median {fit.median_size:.0f} px after the train pipeline; per class: '
        f'{classes or "too few to tell"}) match no anchor at the assigner\'s positive IoU '
        f'{fit.spec.pos_iou_thr:g} ({fit.spec.describe()}): they get a low-quality match at '
        f'best and AP stays low. Upscale every split with --img-scale-factor {total:g} (leaves '
        f'{_percent(fit.unmatched_after)} unmatched; data = dict(img_scale_factor={total:g}) '
        'in a config)']
