"""Stop on unusable COCO annotation files before the model is built.

:func:`check_annotation_files` reads every local COCO annotation file a run will use (datasets
of ``CocoDataset`` type or a subclass, and the ``ann_file`` of COCO metrics) and raises
:class:`~effdet_plugin.datasets.coco_checks.AnnotationError` for the cases that would
otherwise surface late or not at all: a file that is not JSON (truncated), no images, config
classes the file has no category for, and no usable annotation in a split that needs them.
What mmdet drops without a word is counted later, in the run's log, by
:class:`~effdet_plugin.datasets.RobustCocoDataset`.
"""
import os.path as osp
from typing import Dict, Sequence

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS
from mmengine.config import Config

from ..datasets.coco_checks import AnnotationError, check_coco_stats, coco_stats, read_coco_json
from .data_options import join_root, split_datasets, split_evaluators


def _coco_class(dataset: dict):
    """The dataset's class if it is mmdet's ``CocoDataset`` or a subclass, else None."""
    dataset_type = dataset.get('type')
    cls = DATASETS.get(dataset_type) if isinstance(dataset_type, str) else dataset_type
    return cls if isinstance(cls, type) and issubclass(cls, CocoDataset) else None


def _local_json(path: str) -> bool:
    return '://' not in path and path.endswith('.json') and osp.isfile(path)


def check_annotation_files(cfg: Config, splits: Sequence[str] = ('train', 'val')) -> None:
    """Raise :class:`AnnotationError` if an annotation file of ``splits`` is unusable.

    Zero usable annotations is an error for the training split and for a val/test split
    whose metrics score against the file (not ``format_only``). Remote files and missing
    files (reported by :func:`~.dataset_check.check_dataset_paths`) are skipped.

    Args:
        cfg (Config): Full config (after ``--cfg-options`` and the data options).
        splits (Sequence[str]): Any of ``'train'``, ``'val'``, ``'test'``.
            Defaults to ``('train', 'val')``.

    Raises:
        AnnotationError: One line per problem, each naming the file.
    """
    files: Dict[str, dict] = {}  # each file is read once

    def read(path: str) -> dict:
        if path not in files:
            files[path] = read_coco_json(path)
        return files[path]

    problems = []
    for split in splits:
        if split == 'val' and not cfg.get('val_cfg'):
            continue
        metrics = [m for _, m in split_evaluators(cfg, split)]
        need_annotations = split == 'train' or any(not m.get('format_only') for m in metrics)
        for key, dataset in split_datasets(cfg, split):
            cls = _coco_class(dataset)
            if cls is None or not dataset.get('ann_file'):
                continue
            path = join_root(dataset.get('data_root'), dataset['ann_file'])
            if not _local_json(path):
                continue
            classes = (dataset.get('metainfo') or {}).get('classes') or cls.METAINFO['classes']
            try:
                check_coco_stats(coco_stats(read(path), classes, path), need_annotations)
            except AnnotationError as e:
                problems.append(f'{key}: {e}')
        for metric in metrics:
            path = metric.get('ann_file')
            if isinstance(path, str) and _local_json(path):
                try:
                    read(path)
                except AnnotationError as e:
                    problems.append(f'{split}_evaluator: {e}')
    if problems:
        raise AnnotationError('\n'.join(dict.fromkeys(problems)))
