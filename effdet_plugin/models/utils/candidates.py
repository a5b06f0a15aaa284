"""Candidate selection for dense heads: partial top-k instead of mmdet's full sort, in one form
for eager prediction and for tracing (ONNX export)."""
from typing import Sequence, Tuple, Union

import torch
from torch import Tensor

# A pre-filter pays off when the scores outnumber the candidates by this much.
PREFILTER_RATIO = 32
# Scores sampled to estimate the pre-filter threshold.
PREFILTER_SAMPLES = 65536
# Logit of the padding candidates of a static-shape selection: its sigmoid is exactly 0 in
# float32, so no score_thr keeps it.
PAD_LOGIT = -1e4
SCOPES = ('level', 'image')


def top_indices(values: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` largest of the 1-d ``values`` (all of them, sorted, if ``k <= 0``).

    Same result as ``values.topk(k)`` up to the order of equal values. For ``k`` much smaller
    than ``values`` a threshold estimated from a strided sample keeps about ``2k`` values, and
    the top-k runs on those. The threshold only saves work: when fewer than ``k`` values pass
    it, the full top-k runs instead, so the result never depends on the sample.
    """
    num = values.numel()
    if k <= 0 or k >= num:
        return values.sort(descending=True).indices
    if num >= PREFILTER_RATIO * k:
        sample = values[::max(1, num // PREFILTER_SAMPLES)]
        rank = int(len(sample) * (1 - 2 * k / num))  # about 2k values above it
        threshold = sample.kthvalue(max(rank, 1)).values
        kept = (values > threshold).nonzero().squeeze(1)
        if len(kept) >= k:  # then every top-k value is above the threshold
            return kept[values[kept].topk(k).indices]
    return values.topk(k).indices


def topk_candidates(cls_score: Tensor,
                    bbox_pred: Tensor,
                    priors: Tensor,
                    num_classes: int,
                    k: int,
                    score_thr: float,
                    static_shape: bool = False) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """The ``k`` best (anchor, class) sigmoid scores above ``score_thr`` of one level, with
    their labels, box deltas and priors.

    Selects the same candidates as mmdet's ``filter_scores_and_topk`` on
    ``cls_score.permute(1, 2, 0).reshape(-1, num_classes).sigmoid()`` (up to the order of
    equal scores) without its work: no permuted copy of the scores, no sigmoid of all of them
    (it is monotonic: the top ``k`` logits are the top ``k`` scores), and no full sort, which
    at P3 of a 90-class EfficientDet-D0 at 512x512 covers 3.3M scores. Eager, maps stored
    channels-last (the inference default) are read as stored, not copied.

    Args:
        cls_score (Tensor): Class logits ``(B, A * C, H, W)`` with the ``A`` anchors of a
            location outermost, as dense heads output them.
        bbox_pred (Tensor): Box deltas ``(B, A * D, H, W)``, same layout.
        priors (Tensor): Anchors ``(H * W * A, 4)`` in mmdet's order ``location * A + anchor``.
        num_classes (int): ``C``.
        k (int): Candidates kept at most; ``k <= 0`` keeps every score above the threshold
            (mmdet's ``nms_pre=-1``).
        score_thr (float): Scores at or below it are dropped.
        static_shape (bool): Shapes that depend only on ``k``, the form that traces to a graph
            for any batch and input size: every image gets exactly ``k`` candidates (padding
            ones with score 0 when the level has fewer) and a score at or below ``score_thr``
            becomes 0 instead of being dropped. Otherwise ``B`` must be 1 and the selection
            takes a faster eager path (:func:`top_indices`). Defaults to False.

    Returns:
        tuple[Tensor, Tensor, Tensor, Tensor]: Scores ``(B, K)`` (descending), class labels
        ``(B, K)``, deltas ``(B, K, D)`` and priors ``(B, K, 4)`` of the candidates.
    """
    batch = cls_score.shape[0]
    num_anchors = cls_score.shape[1] // num_classes
    box_dim = bbox_pred.shape[1] // num_anchors
    locations = cls_score.shape[-2] * cls_score.shape[-1]
    channels_last = not static_shape and is_channels_last(cls_score)
    flat = flatten_map(cls_score, channels_last)
    if static_shape:
        if k > 0:  # a small input may hold fewer than k
            flat = torch.cat([flat, flat.new_full((1, 1), PAD_LOGIT).expand(batch, k)], dim=1)
        scores, index = flat.topk(k if k > 0 else flat.shape[1], dim=1)
        scores = scores.sigmoid()
        scores = torch.where(scores > score_thr, scores, torch.zeros_like(scores))
    else:
        if batch != 1:
            raise ValueError(f'topk_candidates takes one image unless static_shape=True, got '
                             f'a batch of {batch}')
        index = top_indices(flat[0], k)
        scores = flat[0, index].sigmoid()
        keep = scores > score_thr
        scores, index = scores[keep][None], index[keep][None]
    labels, deltas, priors = gather_candidates(
        index, flatten_map(bbox_pred, channels_last), priors, num_classes, num_anchors, box_dim,
        locations, channels_last)
    return scores, labels, deltas, priors


def is_channels_last(x: Tensor) -> bool:
    """Whether the map ``(B, C, H, W)`` is stored channels-last (and not also contiguous)."""
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def flatten_map(x: Tensor, channels_last: bool) -> Tensor:
    """The map ``(B, C, H, W)`` as ``(B, C * H * W)``, in ``(H, W, C)`` order if
    ``channels_last``: no copy when the map is stored that way."""
    return (x.permute(0, 2, 3, 1) if channels_last else x).reshape(x.shape[0], -1)


def gather_candidates(index: Tensor,
                      bbox_flat: Tensor,
                      priors: Tensor,
                      num_classes: int,
                      num_anchors: int,
                      box_dim: int,
                      locations: Union[int, Tensor],
                      channels_last: bool = False,
                      box_start: Union[int, Tensor] = 0,
                      prior_start: Union[int, Tensor] = 0) -> Tuple[Tensor, Tensor, Tensor]:
    """Labels, box deltas and priors of the candidates at ``index`` ``(B, K)`` of the flat
    class logits, read off the maps as they are stored.

    A level's logits ``(A * C, H * W)`` flattened put candidate ``(anchor, class, location)``
    at ``(anchor * C + class) * H * W + location``, its deltas ``(A * D, H * W)`` at
    ``(anchor * D + d) * H * W + location``; flattened channels-last (``(H * W, A * C)``,
    :func:`flatten_map`) at ``location * A * C + anchor * C + class`` and
    ``(location * A + anchor) * D + d``. Its prior is at ``location * A + anchor``. For
    candidates of several levels in one index, ``locations`` (``H * W``), ``box_start`` and
    ``prior_start`` (where each candidate's level begins in ``bbox_flat`` and ``priors``) are
    ``(B, K)`` tensors and ``index`` is relative to the level's first logit.

    Returns:
        tuple[Tensor, Tensor, Tensor]: Labels ``(B, K)``, deltas ``(B, K, D)`` and priors
        ``(B, K, 4)``.
    """
    def per_candidate(value):  # broadcast over the D deltas of a candidate
        return value[..., None] if isinstance(value, Tensor) else value

    batch = index.shape[0]
    if channels_last:
        location = torch.div(index, num_anchors * num_classes, rounding_mode='floor')
        channel = index - location * (num_anchors * num_classes)
    else:
        channel = torch.div(index, locations, rounding_mode='floor')
        location = index - channel * locations
    anchor = torch.div(channel, num_classes, rounding_mode='floor')
    labels = channel - anchor * num_classes
    anchor = anchor.clamp(max=num_anchors - 1)  # padding of a static selection: any real prior
    offsets = torch.arange(box_dim, device=index.device)
    if channels_last:
        delta_index = (per_candidate(box_start)
                       + ((location * num_anchors + anchor) * box_dim)[..., None] + offsets)
    else:
        delta_index = (per_candidate(box_start) + ((anchor * box_dim)[..., None] + offsets)
                       * per_candidate(locations) + location[..., None])
    deltas = bbox_flat.gather(1, delta_index.reshape(batch, -1))
    return (labels, deltas.reshape(batch, -1, box_dim),
            priors[prior_start + location * num_anchors + anchor])


def image_candidates(cls_scores: Sequence[Tensor],
                     bbox_preds: Sequence[Tensor],
                     mlvl_priors: Sequence[Tensor],
                     num_classes: int,
                     k: int,
                     score_thr: float) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """The ``k`` best (anchor, class) scores of one image over all levels, above
    ``score_thr``, found in one pass: the logits of all levels concatenated and
    :func:`top_indices`, as the official model's single top-k, instead of ``k`` per level
    and a second top-k. Same candidates as :func:`select_candidates` with ``scope='image'``
    (up to the order of equal scores).

    Returns:
        tuple[Tensor, Tensor, Tensor, Tensor]: Scores ``(1, K)`` (descending), labels
        ``(1, K)``, deltas ``(1, K, D)`` and priors ``(1, K, 4)``.
    """
    if cls_scores[0].shape[0] != 1:
        raise ValueError(f'image_candidates takes one image, got a batch of '
                         f'{cls_scores[0].shape[0]}')
    num_anchors = cls_scores[0].shape[1] // num_classes
    box_dim = bbox_preds[0].shape[1] // num_anchors
    channels_last = is_channels_last(cls_scores[0])  # read as stored: no permuted copy
    flat = torch.cat([flatten_map(cls_score, channels_last)[0] for cls_score in cls_scores])
    index = top_indices(flat, k)
    scores = flat[index].sigmoid()
    keep = scores > score_thr
    scores, index = scores[keep][None], index[keep][None]
    locations = torch.tensor([cls_score.shape[-2] * cls_score.shape[-1]
                              for cls_score in cls_scores], device=index.device)
    score_sizes = locations * num_anchors * num_classes
    level = torch.bucketize(index, score_sizes.cumsum(0), right=True)

    def start(sizes: Tensor) -> Tensor:  # where each candidate's level begins in a concatenation
        return (sizes.cumsum(0) - sizes)[level]

    bbox_flat = torch.cat([flatten_map(bbox_pred, channels_last) for bbox_pred in bbox_preds],
                          dim=1)
    labels, deltas, priors = gather_candidates(
        index - start(score_sizes), bbox_flat, torch.cat(list(mlvl_priors)), num_classes,
        num_anchors, box_dim, locations[level], channels_last,
        start(locations * num_anchors * box_dim), start(locations * num_anchors))
    return scores, labels, deltas, priors


def select_candidates(cls_scores: Sequence[Tensor],
                      bbox_preds: Sequence[Tensor],
                      mlvl_priors: Sequence[Tensor],
                      num_classes: int,
                      nms_pre: int,
                      score_thr: float,
                      scope: str = 'level',
                      static_shape: bool = False) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Candidates of every level (:func:`topk_candidates`), concatenated.

    ``scope`` says what ``nms_pre`` counts: ``'level'`` (mmdet's meaning) keeps ``nms_pre``
    per level, ``'image'`` (the official evaluation) ``nms_pre`` over all levels: in one pass
    over all levels when eager (:func:`image_candidates`); in the static-shape form the
    ``nms_pre`` best of the per-level best ``nms_pre``, the same ones.

    Returns:
        tuple[Tensor, Tensor, Tensor, Tensor]: Scores ``(B, K)``, labels ``(B, K)``, deltas
        ``(B, K, D)`` and priors ``(B, K, 4)``.
    """
    if scope not in SCOPES:
        raise ValueError(f"test_cfg.nms_pre_scope must be 'level' (nms_pre candidates per "
                         f"level, mmdet) or 'image' (over all levels, official), got "
                         f'{scope!r}')
    if scope == 'image' and nms_pre > 0 and not static_shape:
        return image_candidates(cls_scores, bbox_preds, mlvl_priors, num_classes, nms_pre,
                                score_thr)
    levels = [
        topk_candidates(cls_score, bbox_pred, priors, num_classes, nms_pre, score_thr,
                        static_shape)
        for cls_score, bbox_pred, priors in zip(cls_scores, bbox_preds, mlvl_priors)
    ]
    scores, labels, deltas, priors = (torch.cat(parts, dim=1) for parts in zip(*levels))
    if scope == 'image' and 0 < nms_pre < scores.shape[1]:
        scores, keep = scores.topk(nms_pre, dim=1)
        labels = labels.gather(1, keep)
        deltas = deltas.gather(1, keep[..., None].expand(-1, -1, deltas.shape[-1]))
        priors = priors.gather(1, keep[..., None].expand(-1, -1, priors.shape[-1]))
    return scores, labels, deltas, priors
