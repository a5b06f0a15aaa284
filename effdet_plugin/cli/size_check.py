"""Are the objects small for the model? The anchors a config's model matches, read for the
dataset checks (tools/analysis/check_dataset.py, and tools/train.py before the model is built).

:mod:`effdet_plugin.datasets.checks` measures object sizes and anchor matches but imports no
model code; this module reads the anchors and the assigner's positive threshold from the
config's model dict (building only the head, whose prior generator is the one the model uses)
and hands them over as an :class:`~effdet_plugin.datasets.checks.AnchorSpec`.
"""
import logging
from typing import List, Optional, Sequence, Tuple

from mmengine.config import Config, ConfigDict
from mmengine.logging import MMLogger, print_log

from ..datasets.checks import (
    AnchorLevel,
    AnchorSpec,
    SplitStats,
    anchor_fit,
    anchor_warnings,
    dataset_stats,
    format_anchor_fit,
)


def _anchor_head(model: dict) -> Optional[Tuple[str, dict, dict]]:
    """``(name, head cfg with its train/test cfg, assigner cfg)`` of the head whose anchors
    training objects are assigned to first: the single-stage head, else the RPN."""
    train_cfg, test_cfg = model.get('train_cfg') or {}, model.get('test_cfg') or {}
    for name, sub in (('bbox_head', None), ('rpn_head', 'rpn')):
        head = model.get(name)
        if not isinstance(head, dict):
            continue
        head_train = train_cfg.get(sub) if sub else train_cfg
        head_test = test_cfg.get(sub) if sub else test_cfg
        assigner = (head_train or {}).get('assigner') or {}
        if 'pos_iou_thr' not in assigner:
            return None  # anchor-free or another assigner: no IoU threshold to check
        return name, dict(head, train_cfg=head_train, test_cfg=head_test), assigner
    return None


def anchor_spec(model: dict) -> Optional[AnchorSpec]:
    """The anchors and positive IoU threshold of ``model`` (a config's model dict), or None
    for models without IoU-assigned anchors (FCOS, RTMDet, ...)."""
    from mmdet.registry import MODELS

    found = _anchor_head(model)
    if found is None:
        return None
    name, head_cfg, assigner = found
    generator = getattr(MODELS.build(ConfigDict(head_cfg)), 'prior_generator', None)
    base_anchors = getattr(generator, 'base_anchors', None)
    if base_anchors is None:
        return None
    levels = []
    for stride, anchors in zip(generator.strides, base_anchors):
        anchors = anchors.numpy()
        sizes = tuple((float(x2 - x1), float(y2 - y1)) for x1, y1, x2, y2 in anchors)
        center = float((anchors[0, 0] + anchors[0, 2]) / 2)
        levels.append(AnchorLevel(float(stride[0]), center, sizes))
    return AnchorSpec(tuple(levels), float(assigner['pos_iou_thr']), source=name)


def size_check(cfg: Config, stats: Sequence[SplitStats]) -> Tuple[str, List[str]]:
    """Relate the training objects of ``stats`` to the model of ``cfg``.

    Returns:
        tuple[str, list[str]]: Report lines (empty without a train split or IoU-assigned
        anchors) and warnings (objects small for the model, with the upscale flag).
    """
    train = next((s for s in stats if s.split == 'train'), None)
    spec = anchor_spec(cfg.model) if isinstance(cfg.get('model'), dict) else None
    if train is None or spec is None or not len(train.pipeline_boxes):
        return '', []
    fit = anchor_fit(train.pipeline_boxes, train.pipeline_labels, list(train.instances), spec)
    factor = float((cfg.get('data') or {}).get('img_scale_factor') or 1.0)
    return format_anchor_fit(fit), anchor_warnings(fit, factor)


def warn_if_objects_small(cfg: Config, samples: int = 20) -> List[str]:
    """Measure the training split of ``cfg`` against its model before the model is built and
    print a warning when the objects are small for it (see :func:`size_check`).

    Returns:
        list[str]: The warnings, for :func:`log_to_files` once the run's log exists.
    """
    from mmengine.registry import init_default_scope

    # the pipelines name mmdet's transforms unscoped; the Runner sets the scope only later
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    _, problems = size_check(cfg, dataset_stats(cfg, ('train', ), samples=samples))
    for problem in problems:
        print_log(f'WARNING: {problem}', logger='current', level=logging.WARNING)
    return problems


def log_to_files(logger: MMLogger, messages: Sequence[str], level: int = logging.WARNING) -> None:
    """Write ``messages`` to the file handlers of ``logger`` only (the run's log file), for
    what was printed on the console before the log existed."""
    for message in messages:
        record = logger.makeRecord(logger.name, level, __file__, 0, message, None, None)
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.handle(record)
