"""Fail fast, with a useful message, when a config's dataset is not on disk.

Without this, a missing COCO surfaces deep inside the Runner as a bare ``FileNotFoundError``
from pycocotools, after the model has been built.
"""
import os.path as osp
from typing import Callable, List, Sequence, Tuple

from mmengine.config import Config

from .data_options import join_root as _join
from .data_options import split_datasets, split_evaluators


class DatasetNotFoundError(FileNotFoundError):
    """A dataset file or folder named by the config does not exist."""


def _is_local(path: str) -> bool:
    return '://' not in path


def _missing_paths(dataset: dict) -> List[str]:
    data_root = dataset.get('data_root')
    paths: List[Tuple[str, Callable[[str], bool]]] = []
    ann_file = dataset.get('ann_file')
    if ann_file:
        paths.append((_join(data_root, ann_file), osp.isfile))
    for prefix in (dataset.get('data_prefix') or {}).values():
        if isinstance(prefix, str) and prefix:
            paths.append((_join(data_root, prefix), osp.isdir))
    if data_root and not paths:
        paths.append((data_root, osp.isdir))
    return [p for p, exists in paths if _is_local(p) and not exists(p)]


def _type_name(dataset: dict) -> str:
    t = dataset.get('type', '')
    return t if isinstance(t, str) else getattr(t, '__name__', str(t))


def _hint(key: str, dataset: dict, missing: Sequence[str], evaluator_keys: Sequence[str]) -> str:
    where = ', '.join(missing)
    keys = f'{key}.data_root/ann_file/data_prefix' + ''.join(
        f' and {k}.ann_file' for k in evaluator_keys)
    flags = ('--data-root/--train-ann/--val-ann/--test-ann/--img-prefix (docs/own_data.md) or '
             f'--cfg-options for {keys}')
    if _type_name(dataset).startswith('Coco'):
        return (f'COCO not found at {where}: put COCO under '
                'data/coco/{annotations,train2017,val2017} (see data/README.md) or point the '
                f'config at your own COCO-format dataset with {flags}')
    return (f'{_type_name(dataset) or "dataset"} not found at {where}: get the data as '
            f'described in data/README.md or point the config at your copy with {flags}')


def _coco_evaluator_keys(cfg: Config, split: str) -> List[str]:
    return [key for key, metric in split_evaluators(cfg, split) if metric.get('ann_file')]


def check_dataset_paths(cfg: Config, splits: Sequence[str] = ('train', 'val')) -> None:
    """Raise :class:`DatasetNotFoundError` if a dataset of ``splits`` is missing on disk.

    For each ``{split}_dataloader.dataset`` (looking through dataset wrappers), the annotation
    file and every ``data_prefix`` folder are resolved against ``data_root`` the way mmengine
    does. Remote paths (``s3://``, ``http://`` ...) are not checked. The validation split is
    only checked when ``val_cfg`` is set, since otherwise the Runner never builds it.

    Args:
        cfg (Config): Full config.
        splits (Sequence[str]): Any of ``'train'``, ``'val'``, ``'test'``.
            Defaults to ``('train', 'val')``.

    Raises:
        DatasetNotFoundError: One message per missing dataset, naming the missing paths, where
            to put the data and which config keys (evaluator ``ann_file`` included) or flags
            to set.
    """
    problems = []
    for split in splits:
        if split == 'val' and not cfg.get('val_cfg'):
            continue
        for key, dataset in split_datasets(cfg, split):
            missing = _missing_paths(dataset)
            if missing:
                problems.append(_hint(key, dataset, missing, _coco_evaluator_keys(cfg, split)))
    if problems:
        raise DatasetNotFoundError('\n'.join(problems))


def check_evaluator_ann_files(cfg: Config, splits: Sequence[str] = ('val', 'test')) -> None:
    """Raise ``ValueError`` when a COCO evaluator scores another file than its dataset reads.

    A metric with its own ``ann_file`` loads the ground truth from it, not from the dataset:
    pointing only the dataset at new data would score the predictions against the old data.

    Args:
        cfg (Config): Full config.
        splits (Sequence[str]): Any of ``'val'``, ``'test'``. Defaults to ``('val', 'test')``.

    Raises:
        ValueError: Naming both files and the keys to make agree.
    """
    problems = []
    for split in splits:
        datasets = split_datasets(cfg, split)
        if len(datasets) != 1 or not datasets[0][1].get('ann_file'):
            continue  # several datasets: a metric file cannot match them all; nothing to say
        ds_key, dataset = datasets[0]
        ds_file = _join(dataset.get('data_root'), dataset['ann_file'])
        for key in _coco_evaluator_keys(cfg, split):
            metric = dict(split_evaluators(cfg, split))[key]
            if osp.normpath(metric['ann_file']) != osp.normpath(ds_file):
                problems.append(
                    f"{key}.ann_file '{metric['ann_file']}' differs from {ds_key} "
                    f"'{ds_file}' (data_root + ann_file): the metric would score against "
                    'other data. Name the data once with --data-root/--val-ann/--test-ann '
                    '(docs/own_data.md), or set both keys to the same file')
    if problems:
        raise ValueError('\n'.join(problems))
