"""What a COCO annotation file holds for a config's classes, and the errors that stop a run.

mmdet's ``CocoDataset`` silently drops every annotation whose category is not among the
config's ``classes`` (by name) or not in ``categories`` at all, and a config class that the
file does not have shifts the labels of the others. Training then runs on nothing
(``loss_bbox 0``) and evaluation fails with a bare ``IndexError``. The functions here count
what the file holds (:func:`coco_stats`) and turn the fatal cases into errors naming the file
(:func:`check_coco_stats`); the non-fatal counts become one warning (:func:`describe_losses`).
They are used before the model is built (:func:`.config.check_annotation_files`) and by
:class:`~effdet_plugin.datasets.RobustCocoDataset` when it loads.
"""
import json
import os.path as osp
from collections import Counter
from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

# How to point a config at the file's own classes (docs/own_data.md, docs/robustness.md).
CLASSES_HINT = ("name the file's categories in the config (metainfo classes / "
                "--classes NAME ...), or take them from the file with --classes from-json "
                "(data = dict(classes='from-json') in the config)")


class AnnotationError(ValueError):
    """An annotation file cannot be trained or evaluated on as it is."""


def json_error(path: str, error: Exception) -> AnnotationError:
    """An :class:`AnnotationError` naming ``path`` for a JSON decoding ``error``."""
    size = osp.getsize(path) if osp.isfile(path) else 0
    where = (f'{error.msg}, line {error.lineno} column {error.colno}'
             if isinstance(error, json.JSONDecodeError) else f'{type(error).__name__}: {error}')
    return AnnotationError(
        f"annotation file '{path}' ({size} bytes) is not valid JSON ({where}): it is "
        'truncated or corrupt; re-export or re-download it')


def read_coco_json(path: str) -> dict:
    """Read a COCO annotation file, naming it in every error.

    Raises:
        AnnotationError: Not JSON (truncated, corrupt) or no COCO object.
    """
    try:
        with open(path, 'rb') as f:
            coco = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise json_error(path, e) from e
    if not isinstance(coco, dict) or not isinstance(coco.get('images'), list):
        found = sorted(coco)[:8] if isinstance(coco, dict) else type(coco).__name__
        raise AnnotationError(
            f"annotation file '{path}' is no COCO file: expected an object with an 'images' "
            f"list (and 'annotations', 'categories'), found {found}")
    return coco


@dataclass
class CocoStats:
    """Counts of a COCO file against a config's classes.

    Attributes:
        ann_file (str): The file.
        classes (tuple[str]): The config's classes.
        json_classes (tuple[str]): Category names of the file, in its order.
        num_images (int): Images listed.
        num_annotations (int): Annotations listed.
        usable (int): Non-crowd annotations of the config's classes on listed images.
        missing_classes (tuple[str]): Config classes the file has no category for.
        unknown_category_ids (Counter): Annotations per category id absent from
            ``categories``.
        other_classes (Counter): Annotations per category name not in the config's classes.
        unknown_image_ids (int): Annotations of image ids absent from ``images``.
        images_without_annotations (int): Listed images without any usable annotation.
    """
    ann_file: str
    classes: Tuple[str, ...]
    json_classes: Tuple[str, ...]
    num_images: int
    num_annotations: int
    usable: int
    missing_classes: Tuple[str, ...]
    unknown_category_ids: Counter = field(default_factory=Counter)
    other_classes: Counter = field(default_factory=Counter)
    unknown_image_ids: int = 0
    images_without_annotations: int = 0


def coco_stats(coco: dict, classes: Sequence[str], ann_file: str) -> CocoStats:
    """Count what ``coco`` (a parsed COCO file) holds for ``classes``."""
    categories = coco.get('categories') or []
    names = {c['id']: c['name'] for c in categories}
    wanted = set(classes)
    image_ids = {img['id'] for img in coco['images']}
    annotations = coco.get('annotations') or []
    unknown_ids, other, usable_per_image = Counter(), Counter(), Counter()
    unknown_images = 0
    for ann in annotations:
        name = names.get(ann.get('category_id'))
        if name is None:
            unknown_ids[ann.get('category_id')] += 1
        elif name not in wanted:
            other[name] += 1
        elif ann.get('image_id') not in image_ids:
            unknown_images += 1
        elif not ann.get('iscrowd', 0):
            usable_per_image[ann['image_id']] += 1
    json_classes = tuple(c['name'] for c in categories)
    return CocoStats(
        ann_file=ann_file, classes=tuple(classes), json_classes=json_classes,
        num_images=len(image_ids), num_annotations=len(annotations),
        usable=sum(usable_per_image.values()),
        missing_classes=tuple(c for c in classes if c not in set(json_classes)),
        unknown_category_ids=unknown_ids, other_classes=other, unknown_image_ids=unknown_images,
        images_without_annotations=len(image_ids - set(usable_per_image)))


def check_coco_stats(stats: CocoStats, need_annotations: bool = True) -> None:
    """Raise :class:`AnnotationError` if a run on this file would be meaningless.

    Args:
        stats (CocoStats): From :func:`coco_stats`.
        need_annotations (bool): Whether zero usable annotations is an error (training, and
            evaluation against the file). Defaults to True.

    Raises:
        AnnotationError: No images; config classes the file does not have (both lists
            named); no usable annotation.
    """
    where = f"annotation file '{stats.ann_file}'"
    if stats.num_images == 0:
        raise AnnotationError(f'{where} lists no images: the dataset is empty')
    if stats.missing_classes:
        raise AnnotationError(
            f'the class names of the config differ from the categories of {where}: config '
            f'classes {list(stats.classes)}, file categories {list(stats.json_classes)}; not '
            f'in the file: {list(stats.missing_classes)}. Labels would be wrong and the '
            f'annotations of the other classes dropped: {CLASSES_HINT}')
    if need_annotations and stats.usable == 0:
        raise AnnotationError(
            f'{where} has {stats.num_images} images but no usable annotation of the classes '
            f'{list(stats.classes)} ({"; ".join(describe_losses(stats)) or "no annotations"}'
            '): training would run on nothing and AP would be -1')


def describe_losses(stats: CocoStats) -> List[str]:
    """One phrase per kind of annotation mmdet drops or image it trains on without objects."""
    parts = []
    if stats.unknown_category_ids:
        ids = ', '.join(f'{k}: {n}' for k, n in stats.unknown_category_ids.most_common(5))
        parts.append(f'{sum(stats.unknown_category_ids.values())} annotation(s) with a '
                     f'category id not in categories dropped (id: count {ids})')
    if stats.other_classes:
        names = ', '.join(f'{k}: {n}' for k, n in stats.other_classes.most_common(5))
        parts.append(f'{sum(stats.other_classes.values())} annotation(s) of categories not in '
                     f'the config classes dropped ({names})')
    if stats.unknown_image_ids:
        parts.append(f'{stats.unknown_image_ids} annotation(s) of image ids not in images '
                     'dropped')
    if stats.images_without_annotations:
        parts.append(f'{stats.images_without_annotations}/{stats.num_images} image(s) without '
                     'any usable annotation')
    return parts
