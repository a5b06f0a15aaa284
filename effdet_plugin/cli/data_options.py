"""Name your data once: one set of options moves every loader, evaluator and model head to it.

mmengine resolves ``_base_`` variables (``data_root``, ``classes`` ...) while it parses a
config, so overriding such a variable afterwards (``--cfg-options data_root=...``) changes
nothing that was built from it. Instead, :func:`apply_data_options` writes the options into
every place that uses them, after parsing:

- ``{train,val,test}_dataloader.dataset`` (through Repeat/Concat wrappers): ``data_root``,
  ``ann_file``, ``data_prefix.img``, ``metainfo.classes``;
- ``{val,test}_evaluator`` (one or a list): ``ann_file`` of COCO metrics;
- ``num_classes`` of every detection head of the model (not RPN / semantic heads);
- the scale transforms of every pipeline, with ``img_scale`` (a fixed size) or
  ``img_scale_factor`` (every split at the same factor of its native size);
- the image loader of every pipeline, with ``window`` (16-bit / DICOM data).

The options come from a ``data = dict(...)`` block in the config (see :data:`DATA_KEYS`) and
from the command-line flags of tools/train.py, test.py, infer.py and
analysis/transfer_eval.py (:func:`add_data_args`); a flag wins over the block. The options
applied are written back into ``cfg.data``, so the config that the Runner dumps into the work
dir names the same data for a later ``tools/test.py`` / ``tools/infer.py``.
"""
import argparse
import json
import os.path as osp
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

from ..datasets.checks import SPLITS, join_root, split_datasets, split_evaluators
from ..datasets.intensity import WINDOW_MODES
from ..datasets.transforms import LoadMedicalImageFromFile

#: Keys of the ``data`` block; each is also a flag (``img_prefix`` -> ``--img-prefix``).
DATA_KEYS = ('root', 'train_ann', 'val_ann', 'test_ann', 'img_prefix', 'classes', 'img_scale',
             'img_scale_factor', 'window')
#: ``classes`` value that reads the class names from the training annotation file.
FROM_JSON = 'from-json'
LOADERS = ('LoadImageFromFile', 'LoadMedicalImageFromFile')
# Arguments mmcv's LoadImageFromFile shares with LoadMedicalImageFromFile: kept by --window.
_SHARED_LOADER_ARGS = ('to_float32', 'color_type', 'ignore_empty', 'backend_args')
# Heads whose num_classes is not the number of object classes.
_OTHER_CLASS_HEADS = ('rpn_head', 'seg_head')


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """Add the data flags (one argument group) to a tool's parser."""
    group = parser.add_argument_group(
        'your data', 'point every loader, evaluator and head at a COCO-format dataset '
        '(overrides the config and its `data = dict(...)` block; see docs/own_data.md)')
    group.add_argument('--data-root', dest='root',
                       help='dataset root; annotation files and image prefixes are relative '
                       'to it')
    group.add_argument('--train-ann', help='training COCO json, relative to --data-root')
    group.add_argument('--val-ann', help='validation COCO json, relative to --data-root')
    group.add_argument('--test-ann',
                       help='test COCO json, relative to --data-root; unset: the --val-ann one')
    group.add_argument('--img-prefix', nargs='+', metavar='PREFIX',
                       help='image folder(s) relative to --data-root that the json '
                       'file_names are relative to: one for all splits, or TRAIN VAL [TEST]')
    group.add_argument('--classes', nargs='+', metavar='NAME',
                       help=f'class names in the json\'s category order, or "{FROM_JSON}" to '
                       'take them from the training json (sets the heads\' num_classes too)')
    group.add_argument('--img-scale', nargs=2, type=int, metavar=('W', 'H'),
                       help='train/test at this size (keep ratio) instead of the native size')
    group.add_argument('--img-scale-factor', type=float, metavar='F',
                       help='resize every split by F around its native size (training jitter '
                       'kept): F > 1 for objects small for the model (check_dataset.py '
                       'computes F)')
    group.add_argument('--window', choices=WINDOW_MODES,
                       help='read images with LoadMedicalImageFromFile and this intensity '
                       'window (16-bit / DICOM data; in the config\'s data block also a dict '
                       'of its arguments, e.g. dict(window=\'fixed\', value_range=(0, 4095)))')


def data_options(cfg: Config, args: Optional[argparse.Namespace] = None) -> Dict[str, Any]:
    """The config's ``data`` block overridden by the flags given in ``args``."""
    options = {k: v for k, v in (cfg.get('data') or {}).items() if v is not None}
    unknown = sorted(set(options) - set(DATA_KEYS))
    if unknown:
        raise ValueError(f'unknown key(s) {unknown} in the config\'s data block; expected '
                         f'some of {list(DATA_KEYS)}')
    for key in DATA_KEYS:
        value = getattr(args, key, None) if args is not None else None
        if value is not None:
            options[key] = value
    return options


def classes_from_json(ann_file: str) -> Tuple[str, ...]:
    """Category names of a COCO json in its ``categories`` order (mmdet's label order)."""
    if not osp.isfile(ann_file):
        raise FileNotFoundError(f"--classes {FROM_JSON}: annotation file '{ann_file}' not "
                                'found; check --data-root/--train-ann')
    with open(ann_file) as f:
        categories = json.load(f).get('categories') or []
    if not categories:
        raise ValueError(f"--classes {FROM_JSON}: '{ann_file}' has no categories; name the "
                         'classes with --classes NAME [NAME ...]')
    return tuple(c['name'] for c in categories)


def _ann_files(options: Dict[str, Any]) -> Dict[str, Optional[str]]:
    test_ann = options.get('test_ann') or options.get('val_ann')
    return dict(train=options.get('train_ann'), val=options.get('val_ann'), test=test_ann)


def _img_prefixes(options: Dict[str, Any]) -> Dict[str, Optional[str]]:
    prefixes = options.get('img_prefix')
    if prefixes is None:
        return dict.fromkeys(SPLITS)
    if isinstance(prefixes, str):
        prefixes = [prefixes]
    if not 1 <= len(prefixes) <= 3:
        raise ValueError(f'img_prefix takes 1 to 3 folders (all splits, or train val [test]), '
                         f'got {list(prefixes)}')
    prefixes = list(prefixes) + [prefixes[-1]] * (3 - len(prefixes))
    return dict(zip(SPLITS, prefixes))


def _set_num_classes(node: Any, num_classes: int, key: str, changed: List[str]) -> None:
    """Set ``num_classes`` of every head below ``node`` except RPN / semantic heads."""
    if isinstance(node, dict):
        if 'num_classes' in node and node['num_classes'] != num_classes:
            node['num_classes'] = num_classes
            changed.append(key)
        for name, child in node.items():
            if name not in _OTHER_CLASS_HEADS:
                _set_num_classes(child, num_classes, f'{key}.{name}', changed)
    elif isinstance(node, (list, tuple)):
        for i, child in enumerate(node):
            _set_num_classes(child, num_classes, f'{key}[{i}]', changed)


def _pipelines(cfg: Config) -> Iterator[list]:
    for split in SPLITS:
        for _, dataset in split_datasets(cfg, split):
            if isinstance(dataset.get('pipeline'), list):
                yield dataset['pipeline']
    if isinstance(cfg.get('tta_pipeline'), list):
        yield cfg.tta_pipeline


def set_img_scale(cfg: Config, img_scale: Sequence[int]) -> None:
    """Train around and test at ``img_scale`` (W, H, keep ratio) instead of the config's size.

    ``ScaleJitter`` and ``RandomResize`` steps jitter around ``scale``; every ``Resize`` (the
    native-size ``scale_factor=1.0`` test step included) becomes a keep-ratio ``Resize`` to
    ``img_scale``. Crop sizes are left alone.
    """
    scale = tuple(int(v) for v in img_scale)
    for pipeline in _pipelines(cfg):
        for step in pipeline:
            if step.get('type') in ('ScaleJitter', 'RandomResize'):
                step['scale'] = scale
            elif step.get('type') == 'Resize':
                step.pop('scale_factor', None)
                step.update(scale=scale, keep_ratio=True)


def set_img_scale_factor(cfg: Config, factor: float) -> None:
    """Train around and test at ``factor`` times the native size of every image.

    Random resizes become a ``ScaleJitter`` around ``factor`` x the native size with the
    step's own ``ratio_range`` (none: no jitter); every ``Resize`` becomes a keep-ratio
    ``Resize(scale_factor=factor)``. Setting the factor (never multiplying it) makes this
    idempotent: the config a run keeps in its work dir, read again, stays as it was. Crop
    sizes are left alone.
    """
    for pipeline in _pipelines(cfg):
        for i, step in enumerate(pipeline):
            kind = str(step.get('type', '')).split('.')[-1]
            if kind in ('ScaleJitter', 'RandomResize'):
                jitter = {k: v for k, v in step.items()
                          if k in ('interpolation', 'backend', 'clip_object_border')}
                pipeline[i] = dict(type='ScaleJitter',
                                   ratio_range=tuple(step.get('ratio_range') or (1.0, 1.0)),
                                   factor=factor, **jitter)
            elif kind == 'Resize':
                step.pop('scale', None)
                step.update(scale_factor=factor, keep_ratio=True)


def set_window(cfg: Config, window: Any) -> None:
    """Load the images of every pipeline with ``LoadMedicalImageFromFile`` and ``window``.

    ``window`` is a mode name or a dict of the loader's arguments. A medical loader already in
    the pipeline keeps its other arguments (a 'fixed' ``value_range``, ``percentiles``,
    ``color_type`` ...); mmcv's loader passes on the arguments both loaders share.

    Raises:
        ValueError: The resulting loader is invalid, e.g. 'fixed' without a
            ``value_range``; the message names the loader's problem and where to fix it.
    """
    given = dict(window) if isinstance(window, dict) else dict(window=window)
    for pipeline in _pipelines(cfg):
        if not pipeline or str(pipeline[0].get('type', '')).split('.')[-1] not in LOADERS:
            continue
        loader = dict(pipeline[0])
        if str(loader.pop('type')).split('.')[-1] != 'LoadMedicalImageFromFile':
            loader = {k: v for k, v in loader.items() if k in _SHARED_LOADER_ARGS}
        loader.update(given)
        try:
            LoadMedicalImageFromFile(**loader)  # the loader's own checks, before any run
        except (TypeError, ValueError) as e:
            raise ValueError(
                f'data option window={window!r} gives an invalid loader {loader}: {e}. Give '
                "the loader's arguments in the config's data block, e.g. data = dict(window="
                "dict(window='fixed', value_range=(0, 4095))), or set them in its "
                'LoadMedicalImageFromFile step') from e
        pipeline[0] = dict(type='LoadMedicalImageFromFile', **loader)


def apply_data_options(cfg: Config, args: Optional[argparse.Namespace] = None) -> Dict[str, Any]:
    """Point all loaders, evaluators and heads of ``cfg`` at the data named once.

    Args:
        cfg (Config): Parsed config; changed in place.
        args (argparse.Namespace, optional): Parsed flags of :func:`add_data_args`.
            Defaults to None (only the config's ``data`` block).

    Returns:
        dict: The options applied (also stored as ``cfg.data``); empty if none.
    """
    options = data_options(cfg, args)
    if not options:
        return options
    root = options.get('root')
    anns, prefixes = _ann_files(options), _img_prefixes(options)
    classes = options.get('classes')
    if classes is not None:
        classes = [classes] if isinstance(classes, str) else list(classes)
        if classes == [FROM_JSON]:
            train_ds = split_datasets(cfg, 'train') or split_datasets(cfg, 'test')
            ann = anns['train'] or anns['test'] or train_ds[0][1].get('ann_file')
            data_root = root if root is not None else train_ds[0][1].get('data_root')
            classes = classes_from_json(join_root(data_root, ann))
        classes = tuple(classes)
        options['classes'] = list(classes)

    for split in SPLITS:
        for _, dataset in split_datasets(cfg, split):
            if root is not None:
                dataset['data_root'] = root
            if anns[split] is not None:
                dataset['ann_file'] = anns[split]
            if prefixes[split] is not None:
                dataset['data_prefix'] = dict(dataset.get('data_prefix') or {},
                                              img=prefixes[split])
            if classes is not None:
                dataset['metainfo'] = dict(dataset.get('metainfo') or {}, classes=classes)
        if split == 'train':
            continue
        # COCO metrics read their own ground truth: it must be the dataset's (one leaf only)
        datasets = split_datasets(cfg, split)
        if len(datasets) != 1:
            continue
        dataset = datasets[0][1]
        for _, metric in split_evaluators(cfg, split):
            if 'ann_file' in metric or metric.get('type') == 'CocoMetric':
                metric['ann_file'] = join_root(dataset.get('data_root'), dataset['ann_file'])

    if classes is not None and isinstance(cfg.get('model'), dict):
        changed: List[str] = []
        _set_num_classes(cfg.model, len(classes), 'model', changed)
        if changed:
            print_log(f'data: num_classes={len(classes)} for {", ".join(changed)}',
                      logger='current')
    if options.get('window') is not None:
        set_window(cfg, options['window'])
    if options.get('img_scale') is not None and options.get('img_scale_factor') is not None:
        raise ValueError('img_scale (a fixed size) and img_scale_factor (a factor of the '
                         'native size) exclude each other: give one of them')
    if options.get('img_scale') is not None:
        options['img_scale'] = [int(v) for v in options['img_scale']]
        set_img_scale(cfg, options['img_scale'])
    if options.get('img_scale_factor') is not None:
        factor = float(options['img_scale_factor'])
        if not factor > 0:
            raise ValueError(f'img_scale_factor must be > 0, got {factor}')
        options['img_scale_factor'] = factor
        set_img_scale_factor(cfg, factor)
    cfg.data = ConfigDict(options)
    print_log(f'data: {describe_data(cfg)}', logger='current')
    return options


def describe_data(cfg: Config) -> str:
    """One line naming the annotation file and classes each split reads."""
    parts = []
    for split in SPLITS:
        for _, dataset in split_datasets(cfg, split)[:1]:
            parts.append(f"{split}={join_root(dataset.get('data_root'), dataset['ann_file'])}")
    classes = (cfg.get('data') or {}).get('classes')
    if classes:
        parts.append(f'classes={tuple(classes)}')
    factor = (cfg.get('data') or {}).get('img_scale_factor')
    if factor is not None:
        parts.append(f'img_scale_factor={factor:g}')
    return ', '.join(parts)
