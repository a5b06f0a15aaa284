"""Fail fast, with a useful message, when a config's dataset is not on disk.

Without this, a missing COCO surfaces deep inside the Runner as a bare ``FileNotFoundError``
from pycocotools, after the model has been built.
"""
import os.path as osp
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from mmengine.config import Config, ConfigDict


class DatasetNotFoundError(FileNotFoundError):
    """A dataset file or folder named by the config does not exist."""


def _leaf_datasets(dataset: dict, key: str) -> Iterator[Tuple[str, dict]]:
    """Yield ``(dotted key, cfg)`` of real datasets under wrappers (Repeat, Concat, ...)."""
    if isinstance(dataset.get('dataset'), dict):
        yield from _leaf_datasets(dataset['dataset'], f'{key}.dataset')
    elif isinstance(dataset.get('datasets'), (list, tuple)):
        for i, sub in enumerate(dataset['datasets']):
            yield from _leaf_datasets(sub, f'{key}.datasets[{i}]')
    else:
        yield key, dataset


def _is_local(path: str) -> bool:
    return '://' not in path


def _join(data_root: Optional[str], path: str) -> str:
    # Same rule as mmengine's BaseDataset._join_prefix.
    return osp.join(data_root, path) if data_root and not osp.isabs(path) else path


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


def _hint(key: str, dataset: dict, missing: Sequence[str]) -> str:
    where = ', '.join(missing)
    if _type_name(dataset).startswith('Coco'):
        return (f'COCO not found at {where}: put COCO under '
                'data/coco/{annotations,train2017,val2017} (see data/README.md) or point '
                f'{key}.data_root/ann_file at your own COCO-format dataset with --cfg-options')
    return (f'{_type_name(dataset) or "dataset"} not found at {where}: get the data as '
            f'described in data/README.md or point {key}.data_root/ann_file/data_prefix at '
            'your copy with --cfg-options')


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
            to put the data and which config keys to override.
    """
    problems = []
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not isinstance(loader, (dict, ConfigDict)) or not loader.get('dataset'):
            continue
        if split == 'val' and not cfg.get('val_cfg'):
            continue
        for key, dataset in _leaf_datasets(loader['dataset'], f'{split}_dataloader.dataset'):
            missing = _missing_paths(dataset)
            if missing:
                problems.append(_hint(key, dataset, missing))
    if problems:
        raise DatasetNotFoundError('\n'.join(problems))
