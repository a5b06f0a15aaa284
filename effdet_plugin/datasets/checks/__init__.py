"""Everything that checks data before or while a run uses it.

- :mod:`.coco`: what a COCO annotation file holds for a config's classes, and the errors that
  make a run on it meaningless (:class:`AnnotationError`);
- :mod:`.config`: the datasets and metrics a config names and the checks that stop a run
  before the model is built (:func:`check_config_data`), with the one path check
  (:func:`missing_paths`, :class:`DatasetNotFoundError`);
- :mod:`.stats`: counts and object sizes after the pipelines (tools/analysis/check_dataset.py);
- :mod:`.anchors`: the share of training objects no anchor matches, and the upscale factor
  that helps (anchors passed in by the caller).
"""
from .anchors import (
    AnchorFit,
    AnchorLevel,
    AnchorSpec,
    anchor_fit,
    anchor_warnings,
    best_anchor_iou,
    format_anchor_fit,
)
from .coco import (
    AnnotationError,
    CocoStats,
    check_coco_stats,
    coco_stats,
    describe_losses,
    json_error,
    read_coco_json,
)
from .config import (
    SPLITS,
    DatasetNotFoundError,
    check_annotation_files,
    check_config_data,
    check_dataset_paths,
    check_evaluator_ann_files,
    join_root,
    leaf_datasets,
    missing_paths,
    split_datasets,
    split_evaluators,
)
from .stats import SplitStats, dataset_stats, format_stats, split_stats, stats_warnings

__all__ = [
    'AnnotationError', 'CocoStats', 'check_coco_stats', 'coco_stats', 'describe_losses',
    'json_error', 'read_coco_json', 'SPLITS', 'DatasetNotFoundError', 'check_annotation_files',
    'check_config_data', 'check_dataset_paths', 'check_evaluator_ann_files', 'join_root',
    'leaf_datasets', 'missing_paths', 'split_datasets', 'split_evaluators', 'SplitStats',
    'dataset_stats', 'format_stats', 'split_stats', 'stats_warnings', 'AnchorFit', 'AnchorLevel',
    'AnchorSpec', 'anchor_fit', 'anchor_warnings', 'best_anchor_iou', 'format_anchor_fit'
]
