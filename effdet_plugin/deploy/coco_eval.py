"""The images of a config's dataset split, read as its test pipeline reads them, and the COCO
bbox AP of an exported file (onnxruntime, pycocotools) on a split.

Used for int8 calibration (:mod:`.quantize`: training images) and to score an ``.onnx`` file
against its float original on the validation images (``benchmarks/int8_eval.py``).
"""
import contextlib
import io
import json
import os.path as osp
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ..datasets.checks import join_root, split_datasets


def split_images(cfg, split: str) -> Tuple[str, List[Tuple[int, str]]]:
    """The annotation file of ``split`` and its ``(image id, path)`` pairs in file order.

    Args:
        cfg (Config): Parsed config, data options applied.
        split (str): 'train', 'val' or 'test' (the first leaf dataset of its dataloader).

    Raises:
        ValueError: The split has no dataset with an annotation file.
        FileNotFoundError: The annotation file does not exist.
    """
    datasets = split_datasets(cfg, split)
    if not datasets or not datasets[0][1].get('ann_file'):
        raise ValueError(f'the config has no {split} dataset with an annotation file: name it '
                         f'with the data flags (--data-root, --{split}-ann, --img-prefix)')
    dataset = datasets[0][1]
    root = dataset.get('data_root')
    ann_file = join_root(root, dataset['ann_file'])
    if not osp.isfile(ann_file):
        raise FileNotFoundError(f"{split} annotation file '{ann_file}' does not exist: check "
                                f'--data-root/--{split}-ann (docs/own_data.md)')
    with open(ann_file) as f:
        images = json.load(f).get('images') or []
    prefix = join_root(root, (dataset.get('data_prefix') or {}).get('img', ''))
    return ann_file, [(img['id'], join_root(prefix, img['file_name'])) for img in images]


def image_reader(cfg) -> Callable[[str], np.ndarray]:
    """A function reading an image file as the config's test pipeline loads it (its first
    step: mmcv's ``LoadImageFromFile`` or the plugin's ``LoadMedicalImageFromFile``): a BGR
    ``uint8`` array for :func:`~.preprocess.preprocess`."""
    from mmdet.registry import TRANSFORMS
    from mmdet.utils import get_test_pipeline_cfg
    from mmengine.registry import init_default_scope

    init_default_scope(cfg.get('default_scope', 'mmdet'))
    loader = TRANSFORMS.build(dict(get_test_pipeline_cfg(cfg)[0]))

    def read(path: str) -> np.ndarray:
        result = loader(dict(img_path=path))
        if result is None:  # the loader's ignore_empty
            raise FileNotFoundError(f"cannot read image '{path}'")
        return result['img']

    return read


def coco_results(detector, images: List[Tuple[int, str]], read: Callable[[str], np.ndarray],
                 category_ids: List[int]) -> List[dict]:
    """COCO results (``image_id``, ``category_id``, ``bbox`` x, y, w, h, ``score``) of an
    :class:`~.onnxruntime_detector.OnnxRuntimeDetector` on ``images``; label ``i`` is
    ``category_ids[i]``."""
    results = []
    for image_id, path in images:
        det = detector(read(path))
        for box, score, label in zip(det['boxes'], det['scores'], det['labels']):
            x1, y1, x2, y2 = (float(v) for v in box)
            results.append(dict(image_id=image_id, category_id=category_ids[int(label)],
                                bbox=[x1, y1, x2 - x1, y2 - y1], score=float(score)))
    return results


def evaluate_onnx(onnx_file: str, cfg, split: str = 'val',
                  num_threads: Optional[int] = None) -> Dict[str, float]:
    """COCO bbox AP of an exported file (with NMS) on the images of ``split``
    (:func:`evaluate_detector` of its :class:`~.onnxruntime_detector.OnnxRuntimeDetector`)."""
    from .onnxruntime_detector import OnnxRuntimeDetector
    return evaluate_detector(OnnxRuntimeDetector(onnx_file, num_threads=num_threads), cfg,
                             split)


def evaluate_detector(detector, cfg, split: str = 'val') -> Dict[str, float]:
    """COCO bbox AP of ``detector`` on the images of ``split``, scored by pycocotools.

    Args:
        detector: Callable on a BGR image returning ``boxes`` (x1, y1, x2, y2 in image
            pixels), ``scores`` and ``labels``, with a ``classes`` attribute (names or None),
            as :class:`~.onnxruntime_detector.OnnxRuntimeDetector`.
        cfg (Config): Parsed config, data options applied.
        split (str): Dataset split. Defaults to 'val'.

    The detector's class names are matched to the annotation file's categories by name;
    without names, label ``i`` is the ``i``-th category, mmdet's order.

    Returns:
        dict: ``bbox_mAP``, ``bbox_mAP_50``, ``bbox_mAP_75``, ``bbox_mAP_s/m/l`` and
        ``num_images``.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ann_file, images = split_images(cfg, split)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO(ann_file)
    categories = gt.loadCats(gt.getCatIds())
    if detector.classes:
        by_name = {cat['name']: cat['id'] for cat in categories}
        missing = [name for name in detector.classes if name not in by_name]
        if missing:
            raise ValueError(f'the model detects {missing}, which {ann_file} has no category '
                             'for: evaluate it on the data it was trained for')
        category_ids = [by_name[name] for name in detector.classes]
    else:
        category_ids = [cat['id'] for cat in categories]
    results = coco_results(detector, images, image_reader(cfg), category_ids)
    names = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s', 'bbox_mAP_m', 'bbox_mAP_l')
    if not results:
        return dict.fromkeys(names, 0.0) | dict(num_images=len(images))
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(gt, gt.loadRes(results), 'bbox')
        evaluator.params.imgIds = [image_id for image_id, _ in images]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return dict(zip(names, (float(v) for v in evaluator.stats[:6]))) | dict(
        num_images=len(images))
