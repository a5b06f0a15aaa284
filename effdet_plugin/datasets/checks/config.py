"""The datasets and metrics a config names, and the checks that stop a run before it starts.

:func:`check_config_data` runs, before the model is built, the checks whose failure would
otherwise surface deep inside the Runner (a bare ``FileNotFoundError`` from pycocotools), late
(an ``IndexError`` at evaluation) or not at all (training on nothing, scoring against other
data): missing files and folders (:func:`check_dataset_paths`), COCO metrics reading another
file than their dataset (:func:`check_evaluator_ann_files`), unusable COCO files
(:func:`check_annotation_files`) and images that are missing or that the config's loader
would cut to 8 bits (:func:`check_image_files`). :func:`missing_paths` is the one path
check, also used by :class:`~effdet_plugin.datasets.RobustCocoDataset` when it loads.
"""
import os.path as osp
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS
from mmengine.config import Config

from ..image_io import bit_depth_problem
from .coco import AnnotationError, check_coco_stats, coco_stats, read_coco_json

SPLITS = ('train', 'val', 'test')


class DatasetNotFoundError(FileNotFoundError):
    """A dataset file or folder named by the config does not exist."""


def leaf_datasets(dataset: dict, key: str) -> Iterator[Tuple[str, dict]]:
    """Yield ``(dotted key, cfg)`` of the real datasets under wrappers (Repeat, Concat ...)."""
    if isinstance(dataset.get('dataset'), dict):
        yield from leaf_datasets(dataset['dataset'], f'{key}.dataset')
    elif isinstance(dataset.get('datasets'), (list, tuple)):
        for i, sub in enumerate(dataset['datasets']):
            yield from leaf_datasets(sub, f'{key}.datasets[{i}]')
    else:
        yield key, dataset


def join_root(data_root: Optional[str], path: str) -> str:
    """``path`` resolved against ``data_root`` with mmengine's ``BaseDataset`` rule."""
    return osp.join(data_root, path) if data_root and not osp.isabs(path) else path


def split_datasets(cfg: Config, split: str) -> List[Tuple[str, dict]]:
    """``(dotted key, cfg)`` of the leaf datasets of ``{split}_dataloader`` (none if unset)."""
    loader = cfg.get(f'{split}_dataloader')
    if not isinstance(loader, dict) or not isinstance(loader.get('dataset'), dict):
        return []
    return list(leaf_datasets(loader['dataset'], f'{split}_dataloader.dataset'))


def split_evaluators(cfg: Config, split: str) -> List[Tuple[str, dict]]:
    """``(dotted key, cfg)`` of the metrics of ``{split}_evaluator`` (val and test only)."""
    evaluator = cfg.get(f'{split}_evaluator')
    if isinstance(evaluator, dict) and isinstance(evaluator.get('metrics'), (list, tuple)):
        evaluator = evaluator['metrics']  # an Evaluator wrapping several metrics
    if isinstance(evaluator, dict):
        return [(f'{split}_evaluator', evaluator)]
    if isinstance(evaluator, (list, tuple)):
        return [(f'{split}_evaluator[{i}]', e) for i, e in enumerate(evaluator)
                if isinstance(e, dict)]
    return []


def missing_paths(data_root: Optional[str], ann_file: Optional[str],
                  data_prefix: Optional[dict]) -> List[str]:
    """The local files and folders of a dataset that do not exist, each named by its role.

    The annotation file and every ``data_prefix`` folder are resolved against ``data_root``
    the way mmengine does; ``data_root`` itself is checked when it names nothing else.
    Remote paths (``s3://``, ``http://`` ...) are not checked.

    Returns:
        list[str]: E.g. ``["annotation file 'data/coco/x.json'", "image folder '...'"]``.
    """
    paths: List[Tuple[str, str, Callable[[str], bool]]] = []
    if ann_file:
        paths.append(('annotation file', join_root(data_root, ann_file), osp.isfile))
    for key, prefix in (data_prefix or {}).items():
        if isinstance(prefix, str) and prefix:
            role = 'image folder' if key == 'img' else f'data_prefix.{key} folder'
            paths.append((role, join_root(data_root, prefix), osp.isdir))
    if data_root and not paths:
        paths.append(('data_root', data_root, osp.isdir))
    return [f"{role} '{path}'" for role, path, exists in paths
            if '://' not in path and not exists(path)]


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

    Each ``{split}_dataloader.dataset`` (looking through dataset wrappers) is checked with
    :func:`missing_paths`. The validation split is only checked when ``val_cfg`` is set,
    since otherwise the Runner never builds it.

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
            missing = missing_paths(dataset.get('data_root'), dataset.get('ann_file'),
                                    dataset.get('data_prefix'))
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
        ds_file = join_root(dataset.get('data_root'), dataset['ann_file'])
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


def _coco_class(dataset: dict):
    """The dataset's class if it is mmdet's ``CocoDataset`` or a subclass, else None."""
    dataset_type = dataset.get('type')
    cls = DATASETS.get(dataset_type) if isinstance(dataset_type, str) else dataset_type
    return cls if isinstance(cls, type) and issubclass(cls, CocoDataset) else None


def _local_json(path: str) -> bool:
    return '://' not in path and path.endswith('.json') and osp.isfile(path)


def _json_reader() -> Callable[[str], dict]:
    """:func:`read_coco_json` that parses each file once."""
    files: Dict[str, dict] = {}

    def read(path: str) -> dict:
        if path not in files:
            files[path] = read_coco_json(path)
        return files[path]

    return read


def check_annotation_files(cfg: Config,
                           splits: Sequence[str] = ('train', 'val'),
                           read: Optional[Callable[[str], dict]] = None) -> None:
    """Raise :class:`AnnotationError` if a COCO annotation file of ``splits`` is unusable.

    Every local file a run will read (datasets of ``CocoDataset`` type or a subclass, and the
    ``ann_file`` of COCO metrics) is read once: not JSON (truncated), no images, config
    classes the file has no category for, or no usable annotation (for the training split and
    for a val/test split whose metrics score against the file, not ``format_only``). Remote
    and missing files (reported by :func:`check_dataset_paths`) are skipped. What mmdet drops
    without a word is counted later, in the run's log, by ``RobustCocoDataset``.

    Args:
        cfg (Config): Full config (after ``--cfg-options`` and the data options).
        splits (Sequence[str]): Any of ``'train'``, ``'val'``, ``'test'``.
            Defaults to ``('train', 'val')``.
        read (callable, optional): Reads a COCO file (:func:`read_coco_json`, shared with
            :func:`check_image_files`). Defaults to a reader of its own.

    Raises:
        AnnotationError: One line per problem, each naming the file.
    """
    read = read or _json_reader()
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


def _image_loader(dataset: dict) -> Optional[dict]:
    """The dataset's image loading transform if it is mmcv's ``LoadImageFromFile`` or our
    ``LoadMedicalImageFromFile`` (the ones :func:`check_image_files` knows), else None."""
    for transform in dataset.get('pipeline') or []:
        kind = transform.get('type') if isinstance(transform, dict) else None
        name = kind.rsplit('.', 1)[-1] if isinstance(kind, str) else getattr(kind, '__name__', '')
        if name in ('LoadImageFromFile', 'LoadMedicalImageFromFile'):
            return dict(transform, type=name)
    return None


def _missing_images(key: str, ann_file: str, paths: List[str], loader: dict) -> List[str]:
    if loader.get('ignore_empty', False):
        return []
    missing = [p for p in paths if not osp.isfile(p)]
    if not missing:
        return []
    shown = ', '.join(f"'{p}'" for p in missing[:3]) + (', ...' if len(missing) > 3 else '')
    return [f"{key}: {len(missing)} of {len(paths)} images listed in '{ann_file}' do not exist "
            f'({shown}): images are read from data_root/data_prefix.img/file_name, so check '
            f'{key}.data_root and data_prefix.img (--data-root, --img-prefix) or remove the '
            'images from the file' + (
                f" (or skip them: dict(type='{loader['type']}', ignore_empty=True))"
                if key.startswith('train_') else '')]


def _deep_images(key: str, paths: List[str], loader: dict) -> List[str]:
    if loader['type'] != 'LoadImageFromFile':  # LoadMedicalImageFromFile reads 16 bits
        return []
    color_type = loader.get('color_type', 'color')
    deep = [msg for msg in (bit_depth_problem(p, color_type) for p in paths
                            if p.lower().endswith(('.png', '.tif', '.tiff'))) if msg]
    if not deep:
        return []
    more = f' ({len(deep) - 1} more image(s) of the file too)' if len(deep) > 1 else ''
    return [f'{key}: {deep[0]}{more}']


def check_image_files(cfg: Config,
                      splits: Sequence[str] = ('train', 'val'),
                      read: Optional[Callable[[str], dict]] = None) -> None:
    """Raise if images of a COCO dataset of ``splits`` are missing or would lose bit depth.

    For every dataset of ``CocoDataset`` type (or a subclass) with a local annotation file and
    an image loader this module knows (mmcv's ``LoadImageFromFile``, ``LoadMedicalImageFromFile``):
    every listed image must exist unless the loader has ``ignore_empty=True`` (mmcv's loader
    ends a run with a ``FileNotFoundError`` traceback at the first missing one), and for
    mmcv's loader no PNG/TIFF may store more than 8 bits (read from each file's header:
    :func:`~..image_io.bit_depth_problem`). Remote files are not checked.

    Args:
        cfg (Config): Full config (after ``--cfg-options`` and the data options).
        splits (Sequence[str]): Any of ``'train'``, ``'val'``, ``'test'``.
            Defaults to ``('train', 'val')``.
        read (callable, optional): Reads a COCO file (shared with
            :func:`check_annotation_files`). Defaults to a reader of its own.

    Raises:
        DatasetNotFoundError: Images are missing (the first three named, with the fix).
        ValueError: 16-bit images for mmcv's loader (the first named, with the loader to use).
    """
    read = read or _json_reader()
    missing, deep = [], []
    for split in splits:
        if split == 'val' and not cfg.get('val_cfg'):
            continue
        for key, dataset in split_datasets(cfg, split):
            loader = _image_loader(dataset)
            if loader is None or _coco_class(dataset) is None or not dataset.get('ann_file'):
                continue
            ann_file = join_root(dataset.get('data_root'), dataset['ann_file'])
            prefix = join_root(dataset.get('data_root'),
                               (dataset.get('data_prefix') or {}).get('img', ''))
            if not _local_json(ann_file) or '://' in prefix:
                continue
            paths = [osp.join(prefix, img['file_name']) for img in read(ann_file)['images']
                     if isinstance(img, dict) and isinstance(img.get('file_name'), str)]
            paths = list(dict.fromkeys(paths))
            missing += _missing_images(key, ann_file, paths, loader)
            deep += _deep_images(key, paths, loader)
    if missing:
        raise DatasetNotFoundError('\n'.join(missing + deep))
    if deep:
        raise ValueError('\n'.join(deep))


def check_config_data(cfg: Config, splits: Sequence[str]) -> None:
    """All checks of this module on the datasets and metrics of ``splits``, in order.

    Raises:
        DatasetNotFoundError: Missing files, folders or images (see
            :func:`check_dataset_paths`, :func:`check_image_files`).
        ValueError: A COCO metric scores another file than its dataset reads, an annotation
            file is unusable (:class:`AnnotationError`), or images would lose bit depth.
    """
    check_dataset_paths(cfg, splits)
    check_evaluator_ann_files(cfg, [s for s in splits if s != 'train'] or ['val'])
    read = _json_reader()
    check_annotation_files(cfg, splits, read)
    check_image_files(cfg, splits, read)
