"""The starting points of a transfer evaluation (ImageNet backbone, scratch, frozen backbone,
COCO detector), as config copies with a row label that says what each froze, and the nested
training subsets of the label-efficiency runs."""
import copy
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.config import Config

MODES = ('imagenet', 'scratch', 'frozen', 'coco')
INITS = dict(imagenet='ImageNet backbone', scratch='random init', frozen='ImageNet backbone',
             coco='COCO detector')


def frozen_description(frozen_stages: int, out_indices: Sequence[int]) -> str:
    """What ``EffNet(frozen_stages=k)`` freezes, in words (layer 0 is the stem)."""
    if frozen_stages < 0:
        return 'nothing frozen'
    if frozen_stages == 0:
        return 'stem frozen'
    stages = 'stage 1' if frozen_stages == 1 else f'stages 1-{frozen_stages}'
    whole = ' (whole backbone)' if frozen_stages >= max(out_indices) else ''
    return f'stem + {stages} frozen{whole}'


def describe(cfg: Config, mode: str) -> str:
    """Row label of a mode config: its initialisation and exactly what it froze."""
    backbone = cfg.model.backbone
    frozen = backbone.get('frozen_stages', -1)
    frozen_text = frozen_description(frozen, backbone.get('out_indices', (3, 5, 7)))
    trained = ('neck + heads trained' if frozen >= max(backbone.get('out_indices', (3, 5, 7)))
               else 'the rest trained' if frozen >= 0 else 'all trained')
    return f'{INITS[mode]}; {frozen_text}, {trained}'


def mode_config(cfg: Config, mode: str, work_dir: str,
                checkpoint_coco: Optional[str] = None) -> Config:
    """A copy of ``cfg`` set up for one starting point."""
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = osp.join(work_dir, mode)
    cfg.load_from, cfg.resume = None, False
    backbone = cfg.model.backbone
    if mode == 'scratch':
        backbone.pop('init_cfg', None)  # the backbone class default (random) init
        if 'frozen_stages' in backbone:
            backbone.frozen_stages = -1  # frozen random filters would only hurt
    elif mode == 'frozen':
        if backbone.get('type') != 'EffNet':
            raise ValueError(f"'frozen' is defined for EffNet backbones, got "
                             f"{backbone.get('type')}")
        backbone.frozen_stages = max(backbone.get('out_indices', (3, 5, 7)))
    elif mode == 'coco':
        if not checkpoint_coco:
            raise ValueError("the 'coco' run needs --checkpoint-coco")
        cfg.load_from = checkpoint_coco
    elif mode != 'imagenet':
        raise ValueError(f'unknown mode {mode!r}, expected one of {MODES}')
    return cfg


def train_dataset(cfg: Config):
    """The training dataset of ``cfg`` inside its wrappers (the dict, to edit in place)."""
    dataset = cfg.train_dataloader.dataset
    while 'dataset' in dataset:  # RepeatDataset / ClassBalancedDataset wrappers
        dataset = dataset.dataset
    if 'ann_file' not in dataset:
        raise ValueError('--fractions needs a training dataset with one COCO ann_file, got '
                         f"{dataset.get('type')} (e.g. a ConcatDataset)")
    return dataset


def write_subsets(cfg: Config, fractions: Sequence[float], out_dir: str,
                  seed: int = 0) -> Dict[float, Tuple[str, int]]:
    """One COCO file per fraction with that share of the training images (at least one).

    The images are drawn from one permutation (``seed``), so smaller subsets lie inside
    larger ones and every call with the same data and seed gives the same files.

    Returns:
        dict: fraction -> (annotation file, number of images); fraction 1.0 keeps the
        config's own file.
    """
    dataset = train_dataset(cfg)
    ann_file = osp.join(dataset.get('data_root') or '', dataset.ann_file)
    with open(ann_file) as f:
        coco = json.load(f)
    images = sorted(coco['images'], key=lambda im: im['id'])
    order = np.random.default_rng(seed).permutation(len(images))
    os.makedirs(out_dir, exist_ok=True)
    subsets = {}
    for fraction in fractions:
        count = max(1, int(round(fraction * len(images))))
        if count == len(images):
            subsets[fraction] = (osp.abspath(ann_file), count)
            continue
        keep = {images[i]['id'] for i in order[:count]}
        subset = dict(coco, images=[im for im in images if im['id'] in keep],
                      annotations=[a for a in coco.get('annotations', [])
                                   if a['image_id'] in keep])
        path = osp.abspath(osp.join(out_dir, f'train_fraction{fraction:g}_seed{seed}.json'))
        tmp = f'{path}.{os.getpid()}.tmp'  # shards of one study write the same file at once
        with open(tmp, 'w') as f:
            json.dump(subset, f)
        os.replace(tmp, path)
        subsets[fraction] = (path, count)
    return subsets


def expected_metrics(cfg: Config) -> List[str]:
    """Table keys the config's evaluators produce."""
    evaluators = cfg.val_evaluator
    keys = []
    for evaluator in evaluators if isinstance(evaluators, list) else [evaluators]:
        if evaluator.get('type') == 'CocoMetric':
            metrics = evaluator.get('metric', 'bbox')
            for metric in [metrics] if isinstance(metrics, str) else metrics:
                keys += [f'coco/{metric}_mAP', f'coco/{metric}_mAP_50']
        elif 'SemSeg' in evaluator.get('type', ''):
            keys.append('semseg/mIoU')
    return keys
