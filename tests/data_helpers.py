"""A tiny shapes dataset in COCO format and the data flags that point a config at it, for the
data-option and dataset-check tests."""
import argparse
import json
from pathlib import Path
from typing import List

from effdet_plugin.cli.data_options import add_data_args
from effdet_plugin.datasets.shapes import write_shapes_coco


def write_shapes(root: Path) -> Path:
    """4 training and 2 validation images (annotations/*.json, images/) under ``root``."""
    write_shapes_coco(root, num_train=4, num_val=2)
    return root


def write_small_shapes(root: Path, num_train: int = 6, num_val: int = 2) -> Path:
    """Crowded 8-20 px discs and squares on 256x256 images: small for EfficientDet's anchors."""
    write_shapes_coco(root, num_train=num_train, num_val=num_val, size=(256, 256),
                      object_size=(8, 20), max_objects=20)
    return root


def data_args(*argv) -> argparse.Namespace:
    """The flags of :func:`add_data_args`, parsed."""
    parser = argparse.ArgumentParser()
    add_data_args(parser)
    return parser.parse_args([str(a) for a in argv])


def shape_flags(root: Path, *extra) -> List[str]:
    """Flags naming the shapes dataset at ``root`` (classes left to the config)."""
    return ['--data-root', f'{root}/', '--train-ann', 'annotations/train.json', '--val-ann',
            'annotations/val.json', '--img-prefix', 'images/', *extra]


def pixel_free_coco_flags(root: Path, num_train: int = 8) -> List[str]:
    """A COCO train/val pair of 64-px image entries without pixels (for studies whose training
    a test replaces) and the data flags that point a config at it."""
    (root / 'annotations').mkdir(parents=True)
    for split, count in (('train', num_train), ('val', 1)):
        images = [dict(id=i + 1, file_name=f'{i}.png', width=64, height=64)
                  for i in range(count)]
        anns = [dict(id=i + 1, image_id=i + 1, bbox=[1, 1, 9, 9], area=81, category_id=1,
                     iscrowd=0) for i in range(count)]
        (root / 'annotations' / f'{split}.json').write_text(json.dumps(dict(
            images=images, annotations=anns, categories=[dict(id=1, name='nucleus')])))
    return ['--data-root', f'{root}/', '--train-ann', 'annotations/train.json', '--val-ann',
            'annotations/val.json']
