"""What the model will see of a dataset: counts per split and object sizes after the pipelines.

A detector learns objects at the size the training pipeline makes them and is tested at the
size the test pipeline makes them. When the two differ a lot (a fixed training resize target
on images of another resolution), training converges and AP stays near 0 with no error. This
module measures both sizes, per split, and says so.
"""
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.config import Config

from .config import SPLITS, split_datasets

#: Train/test object-scale ratio beyond which training and testing see different objects.
MAX_SCALE_RATIO = 2.0
PERCENTILES = (5, 25, 50, 75, 95)


@dataclass
class SplitStats:
    """Counts and object sizes of one split (sizes: sqrt(w * h) in pixels)."""
    split: str
    images: int
    instances: Dict[str, int]
    empty_images: int
    annotated_sizes: List[float] = field(default_factory=list)
    pipeline_sizes: List[float] = field(default_factory=list)
    #: ``(N, 4)`` boxes and ``(N,)`` labels of the whole objects the pipeline outputs (what the
    #: assigner sees, without those a crop or the image edge cuts: upscaling cannot help them)
    pipeline_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    pipeline_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def percentiles(self, sizes: Sequence[float]) -> Optional[np.ndarray]:
        return np.percentile(sizes, PERCENTILES) if len(sizes) else None


def _scale(metainfo: dict) -> float:
    """Geometric mean of the ``scale_factor`` the pipeline's resize steps recorded."""
    factor = metainfo.get('scale_factor', (1.0, 1.0))
    if np.isscalar(factor):
        return float(factor)
    return math.sqrt(float(factor[0]) * float(factor[1]))


def _instance_size(instance: dict) -> float:
    x1, y1, x2, y2 = instance['bbox']
    return math.sqrt(max(x2 - x1, 0.0) * max(y2 - y1, 0.0))


def split_stats(dataset, split: str, samples: int = 20, draws: int = 3,
                seed: int = 0) -> SplitStats:
    """Count images and instances of ``dataset`` and measure object sizes after its pipeline.

    Sizes after the pipeline are the annotated sizes times the resize factor the pipeline
    applied to each image (crops, flips and filters do not change an object's scale); training
    pipelines are random, so each sampled image goes through ``draws`` times.

    Args:
        dataset: A built mmengine ``BaseDataset`` (COCO-style ``instances``).
        split (str): Name shown in the report.
        samples (int): Images sent through the pipeline. Defaults to 20.
        draws (int): Passes per sampled image (train split only). Defaults to 3.
        seed (int): Seed of the image sample and of the random transforms. Defaults to 0.

    Returns:
        SplitStats: The counts and sizes.
    """
    classes = list(dataset.metainfo.get('classes') or ())
    counts: Counter = Counter()
    empty, annotated = 0, []
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    for info in infos:
        kept = [inst for inst in info.get('instances', []) if not inst.get('ignore_flag', 0)]
        empty += not kept
        for inst in kept:
            counts[inst['bbox_label']] += 1
            annotated.append(_instance_size(inst))
    instances = {name: counts.get(i, 0) for i, name in enumerate(classes)}

    rng = np.random.RandomState(seed)
    np.random.seed(seed)
    with_objects = [i for i, info in enumerate(infos) if info.get('instances')]
    picked = rng.permutation(with_objects)[:samples]
    pipeline_sizes, boxes, labels = [], [], []
    for idx in picked:
        sizes = [_instance_size(inst) for inst in infos[idx]['instances']
                 if not inst.get('ignore_flag', 0)]
        for _ in range(draws if split == 'train' else 1):
            out = dataset.pipeline(dataset.get_data_info(int(idx)))
            if out is None:  # a filter step dropped the sample
                continue
            scale = _scale(out['data_samples'].metainfo)
            pipeline_sizes += [s * scale for s in sizes]
            gt = out['data_samples'].gt_instances
            height, width = out['data_samples'].metainfo['img_shape'][:2]
            xyxy = np.asarray(getattr(gt.bboxes, 'tensor', gt.bboxes)).reshape(-1, 4)
            whole = ((xyxy[:, :2] > 0).all(1) & (xyxy[:, 2] < width - 1)
                     & (xyxy[:, 3] < height - 1))
            boxes.append(xyxy[whole])
            labels.append(np.asarray(gt.labels).reshape(-1)[whole])
    return SplitStats(split, len(infos), instances, empty, annotated, pipeline_sizes,
                      np.concatenate(boxes) if boxes else np.zeros((0, 4)),
                      np.concatenate(labels) if labels else np.zeros(0, np.int64))


def stats_warnings(stats: Sequence[SplitStats]) -> List[str]:
    """Problems worth a warning: train/test scale mismatch, classes or images without
    instances."""
    problems = []
    by_split = {s.split: s for s in stats}
    for s in stats:
        missing = [name for name, n in s.instances.items() if n == 0]
        if missing:
            problems.append(f'{s.split}: no instances of class(es) {missing}: check the class '
                            'names (--classes) against the json categories, or drop them')
        if s.empty_images:
            problems.append(f'{s.split}: {s.empty_images} of {s.images} images have no '
                            'instances (kept as negatives)')
    train = by_split.get('train')
    test = by_split.get('test') or by_split.get('val')
    if train and test and train.pipeline_sizes and test.pipeline_sizes:
        ratio = float(np.median(train.pipeline_sizes) / np.median(test.pipeline_sizes))
        if not 1 / MAX_SCALE_RATIO <= ratio <= MAX_SCALE_RATIO:
            problems.append(
                f'objects are {ratio:.2f}x as large after the train pipeline as after the '
                f'{test.split} pipeline (median {np.median(train.pipeline_sizes):.0f} vs '
                f'{np.median(test.pipeline_sizes):.0f} px): the model is tested on objects of '
                'a size it did not learn. Resize train and test alike, e.g. ScaleJitter around '
                'the native size (configs/medical/_base_) or --img-scale W H')
    return problems


def format_stats(stats: Sequence[SplitStats]) -> str:
    """A plain-text report, one block per split."""
    names = '/'.join(f'p{p}' for p in PERCENTILES)
    lines = []
    for s in stats:
        lines.append(f'[{s.split}] {s.images} images, {sum(s.instances.values())} instances, '
                     f'{s.empty_images} images without instances')
        lines.append('  instances per class: ' +
                     ', '.join(f'{k}={v}' for k, v in s.instances.items()))
        for title, sizes in (('annotated', s.annotated_sizes),
                             ('after pipeline', s.pipeline_sizes)):
            pct = s.percentiles(sizes)
            lines.append(f'  object size {title} ({names}, px): ' +
                         ('-' if pct is None else ' / '.join(f'{v:.0f}' for v in pct)))
    return '\n'.join(lines)


def dataset_stats(cfg: Config, splits: Sequence[str] = SPLITS, samples: int = 20,
                  draws: int = 3) -> List[SplitStats]:
    """Build the datasets of ``splits`` from ``cfg`` and measure them (see
    :func:`split_stats`); a split whose loader is missing is skipped."""
    from mmdet.registry import DATASETS

    stats = []
    for split in splits:
        datasets = split_datasets(cfg, split)
        if not datasets:
            continue
        loader = cfg.get(f'{split}_dataloader')
        stats.append(split_stats(DATASETS.build(loader['dataset']), split, samples, draws))
    return stats
